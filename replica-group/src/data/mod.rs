//! [`Data`]: a replica group's keys, values and duplicate tables on disk, in one redb
//! database ([`DATA_FILE`]) over a `shardkv_raft::Disk` file.
//!
//! redb runs over [`DiskBackend`], so real nodes (the operating system's files) and the
//! simulator (its disk, which loses unsynced writes as a power failure does) run the same
//! engine with the same options; `docs/storage.md` says why redb and not sled.
//!
//! ```text
//!   table "kv"        shard (u32, big-endian) ++ key   ─► value
//!   table "sessions"  shard (u32, big-endian) ++ client (u64, big-endian) ─► session bytes
//!   table "meta"      "applied" ─► u64 (big-endian); other names ─► the caller's bytes
//! ```
//!
//! A shard's keys and sessions are contiguous ranges, so a shard is read in order
//! ([`Data::chunk`]) and dropped as one range ([`Data::delete_shard`]).
//!
//! # Durability
//!
//! Writes go into one open redb write transaction; [`Data::commit`] commits it, with the
//! applied index it brings the data to, **without syncing** (redb's `Durability::None`):
//! the raft log is the write-ahead log. A [`Checkpoint`] (a durable commit, with redb's
//! two-phase commit and quick repair, so reopening needs no scan) makes every commit
//! before it durable; it may run on another thread. After a crash or a power failure the
//! database opens at a commit at or after the last checkpoint (redb keeps non-durable
//! commits only in memory, so in practice at the checkpoint), and [`Data::applied_index`]
//! says which: the log replays from there.
//!
//! Reads ([`Data::get`], [`Data::chunk`]) see the open transaction's writes. A
//! [`DataView`] is one consistent point (a redb read transaction) that later writes do
//! not change, for streaming a state out in chunks while applying goes on.

mod backend;
mod read;

use std::ops::Bound;
use std::sync::Arc;

pub use backend::DiskBackend;
use read::Tables;
pub use read::{Chunk, DataView};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, StorageError, Table, TableDefinition,
    WriteTransaction,
};
use shardkv_proto::{ClientId, ShardId};
use shardkv_raft::Disk;

use crate::Index;

/// The database's file name on its disk.
pub const DATA_FILE: &str = "state.redb";

/// The page cache a node gives its data unless told otherwise.
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
const SESSIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sessions");
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
    /// The open write transaction, begun by the first write since the last commit.
    write: Option<WriteTransaction>,
    /// The applied index of the last commit.
    applied: Index,
}

impl std::fmt::Debug for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Data")
            .field("applied", &self.applied)
            .field("writing", &self.write.is_some())
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

fn session_key(shard: ShardId, client: ClientId) -> Vec<u8> {
    [&prefix(shard)[..], &client.to_be_bytes()[..]].concat()
}

