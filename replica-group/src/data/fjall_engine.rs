//! [`FjallEngine`]: the [`Engine`] over fjall, an LSM tree, in a directory of a node's
//! data directory ([`FJALL_DIR`]). `docs/storage.md` says why an LSM tree and not redb
//! for real nodes: at 1 GB, a B-tree rewrites a page per random write.
//!
//! Every write is one fjall write batch (one record in fjall's journal, which fjall
//! keeps in the process's memory until it is persisted), but for the emptying of a
//! whole staged table, which is fjall's `clear` (see [`FjallWriter`]'s `delete_range`). A durable write persists the
//! journal (`PersistMode::SyncAll`) after its batch. A crash keeps a prefix of the
//! batches: every one up to the last durable write, and perhaps some after it (what the
//! journal had written out), never a later one without the earlier ones.
//!
//! fjall has no renaming of a keyspace, so the key table and the staged table are the
//! keyspaces `kv0` and `kv1`, and [`LIVE`] in the metadata says which is the key table:
//! promoting the staged table is one write of [`LIVE`] in a durable batch. The keyspace
//! left behind is emptied once that batch is durable (or, when a crash or an open
//! snapshot kept it, when the engine next opens or the next catch-up begins).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use fjall::{
    Database, Keyspace, KeyspaceCreateOptions, KvSeparationOptions, PersistMode, Readable,
};

use super::engine::{Engine, Fill, Pairs, Snapshot, Table, Writer};
use super::{bounds, failed, DataError};

/// The database's directory in a node's data directory.
pub const FJALL_DIR: &str = "state.fjall";

/// The metadata name saying which of `kv0` and `kv1` is the key table (`0` or `1`;
/// absent: `0`). A name the group's own metadata never uses.
pub const LIVE: &str = "engine.live";

/// The most a keyspace's memtable grows before fjall writes it out as a table.
const MEMTABLE_BYTES: u64 = 32 << 20;
/// The most journal fjall keeps (it writes memtables out to keep under it): what a
/// restart replays at most.
const JOURNAL_BYTES: u64 = 256 << 20;

/// The keyspaces, and which is the key table.
#[derive(Clone)]
struct Keyspaces {
    kv: [Keyspace; 2],
    meta: Keyspace,
    /// The index in `kv` of the key table.
    live: usize,
}

impl Keyspaces {
    fn slot(&self, table: Table) -> usize {
        match table {
            Table::Kv => self.live,
            Table::Staged => 1 - self.live,
            Table::Meta => unreachable!("meta is its own keyspace"),
        }
    }

    fn of(&self, table: Table) -> &Keyspace {
        match table {
            Table::Meta => &self.meta,
            table => &self.kv[self.slot(table)],
        }
    }
}

/// fjall as an [`Engine`]; see the module docs.
pub struct FjallEngine {
    db: Database,
    /// Locked while a snapshot is taken and while a promotion commits and switches the
    /// key table, so the two agree.
    keyspaces: Mutex<Keyspaces>,
    /// A token every snapshot holds: a `kv` keyspace is emptied at once (fjall's `clear`)
    /// only while no snapshot is open, so no open snapshot relies on how `clear` treats
    /// older versions.
    readers: Arc<()>,
}

fn fjall_failed(action: &'static str) -> impl Fn(fjall::Error) -> DataError {
    failed(action)
}

