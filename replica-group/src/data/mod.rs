//! [`Data`]: a replica group's keys and values on disk, with the group's metadata
//! (configurations, phases, duplicate tables), in an ordered key/value [`Engine`]:
//! fjall ([`FjallEngine`], an LSM tree) in a node's data directory, redb ([`RedbEngine`])
//! over the simulator's disk. [`engine`](self) says what both guarantee and
//! `docs/storage.md` why there are two.
//!
//! ```text
//!   table Kv      shard (u32, big-endian) ++ key   ─► value
//!   table Meta    "applied" ─► u64 (big-endian); other names ─► the caller's bytes
//!   table Staged  a follower's catch-up in progress (see below)
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
//! [`Data::flush`]es everything as one engine write carrying that applied index,
//! **not durable**: the raft log is the write-ahead log, and one write for many Readies
//! costs the engine less than one per Ready. A checkpoint ([`Data::checkpoint`]: a
//! durable write) makes every write before it durable; [`Data::durable_index`] says when
//! it has. Flushes and checkpoints run in the background ([`background`](self): on a
//! thread on a real node, after a number of polls in the simulator), one at a time,
//! while the writes they carry stay readable: reads go through the held writes, then the
//! flushing writes, then the engine. After a crash or a power failure the engine opens
//! at its last durable write or some later one (a crash keeps a prefix of its writes),
//! and [`Data::applied_index`], written with every flush, says where the log must replay
//! from.
//!
//! A [`DataView`] (a flush, then an engine snapshot) is one consistent point that later
//! writes do not change, for streaming a state out in chunks while applying goes on.
//!
//! # Taking a whole state from another replica
//!
//! A follower catching up copies another replica's view chunk by chunk into the staged
//! table ([`Data::stage_begin`], [`Data::stage`]: non-durable writes, beside the live
//! tables, which go on as before), then switches to it in one durable write
//! ([`Data::stage_finish`]: the staged table becomes the key table, with the view's
//! metadata and applied index). A crash before that write leaves the data as it was (a
//! staged table left over is emptied by the next catch-up); after it, the data stands at
//! the view.

mod backend;
mod background;
pub mod engine;
mod fjall_engine;
mod pending;
mod read;
mod redb_engine;

use std::cell::RefCell;
use std::ops::Bound;
use std::sync::Arc;

pub use backend::DiskBackend;
use background::{Job, Running};
use engine::{Engine, Snapshot, Table};
pub use fjall_engine::{FjallEngine, FJALL_DIR};
pub use pending::FLUSH_BYTES;
use pending::{Held, Pending};
pub use read::{Chunk, DataView};
pub use redb_engine::{RedbEngine, REDB_FILE};
use shardkv_proto::ShardId;
use shardkv_raft::{Background, Disk};

use crate::Index;

/// The block or page cache a node gives its data unless told otherwise.
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

