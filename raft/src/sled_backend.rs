//! A [`Backend`] on disk, over sled 0.34.
//!
//! Keys live in sled's default tree; the snapshot blob lives in its own tree
//! (`"snapshot"`, one key) so a scan of the log never touches it. `sync` is
//! `Db::flush`, which makes every earlier write to every tree durable. sled recovers a
//! prefix of its write log after a crash, which is the ordering guarantee `Store` needs.
//!
//! Caveats: `delete_range` is a scan plus a batch of removes (sled 0.34 has no native
//! range delete), so its cost is linear in the number of deleted keys; log compaction
//! deletes each compacted entry once, which is what a log needs anyway.

use std::path::Path;

use crate::{Backend, KeyValues, StoreError};

const SNAPSHOT_TREE: &str = "snapshot";
const SNAPSHOT_KEY: &[u8] = b"s";

/// A [`Backend`] stored in a sled database; `sync` flushes it.
#[derive(Debug, Clone)]
pub struct SledBackend {
    db: sled::Db,
    snapshots: sled::Tree,
}

impl SledBackend {
    /// Opens (creating if needed) the sled database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let db = sled::open(path)?;
        Self::from_db(db)
    }

    /// Wraps an already open sled database (the node may keep other trees in it).
    pub fn from_db(db: sled::Db) -> Result<Self, StoreError> {
        let snapshots = db.open_tree(SNAPSHOT_TREE)?;
        Ok(Self { db, snapshots })
    }

    /// The underlying database.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }
}

impl Backend for SledBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(key)?.map(|value| value.to_vec()))
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.db.insert(key, value)?;
        Ok(())
    }

    fn delete_range(&mut self, start: &[u8], end: &[u8]) -> Result<(), StoreError> {
        if start >= end {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for item in self.db.range(start..end) {
            let (key, _) = item?;
            batch.remove(key);
        }
        self.db.apply_batch(batch)?;
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.db.remove(key)?;
        Ok(())
    }

    fn scan(&self, start: &[u8], end: &[u8]) -> Result<KeyValues, StoreError> {
        if start >= end {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for item in self.db.range(start..end) {
            let (key, value) = item?;
            out.push((key.to_vec(), value.to_vec()));
        }
        Ok(out)
    }

    fn put_snapshot(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.snapshots.insert(SNAPSHOT_KEY, bytes)?;
        Ok(())
    }

    fn get_snapshot(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .snapshots
            .get(SNAPSHOT_KEY)?
            .map(|value| value.to_vec()))
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}
