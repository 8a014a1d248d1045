//! The write side of raft-rs's `Storage`: what a [`crate::Replica`] needs from its log.
//!
//! raft-rs's `Storage` trait only reads. The Ready protocol tells the application what to
//! write; `LogStore` names those writes and states, per method, what must be durable when
//! it returns (or after the next [`LogStore::sync`]). `Replica::advance` issues exactly one
//! `sync` per Ready, after all of that Ready's writes and before the messages that promise
//! them (votes, append acknowledgements) leave the node.
//!
//! ## The conf state a store keeps
//!
//! The stored `ConfState` is the configuration *as of the snapshot* (or as bootstrapped,
//! when there is no snapshot), not the latest applied one. On restart raft-rs starts from
//! it and the replica replays the log after the snapshot, re-applying any membership
//! change in it, exactly once and in order. (Storing the latest applied configuration and
//! then replaying its own conf change again would apply it twice.)

use std::fmt;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};

use crate::{Index, StoreError, SyncJob};

/// A state machine's snapshot for [`LogStore::compact`]: its bytes, or a function that
/// encodes them, which the store may call on another thread (a large state then encodes
/// while the replica goes on; the function must encode the state as of the snapshot's
/// index, e.g. from a copy-on-write clone).
pub enum SnapshotData {
    /// The encoded state.
    Bytes(Vec<u8>),
    /// Encodes the state.
    Encode(Box<dyn FnOnce() -> Vec<u8> + Send>),
}

impl SnapshotData {
    /// Data that `encode` gives when the store asks for it.
    pub fn encode_later(encode: impl FnOnce() -> Vec<u8> + Send + 'static) -> Self {
        SnapshotData::Encode(Box::new(encode))
    }

    /// The bytes, encoding them first if needed.
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            SnapshotData::Bytes(bytes) => bytes,
            SnapshotData::Encode(encode) => encode(),
        }
    }
}

impl From<Vec<u8>> for SnapshotData {
    fn from(bytes: Vec<u8>) -> Self {
        SnapshotData::Bytes(bytes)
    }
}

impl fmt::Debug for SnapshotData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotData::Bytes(bytes) => write!(f, "Bytes({} bytes)", bytes.len()),
            SnapshotData::Encode(_) => f.write_str("Encode(..)"),
        }
    }
}

/// raft-rs `Storage` plus writes; the contract is documented per method.
///
/// Reads (`raft::Storage`) must observe every write at once, synced or not.
pub trait LogStore: raft::Storage {
    /// Appends `entries` (consecutive indices) to the log, first deleting every stored
    /// entry at or after `entries[0].index` (a conflicting suffix from an older leader).
    ///
    /// Durable after the next `sync`. Panics (invariant) if the entries would leave a gap
    /// after the last index or overwrite compacted entries.
    fn append(&mut self, entries: &[Entry]) -> Result<(), StoreError>;

    /// Replaces the hard state (term, vote, commit).
    ///
    /// Durable after the next `sync`. Term and vote must be durable before any message
    /// that depends on them is sent; commit may lag (raft-rs recomputes it).
    fn set_hard_state(&mut self, hs: &HardState) -> Result<(), StoreError>;

    /// Replaces the conf state raft-rs restarts with: the configuration as of the
    /// current snapshot index (or as bootstrapped). See the module docs.
    ///
    /// Durable after the next `sync`.
    fn set_conf_state(&mut self, cs: &ConfState) -> Result<(), StoreError>;

    /// Installs a snapshot received from the leader: stores it (data included) as the
    /// store's snapshot, discards the whole log, raises commit to the snapshot index and
    /// takes its conf state.
    ///
    /// Durable after the next `sync`. A crash before that sync leaves either the old
    /// state or the new snapshot (with any stale log after it dropped on open).
    /// `SnapshotOutOfDate` if it is not newer than the installed snapshot.
    fn apply_snapshot(&mut self, snapshot: Snapshot) -> Result<(), StoreError>;

    /// Takes a local snapshot at `index` holding the state machine's `data` and the
    /// configuration `conf_state` as of `index`, then drops the log through `index`.
    ///
    /// The snapshot may be encoded and written in the background
    /// ([`crate::Backend::start_put_snapshot`]); until it is stored the store keeps
    /// serving the old snapshot and the whole log ([`LogStore::compaction_pending`]).
    /// Once it is, [`LogStore::tidy`] (or any write that must follow it) installs it,
    /// drops the log through `index` from the cache, and writes the conf state record
    /// and the log trimming, so a crash at any point recovers either the old snapshot
    /// with its whole log or the new one. Durable after the next `sync` that follows.
    /// Waits for a pending compaction first. A no-op when `index` is not past the
    /// current snapshot; `Unavailable` when `index` is past the commit index or the
    /// last index.
    fn compact(
        &mut self,
        index: Index,
        data: SnapshotData,
        conf_state: ConfState,
    ) -> Result<(), StoreError>;

    /// True while a [`LogStore::compact`] waits for its snapshot to be encoded and
    /// stored. Stores that compact at once keep this default.
    fn compaction_pending(&self) -> bool {
        false
    }

    /// Makes every write so far durable. A compaction still waiting for its snapshot
    /// stays pending, unless its snapshot is stored by the end of the sync (then it
    /// finishes after it, its records durable with the next sync): entries appended
    /// meanwhile are durable on their own, and a crash recovers the old snapshot with
    /// the whole log (or the new snapshot, its log trimmed on open).
    fn sync(&mut self) -> Result<(), StoreError>;

    /// The work that makes every write so far durable, to run later, on any thread: what
    /// a driver's [`crate::SyncSink`] receives for each Ready. Writes made after it is
    /// taken may or may not be covered. The default syncs at once and hands out nothing.
    fn sync_job(&mut self) -> Result<SyncJob, StoreError> {
        self.sync()?;
        Ok(SyncJob::done())
    }

    /// Waits for a pending compaction's snapshot to be stored, then finishes the
    /// compaction as [`LogStore::tidy`] would (durable after the next `sync`). Stores
    /// that compact at once keep this default.
    fn finish_compaction(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Upkeep the store deferred, a bounded amount per call (the store finishes a
    /// compaction once its snapshot is stored, and deletes the log runs it left
    /// behind). `Replica::advance` calls it once per call. What it writes never needs
    /// to be durable: a crash before the next `sync` just leaves the work to do again.
    /// Stores with nothing to defer keep this default.
    fn tidy(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    /// The latest snapshot with its data (`Snapshot::default()` when there is none),
    /// for the state machine of a replica opening on this store: `Replica::open` calls
    /// it once. The first call after the store opened hands over the copy it read then
    /// (when it is still the latest), so a large snapshot is not read twice.
    fn restore_snapshot(&mut self) -> Result<Snapshot, StoreError>;

    /// Persisted bytes of the log, hard state and conf state records, excluding the
    /// snapshot (6.824's `RaftStateSize`). Compare with a threshold to decide when to
    /// snapshot.
    fn raft_state_bytes(&self) -> u64;

    /// Bytes of the current snapshot's data (0 when there is none). While a compaction
    /// is pending, the snapshot it replaces.
    fn snapshot_bytes(&self) -> u64;
}
