//! [`DiskBackend`]: redb's storage over a `shardkv_raft::Disk` file, so the same database
//! code runs over the operating system's files on real nodes and over the simulator's
//! disk (which loses unsynced writes the way a power failure does) in the lab suites.

use std::fmt;
use std::io;

use redb::{BackendError, StorageBackend};
use shardkv_raft::DiskFile;

/// One file of a `Disk`, as redb's storage.
pub struct DiskBackend<F: DiskFile> {
    file: F,
    /// The file's name on its disk, for errors.
    name: String,
}

impl<F: DiskFile> DiskBackend<F> {
    /// Storage in `file`, named `name` on its disk (for errors).
    pub fn new(file: F, name: String) -> Self {
        DiskBackend { file, name }
    }

    fn error(&self, action: &str, error: io::Error) -> BackendError {
        BackendError::Io(io::Error::new(
            error.kind(),
            format!("{action} {}: {error}", self.name),
        ))
    }
}

impl<F: DiskFile> fmt::Debug for DiskBackend<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DiskBackend({})", self.name)
    }
}

impl<F: DiskFile> StorageBackend for DiskBackend<F> {
    fn len(&self) -> Result<u64, BackendError> {
        self.file.size().map_err(|e| self.error("size of", e))
    }

    /// Reads exactly `out.len()` bytes: a short read (past the end) is an error, as
    /// redb requires.
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), BackendError> {
        let mut done = 0;
        while done < out.len() {
            let read = self
                .file
                .read_at(offset + done as u64, &mut out[done..])
                .map_err(|e| self.error("read", e))?;
            if read == 0 {
                let end = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} bytes at {offset} past the end", out.len()),
                );
                return Err(self.error("read", end));
            }
            done += read;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), BackendError> {
        self.file.set_len(len).map_err(|e| self.error("resize", e))
    }

    fn sync_data(&self) -> Result<(), BackendError> {
        self.file.sync_data().map_err(|e| self.error("sync", e))
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), BackendError> {
        self.file
            .write_at(offset, data)
            .map_err(|e| self.error("write", e))
    }
}
