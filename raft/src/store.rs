//! [`Store`]: the one [`crate::LogStore`], a write-through cache of the raft log over a
//! [`Backend`].
//!
//! Every write goes to the backend at once (durable after `sync`) and to an in-memory
//! copy: the hard state, the conf state record, the latest snapshot's metadata and every
//! log entry after it. raft-rs's reads of the log (`entries`, `term`, ...) are then
//! served from memory and never fail for I/O reasons; a snapshot's data is read back
//! from the backend when raft-rs asks for it (a follower needs it), off the caller's
//! thread when the backend says the read is slow (`snapshot_read.rs`). `Store::open`
//! rebuilds the cache from the backend, so a crash followed by `open` sees exactly what
//! was synced.
//!
//! ```text
//!             snapshot (index s, term t)      entries[0]        entries[n-1]
//!   log:  ... ----compacted----------| s |  s+1  |  ...  |  s+n  |
//!                                          first_index      last_index
//! ```
//!
//! Invariants (checked on open, asserted on write):
//! - `entries[i].index == snapshot index + 1 + i` (contiguous, no gap after the snapshot);
//! - `term(snapshot index) == snapshot term`; `hard_state.commit >= snapshot index`.
//!
//! Recovery after an interrupted snapshot install: a snapshot is always written before
//! the log is trimmed, so `open` may find log entries at or below the snapshot index; it
//! drops them, and drops the whole log if the entry at the snapshot index disagrees with
//! the snapshot's term (the log was stale and about to be discarded).
//!
//! The write side (the `LogStore` impl) is in `store_write.rs`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage};

use crate::codec::{
    self, decode, decode_snapshot, CONF_STATE_KEY, ENTRY_END, ENTRY_KEY_BYTES, ENTRY_START,
};
use crate::snapshot_read::SnapshotReads;
use crate::{Backend, Index, StoreError, Term};

/// THE [`crate::LogStore`]: caches the log in memory and writes through to `B`.
#[derive(Debug)]
pub struct Store<B: Backend> {
    pub(crate) backend: B,
    pub(crate) hard_state: HardState,
    /// Conf state record: the configuration and the snapshot index it holds at.
    pub(crate) conf_state: SnapshotMetadata,
    /// The latest snapshot's metadata (index 0 when none). Its data stays in the
    /// backend alone, read back when a follower needs it ([`Store::latest_snapshot`]):
    /// kept here too, a node would hold its state three times (state machine, log
    /// about as large, snapshot bytes).
    pub(crate) snapshot: SnapshotMetadata,
    /// The size of the latest snapshot's data.
    pub(crate) snapshot_data_bytes: u64,
    /// The snapshot `open` read, data included, until `restore_snapshot` takes it or
    /// another snapshot replaces it.
    pub(crate) opened: Option<Snapshot>,
    /// A snapshot being read for a follower (see `snapshot_read.rs`).
    pub(crate) snapshot_reads: SnapshotReads,
    pub(crate) entries: VecDeque<Entry>,
    /// The run records in the backend: key → index of the run's last entry (runs are
    /// disjoint and in key order; a run's key is at or below its first entry's index).
    pub(crate) runs: BTreeMap<Index, Index>,
    /// Keys of runs left in the backend whose entries are all compacted away: deleted
    /// a few per [`crate::LogStore::tidy`] rather than all at once (see there).
    pub(crate) dead_runs: VecDeque<Index>,
    /// A compaction whose snapshot the backend is still making or storing (see
    /// `LogStore::compact`).
    pub(crate) pending_compaction: Option<PendingCompaction>,
    /// Why a pending compaction's snapshot could not be stored: every later write that
    /// would have to follow it fails with this.
    pub(crate) failed_snapshot: Option<String>,
    pub(crate) entry_bytes: u64,
    pub(crate) hard_state_bytes: u64,
    pub(crate) conf_state_bytes: u64,
    /// Whether compacted entries are freed on a background thread (see
    /// [`Store::set_background_drop`]).
    pub(crate) background_drop: bool,
}

/// A compaction waiting for its snapshot: installing the snapshot in the cache, trimming
/// the cache, the conf state record and the log trimming all wait for it.
#[derive(Debug)]
pub(crate) struct PendingCompaction {
    pub(crate) index: Index,
    /// The configuration as of `index`.
    pub(crate) conf_state: ConfState,
    /// The snapshot's metadata and data size, once the backend's maker has made it.
    pub(crate) made: Arc<Mutex<Option<(SnapshotMetadata, u64)>>>,
}

/// Persisted size of one entry record (key plus encoded value).
pub(crate) fn entry_record_bytes(entry: &Entry) -> u64 {
    use protobuf::Message as _;
    ENTRY_KEY_BYTES + u64::from(entry.compute_size())
}

