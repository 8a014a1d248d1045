//! [`Disk`]: the files under a [`crate::LogBackend`], and [`SyncJob`], the durability
//! work a store hands to whoever syncs it.
//!
//! The log backend reads and writes files only through these traits, so the same code
//! runs over the operating system's files ([`OsDisk`], on real nodes) and over a
//! simulated disk that loses unsynced writes the way a power failure does (the lab
//! suites' adapter over labrpc-sim's `SimDisk`).
//!
//! Contract of a disk: a directory of named files. Writes are visible to reads at once
//! and durable once `sync_data` on that file returns; a file's name (creation, rename,
//! removal) is durable once `sync_dir` returns. A crash of the process keeps every write;
//! a power failure keeps what the syncs covered and may keep any subset of the rest.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::StoreError;

/// A directory of files (see the module docs for what is durable when).
pub trait Disk: Clone + Send + Sync + 'static {
    /// An open file.
    type File: DiskFile;
    /// The names of the files in the directory, sorted (with an operating system's
    /// directory, its subdirectories too).
    fn list(&self) -> io::Result<Vec<String>>;
    /// Creates file `name`, or truncates it if it exists, for reading and writing.
    fn create(&self, name: &str) -> io::Result<Self::File>;
    /// Opens the existing file `name` for reading and writing (`NotFound` if absent).
    fn open(&self, name: &str) -> io::Result<Self::File>;
    /// Renames `from` to `to`, replacing any file named `to`.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Removes file `name`.
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Makes the directory's names durable.
    fn sync_dir(&self) -> io::Result<()>;
    /// How to name file `name` in an error message (its path).
    fn describe(&self, name: &str) -> String;
    /// The operating system's directory this disk is, if it is one: a store that opens
    /// only paths (the group's data on a node) keeps its files under it.
    fn directory(&self) -> Option<&Path> {
        None
    }
}

/// An open file of a [`Disk`].
pub trait DiskFile: Send + Sync + 'static {
    /// Reads into `buf` from `offset`; fewer bytes at the end of the file.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes all of `data` at `offset`, extending the file as needed.
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// The file's length in bytes.
    fn size(&self) -> io::Result<u64>;
    /// Cuts or extends (with zeros) the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes the file's content and length durable.
    fn sync_data(&self) -> io::Result<()>;
}

/// Reads the whole of `file`. The length is the file's own, so the memory spent is
/// bounded by what is on disk.
pub(crate) fn read_all(file: &impl DiskFile) -> io::Result<Vec<u8>> {
    let len = usize::try_from(file.size()?)
        .map_err(|_| io::Error::other("a file larger than the address space"))?;
    let mut bytes = vec![0; len];
    let mut at = 0;
    while at < len {
        match file.read_at(at as u64, &mut bytes[at..])? {
            0 => break,
            read => at += read,
        }
    }
    bytes.truncate(at);
    Ok(bytes)
}

/// A failed disk operation on file `name` of `disk`, as a store error.
pub(crate) fn disk_error(disk: &impl Disk, name: &str, error: &io::Error) -> StoreError {
    StoreError::Backend(format!("{}: {error}", disk.describe(name)))
}

/// The durability work a store hands out ([`crate::LogStore::sync_job`]): run it, on
/// any thread, and every store write made before it was handed out is durable.
///
/// Jobs merge: the one a sync thread runs for several Readies syncs each file once.
#[derive(Default)]
pub struct SyncJob {
    steps: Vec<Step>,
}

/// One step of a job; file syncs carry a key, so a merged job syncs each file once.
struct Step {
    file: Option<u64>,
    run: Box<dyn FnOnce() -> Result<(), StoreError> + Send>,
}

impl fmt::Debug for SyncJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SyncJob({} steps)", self.steps.len())
    }
}

impl SyncJob {
    /// A job with nothing to do (the store is durable already).
    pub fn done() -> Self {
        Self::default()
    }

    /// True when running it does nothing.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Adds a sync of file `key` (a key unique to the open file), skipped when the job
    /// already syncs it (a sync covers every write made before it runs).
    pub(crate) fn sync_file(
        &mut self,
        key: u64,
        run: impl FnOnce() -> Result<(), StoreError> + Send + 'static,
    ) {
        if !self.steps.iter().any(|step| step.file == Some(key)) {
            self.steps.push(Step {
                file: Some(key),
                run: Box::new(run),
            });
        }
    }

