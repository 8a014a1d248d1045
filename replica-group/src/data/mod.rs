//! [`Data`]: a replica group's keys and values on disk, with the group's metadata
//! (configurations, phases, duplicate tables), in one redb database ([`DATA_FILE`]) over a
//! `shardkv_raft::Disk` file.
//!
//! redb runs over [`DiskBackend`], so real nodes (the operating system's files) and the
//! simulator (its disk, which loses unsynced writes as a power failure does) run the same
//! engine with the same options; `docs/storage.md` says why redb and not sled.
//!
//! ```text
//!   table "kv"        shard (u32, big-endian) ++ key   ─► value
//!   table "meta"      "applied" ─► u64 (big-endian); other names ─► the caller's bytes
//!   table "staged_kv" a follower's catch-up in progress (see below)
//! ```
//!
//! A shard's keys are a contiguous range, so a shard is read in order ([`Data::chunk`])
//! and dropped as one range ([`Data::delete_shard`]).
//!
//! # Durability
//!
//! Writes are held in memory ([`pending`](self)) and reads see them at once.
//! [`Data::commit`] ends the writes of one Ready with the applied index they bring the
//! data to; once enough is held (`FLUSH_BYTES`, [`Data::wants_flush`]) the owner
//! [`Data::flush`]es everything as one redb transaction carrying that applied index,
//! **without syncing** (redb's `Durability::None`): the raft log is the write-ahead log,
//! and writing many Readies in one transaction rewrites each B-tree leaf once instead of
//! once per Ready. A [`Checkpoint`] (a flush, then a durable commit) makes every commit
//! before it durable; it may run on another thread. After a crash or a power failure the database opens at a flush at
//! or after the last checkpoint (redb keeps non-durable commits only in memory, so in
//! practice at the checkpoint), and [`Data::applied_index`] says which: the log replays
//! from there.
//!
//! A [`DataView`] (a flush, then a redb read transaction) is one consistent point that
//! later writes do not change, for streaming a state out in chunks while applying goes
//! on.
//!
//! # Taking a whole state from another replica
//!
//! A follower catching up copies another replica's view chunk by chunk into the table
//! `staged_kv` ([`Data::stage_begin`], [`Data::stage`]: non-durable commits, beside the
//! live tables, which go on as before), then switches to it in one durable commit
//! ([`Data::stage_finish`]: the staged table becomes `kv`, with the view's metadata and
//! applied index). A crash before that commit leaves the data as it was (a staged table
//! left over is dropped by the next catch-up); after it, the data stands at the view.

mod backend;
mod pending;
mod read;

use std::cell::RefCell;
use std::ops::Bound;
use std::sync::Arc;

pub use backend::DiskBackend;
pub use pending::FLUSH_BYTES;
use pending::{Held, Pending};
pub use read::{Chunk, DataView};
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
};
use shardkv_proto::ShardId;
use shardkv_raft::Disk;

use crate::Index;

/// The database's file name on its disk.
pub const DATA_FILE: &str = "state.redb";

/// The page cache a node gives its data unless told otherwise.
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
const STAGED: TableDefinition<&[u8], &[u8]> = TableDefinition::new("staged_kv");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const APPLIED: &str = "applied";

/// A failed read or write of the data: fatal for the node (it stops, and restarts from
/// the last durable commit and the log).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("group data: {0}")]
pub struct DataError(pub String);

fn failed<E: std::fmt::Display>(action: &'static str) -> impl Fn(E) -> DataError {
    move |error| DataError(format!("{action}: {error}"))
}

/// The replica group's data on disk; see the module docs.
pub struct Data {
    db: Arc<Database>,
    /// Writes held since the last flush.
    pending: Pending,
    /// Writes were held since the last commit.
    uncommitted: bool,
    /// The applied index of the last commit.
    applied: Index,
    /// The applied index of the last flush (what the database holds).
    flushed: Index,
    /// A read transaction at the last flush, kept until the next one.
    reader: RefCell<Option<ReadTransaction>>,
}

impl std::fmt::Debug for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Data")
            .field("applied", &self.applied)
            .field("pending", &self.pending)
            .finish()
    }
}

/// `shard`'s prefix in every table.
fn prefix(shard: ShardId) -> [u8; 4] {
    u32::try_from(shard)
        .expect("shard ids fit in 32 bits (MAX_SHARDS)")
        .to_be_bytes()
}

