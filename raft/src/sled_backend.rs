//! A [`Backend`] on disk, over sled 0.34.
//!
//! Keys live in sled's default tree. `sync` is `Db::flush`, which makes every earlier
//! write to every tree durable. sled recovers a prefix of its write log after a crash,
//! which is the ordering guarantee `Store` needs.
//!
//! Snapshots (several MB each) are files of their own in `raft-snapshots/` next to
//! sled's files, not sled values: sled would write such a value to a blob file and sync
//! it while holding its current IO buffer open, so every other flush of the node waited
//! for the snapshot. [`Backend::start_put_snapshot`] writes the file on a thread of its
//! own (`NNN.tmp`, fdatasync, rename to `NNN.snap`, fsync of the directory); once it is
//! there, [`Backend::snapshot_stored`] records its number in the `"snapshot"` tree
//! (key `"f"`), so the record can only become durable after the file is, and starts a
//! thread that flushes the database (making the record durable) and then deletes the
//! older files. Opening the store flushes and deletes every snapshot file but the
//! recorded one. Dropping the last handle waits for both threads. A
//! snapshot stored inline under key `"s"` by earlier versions is still read (and
//! removed when the first file is recorded).
//!
//! Caveats: `delete_range` is a scan plus a batch of removes (sled 0.34 has no native
//! range delete), so its cost is linear in the number of deleted keys; log compaction
//! deletes each compacted entry once, which is what a log needs anyway.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::backend::lock;
use crate::{Backend, KeyValues, SnapshotMaker, SnapshotReader, StoreError};

const SNAPSHOT_TREE: &str = "snapshot";
/// Where earlier versions kept the snapshot bytes themselves.
const INLINE_SNAPSHOT_KEY: &[u8] = b"s";
/// The number of the current snapshot file (8 bytes, big-endian).
const SNAPSHOT_FILE_KEY: &[u8] = b"f";
/// The snapshot files' directory, inside the database's.
const SNAPSHOT_DIR: &str = "raft-snapshots";

/// A [`Backend`] stored in a sled database; `sync` flushes it.
#[derive(Debug, Clone)]
pub struct SledBackend {
    db: sled::Db,
    snapshots: sled::Tree,
    files: Arc<SnapshotFiles>,
}

/// The snapshot files and the one being written.
#[derive(Debug)]
struct SnapshotFiles {
    dir: PathBuf,
    state: Mutex<FilesState>,
}

#[derive(Debug)]
struct FilesState {
    /// The number the next snapshot file gets.
    next: u64,
    /// The file being made and written: its number and its thread.
    writing: Option<(u64, JoinHandle<Result<(), StoreError>>)>,
    /// The thread deleting the files older than the one just recorded.
    cleaning: Option<JoinHandle<Result<(), StoreError>>>,
}

impl FilesState {
    /// Waits for the cleaning thread, if any; its error, if it failed.
    fn join_cleaning(&mut self) -> Result<(), StoreError> {
        match self.cleaning.take().map(JoinHandle::join) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(error))) => Err(error),
            Some(Err(_)) => Err(StoreError::Backend(
                "the snapshot cleaning thread panicked".into(),
            )),
        }
    }
}

impl Drop for SnapshotFiles {
    /// Waits for the snapshot threads, so that the database (which they hold) is closed
    /// once the last handle to the store is gone.
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some((number, thread)) = state.writing.take() {
            if !matches!(thread.join(), Ok(Ok(()))) {
                tracing::warn!(number, "an unrecorded snapshot file was not written");
            }
        }
        if let Err(error) = state.join_cleaning() {
            tracing::warn!(%error, "old snapshot files were not deleted");
        }
    }
}

