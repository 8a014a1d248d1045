//! The snapshot files of a [`super::WalBackend`]: `snap-N.snap`, the one the log names
//! current, and the next being written.
//!
//! A snapshot (the size of the state) is made and written off the replica's path: the
//! maker runs, the parts go to `snap-N.tmp`, which is synced, renamed to `snap-N.snap`,
//! and the directory synced; only then does the log record it. How that work runs is the
//! driver's choice ([`Background`]): on a thread of its own on a real node, or in place
//! after a number of polls in the simulator, which has one thread and must stay a pure
//! function of its seed. Either way the store learns of it by polling
//! (`Backend::snapshot_stored`), so the same store code runs in both.

use std::thread::JoinHandle;

use crate::disk::{disk_error, read_all};
use crate::{Disk, DiskFile, SnapshotMaker, SnapshotReader, StoreError};

/// How a [`super::WalBackend`] makes and writes snapshot files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Background {
    /// On a thread of its own (real nodes): the replica goes on meanwhile, and reads of
    /// a snapshot for a lagging follower run on a thread too.
    Threads,
    /// In place, when the store has polled `polls` times without waiting (the simulator:
    /// requests, messages and crashes arrive while the snapshot is pending, and the run
    /// stays deterministic). Reads happen in place.
    Deferred {
        /// Polls answered "not yet" before the snapshot is written.
        polls: u32,
    },
}

/// The name of snapshot file `number`.
pub(crate) fn file_name(number: u64) -> String {
    format!("snap-{number:020}.snap")
}

fn temporary_name(number: u64) -> String {
    format!("snap-{number:020}.tmp")
}

/// `(number, finished)` of a snapshot file name.
fn parse(name: &str) -> Option<(u64, bool)> {
    let rest = name.strip_prefix("snap-")?;
    let (number, finished) = match (rest.strip_suffix(".snap"), rest.strip_suffix(".tmp")) {
        (Some(number), _) => (number, true),
        (None, Some(number)) => (number, false),
        (None, None) => return None,
    };
    // Exactly the 20 digits `file_name` writes: any other name is not ours.
    if number.len() != 20 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((number.parse().ok()?, finished))
}

/// A snapshot file being made and written.
enum Writing {
    Thread {
        number: u64,
        thread: JoinHandle<Result<(), StoreError>>,
    },
    Deferred {
        number: u64,
        make: SnapshotMaker,
        polls: u32,
    },
}

/// The snapshot files of one log.
pub(crate) struct Snapshots<D: Disk> {
    disk: D,
    background: Background,
    /// The number of the next file.
    next: u64,
    /// The snapshot files found when the log opened.
    found: Vec<(u64, bool)>,
    writing: Option<Writing>,
}

impl<D: Disk> Snapshots<D> {
    /// The snapshot files among `names` (the directory's), numbering new ones after them.
    pub(crate) fn new(
        disk: D,
        background: Background,
        names: &[String],
    ) -> Result<Self, StoreError> {
        let found: Vec<(u64, bool)> = names.iter().filter_map(|name| parse(name)).collect();
        let next = match found.iter().map(|&(number, _)| number).max() {
            None => 1,
            Some(last) => last.checked_add(1).ok_or_else(|| StoreError::Corrupt {
                what: format!("snapshot files in {}", disk.describe(".")),
                reason: format!("a file is numbered {}, the last number", u64::MAX),
            })?,
        };
        Ok(Snapshots {
            disk,
            background,
            next,
            found,
            writing: None,
        })
    }

    /// The files found at open other than `recorded`'s: unfinished or superseded.
    pub(crate) fn strays(&mut self, recorded: Option<u64>) -> Vec<String> {
        std::mem::take(&mut self.found)
            .into_iter()
            .filter(|&(number, finished)| !(finished && Some(number) == recorded))
            .map(|(number, finished)| match finished {
                true => file_name(number),
                false => temporary_name(number),
            })
            .collect()
    }

