//! The simulator's disk under the reference replicas: labrpc-sim's [`SimDisk`] as a
//! `shardkv_raft::Disk`, so the lab suites run the write-ahead log real nodes run
//! ([`WalBackend`]), over files that a power failure treats as a machine's disk treats
//! them.
//!
//! Each host's disk comes with its persister ([`Persister::disk`]): it survives crashes
//! and restarts, and [`labrpc_sim::Sim::power_fail`] keeps only what syncs covered (and a
//! seeded part of the rest). The reference replicas keep nothing in the persister's own
//! key/value area; that synchronous area is the contract of students' `RaftLab`s.

use std::io;

use labrpc_sim::{Persister, SimDisk, SimFile};
use shardkv_raft::{Background, Disk, DiskFile, Store, WalBackend};

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