impl SledBackend {
    /// Opens (creating if needed) the sled database at `path`, with its snapshot files
    /// in `path/raft-snapshots`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let db = sled::open(path)?;
        let snapshots = db.open_tree(SNAPSHOT_TREE)?;
        let dir = path.join(SNAPSHOT_DIR);
        if !dir.is_dir() {
            fs::create_dir_all(&dir).map_err(|error| io_error(&dir, &error))?;
            sync_dir(path)?;
        }
        let current = recorded_file(&snapshots)?;
        // The record read may not be durable yet (a crash right after it was written);
        // the files it makes garbage go only once it is.
        db.flush()?;
        let on_disk = snapshot_files(&dir)?;
        let next = on_disk
            .iter()
            .map(|file| file.number)
            .chain(current)
            .max()
            .map_or(Some(1), |number| number.checked_add(1))
            .ok_or_else(|| StoreError::Corrupt {
                what: format!("snapshot files in {}", dir.display()),
                reason: format!("a file is numbered {}, the last number", u64::MAX),
            })?;
        // Everything but the recorded snapshot's file is unfinished or unrecorded.
        delete_files(on_disk, |file| {
            !(file.finished && Some(file.number) == current)
        })?;
        let files = SnapshotFiles {
            dir,
            state: Mutex::new(FilesState {
                next,
                writing: None,
                cleaning: None,
            }),
        };
        Ok(Self {
            db,
            snapshots,
            files: Arc::new(files),
        })
    }

    /// [`SledBackend::open`], trying again every 10 ms for up to `wait` while the
    /// database's file lock is held. Jobs sled handed to its process-wide IO pool can
    /// hold the file a moment after the last handle to the database is dropped, so a
    /// node stopped and started again in one process (or a test reopening a store) may
    /// find it locked; another process holding it still fails, after `wait`.
    pub fn open_waiting(path: impl AsRef<Path>, wait: Duration) -> Result<Self, StoreError> {
        let deadline = Instant::now() + wait;
        loop {
            match Self::open(path.as_ref()) {
                Err(StoreError::Backend(error))
                    if error.contains("could not acquire lock") && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                result => return result,
            }
        }
    }

    /// The underlying database.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }
}

/// The snapshot file number recorded in `snapshots`, if any.
fn recorded_file(snapshots: &sled::Tree) -> Result<Option<u64>, StoreError> {
    let Some(bytes) = snapshots.get(SNAPSHOT_FILE_KEY)? else {
        return Ok(None);
    };
    let bytes: [u8; 8] = bytes.as_ref().try_into().map_err(|_| StoreError::Corrupt {
        what: "snapshot file record".into(),
        reason: format!("{} bytes, not 8", bytes.len()),
    })?;
    Ok(Some(u64::from_be_bytes(bytes)))
}

fn file_path(dir: &Path, number: u64, extension: &str) -> PathBuf {
    dir.join(format!("{number:020}.{extension}"))
}

/// A file in the snapshot directory: `NNN.snap` (finished) or `NNN.tmp`.
struct SnapshotFile {
    number: u64,
    finished: bool,
    path: PathBuf,
}

/// The snapshot files in `dir` (other files are left alone).
fn snapshot_files(dir: &Path) -> Result<Vec<SnapshotFile>, StoreError> {
    let entries = fs::read_dir(dir).map_err(|error| io_error(dir, &error))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| io_error(dir, &error))?;
        let name = entry.file_name();
        let Some((stem, extension)) = name.to_str().and_then(|name| name.split_once('.')) else {
            continue;
        };
        if let (Ok(number), "snap" | "tmp") = (stem.parse::<u64>(), extension) {
            files.push(SnapshotFile {
                number,
                finished: extension == "snap",
                path: entry.path(),
            });
        }
    }
    Ok(files)
}

/// Deletes `files` for which `doomed(file)` holds.
fn delete_files(
    files: Vec<SnapshotFile>,
    doomed: impl Fn(&SnapshotFile) -> bool,
) -> Result<(), StoreError> {
    for file in files.into_iter().filter(|file| doomed(file)) {
        fs::remove_file(&file.path).map_err(|error| io_error(&file.path, &error))?;
    }
    Ok(())
}

