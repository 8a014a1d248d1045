//! The byte map under a [`crate::Store`], and its in-memory implementation.
//!
//! A [`Backend`] is the smallest thing a durable log needs: ordered keys, range delete,
//! range scan, one separate snapshot blob, and a `sync` barrier. Everything above it (the
//! key layout, the entry cache, the raft-rs `Storage` semantics) lives in `Store`, so the
//! in-memory backend used by unit tests and the write-ahead log that real nodes and the
//! simulator's reference replicas run ([`crate::WalBackend`]) keep exactly the same bytes.
//!
//! Contract:
//!
//! - Writes are visible to reads at once.
//! - Writes are durable only after `sync` returns Ok. A crash may lose any suffix of the
//!   writes since the last `sync`, but never reorders them (a later write surviving
//!   implies every earlier one survived). `Store` orders its writes so that any such
//!   prefix is recoverable.
//! - `scan` and `delete_range` use the half-open range `[start, end)` in byte order.
//! - The snapshot blob is stored apart from the keyed data and is not counted in
//!   `Store::raft_state_bytes` (as 6.824's persister separates raft state from snapshot).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::{StoreError, SyncJob};

/// Makes a snapshot blob for [`Backend::start_put_snapshot`], maybe on another thread,
/// as pieces whose concatenation is the blob (so a large snapshot's data need not be
/// copied into one buffer with its framing).
pub type SnapshotMaker = Box<dyn FnOnce() -> Result<Vec<Vec<u8>>, StoreError> + Send>;

/// Reads the snapshot blob, maybe on another thread: what
/// [`Backend::snapshot_reader`] hands out.
pub type SnapshotReader = Box<dyn FnOnce() -> Result<Option<Vec<u8>>, StoreError> + Send>;

/// `(key, value)` pairs returned by [`Backend::scan`], in key order.
pub type KeyValues = Vec<(Vec<u8>, Vec<u8>)>;

/// Durable byte map under a `LogStore`. Writes are visible at once; durable after `sync`.
pub trait Backend {
    /// Returns the value stored under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stores `value` under `key`, replacing any previous value.
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    /// Deletes every key in `[start, end)`.
    fn delete_range(&mut self, start: &[u8], end: &[u8]) -> Result<(), StoreError>;
    /// Deletes `key` (the range holding only `key`, unless the backend does better).
    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        let mut end = key.to_vec();
        end.push(0);
        self.delete_range(key, &end)
    }
    /// Returns every `(key, value)` in `[start, end)`, in key order.
    fn scan(&self, start: &[u8], end: &[u8]) -> Result<KeyValues, StoreError>;
    /// Snapshot blob kept apart from the log (counts separately, like 6.824's persister).
    fn put_snapshot(&mut self, bytes: &[u8]) -> Result<(), StoreError>;
    /// Starts storing the blob `make` returns as the snapshot blob, and may return before
    /// `make` has run (it may run on another thread) and the blob is stored;
    /// [`Backend::snapshot_stored`] says when it is. Every write made after the blob is
    /// stored comes after it in the backend's order. The default makes and stores it at
    /// once.
    fn start_put_snapshot(&mut self, make: SnapshotMaker) -> Result<(), StoreError> {
        self.put_snapshot(&make()?.concat())
    }
    /// True when no blob started by [`Backend::start_put_snapshot`] is still being
    /// made or stored (with `wait`, waits for it first); the error of `make` or of the
    /// store if either failed.
    fn snapshot_stored(&mut self, wait: bool) -> Result<bool, StoreError> {
        let _ = wait;
        Ok(true)
    }
    /// Returns the snapshot blob, if one was ever stored.
    fn get_snapshot(&self) -> Result<Option<Vec<u8>>, StoreError>;
    /// A reader of the current snapshot blob that may run on another thread, for a
    /// backend whose read is slow (a file the size of the state); `None`, the default:
    /// [`Backend::get_snapshot`] is cheap enough for the caller's thread.
    fn snapshot_reader(&self) -> Result<Option<SnapshotReader>, StoreError> {
        Ok(None)
    }
    /// Makes every write so far durable.
    fn sync(&mut self) -> Result<(), StoreError>;
    /// The work that makes every write so far durable, to run later on any thread (a
    /// node's sync thread, or a simulated completion); writes made after it is taken may
    /// or may not be covered. The default syncs now and hands out nothing more to do.
    fn sync_job(&mut self) -> Result<SyncJob, StoreError> {
        self.sync()?;
        Ok(SyncJob::done())
    }
}

/// Locks `mutex`, taking it over if a thread panicked holding it (what it guards stays
/// valid either way).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An in-memory [`Backend`] over a `BTreeMap`, for unit tests and the simulator.
///
/// `sync` is a no-op apart from counting calls ([`MemBackend::sync_count`]), which lets
/// tests check the "one sync per Ready" rule. Clone it to keep a copy of "the disk" when
/// simulating a crash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemBackend {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    snapshot: Option<Vec<u8>>,
    syncs: u64,
}

impl MemBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many times `sync` was called.
    pub fn sync_count(&self) -> u64 {
        self.syncs
    }

    /// Number of keys stored (excluding the snapshot blob).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no key is stored (the snapshot blob aside).
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl Backend for MemBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.map.get(key).cloned())
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.map.insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn delete_range(&mut self, start: &[u8], end: &[u8]) -> Result<(), StoreError> {
        if start >= end {
            return Ok(());
        }
        let doomed: Vec<Vec<u8>> = self
            .map
            .range(start.to_vec()..end.to_vec())
            .map(|(key, _)| key.clone())
            .collect();
        for key in doomed {
            self.map.remove(&key);
        }
        Ok(())
    }

    fn scan(&self, start: &[u8], end: &[u8]) -> Result<KeyValues, StoreError> {
        if start >= end {
            return Ok(Vec::new());
        }
        Ok(self
            .map
            .range(start.to_vec()..end.to_vec())
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect())
    }

    fn put_snapshot(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.snapshot = Some(bytes.to_vec());
        Ok(())
    }

    fn get_snapshot(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.snapshot.clone())
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.syncs += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves range operations are half-open and ordered, and the snapshot is separate.
    #[test]
    fn ranges_are_half_open() {
        let mut backend = MemBackend::new();
        for key in [b"a", b"b", b"c", b"d"] {
            backend.put(key, key).unwrap();
        }
        let keys: Vec<_> = backend.scan(b"b", b"d").unwrap();
        assert_eq!(
            keys,
            vec![
                (b"b".to_vec(), b"b".to_vec()),
                (b"c".to_vec(), b"c".to_vec())
            ]
        );
        backend.delete_range(b"a", b"c").unwrap();
        assert_eq!(backend.len(), 2);
        assert_eq!(backend.get(b"a").unwrap(), None);
        backend.put_snapshot(b"snap").unwrap();
        assert_eq!(backend.len(), 2);
        assert_eq!(backend.get_snapshot().unwrap(), Some(b"snap".to_vec()));
        backend.sync().unwrap();
        assert_eq!(backend.sync_count(), 1);
    }
}