impl FjallEngine {
    /// Opens (or creates) the database in directory `dir`, with a block cache of
    /// `cache_bytes`; after a crash fjall recovers what its journal kept.
    pub fn open(dir: &Path, cache_bytes: usize) -> Result<Self, DataError> {
        let db = Database::builder(dir)
            .cache_size(cache_bytes as u64)
            .manual_journal_persist(true)
            .max_journaling_size(JOURNAL_BYTES)
            .open()
            .map_err(fjall_failed("open the database"))?;
        let options = || {
            KeyspaceCreateOptions::default()
                .manual_journal_persist(true)
                .max_memtable_size(MEMTABLE_BYTES)
                .with_kv_separation(Some(KvSeparationOptions::default()))
        };
        let keyspace = |name| db.keyspace(name, options).map_err(fjall_failed("open"));
        let kv = [keyspace("kv0")?, keyspace("kv1")?];
        let meta = keyspace("meta")?;
        let live = match meta.get(LIVE).map_err(fjall_failed("read"))? {
            None => 0,
            Some(value) if value.as_ref() == b"0" => 0,
            Some(value) if value.as_ref() == b"1" => 1,
            Some(_) => return Err(DataError(format!("a damaged {LIVE}"))),
        };
        let keyspaces = Keyspaces { kv, meta, live };
        // What a crash (or an open view) left in the staged table: a catch-up that was
        // cut off, or the key table before the last promotion. No snapshot is open yet.
        let staged = &keyspaces.kv[keyspaces.slot(Table::Staged)];
        if staged.first_key_value().is_some() {
            staged
                .clear()
                .map_err(fjall_failed("empty the staged table"))?;
        }
        Ok(FjallEngine {
            db,
            keyspaces: Mutex::new(keyspaces),
            readers: Arc::new(()),
        })
    }

    fn keyspaces(&self) -> Result<std::sync::MutexGuard<'_, Keyspaces>, DataError> {
        self.keyspaces
            .lock()
            .map_err(|_| DataError("a write panicked".into()))
    }
}

impl Engine for FjallEngine {
    fn snapshot(&self) -> Result<Box<dyn Snapshot>, DataError> {
        let keyspaces = self.keyspaces()?;
        Ok(Box::new(FjallSnapshot {
            snapshot: self.db.snapshot(),
            keyspaces: keyspaces.clone(),
            _reading: Arc::clone(&self.readers),
        }))
    }

    /// The lock on the keyspaces is held only to read them and, for a promotion, from its
    /// commit to the switch of the key table: a flush in the background never holds up a
    /// snapshot the driver takes.
    fn write(&self, durable: bool, fill: Fill<'_>) -> Result<(), DataError> {
        let keyspaces = self.keyspaces()?.clone();
        let mut writer = FjallWriter {
            engine: self,
            keyspaces,
            writes: BTreeMap::new(),
            promoted: false,
        };
        fill(&mut writer)?;
        let mut batch = self.db.batch();
        for ((slot, key), value) in std::mem::take(&mut writer.writes) {
            let keyspace = match slot {
                Slot::Meta => &writer.keyspaces.meta,
                Slot::Kv(index) => &writer.keyspaces.kv[index],
            };
            match value {
                Some(value) => batch.insert(keyspace, key, value),
                None => batch.remove(keyspace, key),
            }
        }
        let persist = || {
            (self.db)
                .persist(PersistMode::SyncAll)
                .map_err(fjall_failed("sync"))
        };
        if !writer.promoted {
            batch.commit().map_err(fjall_failed("commit"))?;
            return if durable { persist() } else { Ok(()) };
        }
        // The former key table is emptied below, at once and durably (fjall's `clear`):
        // only once the switch away from it is durable.
        assert!(durable, "a promotion in a non-durable write");
        let mut keyspaces = self.keyspaces()?;
        batch.commit().map_err(fjall_failed("commit"))?;
        *keyspaces = writer.keyspaces;
        persist()?;
        if Arc::strong_count(&self.readers) == 1 {
            keyspaces.kv[keyspaces.slot(Table::Staged)]
                .clear()
                .map_err(fjall_failed("empty the old key table"))?;
        }
        Ok(())
    }

    /// A scan of the whole key table (fjall keeps no count of its live bytes): for tests
    /// and the lab, not for a node's hot path.
    fn stored_bytes(&self) -> Result<u64, DataError> {
        let keyspace = self.keyspaces()?.of(Table::Kv).clone();
        let mut bytes = 0u64;
        for pair in keyspace.iter() {
            let (key, value) = pair.into_inner().map_err(fjall_failed("scan"))?;
            bytes += (key.len() + value.len()) as u64;
        }
        Ok(bytes)
    }
}

/// Where a write goes: the metadata, or `kv0` / `kv1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    Meta,
    Kv(usize),
}