/// Writes snapshot file `number` (the concatenation of `parts`) durably: a temporary
/// file, synced, renamed into place, and the directory synced.
fn write_file(dir: &Path, number: u64, parts: &[Vec<u8>]) -> std::io::Result<()> {
    let temporary = file_path(dir, number, "tmp");
    let mut file = fs::File::create(&temporary)?;
    for part in parts {
        file.write_all(part)?;
    }
    file.sync_data()?;
    drop(file);
    fs::rename(&temporary, file_path(dir, number, "snap"))?;
    fs::File::open(dir)?.sync_all()
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    fs::File::open(dir)
        .and_then(|file| file.sync_all())
        .map_err(|error| io_error(dir, &error))
}

fn io_error(path: &Path, error: &std::io::Error) -> StoreError {
    StoreError::Backend(format!("{}: {error}", path.display()))
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
        let bytes = bytes.to_vec();
        self.start_put_snapshot(Box::new(move || Ok(vec![bytes])))?;
        self.snapshot_stored(true).map(drop)
    }

    fn start_put_snapshot(&mut self, make: SnapshotMaker) -> Result<(), StoreError> {
        self.snapshot_stored(true)?;
        let mut state = lock(&self.files.state);
        state.join_cleaning()?;
        let number = state.next;
        state.next += 1;
        let dir = self.files.dir.clone();
        let spawned = std::thread::Builder::new()
            .name("shardkv-snapshot".into())
            .spawn(move || {
                let parts = make()?;
                write_file(&dir, number, &parts)
                    .map_err(|error| io_error(&file_path(&dir, number, "snap"), &error))
            });
        let thread = spawned.map_err(|error| {
            StoreError::Backend(format!("cannot start a snapshot thread: {error}"))
        })?;
        state.writing = Some((number, thread));
        Ok(())
    }

    fn snapshot_stored(&mut self, wait: bool) -> Result<bool, StoreError> {
        let mut state = lock(&self.files.state);
        match &state.writing {
            None => return Ok(true),
            Some((_, thread)) if !wait && !thread.is_finished() => return Ok(false),
            Some(_) => {}
        }
        let Some((number, thread)) = state.writing.take() else {
            return Ok(true);
        };
        match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(error),
            Err(_) => return Err(StoreError::Backend("the snapshot thread panicked".into())),
        }
        // Before the record: an error after it would leave the store naming the old
        // snapshot while the record names the new one.
        state.join_cleaning()?;
        self.snapshots
            .insert(SNAPSHOT_FILE_KEY, &number.to_be_bytes())?;
        self.snapshots.remove(INLINE_SNAPSHOT_KEY)?;
        let (db, dir) = (self.db.clone(), self.files.dir.clone());
        let cleaning = std::thread::Builder::new()
            .name("shardkv-snapshot-clean".into())
            .spawn(move || {
                // Once the record of `number` is durable, nothing needs the older files.
                db.flush()?;
                delete_files(snapshot_files(&dir)?, |file| file.number < number)
            });
        match cleaning {
            Ok(thread) => state.cleaning = Some(thread),
            // Not fatal: the next snapshot, or the next open, deletes them.
            Err(error) => tracing::warn!(%error, "cannot start deleting old snapshot files"),
        }
        Ok(true)
    }

    fn get_snapshot(&self) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(read) = self.snapshot_reader()? {
            return read();
        }
        Ok(self
            .snapshots
            .get(INLINE_SNAPSHOT_KEY)?
            .map(|value| value.to_vec()))
    }

    /// Reads the recorded snapshot file (a state-sized read); `None` for a snapshot
    /// kept inline in sled, or none.
    fn snapshot_reader(&self) -> Result<Option<SnapshotReader>, StoreError> {
        let Some(number) = recorded_file(&self.snapshots)? else {
            return Ok(None);
        };
        let path = file_path(&self.files.dir, number, "snap");
        Ok(Some(Box::new(move || {
            fs::read(&path)
                .map(Some)
                .map_err(|error| io_error(&path, &error))
        })))
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.snapshot_stored(true)?;
        lock(&self.files.state).join_cleaning()?;
        self.db.flush()?;
        Ok(())
    }
}
