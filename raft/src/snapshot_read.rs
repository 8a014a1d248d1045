//! The snapshot a follower needs, read without blocking the leader's driver.
//!
//! raft-rs asks `Storage::snapshot` on the driver's thread when a follower's next entry
//! is compacted away. A snapshot kept in a file (the write-ahead log's) is read on a thread
//! of its own instead: the first ask starts the read and answers
//! `SnapshotTemporarilyUnavailable` (raft-rs asks again with the follower's next
//! heartbeat answer, within about 100 ms), a later ask takes the bytes once read.
//! Nothing is kept afterwards: a snapshot can be the size of the state, and it is sent
//! rarely (a follower that fell behind the log). Backends whose read is cheap (memory,
//! the simulator's persister) are read at once, as before, so simulated runs do not
//! change.
//!
//! ```text
//!   ask ─► Idle ──reader──► Reading{index} ─ask, not done─► Unavailable
//!            │                   └──ask, done─► checked snapshot ─► Idle
//!            └──no reader──► read at once
//! ```
//!
//! A read started for an older snapshot (a compaction came in between) is dropped and
//! a new one started.

use std::sync::Mutex;
use std::thread::JoinHandle;

use raft::eraftpb::Snapshot;

use crate::backend::lock;
use crate::{Backend, Index, Store, StoreError};

/// What the store is reading for a follower.
#[derive(Debug, Default)]
pub(crate) enum SnapshotRead {
    /// Nothing.
    #[default]
    Idle,
    /// The blob of snapshot `index`, on `thread`.
    Reading {
        index: Index,
        thread: JoinHandle<Result<Option<Vec<u8>>, StoreError>>,
    },
}

/// A store's read in progress, behind a lock (`Storage::snapshot` takes `&self`).
pub(crate) type SnapshotReads = Mutex<SnapshotRead>;

impl<B: Backend> Store<B> {
    /// The latest snapshot for a follower (what `Storage::snapshot` hands raft-rs), or
    /// `None` while it is being read in the background: ask again. Each snapshot
    /// handed over was read for that ask; none is kept.
    pub fn offer_snapshot(&self) -> Result<Option<Snapshot>, StoreError> {
        let index = self.snapshot_index();
        let mut read = lock(&self.snapshot_reads);
        if let SnapshotRead::Reading {
            index: reading,
            thread,
        } = std::mem::take(&mut *read)
        {
            if reading == index {
                if !thread.is_finished() {
                    *read = SnapshotRead::Reading { index, thread };
                    return Ok(None);
                }
                let bytes = thread
                    .join()
                    .map_err(|_| StoreError::Backend("the snapshot read panicked".into()))??;
                return self.checked_snapshot(bytes).map(Some);
            }
            // Read for a snapshot since replaced: let it finish on its own.
        }
        let Some(reader) = self.backend.snapshot_reader()? else {
            return self.latest_snapshot().map(Some);
        };
        let spawned = std::thread::Builder::new()
            .name("shardkv-snapshot-read".into())
            .spawn(reader);
        match spawned {
            Ok(thread) => {
                *read = SnapshotRead::Reading { index, thread };
                Ok(None)
            }
            Err(error) => {
                tracing::warn!(%error, "cannot start a snapshot read; reading here");
                self.latest_snapshot().map(Some)
            }
        }
    }
}