    /// Adds a step run after the steps before it.
    pub(crate) fn then(&mut self, run: impl FnOnce() -> Result<(), StoreError> + Send + 'static) {
        self.steps.push(Step {
            file: None,
            run: Box::new(run),
        });
    }

    /// Adds `later`'s steps after this job's: running the result makes durable what
    /// either job would.
    pub fn merge(&mut self, later: SyncJob) {
        for step in later.steps {
            match step.file {
                Some(key) => {
                    if !self.steps.iter().any(|s| s.file == Some(key)) {
                        self.steps.push(step);
                    }
                }
                None => self.steps.push(step),
            }
        }
    }

    /// Runs the steps in order; stops at the first that fails.
    pub fn run(self) -> Result<(), StoreError> {
        self.steps.into_iter().try_for_each(|step| (step.run)())
    }
}

/// The operating system's files in one directory, which this handle holds locked
/// (`LOCK`, an advisory lock) so that two processes never share a data directory.
#[derive(Debug, Clone)]
pub struct OsDisk {
    inner: Arc<OsDir>,
}

#[derive(Debug)]
struct OsDir {
    path: PathBuf,
    /// Held open for the lock.
    _lock: File,
}

/// The name of the lock file in an [`OsDisk`] directory.
const LOCK_FILE: &str = "LOCK";

impl OsDisk {
    /// Opens directory `path` (creating it and its parents if needed) and locks it;
    /// `WouldBlock` if another process (or another handle in this one) holds it.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        if !path.is_dir() {
            std::fs::create_dir_all(&path)?;
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                File::open(parent)?.sync_all()?;
            }
        }
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path.join(LOCK_FILE))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!("{} is in use by another process", path.display()),
                ))
            }
            Err(std::fs::TryLockError::Error(error)) => return Err(error),
        }
        Ok(OsDisk {
            inner: Arc::new(OsDir { path, _lock: lock }),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn join(&self, name: &str) -> PathBuf {
        self.inner.path.join(name)
    }
}

/// A file of an [`OsDisk`].
#[derive(Debug)]
pub struct OsFile(File);

impl Disk for OsDisk {
    type File = OsFile;

    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(self.path())? {
            let entry = entry?;
            // Directories too: a store that opens only paths keeps one here.
            let kind = entry.file_type()?;
            if kind.is_file() || kind.is_dir() {
                if let Some(name) = entry.file_name().to_str() {
                    if name != LOCK_FILE {
                        names.push(name.to_string());
                    }
                }
            }
        }
        names.sort();
        Ok(names)
    }

    fn create(&self, name: &str) -> io::Result<OsFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(self.join(name))?;
        Ok(OsFile(file))
    }

    fn open(&self, name: &str) -> io::Result<OsFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.join(name))?;
        Ok(OsFile(file))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        std::fs::rename(self.join(from), self.join(to))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        std::fs::remove_file(self.join(name))
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(self.path())?.sync_all()
    }

    fn describe(&self, name: &str) -> String {
        self.join(name).display().to_string()
    }

    fn directory(&self) -> Option<&Path> {
        Some(self.path())
    }
}

impl DiskFile for OsFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read_at(buf, offset)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write_all_at(data, offset)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second handle on a locked directory is refused; files read back what was
    /// written; the lock file is not listed.
    #[test]
    fn os_disk_locks_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let disk = OsDisk::open(dir.path().join("data")).unwrap();
        assert!(OsDisk::open(dir.path().join("data")).is_err());
        let file = disk.create("a").unwrap();
        file.write_at(3, b"xyz").unwrap();
        assert_eq!(read_all(&file).unwrap(), b"\0\0\0xyz");
        file.sync_data().unwrap();
        disk.rename("a", "b").unwrap();
        disk.sync_dir().unwrap();
        assert_eq!(disk.list().unwrap(), vec!["b".to_string()]);
        drop(disk);
        assert!(OsDisk::open(dir.path().join("data")).is_ok());
    }

    /// A merged job syncs each file once and keeps every other step, in order.
    #[test]
    fn merged_jobs_sync_each_file_once() {
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let step = |name: &'static str| {
            let log = Arc::clone(&log);
            move || {
                log.lock().unwrap().push(name);
                Ok(())
            }
        };
        let mut first = SyncJob::done();
        first.sync_file(1, step("file 1"));
        first.then(step("remove"));
        let mut second = SyncJob::done();
        second.sync_file(1, step("file 1 again"));
        second.sync_file(2, step("file 2"));
        first.merge(second);
        first.run().unwrap();
        assert_eq!(*log.lock().unwrap(), vec!["file 1", "remove", "file 2"]);
    }
}
