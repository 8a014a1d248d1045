//! [`RedbEngine`]: the [`Engine`] over redb, in one file of a `shardkv_raft::Disk`
//! ([`DiskBackend`]): what the simulator's replicas run over its disk, which loses
//! unsynced writes the way a power failure does.
//!
//! A non-durable write is a redb commit with `Durability::None`: kept in memory, and lost
//! by a crash together with every later one (redb opens at its last durable commit), so
//! a crash keeps exactly the writes up to the last durable one. A node's engine (fjall)
//! may keep more: the operating system writes part of its journal out before a power
//! failure. [`RedbEngine::keeping_some`] models that in the simulator: each non-durable
//! write is made durable by a seeded draw, so after a crash the data stands at the last
//! durable write or at some later one, and the log replays from there.

use std::sync::Mutex;

use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, TableError,
};
use shardkv_raft::Disk;

use super::backend::DiskBackend;
use super::engine::{Engine, Fill, Pairs, Snapshot, Table, Writer};
use super::{bounds, failed, DataError};

/// The database's file name on its disk.
pub const REDB_FILE: &str = "state.redb";

const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
const STAGED: TableDefinition<&[u8], &[u8]> = TableDefinition::new("staged_kv");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

fn bytes_table(table: Table) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    match table {
        Table::Kv => KV,
        Table::Staged => STAGED,
        Table::Meta => unreachable!("meta has string keys"),
    }
}

fn name(key: &[u8]) -> Result<&str, DataError> {
    std::str::from_utf8(key).map_err(|_| DataError("a metadata name that is not UTF-8".into()))
}

/// redb as an [`Engine`]; see the module docs.
pub struct RedbEngine {
    db: Database,
    /// Draws which non-durable writes are made durable ([`RedbEngine::keeping_some`]).
    keep: Option<Mutex<Xoshiro256PlusPlus>>,
}

impl RedbEngine {
    /// Opens (or creates) the database in [`REDB_FILE`] on `disk`, with a page cache of
    /// `cache_bytes`; after a crash redb rolls back to its last durable commit.
    pub fn open<D: Disk>(disk: &D, cache_bytes: usize) -> Result<Self, DataError> {
        let file = match disk.open(REDB_FILE) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let file = disk.create(REDB_FILE).map_err(failed("create"))?;
                disk.sync_dir().map_err(failed("sync the data directory"))?;
                file
            }
            Err(error) => return Err(failed("open")(error)),
        };
        let backend = DiskBackend::new(file, disk.describe(REDB_FILE));
        Self::with_backend(backend, cache_bytes)
    }

    /// A database in memory only, gone when dropped.
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
        Ok(RedbEngine { db, keep: None })
    }

    /// This engine, each of its non-durable writes made durable with probability 1/2,
    /// drawn from `seed`; see the module docs.
    pub fn keeping_some(mut self, seed: u64) -> Self {
        self.keep = Some(Mutex::new(Xoshiro256PlusPlus::seed_from_u64(seed)));
        self
    }

    /// Whether a write asked to be `durable` is made so.
    fn durable(&self, durable: bool) -> bool {
        let kept = || match self.keep.as_ref().map(Mutex::lock) {
            Some(Ok(mut rng)) => rng.random_bool(0.5),
            _ => false,
        };
        durable || kept()
    }
}

impl Engine for RedbEngine {
    fn snapshot(&self) -> Result<Box<dyn Snapshot>, DataError> {
        let txn = self.db.begin_read().map_err(failed("begin a read"))?;
        Ok(Box::new(RedbSnapshot(txn)))
    }

    fn write(&self, durable: bool, fill: Fill<'_>) -> Result<(), DataError> {
        let mut txn = self.db.begin_write().map_err(failed("begin a write"))?;
        // A durable commit is redb's default: one fsync, checksums to detect a torn one.
        // Quick repair (which needs two-phase commit) would spare a reopen after a crash
        // its scan of the tree but cost every checkpoint 20% of the lab suites' time.
        let durability = match self.durable(durable) {
            true => Durability::Immediate,
            false => Durability::None,
        };
        txn.set_durability(durability)
            .map_err(failed("set durability"))?;
        fill(&mut RedbWriter { txn: &txn })?;
        txn.commit().map_err(failed("commit"))
    }

