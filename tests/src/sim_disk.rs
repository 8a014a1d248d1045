//! The simulator's disk under the reference replicas: labrpc-sim's [`SimDisk`] as a
//! `shardkv_raft::Disk`, so the lab suites run the write-ahead log real nodes run
//! ([`WalBackend`]), over files that a power failure treats as a machine's disk treats
//! them.
//!
//! Each host's disk comes with its persister ([`Persister::disk`]): it survives crashes
//! and restarts, and [`labrpc_sim::Sim::power_fail`] keeps only what syncs covered (and a
//! seeded part of the rest). The reference replicas keep nothing in the persister's own
//! key/value area; that synchronous area is the contract of students' `RaftLab`s.

use std::collections::VecDeque;
use std::io;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use labrpc_sim::{Persister, SimDisk, SimFile};
use replica_group::data::{Data, RedbEngine};
use shardkv_raft::{Background, Disk, DiskFile, EarlySink, Store, SyncJob, SyncSink, WalBackend};

/// Polls a snapshot waits for before it is written, in the reference replicas: a few
/// events of the replica, long enough for messages, requests and crashes to arrive while
/// a compaction is pending (a real node writes it on a thread of its own).
pub const SNAPSHOT_POLLS: u32 = 8;

/// The log store of a reference replica.
pub type SimStore = Store<WalBackend<LabDisk>>;

/// A host's simulated disk as a `shardkv_raft::Disk`.
#[derive(Debug, Clone)]
pub struct LabDisk(pub SimDisk);

/// A file of a [`LabDisk`].
#[derive(Debug)]
pub struct LabFile(SimFile);

impl Disk for LabDisk {
    type File = LabFile;

    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.0.list())
    }

    fn create(&self, name: &str) -> io::Result<LabFile> {
        self.0.create(name).map(LabFile)
    }

    fn open(&self, name: &str) -> io::Result<LabFile> {
        self.0.open(name).map(LabFile)
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.0.rename(from, to)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.0.remove(name)
    }

    fn sync_dir(&self) -> io::Result<()> {
        self.0.sync_dir()
    }

    fn describe(&self, name: &str) -> String {
        format!("simulated disk: {name}")
    }
}

impl DiskFile for LabFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read_at(offset, buf)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write_at(offset, data)
    }

    fn size(&self) -> io::Result<u64> {
        self.0.len()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}

/// The page cache of a reference group replica's data: small, as the lab's data is.
pub const LAB_CACHE_BYTES: usize = 1 << 20;

/// Opens the data a reference group replica keeps on `disk` (its persister's, or a
/// mutant's wrapper of it), as a real node opens it in its data directory, in the
/// simulator's engine: redb over the disk, keeping a part of its non-durable writes
/// drawn from `seed`, as a node's journal may reach its disk before a power failure
/// (`RedbEngine::keeping_some`). Its flushes and checkpoints are deferred by
/// [`SNAPSHOT_POLLS`] instead of run on a thread. `name` says whose it is in a panic:
/// the disk cannot fail, so an error here is a bug.
pub fn open_data(disk: &impl Disk, name: &str, seed: u64) -> Data {
    let background = Background::Deferred {
        polls: SNAPSHOT_POLLS,
    };
    RedbEngine::open(disk, LAB_CACHE_BYTES)
        .map(|engine| Arc::new(engine.keeping_some(seed)))
        .and_then(|engine| Data::with_engine(engine, background))
        .unwrap_or_else(|error| panic!("{name}: open the data: {error}"))
}

/// Opens the log store a reference replica keeps on `persister`'s disk, as a real node
/// opens its data directory (snapshots deferred by [`SNAPSHOT_POLLS`] instead of written
/// on a thread). `name` says whose store it is in a panic: the disk cannot fail, so an
/// error here is a bug.
pub fn open_store(persister: &Persister, name: &str) -> SimStore {
    let disk = LabDisk(persister.disk());
    let background = Background::Deferred {
        polls: SNAPSHOT_POLLS,
    };
    let backend = WalBackend::open(disk, background)
        .unwrap_or_else(|error| panic!("{name}: open the log: {error}"));
    Store::open(backend).unwrap_or_else(|error| panic!("{name}: open the store: {error}"))
}