fn kv_key(shard: ShardId, key: &[u8]) -> Vec<u8> {
    [&prefix(shard)[..], key].concat()
}

/// `shard`'s first key and the key after its last (`None` for the last possible shard).
fn shard_range(shard: ShardId) -> (Vec<u8>, Option<Vec<u8>>) {
    let start = prefix(shard).to_vec();
    let end = u32::from_be_bytes(prefix(shard))
        .checked_add(1)
        .map(|next| next.to_be_bytes().to_vec());
    (start, end)
}

/// Bounds over `(start, end)`: from `start` (after it, when `exclusive`) to `end`.
fn bounds<'k>(
    start: &'k [u8],
    exclusive: bool,
    end: Option<&'k [u8]>,
) -> (Bound<&'k [u8]>, Bound<&'k [u8]>) {
    let lower = match exclusive {
        true => Bound::Excluded(start),
        false => Bound::Included(start),
    };
    (lower, end.map_or(Bound::Unbounded, Bound::Excluded))
}

impl Data {
    /// Opens (or creates) the database in [`DATA_FILE`] on `disk`, with a page cache of
    /// `cache_bytes`; after a crash redb rolls back to its last durable commit.
    pub fn open<D: Disk>(disk: &D, cache_bytes: usize) -> Result<Self, DataError> {
        let file = match disk.open(DATA_FILE) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let file = disk.create(DATA_FILE).map_err(failed("create"))?;
                disk.sync_dir().map_err(failed("sync the data directory"))?;
                file
            }
            Err(error) => return Err(failed("open")(error)),
        };
        let backend = DiskBackend::new(file, disk.describe(DATA_FILE));
        Self::with_backend(backend, cache_bytes)
    }

    /// A database in memory only, gone when dropped (unit tests and benchmarks of the
    /// state machine).
    pub fn in_memory() -> Self {
        Self::with_backend(redb::backends::InMemoryBackend::new(), 1 << 20)
            .expect("an in-memory database opens")
    }

    fn with_backend(
        backend: impl redb::StorageBackend,
        cache_bytes: usize,
    ) -> Result<Self, DataError> {
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create_with_backend(backend)
            .map_err(failed("open the database"))?;
        let mut data = Data {
            db: Arc::new(db),
            pending: Pending::default(),
            uncommitted: false,
            applied: 0,
            flushed: 0,
            reader: RefCell::new(None),
        };
        data.applied = match data.meta(APPLIED)? {
            None => 0,
            Some(bytes) => decode_index(&bytes)?,
        };
        data.flushed = data.applied;
        Ok(data)
    }

    /// The applied index of the last commit (0 for a new database).
    pub fn applied_index(&self) -> Index {
        self.applied
    }

    /// Reads with `read` from the last flush.
    fn reading<T>(
        &self,
        read: impl FnOnce(&ReadTransaction) -> Result<T, DataError>,
    ) -> Result<T, DataError> {
        let mut reader = self.reader.borrow_mut();
        if reader.is_none() {
            *reader = Some(self.db.begin_read().map_err(failed("begin a read"))?);
        }
        read(reader.as_ref().expect("just begun"))
    }

    fn held(&mut self) -> &mut Pending {
        self.uncommitted = true;
        &mut self.pending
    }

    /// The value of `key` in `shard`.
    pub fn get(&self, shard: ShardId, key: &[u8]) -> Result<Option<Vec<u8>>, DataError> {
        let key = kv_key(shard, key);
        match self.pending.get(shard, &key) {
            Held::Value(value) => Ok(value.cloned()),
            Held::Unknown { hidden: true } => Ok(None),
            Held::Unknown { hidden: false } => self.reading(|txn| read::get(txn, &key)),
        }
    }

    /// Sets `key` in `shard` to `value`.
    pub fn put(&mut self, shard: ShardId, key: &[u8], value: &[u8]) -> Result<(), DataError> {
        self.held().put(kv_key(shard, key), value);
        Ok(())
    }

    /// Removes `key` from `shard`.
    pub fn delete(&mut self, shard: ShardId, key: &[u8]) -> Result<(), DataError> {
        self.held().delete(kv_key(shard, key));
        Ok(())
    }

    /// Up to `max_bytes` of `shard`'s pairs after key `after` (from the start when
    /// `None`); at least one pair when any is left, however large.
    pub fn chunk(
        &self,
        shard: ShardId,
        after: Option<&[u8]>,
        max_bytes: usize,
    ) -> Result<Chunk, DataError> {
        let hidden = self.pending.hides(shard);
        self.reading(|txn| read::chunk(txn, Some((&self.pending, hidden)), shard, after, max_bytes))
    }

    /// Removes every key of `shard`.
    pub fn delete_shard(&mut self, shard: ShardId) -> Result<(), DataError> {
        self.held().drop_shard(shard);
        Ok(())
    }

    /// Removes everything (to take a whole state from elsewhere); the next
    /// [`Data::commit`] may then carry any applied index.
    pub fn clear(&mut self) -> Result<(), DataError> {
        self.held().clear();
        self.applied = 0;
        Ok(())
    }

    /// The caller's bytes stored under `name`.
    pub fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, DataError> {
        match self.pending.meta(name) {
            Ok(bytes) => Ok(Some(bytes.clone())),
            Err(true) => Ok(None),
            Err(false) => self.reading(|txn| read::meta(txn, name)),
        }
    }

    /// Stores `bytes` under `name` (not `"applied"`, which [`Data::commit`] writes).
    pub fn put_meta(&mut self, name: &str, bytes: &[u8]) -> Result<(), DataError> {
        assert_ne!(name, APPLIED, "the applied index is written by commit");
        self.held().put_meta(name, bytes);
        Ok(())
    }

    /// Ends the writes that bring the data to `applied`, the log index they come from:
    /// from here on they are one unit, held until the next [`Data::flush`] (which writes
    /// them with the applied index, atomically). None is durable until a [`Checkpoint`]
    /// runs.
    ///
    /// # Panics
    /// If `applied` is below the applied index of the last commit.
    pub fn commit(&mut self, applied: Index) -> Result<(), DataError> {
        assert!(
            applied >= self.applied,
            "commit at applied index {applied} after {}",
            self.applied
        );
        self.applied = applied;
        self.uncommitted = false;
        Ok(())
    }

    /// True once enough writes are held that the owner should [`Data::flush`] them.
    pub fn wants_flush(&self) -> bool {
        self.pending.is_full()
    }

    /// Writes everything held, with the applied index of the last commit, as one
    /// (non-durable) redb commit.
    ///
    /// # Panics
    /// If writes are not committed.
    pub fn flush(&mut self) -> Result<(), DataError> {
        assert!(!self.uncommitted, "flush with uncommitted writes");
        if self.pending.is_empty() && self.applied == self.flushed {
            return Ok(());
        }
        let mut txn = self.db.begin_write().map_err(failed("begin a write"))?;
        txn.set_durability(Durability::None)
            .map_err(failed("set durability"))?;
        self.pending.flush_into(&txn)?;
        {
            let mut table = txn.open_table(META).map_err(failed("open meta"))?;
            table
                .insert(APPLIED, self.applied.to_be_bytes().as_slice())
                .map_err(failed("put the applied index"))?;
        }
        txn.commit().map_err(failed("commit"))?;
        self.pending = Pending::default();
        self.flushed = self.applied;
        *self.reader.get_mut() = None;
        Ok(())
    }

    /// The work that makes every commit so far durable, to run on any thread (commits
    /// flushed meanwhile may be covered too); see [`Checkpoint`]. Flushes first.
    ///
    /// # Panics
    /// If writes are not committed: a checkpoint covers commits only.
    pub fn checkpoint(&mut self) -> Result<Checkpoint, DataError> {
        self.flush()?;
        Ok(Checkpoint {
            db: Arc::clone(&self.db),
        })
    }

    /// One consistent point of the committed data, unchanged by later writes. Flushes
    /// first.
    ///
    /// # Panics
    /// If writes are not committed: a view shows commits only.
    pub fn view(&mut self) -> Result<DataView, DataError> {
        self.flush()?;
        let txn = self.db.begin_read().map_err(failed("begin a read"))?;
        Ok(DataView {
            txn,
            applied: self.applied,
        })
    }
    /// The bytes of keys and values the database holds as of the last flush (its live
    /// data, not the file's size: freed pages are reused, not returned). Writes held for
    /// the next flush are not counted: the raft log holds them.
    pub fn stored_bytes(&self) -> Result<u64, DataError> {
        let stored = self.reading(|txn| {
            let Some(table) = read::open(txn, KV)? else {
                return Ok(0);
            };
            let stats = redb::ReadableTableMetadata::stats(&table).map_err(failed("stats"))?;
            Ok(stats.stored_bytes())
        })?;
        Ok(stored)
    }

    /// Starts taking a whole state from elsewhere: an empty staged table (a staged table
    /// left by an earlier catch-up is dropped). See the module docs.
    pub fn stage_begin(&mut self) -> Result<(), DataError> {
        let txn = self.begin_stage()?;
        txn.delete_table(STAGED)
            .map_err(failed("drop the staged table"))?;
        txn.open_table(STAGED)
            .map_err(failed("create the staged table"))?;
        txn.commit().map_err(failed("commit the staged table"))
    }

    /// Adds stored pairs (keys as [`DataView::stored_chunk`] gives them) to the staged
    /// table, as one non-durable commit.
    pub fn stage(&mut self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<(), DataError> {
        let txn = self.begin_stage()?;
        {
            let mut table = txn
                .open_table(STAGED)
                .map_err(failed("open the staged table"))?;
            for (key, value) in pairs {
                table
                    .insert(key.as_slice(), value.as_slice())
                    .map_err(failed("stage"))?;
            }
        }
        txn.commit().map_err(failed("commit staged pairs"))
    }

    /// Switches to the staged state in one durable commit: the staged table becomes the
    /// key table, `meta` (names and bytes) replaces the metadata, and `applied` is the
    /// applied index. Whatever was held or stored before is gone; on return the data
    /// stands durably at `applied`.
    pub fn stage_finish(
        &mut self,
        meta: &[(&str, &[u8])],
        applied: Index,
    ) -> Result<(), DataError> {
        *self.reader.get_mut() = None;
        let mut txn = self.db.begin_write().map_err(failed("begin the switch"))?;
        txn.set_durability(Durability::Immediate)
            .map_err(failed("set durability"))?;
        txn.delete_table(KV).map_err(failed("drop the key table"))?;
        txn.rename_table(STAGED, KV)
            .map_err(failed("rename the staged table"))?;
        txn.delete_table(META)
            .map_err(failed("drop the metadata"))?;
        {
            let mut table = txn.open_table(META).map_err(failed("open meta"))?;
            for (name, bytes) in meta {
                assert_ne!(*name, APPLIED, "the applied index is written by the switch");
                table.insert(*name, *bytes).map_err(failed("put meta"))?;
            }
            table
                .insert(APPLIED, applied.to_be_bytes().as_slice())
                .map_err(failed("put the applied index"))?;
        }
        txn.commit().map_err(failed("commit the switch"))?;
        self.pending = Pending::default();
        self.uncommitted = false;
        self.applied = applied;
        self.flushed = applied;
        Ok(())
    }

    /// A non-durable write transaction for the staged table.
    fn begin_stage(&self) -> Result<redb::WriteTransaction, DataError> {
        let mut txn = self.db.begin_write().map_err(failed("begin staging"))?;
        txn.set_durability(Durability::None)
            .map_err(failed("set durability"))?;
        Ok(txn)
    }
}