    /// Starts making and writing the next snapshot file with `make` (the previous one
    /// must be finished).
    pub(crate) fn start(&mut self, make: SnapshotMaker) -> Result<(), StoreError> {
        let number = self.next;
        self.next = number
            .checked_add(1)
            .ok_or_else(|| StoreError::Backend("snapshot file numbers are used up".into()))?;
        self.writing = Some(match self.background {
            Background::Threads => {
                let disk = self.disk.clone();
                let thread = std::thread::Builder::new()
                    .name("shardkv-snapshot".into())
                    .spawn(move || write_file(&disk, number, &make()?))
                    .map_err(|error| {
                        StoreError::Backend(format!("cannot start a snapshot thread: {error}"))
                    })?;
                Writing::Thread { number, thread }
            }
            Background::Deferred { polls } => Writing::Deferred {
                number,
                make,
                polls,
            },
        });
        Ok(())
    }

    /// `None` when no snapshot is being written; `Some(None)` while one is (with `wait`,
    /// never: it waits); `Some(Some(number))` once file `number` is durable.
    pub(crate) fn finished(&mut self, wait: bool) -> Result<Option<Option<u64>>, StoreError> {
        match &mut self.writing {
            None => return Ok(None),
            Some(Writing::Thread { thread, .. }) if !wait && !thread.is_finished() => {
                return Ok(Some(None))
            }
            Some(Writing::Deferred { polls, .. }) if !wait && *polls > 0 => {
                *polls -= 1;
                return Ok(Some(None));
            }
            Some(_) => {}
        }
        match self.writing.take() {
            None => Ok(None),
            Some(Writing::Thread { number, thread }) => match thread.join() {
                Ok(result) => result.map(|()| Some(Some(number))),
                Err(_) => Err(StoreError::Backend("the snapshot thread panicked".into())),
            },
            Some(Writing::Deferred { number, make, .. }) => {
                write_file(&self.disk, number, &make()?)?;
                Ok(Some(Some(number)))
            }
        }
    }

    /// Reads snapshot file `number`.
    pub(crate) fn read(&self, number: u64) -> Result<Vec<u8>, StoreError> {
        read_file(&self.disk, number)
    }

    /// A reader of snapshot file `number` for another thread (with threads only).
    pub(crate) fn reader(&self, number: u64) -> Option<SnapshotReader> {
        if self.background != Background::Threads {
            return None;
        }
        let disk = self.disk.clone();
        Some(Box::new(move || read_file(&disk, number).map(Some)))
    }
}

impl<D: Disk> Drop for Snapshots<D> {
    /// Waits for a snapshot thread, so the directory is not in use once the log is gone.
    fn drop(&mut self) {
        if let Some(Writing::Thread { number, thread }) = self.writing.take() {
            if !matches!(thread.join(), Ok(Ok(()))) {
                tracing::warn!(number, "an unrecorded snapshot file was not written");
            }
        }
    }
}

fn read_file(disk: &impl Disk, number: u64) -> Result<Vec<u8>, StoreError> {
    let name = file_name(number);
    disk.open(&name)
        .and_then(|file| read_all(&file))
        .map_err(|error| disk_error(disk, &name, &error))
}

/// Writes snapshot file `number` (the concatenation of `parts`) durably: a temporary
/// file, synced, renamed into place, and the directory synced.
fn write_file(disk: &impl Disk, number: u64, parts: &[Vec<u8>]) -> Result<(), StoreError> {
    let temporary = temporary_name(number);
    let written = (|| {
        let file = disk.create(&temporary)?;
        let mut at = 0;
        for part in parts {
            file.write_at(at, part)?;
            at += part.len() as u64;
        }
        file.sync_data()?;
        drop(file);
        disk.rename(&temporary, &file_name(number))?;
        disk.sync_dir()
    })();
    written.map_err(|error| disk_error(disk, &file_name(number), &error))
}
