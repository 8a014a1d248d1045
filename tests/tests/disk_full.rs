//! A full disk under the write-ahead log and under a group's data, injected through the
//! stores' file layer (a `Disk` whose files stop growing once a budget of bytes is
//! spent, answering `ENOSPC` as a full file system does): the write, sync or checkpoint
//! that finds no room fails with an error that says so and names the file, never a
//! panic; and once there is room again, each store reopens, with nothing left behind in
//! the way, holding everything its last completed sync or checkpoint covered.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use replica_group::data::Data;
use shardkv_raft::{Backend, Background, Disk, DiskFile, OsDisk, OsFile, WalBackend};

/// `inner`, with at most `room` more bytes of file growth before writes fail.
#[derive(Clone)]
struct FullDisk {
    inner: OsDisk,
    room: Arc<AtomicU64>,
}

struct FullFile {
    inner: OsFile,
    room: Arc<AtomicU64>,
}

impl FullFile {
    /// Takes the room growing the file to `end` bytes needs, or fails as a full disk.
    fn grow_to(&self, end: u64) -> io::Result<()> {
        let growth = end.saturating_sub(self.inner.size()?);
        let taken = self
            .room
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |room| {
                room.checked_sub(growth)
            });
        match taken {
            Ok(_) => Ok(()),
            // ENOSPC, as the kernel reports it.
            Err(_) => Err(io::Error::from_raw_os_error(28)),
        }
    }
}

impl DiskFile for FullFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read_at(offset, buf)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.grow_to(offset + data.len() as u64)?;
        self.inner.write_at(offset, data)
    }

    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.grow_to(len)?;
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()
    }
}

impl Disk for FullDisk {
    type File = FullFile;

    fn list(&self) -> io::Result<Vec<String>> {
        self.inner.list()
    }

    fn create(&self, name: &str) -> io::Result<FullFile> {
        let inner = self.inner.create(name)?;
        let room = self.room.clone();
        Ok(FullFile { inner, room })
    }

    fn open(&self, name: &str) -> io::Result<FullFile> {
        let inner = self.inner.open(name)?;
        let room = self.room.clone();
        Ok(FullFile { inner, room })
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.inner.rename(from, to)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.inner.remove(name)
    }

    fn sync_dir(&self) -> io::Result<()> {
        self.inner.sync_dir()
    }

    fn describe(&self, name: &str) -> String {
        self.inner.describe(name)
    }
}

/// A disk in a fresh directory with `room` bytes to grow into.
fn full_disk(room: u64) -> (tempfile::TempDir, FullDisk) {
    let dir = tempfile::tempdir().expect("temp dir");
    let inner = OsDisk::open(dir.path()).expect("open the directory");
    let room = Arc::new(AtomicU64::new(room));
    (dir, FullDisk { inner, room })
}

/// The value written under key `i`.
fn value(i: u32) -> Vec<u8> {
    vec![(i % 251) as u8; 4096]
}

/// Whether `error` reads as a full disk naming one of the store's files.
fn says_full(error: &str, file: &str) -> bool {
    error.contains("No space left on device") && error.contains(file)
}

/// The log fills its disk: the failing put or sync says so; with room again it reopens
/// with every write the last completed sync covered.
#[test]
fn the_log_reports_a_full_disk_and_reopens_with_what_it_synced() {
    let (dir, disk) = full_disk(4 << 20);
    let background = Background::Deferred { polls: 0 };
    let mut wal = WalBackend::open_with_segment_bytes(disk.clone(), background, 256 << 10)
        .expect("open the log");
    let (mut synced, mut failure) = (0u32, None);
    for i in 0..10_000u32 {
        let written = wal
            .put(&i.to_be_bytes(), &value(i))
            .and_then(|()| match i % 8 {
                7 => wal.sync(),
                _ => Ok(()),
            });
        match written {
            Ok(()) if i % 8 == 7 => synced = i + 1,
            Ok(()) => {}
            Err(error) => {
                failure = Some(error.to_string());
                break;
            }
        }
    }
    let failure = failure.expect("4 MiB filled up");
    assert!(says_full(&failure, "wal-"), "{failure}");
    assert!(synced > 100, "only {synced} writes synced");
    drop(wal);

    disk.room.store(u64::MAX, Ordering::SeqCst);
    let wal =
        WalBackend::open_with_segment_bytes(disk, background, 256 << 10).expect("reopen with room");
    for i in 0..synced {
        let stored = wal.get(&i.to_be_bytes()).expect("read");
        assert_eq!(stored, Some(value(i)), "key {i} of {synced} synced");
    }
    drop(dir);
}

/// The group's data fills its disk: the failing commit or checkpoint says so; with room
/// again it reopens at or after its last completed checkpoint, holding that state.
#[test]
fn the_data_reports_a_full_disk_and_reopens_at_its_checkpoint() {
    let (dir, disk) = full_disk(8 << 20);
    let background = Background::Deferred { polls: 0 };
    let mut data = Data::open(&disk, 1 << 20, background).expect("open the data");
    let (mut checkpointed, mut failure) = (0u32, None);
    for i in 1..100_000u32 {
        let written = data
            .put(0, &i.to_be_bytes(), &value(i))
            .and_then(|()| data.commit(u64::from(i)))
            .and_then(|()| match i % 64 {
                0 => data.checkpoint(true).map(drop),
                _ => Ok(()),
            });
        match written {
            Ok(()) if i % 64 == 0 => checkpointed = i,
            Ok(()) => {}
            Err(error) => {
                failure = Some(error.to_string());
                break;
            }
        }
    }
    let failure = failure.expect("8 MiB filled up");
    assert!(says_full(&failure, "state.redb"), "{failure}");
    assert!(checkpointed >= 64, "no checkpoint completed");
    drop(data);

    disk.room.store(u64::MAX, Ordering::SeqCst);
    let data = Data::open(&disk, 1 << 20, background).expect("reopen with room");
    let applied = data.applied_index();
    assert!(
        applied >= u64::from(checkpointed),
        "reopened at {applied}, checkpoint at {checkpointed}"
    );
    for i in 1..=applied as u32 {
        let stored = data.get(0, &i.to_be_bytes()).expect("read");
        assert_eq!(stored, Some(value(i)), "key {i}, applied {applied}");
    }
    drop(dir);
}
