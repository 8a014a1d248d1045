//! Writing held writes into the database off the driver's thread.
//!
//! A flush of 32 MiB of held writes rewrites thousands of B-tree pages, and a durable
//! commit waits for an `fsync` of all of them: tens to hundreds of milliseconds that the
//! replica's driver must not stand still for. So [`super::Data`] hands each one to a
//! [`Job`] that runs as the store's [`Background`] says: on a thread of its own (real
//! nodes), or in place after a number of polls (the simulator, deterministic: requests,
//! messages and crashes arrive while it is pending, and a crash loses it). The held
//! writes it carries stay readable meanwhile (`Data`'s flushing layer); one job runs at a
//! time.

use std::sync::Arc;
use std::thread::JoinHandle;

use redb::{Database, Durability};
use shardkv_raft::Background;

use super::pending::Pending;
use super::{failed, DataError, APPLIED, META};
use crate::Index;

/// Held writes to commit into the database with the applied index they bring it to,
/// durably or not.
pub(super) struct Job {
    pub(super) db: Arc<Database>,
    pub(super) held: Arc<Pending>,
    pub(super) applied: Index,
    pub(super) durable: bool,
}

impl Job {
    /// Commits the held writes; returns the applied index the database now holds.
    pub(super) fn run(self) -> Result<Index, DataError> {
        let mut txn = self.db.begin_write().map_err(failed("begin a write"))?;
        // A durable commit is redb's default: one fsync, checksums to detect a torn one.
        // Quick repair (which needs two-phase commit) would spare a reopen after a crash
        // its scan of the tree (about 5 s per GB, measured) but cost every checkpoint 20%
        // of the lab suites' time; the scan is within the restart bound at 1 GB.
        let durability = match self.durable {
            true => Durability::Immediate,
            false => Durability::None,
        };
        txn.set_durability(durability)
            .map_err(failed("set durability"))?;
        self.held.flush_into(&txn)?;
        {
            let mut table = txn.open_table(META).map_err(failed("open meta"))?;
            table
                .insert(APPLIED, self.applied.to_be_bytes().as_slice())
                .map_err(failed("put the applied index"))?;
        }
        txn.commit().map_err(failed("commit"))?;
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
