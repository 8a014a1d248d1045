//! Writing held writes into the engine off the driver's thread.
//!
//! A flush of 32 MiB of held writes takes the engine tens of milliseconds, and a durable
//! one waits for an `fsync` too: time the replica's driver must not stand still for. So [`super::Data`] hands each one to a
//! [`Job`] that runs as the store's [`Background`] says: on a thread of its own (real
//! nodes), or in place after a number of polls (the simulator, deterministic: requests,
//! messages and crashes arrive while it is pending, and a crash loses it). The held
//! writes it carries stay readable meanwhile (`Data`'s flushing layer); one job runs at a
//! time.

use std::sync::Arc;
use std::thread::JoinHandle;

use shardkv_raft::Background;

use super::engine::{Engine, Table};
use super::pending::Pending;
use super::{failed, DataError, APPLIED};
use crate::Index;

/// Held writes to commit into the engine with the applied index they bring it to,
/// durably or not.
pub(super) struct Job {
    pub(super) engine: Arc<dyn Engine>,
    pub(super) held: Arc<Pending>,
    pub(super) applied: Index,
    pub(super) durable: bool,
}

impl Job {
    /// Commits the held writes; returns the applied index the engine now holds.
    pub(super) fn run(self) -> Result<Index, DataError> {
        let applied = self.applied.to_be_bytes();
        self.engine.write(self.durable, &mut |writer| {
            self.held.flush_into(writer)?;
            writer.put(Table::Meta, APPLIED.as_bytes(), &applied)
        })?;
        Ok(self.applied)
    }
}

/// A job under way.
pub(super) enum Running {
    /// On its thread.
    Thread(JoinHandle<Result<Index, DataError>>),
    /// Run in place once `polls` more polls have passed.
    Deferred { job: Job, polls: u32 },
}

impl Running {
    /// Starts `job` as `background` says; a deferred job with no polls to wait runs at
    /// once (and is returned finished).
    pub(super) fn start(job: Job, background: Background) -> Result<Self, DataError> {
        match background {
            Background::Threads => std::thread::Builder::new()
                .name("shardkv-data-flush".into())
                .spawn(move || job.run())
                .map(Running::Thread)
                .map_err(failed("start the flush thread")),
            Background::Deferred { polls } => Ok(Running::Deferred { job, polls }),
        }
    }

    /// The job's result when it has finished (a deferred one runs now if its polls have
    /// passed); otherwise the job, still running.
    pub(super) fn poll(self) -> Result<Result<Index, DataError>, Self> {
        match self {
            Running::Thread(thread) if thread.is_finished() => Ok(join(thread)),
            Running::Deferred { job, polls: 0 } => Ok(job.run()),
            Running::Deferred { job, polls } => Err(Running::Deferred {
                job,
                polls: polls - 1,
            }),
            running => Err(running),
        }
    }

    /// Waits for the job (a deferred one runs now).
    pub(super) fn finish(self) -> Result<Index, DataError> {
        match self {
            Running::Thread(thread) => join(thread),
            Running::Deferred { job, .. } => job.run(),
        }
    }
}

fn join(thread: JoinHandle<Result<Index, DataError>>) -> Result<Index, DataError> {
    thread
        .join()
        .unwrap_or_else(|_| Err(DataError("the flush thread panicked".into())))
}