/// The metadata name of the applied index.
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
    engine: Arc<dyn Engine>,
    /// How flushes and checkpoints run ([`background`](self)).
    background: Background,
    /// Writes held since the last flush started.
    pending: Pending,
    /// The writes of the flush under way, readable until it has committed.
    flushing: Option<Arc<Pending>>,
    /// The flush or checkpoint under way, and whether it is a checkpoint.
    running: Option<(Running, bool)>,
    /// Writes were held since the last commit.
    uncommitted: bool,
    /// The applied index of the last commit.
    applied: Index,
    /// The applied index the engine holds (the last job that committed).
    flushed: Index,
    /// The applied index durable on disk (the last checkpoint that committed).
    durable: Index,
    /// A snapshot of the engine, kept until the next job commits.
    reader: RefCell<Option<Box<dyn Snapshot>>>,
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
    /// Opens (or creates) the data on `disk`, with a cache of `cache_bytes`, its flushes
    /// and checkpoints run as `background` says. A disk that is a directory of the
    /// operating system's (a node's data directory) holds a fjall database in
    /// [`FJALL_DIR`]; any other (the simulator's) a redb database in [`REDB_FILE`]. After
    /// a crash the data opens where the engine's last kept write left it.
    pub fn open<D: Disk>(
        disk: &D,
        cache_bytes: usize,
        background: Background,
    ) -> Result<Self, DataError> {
        let engine: Arc<dyn Engine> = match disk.directory() {
            Some(dir) => Arc::new(FjallEngine::open(&dir.join(FJALL_DIR), cache_bytes)?),
            None => Arc::new(RedbEngine::open(disk, cache_bytes)?),
        };
        Self::with_engine(engine, background)
    }

    /// Data in memory only, gone when dropped, its flushes run in place (unit tests and
    /// benchmarks of the state machine).
    pub fn in_memory() -> Self {
        let engine = Arc::new(RedbEngine::in_memory());
        Self::with_engine(engine, Background::Deferred { polls: 0 })
            .expect("an in-memory database opens")
    }

    /// The data `engine` holds, its flushes and checkpoints run as `background` says.
    pub fn with_engine(engine: Arc<dyn Engine>, background: Background) -> Result<Self, DataError> {
        let mut data = Data {
            engine,
            background,
            pending: Pending::default(),
            flushing: None,
            running: None,
            uncommitted: false,
            applied: 0,
            flushed: 0,
            durable: 0,
            reader: RefCell::new(None),
        };
        data.applied = match data.meta(APPLIED)? {
            None => 0,
            Some(bytes) => decode_index(&bytes)?,
        };
        data.flushed = data.applied;
        data.durable = data.applied;
        Ok(data)
    }

    /// The applied index of the last commit (0 for new data).
    pub fn applied_index(&self) -> Index {
        self.applied
    }

    /// The applied index durable on disk: of the last checkpoint that has committed, or
    /// what the engine held when opened.
    pub fn durable_index(&self) -> Index {
        self.durable
    }

    /// The held writes over the engine, newest first, for reads of `shard`: the
    /// flushing ones only when the newest do not hide the shard. With whether the
    /// engine's keys of the shard are hidden.
    fn layers(&self, shard: ShardId) -> read::Layers<'_> {
        let flushing = self.flushing.as_deref();
        let below = flushing.filter(|_| !self.pending.hides(shard));
        read::Layers {
            held: [Some(&self.pending), below],
            db_hidden: self.pending.hides(shard) || below.is_some_and(|f| f.hides(shard)),
        }
    }

    /// Reads with `read` from the engine.
    fn reading<T>(
        &self,
        read: impl FnOnce(&dyn Snapshot) -> Result<T, DataError>,
    ) -> Result<T, DataError> {
        let mut reader = self.reader.borrow_mut();
        if reader.is_none() {
            *reader = Some(self.engine.snapshot()?);
        }
        read(reader.as_deref().expect("just taken"))
    }

    fn held(&mut self) -> &mut Pending {
        self.uncommitted = true;
        &mut self.pending
    }

    /// The value of `key` in `shard`.
    pub fn get(&self, shard: ShardId, key: &[u8]) -> Result<Option<Vec<u8>>, DataError> {
        let key = kv_key(shard, key);
        let held = self.layers(shard).held;
        for layer in held.into_iter().flatten() {
            match layer.get(shard, &key) {
                Held::Value(value) => return Ok(value.cloned()),
                Held::Unknown { hidden: true } => return Ok(None),
                Held::Unknown { hidden: false } => {}
            }
        }
        self.reading(|snapshot| snapshot.get(Table::Kv, &key))
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
        let layers = self.layers(shard);
        self.reading(|snapshot| read::chunk(snapshot, Some(&layers), shard, after, max_bytes))
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
        let flushing = self.flushing.as_deref();
        for layer in [Some(&self.pending), flushing].into_iter().flatten() {
            match layer.meta(name) {
                Ok(bytes) => return Ok(Some(bytes.clone())),
                Err(true) => return Ok(None),
                Err(false) => {}
            }
        }
        self.reading(|snapshot| snapshot.get(Table::Meta, name.as_bytes()))
    }

    /// Stores `bytes` under `name` (not `"applied"`, which [`Data::commit`] writes).
    pub fn put_meta(&mut self, name: &str, bytes: &[u8]) -> Result<(), DataError> {
        assert_ne!(name, APPLIED, "the applied index is written by commit");
        self.held().put_meta(name, bytes);
        Ok(())
    }

    /// Ends the writes that bring the data to `applied`, the log index they come from:
    /// from here on they are one unit, held until a flush writes them with the applied
    /// index, atomically. None is durable until a checkpoint after it has committed
    /// ([`Data::durable_index`]). Also finishes the flush or checkpoint under way when it
    /// is done ([`background`](self)).
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
        self.poll()
    }

    /// True once enough writes are held that the owner should [`Data::flush`] them:
    /// [`FLUSH_BYTES`] with no job under way, or twice that (the flush then waits for
    /// the job: memory stays bounded when the disk falls behind).
    pub fn wants_flush(&self) -> bool {
        match self.running {
            None => self.pending.is_full(),
            Some(_) => self.pending.is_over_full(),
        }
    }

    /// Starts writing everything held, with the applied index of the last commit, as
    /// one non-durable engine write (see [`background`](self)); a flush or checkpoint
    /// under way is waited for first.
    ///
    /// # Panics
    /// If writes are not committed.
    pub fn flush(&mut self) -> Result<(), DataError> {
        self.finish_running()?;
        if self.pending.is_empty() && self.applied == self.flushed {
            return Ok(());
        }
        self.start(false)
    }

    /// Makes every commit so far durable: starts a checkpoint (a flush, then a durable
    /// commit) unless a flush or checkpoint is under way, and with `wait` waits for that
    /// one first and then for the checkpoint. Returns whether the checkpoint started (or,
    /// with `wait`, finished); [`Data::durable_index`] says when it has committed.
    ///
    /// # Panics
    /// If writes are not committed: a checkpoint covers commits only.
    pub fn checkpoint(&mut self, wait: bool) -> Result<bool, DataError> {
        assert!(!self.uncommitted, "checkpoint with uncommitted writes");
        if wait {
            self.finish_running()?;
        }
        if self.running.is_some() {
            return Ok(false);
        }
        if self.durable < self.applied || !self.pending.is_empty() {
            self.start(true)?;
        }
        if wait {
            self.finish_running()?;
        }
        Ok(true)
    }

    /// True while a flush or checkpoint is under way.
    pub fn is_busy(&self) -> bool {
        self.running.is_some()
    }

    /// One consistent point of the committed data, unchanged by later writes. Flushes
    /// first, and waits for it.
    ///
    /// # Panics
    /// If writes are not committed: a view shows commits only.
    pub fn view(&mut self) -> Result<DataView, DataError> {
        self.flush()?;
        self.finish_running()?;
        Ok(DataView {
            snapshot: self.engine.snapshot()?,
            applied: self.applied,
        })
    }

    /// Starts a job committing everything held (durably or not).
    fn start(&mut self, durable: bool) -> Result<(), DataError> {
        assert!(!self.uncommitted, "a flush with uncommitted writes");
        assert!(self.running.is_none(), "a second job");
        let held = Arc::new(std::mem::take(&mut self.pending));
        self.flushing = Some(Arc::clone(&held));
        let job = Job {
            engine: Arc::clone(&self.engine),
            held,
            applied: self.applied,
            durable,
        };
        self.running = Some((Running::start(job, self.background)?, durable));
        self.poll()
    }

    /// Ends the job under way if it is done.
    fn poll(&mut self) -> Result<(), DataError> {
        let Some((running, durable)) = self.running.take() else {
            return Ok(());
        };
        match running.poll() {
            Err(running) => self.running = Some((running, durable)),
            Ok(result) => self.finished(result?, durable),
        }
        Ok(())
    }

    /// Waits for the job under way, if any.
    fn finish_running(&mut self) -> Result<(), DataError> {
        if let Some((running, durable)) = self.running.take() {
            let index = running.finish()?;
            self.finished(index, durable);
        }
        Ok(())
    }

    /// A job wrote the engine through `index`.
    fn finished(&mut self, index: Index, durable: bool) {
        self.flushing = None;
        self.flushed = index;
        if durable {
            self.durable = index;
        }
        *self.reader.get_mut() = None;
    }

    /// The bytes of keys and values the engine holds as of the last flush (see
    /// [`Engine::stored_bytes`]). Writes held for the next flush are not counted: the
    /// raft log holds them.
    pub fn stored_bytes(&self) -> Result<u64, DataError> {
        self.engine.stored_bytes()
    }

    /// Starts taking a whole state from elsewhere: an empty staged table (a staged table
    /// left by an earlier catch-up is emptied). See the module docs.
    pub fn stage_begin(&mut self) -> Result<(), DataError> {
        *self.reader.get_mut() = None;
        self.engine.write(false, &mut |writer| {
            writer.delete_range(Table::Staged, &[], None)
        })
    }

    /// Adds stored pairs (keys as [`DataView::stored_chunk`] gives them) to the staged
    /// table, as one non-durable write.
    pub fn stage(&mut self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<(), DataError> {
        self.engine.write(false, &mut |writer| {
            pairs
                .iter()
                .try_for_each(|(key, value)| writer.put(Table::Staged, key, value))
        })
    }

    /// Switches to the staged state in one durable write: the staged table becomes the
    /// key table, `meta` (names and bytes) replaces the metadata, and `applied` is the
    /// applied index. Whatever was held or stored before is gone; on return the data
    /// stands durably at `applied`.
    pub fn stage_finish(
        &mut self,
        meta: &[(&str, &[u8])],
        applied: Index,
    ) -> Result<(), DataError> {
        // A flush still to commit would write the old state's writes over the new one.
        self.finish_running()?;
        *self.reader.get_mut() = None;
        self.engine.write(true, &mut |writer| {
            writer.delete_range(Table::Meta, &[], None)?;
            writer.promote_staged()?;
            for (name, bytes) in meta {
                assert_ne!(*name, APPLIED, "the applied index is written by the switch");
                writer.put(Table::Meta, name.as_bytes(), bytes)?;
            }
            writer.put(Table::Meta, APPLIED.as_bytes(), &applied.to_be_bytes())
        })?;
        self.pending = Pending::default();
        self.uncommitted = false;
        self.applied = applied;
        self.flushed = applied;
        self.durable = applied;
        Ok(())
    }
}

fn decode_index(bytes: &[u8]) -> Result<Index, DataError> {
    let bytes: [u8; 8] = bytes
        .try_into()
        .map_err(|_| DataError(format!("applied index of {} bytes", bytes.len())))?;
    Ok(Index::from_be_bytes(bytes))
}