impl<B: Backend> Store<B> {
    /// Opens the store kept in `backend`, restoring hard state, conf state, snapshot and
    /// log. An empty backend gives an empty, uninitialized store.
    pub fn open(backend: B) -> Result<Self, StoreError> {
        let mut snapshot = match backend.get_snapshot()? {
            Some(bytes) => decode_snapshot(bytes)?,
            None => Snapshot::default(),
        };
        let mut store = Store {
            backend,
            hard_state: HardState::default(),
            conf_state: snapshot.get_metadata().clone(),
            snapshot_data_bytes: snapshot.data.len() as u64,
            // Shares the data's buffer with `snapshot`, which keeps only its metadata.
            opened: (snapshot.get_metadata().index > 0).then(|| snapshot.clone()),
            snapshot: snapshot.take_metadata(),
            snapshot_reads: SnapshotReads::default(),
            entries: VecDeque::new(),
            runs: BTreeMap::new(),
            dead_runs: VecDeque::new(),
            pending_compaction: None,
            failed_snapshot: None,
            entry_bytes: 0,
            hard_state_bytes: 0,
            conf_state_bytes: 0,
            background_drop: true,
        };
        store.restore_records()?;
        store.restore_log()?;
        Ok(store)
    }

    /// Whether the entries a compaction drops from the cache are freed on a background
    /// thread instead of the caller's (default on, on real nodes and in the simulator
    /// alike: freeing memory elsewhere changes nothing a replica does). A compaction of
    /// an 8 MiB log drops ~26,000 entries (a node's 32 MiB, four times that), and freeing them one by one took the node's
    /// driver 15-35 ms on the development VM, every snapshot. Off only in the test that
    /// compares both.
    pub fn set_background_drop(&mut self, on: bool) {
        self.background_drop = on;
    }

    /// Loads the hard state and conf state records, reconciling them with the snapshot.
    fn restore_records(&mut self) -> Result<(), StoreError> {
        if let Some(bytes) = self.backend.get(codec::HARD_STATE_KEY)? {
            self.hard_state = decode("hard state", &bytes)?;
            self.hard_state_bytes = codec::HARD_STATE_KEY.len() as u64 + bytes.len() as u64;
        }
        if let Some(bytes) = self.backend.get(CONF_STATE_KEY)? {
            let record: SnapshotMetadata = decode("conf state", &bytes)?;
            self.conf_state_bytes = CONF_STATE_KEY.len() as u64 + bytes.len() as u64;
            // A record older than the snapshot predates an interrupted install/compaction.
            if record.index >= self.snapshot_index() {
                self.conf_state = record;
            }
        }
        let (index, term) = (self.snapshot_index(), self.snapshot_term());
        if self.hard_state.commit < index || self.hard_state.term < term {
            let mut hs = self.hard_state.clone();
            hs.commit = hs.commit.max(index);
            hs.term = hs.term.max(term);
            self.write_hard_state(&hs)?;
        }
        Ok(())
    }

    /// Loads the log after the snapshot, dropping entries an interrupted snapshot install
    /// left behind.
    fn restore_log(&mut self) -> Result<(), StoreError> {
        let (snap_index, snap_term) = (self.snapshot_index(), self.snapshot_term());
        let mut stale = false;
        for (key, value) in self.backend.scan(ENTRY_START, ENTRY_END)? {
            let key_index = codec::entry_key_index(&key)?;
            let run = codec::decode_run(&value)?;
            let (Some(first), Some(last)) = (run.first(), run.last()) else {
                return Err(corrupt(key_index, "holds an empty run".into()));
            };
            if first.index < key_index || last.index != first.index + run.len() as u64 - 1 {
                return Err(corrupt(
                    key_index,
                    format!("holds entries {}..={}", first.index, last.index),
                ));
            }
            self.runs.insert(key_index, last.index);
            for entry in run {
                let index = entry.index;
                if index == snap_index && entry.term != snap_term && snap_index > 0 {
                    stale = true;
                }
                if index <= snap_index {
                    continue;
                }
                let expected = snap_index + 1 + self.entries.len() as u64;
                if index != expected {
                    return Err(corrupt(index, format!("expected entry {expected}")));
                }
                self.entry_bytes += entry_record_bytes(&entry);
                self.entries.push_back(entry);
            }
        }
        // Delete what was dropped so the byte accounting matches the backend.
        if stale {
            self.entries.clear();
            self.entry_bytes = 0;
            self.backend.delete_range(ENTRY_START, ENTRY_END)?;
            self.runs.clear();
            self.dead_runs.clear();
        } else {
            self.drop_runs_through(snap_index)?;
        }
        if self.hard_state.commit > self.last_index_inner() {
            return Err(StoreError::Corrupt {
                what: "hard state".into(),
                reason: format!(
                    "commit {} beyond last index {}",
                    self.hard_state.commit,
                    self.last_index_inner()
                ),
            });
        }
        Ok(())
    }