    fn stored_bytes(&self) -> Result<u64, DataError> {
        let txn = self.db.begin_read().map_err(failed("begin a read"))?;
        let Some(table) = open(&txn, KV)? else {
            return Ok(0);
        };
        let stats = table.stats().map_err(failed("stats"))?;
        Ok(stats.stored_bytes())
    }
}

struct RedbWriter<'t> {
    txn: &'t redb::WriteTransaction,
}

impl Writer for RedbWriter<'_> {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), DataError> {
        let put = failed("put");
        match table {
            Table::Meta => {
                let mut meta = self.txn.open_table(META).map_err(failed("open meta"))?;
                meta.insert(name(key)?, value).map(drop).map_err(put)
            }
            table => {
                let definition = bytes_table(table);
                let mut kv = self.txn.open_table(definition).map_err(failed("open"))?;
                kv.insert(key, value).map(drop).map_err(put)
            }
        }
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), DataError> {
        let delete = failed("delete");
        match table {
            Table::Meta => {
                let mut meta = self.txn.open_table(META).map_err(failed("open meta"))?;
                meta.remove(name(key)?).map(drop).map_err(delete)
            }
            table => {
                let definition = bytes_table(table);
                let mut kv = self.txn.open_table(definition).map_err(failed("open"))?;
                kv.remove(key).map(drop).map_err(delete)
            }
        }
    }

    fn delete_range(
        &mut self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Result<(), DataError> {
        let delete = failed("delete a range");
        match table {
            Table::Meta if start.is_empty() && end.is_none() => {
                let mut meta = self.txn.open_table(META).map_err(failed("open meta"))?;
                meta.retain(|_, _| false).map_err(delete)
            }
            Table::Meta => Err(DataError("a range of metadata names".into())),
            table => {
                let definition = bytes_table(table);
                let mut kv = self.txn.open_table(definition).map_err(failed("open"))?;
                kv.retain_in(bounds(start, false, end), |_, _| false)
                    .map_err(delete)
            }
        }
    }

    fn promote_staged(&mut self) -> Result<(), DataError> {
        self.txn
            .delete_table(KV)
            .map_err(failed("drop the key table"))?;
        // A staged table never written is an empty one.
        self.txn
            .open_table(STAGED)
            .map_err(failed("open the staged table"))?;
        self.txn
            .rename_table(STAGED, KV)
            .map_err(failed("rename the staged table"))
    }
}

/// A redb read transaction: one point of the database.
struct RedbSnapshot(ReadTransaction);

/// Opens `definition` in `txn`, `None` when it was never written.
fn open<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &ReadTransaction,
    definition: TableDefinition<K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, DataError> {
    match txn.open_table(definition) {
        Ok(table) => Ok(Some(table)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(error) => Err(failed("open table")(error)),
    }
}

impl Snapshot for RedbSnapshot {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, DataError> {
        let get = failed("get");
        match table {
            Table::Meta => {
                let Some(meta) = open(&self.0, META)? else {
                    return Ok(None);
                };
                let value = meta.get(name(key)?).map_err(get)?;
                Ok(value.map(|value| value.value().to_vec()))
            }
            table => {
                let Some(kv) = open(&self.0, bytes_table(table))? else {
                    return Ok(None);
                };
                let value = kv.get(key).map_err(get)?;
                Ok(value.map(|value| value.value().to_vec()))
            }
        }
    }

    fn range<'a>(
        &'a self,
        table: Table,
        start: &[u8],
        exclusive: bool,
        end: Option<&[u8]>,
    ) -> Result<Pairs<'a>, DataError> {
        if table == Table::Meta {
            return Err(DataError("a range of metadata names".into()));
        }
        let Some(kv) = open(&self.0, bytes_table(table))? else {
            return Ok(Box::new(std::iter::empty()));
        };
        let range = kv
            .range_owned(bounds(start, exclusive, end))
            .map_err(failed("scan"))?;
        Ok(Box::new(range.map(|pair| {
            let (key, value) = pair.map_err(failed("scan"))?;
            Ok((key.value().to_vec(), value.value().to_vec()))
        })))
    }
}
