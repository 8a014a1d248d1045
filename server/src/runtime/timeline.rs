//! Timestamps of the steps requests take through this process's nodes, for `shardkv
//! bench --timeline` (see `cli::bench::breakdown`, which turns them into a per-stage
//! latency breakdown).
//!
//! Off unless [`start`] switched it on: then every step costs one relaxed atomic load.
//! On, a step takes a lock and pushes 16 bytes; the bench's one client makes a few
//! dozen steps per operation. Only nodes given a [`Tracer`] with a label (the bench's
//! replica-group nodes) record anything.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use super::service::Event;

/// Steps at most kept (about 20 s of one client's puts); later ones are dropped.
const MAX_MARKS: usize = 4_000_000;

/// A waypoint of a request's path: a step it takes, timestamped by [`Tracer::mark`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waypoint {
    /// The bench client starts an operation.
    ClientSend,
    /// The bench client has the operation's answer.
    ClientDone,
    /// A node's listener decoded a client call.
    CallReceived,
    /// A node's listener has the answer to a client call, about to send it.
    CallAnswered,
    /// A node's driver starts a batch of events holding a client call.
    DriverCall,
    /// A node's driver starts a batch of events holding raft messages from a peer.
    DriverPeer,
    /// A node's driver starts a batch of events holding its sync thread's report.
    DriverSynced,
    /// A node's driver asks its sync thread for a sync.
    SyncAsked,
    /// A node's sync thread starts flushing the store.
    FlushStart,
    /// A node's sync thread has flushed the store.
    FlushEnd,
    /// A node's peer task writes a batch of raft messages to its raft stream.
    PeerSend,
}

/// One step: when (since the recording started), what, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// Nanoseconds since [`start`].
    pub at_ns: u64,
    /// The step.
    pub step: Waypoint,
    /// The node's label (0: the bench client).
    pub node: u16,
}

static ON: AtomicBool = AtomicBool::new(false);
static MARKS: Mutex<Vec<Mark>> = Mutex::new(Vec::new());
static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Records the steps of one node, or nothing (the default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tracer {
    label: Option<u16>,
}

impl Tracer {
    /// A tracer recording under `label` (not 0, which is the client's) while recording
    /// is on.
    pub fn node(label: u16) -> Self {
        Tracer {
            label: (label != 0).then_some(label),
        }
    }

    /// Records `step` for this node, if it has a label and recording is on.
    pub fn mark(self, step: Waypoint) {
        if let Some(label) = self.label {
            mark(step, label);
        }
    }

    /// Records that the driver starts a batch holding `events`: one step for each kind
    /// of event in it (calls, raft messages, sync reports).
    pub fn mark_batch(self, events: &[Event]) {
        if self.label.is_none() || !ON.load(Ordering::Relaxed) {
            return;
        }
        let kinds = [
            (
                Waypoint::DriverCall,
                events.iter().any(|e| matches!(e, Event::Call { .. })),
            ),
            (
                Waypoint::DriverPeer,
                events.iter().any(|e| matches!(e, Event::Peer { .. })),
            ),
            (
                Waypoint::DriverSynced,
                events.iter().any(|e| matches!(e, Event::Synced { .. })),
            ),
        ];
        for (step, present) in kinds {
            if present {
                self.mark(step);
            }
        }
    }
}

/// Starts recording (drops what an earlier recording left).
pub fn start() {
    EPOCH.get_or_init(Instant::now);
    lock().clear();
    ON.store(true, Ordering::Release);
}

/// Stops recording and returns the steps, in the order they were recorded.
pub fn finish() -> Vec<Mark> {
    ON.store(false, Ordering::Release);
    std::mem::take(&mut *lock())
}

/// Records `step` at `node` (0: the bench client) while recording is on.
pub fn mark(step: Waypoint, node: u16) {
    if !ON.load(Ordering::Relaxed) {
        return;
    }
    let Some(epoch) = EPOCH.get() else { return };
    let at_ns = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let mut marks = lock();
    if marks.len() < MAX_MARKS {
        marks.push(Mark { at_ns, step, node });
    }
}

/// The marks, whatever a panicking recorder left (they are plain data).
fn lock() -> std::sync::MutexGuard<'static, Vec<Mark>> {
    MARKS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