/// How long a simulated sync takes, from the request to its completion: drawn by the
/// simulator for each one (an fdatasync on this project's development VM takes 0.2-0.5
/// ms; the range is wider, so more events land while a sync is pending).
pub const SYNC_LATENCY: Range<Duration> = Duration::from_micros(100)..Duration::from_millis(3);

/// What a real node's driver does around its replica, for a reference replica in the
/// simulator: the raft messages a leader may send before its own sync (the driver's
/// early sink), and the node's sync thread, as completions after [`SYNC_LATENCY`].
///
/// The replica hands each Ready's sync job to [`NodeIo::sync_sink`]; the reference turns
/// every new one into a wake-up request ([`NodeIo::take_wakes`]: the host asks the
/// simulator for `Host::on_wake` after a drawn latency) and, when a wake-up arrives,
/// [`NodeIo::complete`] runs every job queued up to it, merged, as the sync thread would,
/// and says which Ready number to report. A crash cancels pending wake-ups (the simulator
/// drops them with the incarnation), so nothing from before a restart is reported after
/// it.
#[derive(Clone, Default)]
pub struct NodeIo {
    early: Arc<Mutex<Vec<Message>>>,
    syncs: Arc<Mutex<Syncs>>,
}

/// A raft message: the raft id it goes to, and its bytes.
type Message = (u64, Vec<u8>);

#[derive(Default)]
struct Syncs {
    next_token: u64,
    /// `(token, Ready number, job)` in the order asked.
    queued: VecDeque<(u64, u64, SyncJob)>,
    /// Tokens to ask wake-ups for.
    wakes: Vec<u64>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl NodeIo {
    /// The sink for `send_early_with`.
    pub fn early_sink(&self) -> EarlySink {
        let early = Arc::clone(&self.early);
        Box::new(move |to, bytes| lock(&early).push((to, bytes)))
    }

    /// The sink for `sync_with`.
    pub fn sync_sink(&self) -> SyncSink {
        let syncs = Arc::clone(&self.syncs);
        Box::new(move |number, job| {
            let mut syncs = lock(&syncs);
            syncs.next_token += 1;
            let token = syncs.next_token;
            syncs.queued.push_back((token, number, job));
            syncs.wakes.push(token);
        })
    }

    /// The messages sent early since the last call, `(raft id, bytes)`, in order.
    pub fn take_early(&self) -> Vec<Message> {
        std::mem::take(&mut *lock(&self.early))
    }

    /// The raft messages to send now, `(peer index, bytes)` in order: those sent early
    /// since the last call, then `later` (a server's `take_messages`). Raft id `n` is
    /// peer `n - 1`.
    pub fn peer_messages(&self, later: Vec<Message>) -> Vec<(usize, Vec<u8>)> {
        let early = self.take_early().into_iter();
        early
            .chain(later)
            .map(|(to, bytes)| {
                assert!(to >= 1, "a replica sent to raft id 0");
                ((to - 1) as usize, bytes)
            })
            .collect()
    }

    /// The Ready number of the newest sync asked and not yet completed.
    pub fn newest_pending(&self) -> Option<u64> {
        lock(&self.syncs)
            .queued
            .back()
            .map(|&(_, number, _)| number)
    }

    /// The wake-ups to ask for since the last call.
    pub fn take_wakes(&self) -> Vec<u64> {
        std::mem::take(&mut lock(&self.syncs).wakes)
    }

    /// The sync of `token` is done: runs every job queued through it, merged, and
    /// returns the Ready number to report (`None` when a later wake-up already ran it).
    /// Panics if a job fails: the simulated disk does not fail while its host runs.
    pub fn complete(&self, token: u64) -> Option<u64> {
        let mut syncs = lock(&self.syncs);
        let mut merged: Option<(u64, SyncJob)> = None;
        while syncs.queued.front().is_some_and(|&(t, ..)| t <= token) {
            let Some((_, number, job)) = syncs.queued.pop_front() else {
                break;
            };
            merged = Some(match merged.take() {
                None => (number, job),
                Some((_, mut earlier)) => {
                    earlier.merge(job);
                    (number, earlier)
                }
            });
        }
        drop(syncs);
        let (number, job) = merged?;
        job.run()
            .unwrap_or_else(|error| panic!("a simulated sync failed: {error}"));
        Some(number)
    }
}