    /// The backend (to inspect it, or to share its database with other data).
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, to change (tests drive a backend's background work through it);
    /// writing records through it bypasses the cache.
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Gives the backend back (to "crash" and reopen it in tests).
    pub fn into_backend(self) -> B {
        self.backend
    }

    /// The stored hard state.
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// The stored conf state (as of the snapshot, see [`crate::LogStore`]).
    pub fn conf_state(&self) -> &ConfState {
        self.conf_state.get_conf_state()
    }

    /// The latest snapshot (`Snapshot::default()` when there is none), data included:
    /// read back from the backend, which holds the snapshot this store installed (an
    /// error if it cannot be read, `Corrupt` if it is another one).
    pub fn latest_snapshot(&self) -> Result<Snapshot, StoreError> {
        if self.snapshot_index() == 0 {
            return Ok(Snapshot::default());
        }
        self.checked_snapshot(self.backend.get_snapshot()?)
    }

    /// The snapshot in `bytes` (the backend's blob), checked to be the one this store
    /// installed (`Corrupt` otherwise, or if there is none).
    pub(crate) fn checked_snapshot(&self, bytes: Option<Vec<u8>>) -> Result<Snapshot, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            what: "snapshot".into(),
            reason,
        };
        let bytes = bytes.ok_or_else(|| {
            corrupt(format!(
                "snapshot {} is gone from the backend",
                self.snapshot_index()
            ))
        })?;
        let snapshot = decode_snapshot(bytes)?;
        if *snapshot.get_metadata() != self.snapshot {
            return Err(corrupt(format!(
                "the backend holds snapshot {} (term {}), not {} (term {})",
                snapshot.get_metadata().index,
                snapshot.get_metadata().term,
                self.snapshot_index(),
                self.snapshot_term(),
            )));
        }
        Ok(snapshot)
    }

    /// Index of the latest snapshot (0 when none).
    pub fn snapshot_index(&self) -> Index {
        self.snapshot.index
    }

    /// Term of the latest snapshot (0 when none).
    pub fn snapshot_term(&self) -> Term {
        self.snapshot.term
    }

    /// True when nothing was ever stored: no hard state, conf state, snapshot or log.
    pub fn is_empty(&self) -> bool {
        self.hard_state == HardState::default()
            && *self.conf_state() == ConfState::default()
            && self.snapshot_index() == 0
            && self.entries.is_empty()
    }

    pub(crate) fn first_index_inner(&self) -> Index {
        self.snapshot_index() + 1
    }

    pub(crate) fn last_index_inner(&self) -> Index {
        self.snapshot_index() + self.entries.len() as u64
    }

    pub(crate) fn term_inner(&self, index: Index) -> Result<Term, StoreError> {
        let snap_index = self.snapshot_index();
        if index == snap_index {
            return Ok(self.snapshot_term());
        }
        if index < snap_index {
            return Err(StoreError::Compacted {
                index,
                first_index: snap_index + 1,
            });
        }
        match self.entries.get((index - snap_index - 1) as usize) {
            Some(entry) => Ok(entry.term),
            None => Err(StoreError::Unavailable {
                index,
                last_index: self.last_index_inner(),
            }),
        }
    }

    /// The entries in `[low, high)`, at most `max_size` bytes (always at least one).
    pub(crate) fn entries_inner(
        &self,
        low: Index,
        high: Index,
        max_size: Option<u64>,
    ) -> Result<Vec<Entry>, StoreError> {
        let first_index = self.first_index_inner();
        if low < first_index {
            return Err(StoreError::Compacted {
                index: low,
                first_index,
            });
        }
        let last_index = self.last_index_inner();
        if high > last_index + 1 || low > high {
            return Err(StoreError::Unavailable {
                index: high.max(low),
                last_index,
            });
        }
        let start = (low - first_index) as usize;
        let end = (high - first_index) as usize;
        let mut entries: Vec<Entry> = self.entries.range(start..end).cloned().collect();
        raft::util::limit_size(&mut entries, max_size);
        Ok(entries)
    }
}

fn corrupt(index: Index, reason: String) -> StoreError {
    StoreError::Corrupt {
        what: format!("log entry key {index}"),
        reason,
    }
}

impl<B: Backend> Storage for Store<B> {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state().clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.entries_inner(low, high, max_size.into())
            .map_err(StoreError::into_raft)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.term_inner(idx).map_err(StoreError::into_raft)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first_index_inner())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index_inner())
    }

    /// The latest snapshot, read from the backend; `SnapshotTemporarilyUnavailable` when
    /// there is none yet, it is older than `request_index`, it is still being read in
    /// the background (`snapshot_read.rs`), or it cannot be read (logged). raft-rs asks
    /// again later, and would panic on any other error.
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let unavailable = raft::Error::Store(raft::StorageError::SnapshotTemporarilyUnavailable);
        let index = self.snapshot_index();
        if index == 0 || index < request_index {
            return Err(unavailable);
        }
        match self.offer_snapshot() {
            Ok(Some(snapshot)) => Ok(snapshot),
            Ok(None) => Err(unavailable),
            Err(error) => {
                tracing::error!(%error, index, "cannot read the snapshot");
                Err(unavailable)
            }
        }
    }
}