/// The writes of one batch, the last write of each key only: fjall gives every item of
/// a batch one sequence number, so two writes of one key in a batch must not both go in.
struct FjallWriter<'e> {
    engine: &'e FjallEngine,
    keyspaces: Keyspaces,
    writes: BTreeMap<(Slot, Vec<u8>), Option<Vec<u8>>>,
    promoted: bool,
}

impl FjallWriter<'_> {
    fn slot(&self, table: Table) -> Slot {
        match table {
            Table::Meta => Slot::Meta,
            table => Slot::Kv(self.keyspaces.slot(table)),
        }
    }
}

impl Writer for FjallWriter<'_> {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), DataError> {
        let slot = self.slot(table);
        self.writes
            .insert((slot, key.to_vec()), Some(value.to_vec()));
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), DataError> {
        let slot = self.slot(table);
        self.writes.insert((slot, key.to_vec()), None);
        Ok(())
    }

    /// Emptying the whole staged table is fjall's `clear` (at once and durably, not in
    /// the batch) when no snapshot is open and nothing was promoted in this write (the
    /// staged table is then the one the durable `engine.live` says). Any other range is a
    /// removal of each key it holds (as of the last batch) in the batch, and of this
    /// batch's own writes in it.
    fn delete_range(
        &mut self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Result<(), DataError> {
        let slot = self.slot(table);
        let whole = start.is_empty() && end.is_none();
        if let (Table::Staged, Slot::Kv(index), true, false) = (table, slot, whole, self.promoted) {
            // Held so that no snapshot is taken while the keyspace is emptied.
            let _keyspaces = self.engine.keyspaces()?;
            if Arc::strong_count(&self.engine.readers) == 1 {
                self.writes.retain(|(written, _), _| *written != slot);
                return self.keyspaces.kv[index]
                    .clear()
                    .map_err(fjall_failed("empty the staged table"));
            }
        }
        let keyspace = self.keyspaces.of(table);
        // The engine's own metadata stays.
        let own = |key: &[u8]| table == Table::Meta && key == LIVE.as_bytes();
        let mut keys = Vec::new();
        for pair in keyspace.range::<&[u8], _>(bounds(start, false, end)) {
            let key = pair.key().map_err(fjall_failed("scan"))?;
            if !own(&key) {
                keys.push(key.to_vec());
            }
        }
        let within = |key: &[u8]| !own(key) && key >= start && end.is_none_or(|end| key < end);
        for ((written, key), value) in self.writes.iter_mut() {
            if *written == slot && within(key) {
                *value = None;
            }
        }
        for key in keys {
            self.writes.insert((slot, key), None);
        }
        Ok(())
    }

    fn promote_staged(&mut self) -> Result<(), DataError> {
        self.keyspaces.live = 1 - self.keyspaces.live;
        let live = self.keyspaces.live.to_string();
        self.writes.insert(
            (Slot::Meta, LIVE.as_bytes().to_vec()),
            Some(live.into_bytes()),
        );
        self.promoted = true;
        Ok(())
    }
}

/// A fjall snapshot, with the keyspaces as they were when it was taken.
struct FjallSnapshot {
    snapshot: fjall::Snapshot,
    keyspaces: Keyspaces,
    _reading: Arc<()>,
}

impl Snapshot for FjallSnapshot {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, DataError> {
        let value = self
            .snapshot
            .get(self.keyspaces.of(table), key)
            .map_err(fjall_failed("get"))?;
        Ok(value.map(|value| value.to_vec()))
    }

    fn range<'a>(
        &'a self,
        table: Table,
        start: &[u8],
        exclusive: bool,
        end: Option<&[u8]>,
    ) -> Result<Pairs<'a>, DataError> {
        let range = (self.snapshot)
            .range::<&[u8], _>(self.keyspaces.of(table), bounds(start, exclusive, end));
        Ok(Box::new(range.map(|pair| {
            let (key, value) = pair.into_inner().map_err(fjall_failed("scan"))?;
            Ok((key.to_vec(), value.to_vec()))
        })))
    }
}