/// `shard`'s first key and the key after its last (`None` for the last possible shard)
/// in every table.
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
            write: None,
            applied: 0,
        };
        data.applied = match data.meta(APPLIED)? {
            None => 0,
            Some(bytes) => decode_index(&bytes)?,
        };
        Ok(data)
    }

    /// The applied index of the last commit (0 for a new database).
    pub fn applied_index(&self) -> Index {
        self.applied
    }

    fn writing(&mut self) -> Result<&WriteTransaction, DataError> {
        if self.write.is_none() {
            let mut txn = self.db.begin_write().map_err(failed("begin a write"))?;
            txn.set_durability(Durability::None)
                .map_err(failed("set durability"))?;
            self.write = Some(txn);
        }
        Ok(self.write.as_ref().expect("just begun"))
    }

    /// Reads with `read` from the open write transaction if there is one, else from a
    /// read transaction (the last commit).
    fn reading<T>(
        &self,
        read: impl FnOnce(&Tables<'_>) -> Result<T, DataError>,
    ) -> Result<T, DataError> {
        match &self.write {
            Some(txn) => read(&Tables::Write(txn)),
            None => {
                let txn = self.db.begin_read().map_err(failed("begin a read"))?;
                read(&Tables::Read(&txn))
            }
        }
    }

    /// Runs `write` on table `definition` of the open write transaction; `action` names
    /// it in an error.
    fn write_bytes(
        &mut self,
        definition: TableDefinition<&[u8], &[u8]>,
        action: &'static str,
        write: impl FnOnce(&mut Table<&[u8], &[u8]>) -> Result<(), StorageError>,
    ) -> Result<(), DataError> {
        let txn = self.writing()?;
        let mut table = txn.open_table(definition).map_err(failed("open a table"))?;
        write(&mut table).map_err(failed(action))
    }

    /// The value of `key` in `shard`.
    pub fn get(&self, shard: ShardId, key: &[u8]) -> Result<Option<Vec<u8>>, DataError> {
        self.reading(|tables| tables.get(KV, &kv_key(shard, key)))
    }

    /// Sets `key` in `shard` to `value`.
    pub fn put(&mut self, shard: ShardId, key: &[u8], value: &[u8]) -> Result<(), DataError> {
        self.write_bytes(KV, "put", |table| {
            table.insert(kv_key(shard, key).as_slice(), value).map(drop)
        })
    }

    /// Removes `key` from `shard`.
    pub fn delete(&mut self, shard: ShardId, key: &[u8]) -> Result<(), DataError> {
        self.write_bytes(KV, "delete", |table| {
            table.remove(kv_key(shard, key).as_slice()).map(drop)
        })
    }

    /// Up to `max_bytes` of `shard`'s pairs after key `after` (from the start when
    /// `None`); at least one pair when any is left, however large.
    pub fn chunk(
        &self,
        shard: ShardId,
        after: Option<&[u8]>,
        max_bytes: usize,
    ) -> Result<Chunk, DataError> {
        self.reading(|tables| tables.chunk(shard, after, max_bytes))
    }

    /// Removes every key and session of `shard`.
    pub fn delete_shard(&mut self, shard: ShardId) -> Result<(), DataError> {
        let (start, end) = shard_range(shard);
        for definition in [KV, SESSIONS] {
            self.write_bytes(definition, "delete a shard", |table| {
                table.retain_in(bounds(&start, false, end.as_deref()), |_, _| false)
            })?;
        }
        Ok(())
    }

    /// Removes everything (to take a whole state from elsewhere); the next
    /// [`Data::commit`] may then carry any applied index.
    pub fn clear(&mut self) -> Result<(), DataError> {
        for definition in [KV, SESSIONS] {
            self.write_bytes(definition, "clear", |table| table.retain(|_, _| false))?;
        }
        {
            let txn = self.writing()?;
            let mut meta = txn.open_table(META).map_err(failed("open meta"))?;
            meta.retain(|_, _| false).map_err(failed("clear meta"))?;
        }
        self.applied = 0;
        Ok(())
    }

    /// Stores `session` (the caller's encoding) for `client` in `shard`.
    pub fn put_session(
        &mut self,
        shard: ShardId,
        client: ClientId,
        session: &[u8],
    ) -> Result<(), DataError> {
        self.write_bytes(SESSIONS, "put a session", |table| {
            table
                .insert(session_key(shard, client).as_slice(), session)
                .map(drop)
        })
    }

    /// Removes `client`'s session in `shard`.
    pub fn delete_session(&mut self, shard: ShardId, client: ClientId) -> Result<(), DataError> {
        self.write_bytes(SESSIONS, "delete a session", |table| {
            table
                .remove(session_key(shard, client).as_slice())
                .map(drop)
        })
    }

    /// Every session of `shard`, by client.
    pub fn sessions(&self, shard: ShardId) -> Result<Vec<(ClientId, Vec<u8>)>, DataError> {
        self.reading(|tables| tables.sessions(shard))
    }

    /// The caller's bytes stored under `name`.
    pub fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, DataError> {
        self.reading(|tables| tables.meta(name))
    }

    /// Stores `bytes` under `name` (not `"applied"`, which [`Data::commit`] writes).
    pub fn put_meta(&mut self, name: &str, bytes: &[u8]) -> Result<(), DataError> {
        assert_ne!(name, APPLIED, "the applied index is written by commit");
        let txn = self.writing()?;
        let mut table = txn.open_table(META).map_err(failed("open meta"))?;
        table
            .insert(name, bytes)
            .map_err(failed("put meta"))
            .map(drop)
    }

    /// Commits every write since the last commit, with `applied`, the log index they
    /// bring the data to, atomically; not durable until a [`Checkpoint`] runs.
    ///
    /// # Panics
    /// If `applied` is below the applied index of the last commit.
    pub fn commit(&mut self, applied: Index) -> Result<(), DataError> {
        assert!(
            applied >= self.applied,
            "commit at applied index {applied} after {}",
            self.applied
        );
        if self.write.is_none() && applied == self.applied {
            return Ok(());
        }
        let txn = self.writing()?;
        {
            let mut table = txn.open_table(META).map_err(failed("open meta"))?;
            table
                .insert(APPLIED, applied.to_be_bytes().as_slice())
                .map_err(failed("put the applied index"))?;
        }
        let txn = self.write.take().expect("writing");
        txn.commit().map_err(failed("commit"))?;
        self.applied = applied;
        Ok(())
    }

    /// The work that makes every commit so far durable, to run on any thread (commits
    /// made meanwhile may be covered too); see [`Checkpoint`].
    ///
    /// # Panics
    /// If writes are not committed: a checkpoint covers commits only.
    pub fn checkpoint(&self) -> Checkpoint {
        assert!(self.write.is_none(), "checkpoint with uncommitted writes");
        Checkpoint {
            db: Arc::clone(&self.db),
            applied: self.applied,
        }
    }

    /// One consistent point of the committed data, unchanged by later writes.
    ///
    /// # Panics
    /// If writes are not committed: a view shows commits only.
    pub fn view(&self) -> Result<DataView, DataError> {
        assert!(self.write.is_none(), "view with uncommitted writes");
        let txn = self.db.begin_read().map_err(failed("begin a read"))?;
        Ok(DataView {
            txn,
            applied: self.applied,
        })
    }
}

/// A durable commit of a [`Data`]; see the module docs.
pub struct Checkpoint {
    db: Arc<Database>,
    applied: Index,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Checkpoint(at least {})", self.applied)
    }
}

impl Checkpoint {
    /// The applied index of the last commit when the checkpoint was taken: once it runs,
    /// the data is durable through at least this index.
    pub fn applied(&self) -> Index {
        self.applied
    }

    /// Makes the commits durable (waiting for a write in progress to commit); returns
    /// the applied index now durable (at least [`Checkpoint::applied`]).
    pub fn run(self) -> Result<Index, DataError> {
        let mut txn = self
            .db
            .begin_write()
            .map_err(failed("begin a checkpoint"))?;
        txn.set_durability(Durability::Immediate)
            .map_err(failed("set durability"))?;
        txn.set_two_phase_commit(true);
        txn.set_quick_repair(true);
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