/// A durable commit of a [`Data`]; see the module docs.
pub struct Checkpoint {
    db: Arc<Database>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Checkpoint")
    }
}

impl Checkpoint {
    /// Makes the commits durable (waiting for a write in progress to commit); returns
    /// the applied index now durable (at least that of the last commit before
    /// [`Data::checkpoint`]).
    pub fn run(self) -> Result<Index, DataError> {
        let mut txn = self
            .db
            .begin_write()
            .map_err(failed("begin a checkpoint"))?;
        // redb's default durable commit: one fsync, checksums to detect a torn one. Quick
        // repair (which needs two-phase commit) would spare a reopen after a crash its
        // scan of the tree (about 5 s per GB, measured) but cost every checkpoint 20% of
        // the lab suites' time; the scan is within the restart bound at 1 GB.
        txn.set_durability(Durability::Immediate)
            .map_err(failed("set durability"))?;
        let applied = {
            let table = txn.open_table(META).map_err(failed("open meta"))?;
            let bytes = table
                .get(APPLIED)
                .map_err(failed("read the applied index"))?;
            match bytes {
                None => 0,
                Some(bytes) => decode_index(bytes.value())?,
            }
        };
        txn.commit().map_err(failed("checkpoint"))?;
        Ok(applied)
    }
}

fn decode_index(bytes: &[u8]) -> Result<Index, DataError> {
    let bytes: [u8; 8] = bytes
        .try_into()
        .map_err(|_| DataError(format!("applied index of {} bytes", bytes.len())))?;
    Ok(Index::from_be_bytes(bytes))
}
