//! The lab interface: what a Raft implementation must offer to be graded by the suite.
//!
//! It is 6.824's `Make`/`Start`/`GetState`/`Snapshot` plus an `applyCh`, reshaped for a
//! sans-IO world: instead of goroutines, timers and an RPC library, a peer receives events
//! (a message from a peer, a tick of logical time) and leaves effects behind (messages to
//! send, commands and snapshots to apply), which the harness drains after every event.
//!
//! ```text
//!   harness --make/start/get_state/snapshot--> peer
//!   sim     --step(from, bytes) / tick()-----> peer --take_effects()--> messages -> sim network
//!                                                                   \-> applied  -> checker
//! ```
//!
//! Contract, as in 6.824:
//! - `make` restores everything the peer persisted in its [`Persister`] (and nothing else:
//!   volatile state is lost in a crash). The persister's writes are durable on return.
//! - `start` returns at once; `Some((index, term))` only on a peer that believes it leads.
//!   The command may or may not commit.
//! - Committed commands come out as [`ApplyMsg::Command`] in strictly increasing index
//!   order, never skipping a command. Indices may skip entries that carry no command (a new
//!   leader's empty entry, configuration changes): the checker only demands that every peer
//!   sees the same command at the same index and misses none.
//! - After `snapshot(index, data)` the peer may discard its log through `index`; a peer that
//!   falls behind the leader's compacted log receives [`ApplyMsg::Snapshot`] and must then
//!   continue with commands after that index.
//! - A restarted peer's state machine starts empty: the peer first delivers its persisted
//!   snapshot, if it has one, as [`ApplyMsg::Snapshot`], then the committed commands after
//!   it. (6.824's `start1` reads the snapshot from the persister itself; here the persister's
//!   layout is the implementation's business, so the peer hands the snapshot over.)
//!
//! What a student's peer gets is simpler than what a real node lives with, and the
//! reference peer ([`super::ReplicaLab`]) runs the harder version:
//! - The persister's key/value area and snapshot are durable when a write returns, and a
//!   power failure (`Sim::power_fail`, in the power-failure scenarios) leaves them alone:
//!   for a peer that keeps its state there, a power failure is a crash. The reference
//!   keeps its log in files on the persister's disk ([`Persister::disk`]) instead, where
//!   only what a completed sync covered survives a power failure.
//! - Everything happens inside the event: a peer may persist before it sends. The reference
//!   asks for its syncs to complete later ([`Effects::wakes`], delivered to
//!   [`RaftLab::wake`] after a simulated latency), sends a leader's appends before its own
//!   sync, and holds acknowledgements and votes until the sync completes, as a real node
//!   does.

use labrpc_sim::Persister;

/// Index of a peer in the lab cluster: `0..n`.
pub type Peer = usize;
/// A log index and a Raft term (the reference's types).
pub use shardkv_raft::{Index, Term};

/// Something a peer hands to its state machine (6.824's `ApplyMsg`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyMsg {
    /// A command committed at `index`, delivered once per peer incarnation, in index order.
    Command { index: Index, command: Vec<u8> },
    /// The state machine must replace its state with `data`, a snapshot taken at `index`
    /// (sent by the leader when this peer lagged behind the leader's compacted log).
    Snapshot {
        index: Index,
        term: Term,
        data: Vec<u8>,
    },
}

/// Everything a peer wants done after the events since the last drain.
#[derive(Clone, Debug, Default)]
pub struct Effects {
    /// Messages to deliver to other peers, in sending order: (destination, bytes).
    pub messages: Vec<(Peer, Vec<u8>)>,
    /// Commands and snapshots for the state machine, in order.
    pub applied: Vec<ApplyMsg>,
    /// Wake-ups to deliver to [`RaftLab::wake`] with these tokens, each after a latency
    /// the simulator draws (a peer that models a sync thread, as the reference does;
    /// simple peers never ask).
    pub wakes: Vec<u64>,
}

impl Effects {
    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.applied.is_empty() && self.wakes.is_empty()
    }
}

/// A Raft peer as the lab suite sees it. Implement this for your own Raft to grade it.
///
/// Every method must be deterministic: no clock, no unseeded randomness, no threads. Time
/// passes only through [`RaftLab::tick`] (the harness ticks every ~50 ms of virtual time,
/// with jitter; the suite expects heartbeats about every 2 ticks and election timeouts of
/// about 10 ticks).
pub trait RaftLab: Sized + 'static {
    /// Make peer `me` of a cluster of peers `0..n`, restoring whatever it persisted in
    /// `persister` before a crash (6.824 `Make`).
    fn make(me: Peer, n: usize, persister: Persister) -> Self;

    /// Propose `command`. `Some((index, term))` when this peer is leader and appended it,
    /// `None` otherwise (6.824 `Start`).
    fn start(&mut self, command: Vec<u8>) -> Option<(Index, Term)>;

    /// Current term and whether this peer believes it is the leader (6.824 `GetState`).
    fn get_state(&self) -> (Term, bool);

    /// The state machine has applied everything through `index`; `snapshot` is its state.
    /// The peer may discard its log through `index` (6.824 `Snapshot`).
    fn snapshot(&mut self, index: Index, snapshot: Vec<u8>);

    /// Deliver a message that peer `from` sent.
    fn step(&mut self, from: Peer, message: Vec<u8>);

    /// One tick of logical time.
    fn tick(&mut self);

    /// Take the effects accumulated since the last call.
    fn take_effects(&mut self) -> Effects;

    /// Bytes of Raft state this peer persists, snapshots excluded (6.824's
    /// `RaftStateSize`), which the snapshot tests bound. The default is the size of the
    /// persister's key/value area; a peer that keeps its log elsewhere says how large it
    /// is.
    fn raft_state_size(&self, persister: &Persister) -> usize {
        persister.raft_state_size()
    }

    /// A wake-up this peer asked for in [`Effects::wakes`] (the default asks for none).
    /// Wake-ups asked before a crash never arrive after it.
    fn wake(&mut self, token: u64) {
        let _ = token;
    }
}

/// Optional extension: single-cluster membership change (add and remove voters).
pub trait RaftLabMembership: RaftLab {
    /// Make peer `me` that is not yet a member: it waits to be added by the leader,
    /// restoring from `persister` (which may say it was added before a crash).
    fn make_joiner(me: Peer, persister: Persister) -> Self;

    /// Propose adding `add` and removing `remove` as voters. `Some((index, term))` when
    /// proposed by a leader; `None` when not leader or a change is already in flight.
    fn change_membership(&mut self, add: &[Peer], remove: &[Peer]) -> Option<(Index, Term)>;

    /// The voters as of the last applied configuration, sorted.
    fn members(&self) -> Vec<Peer>;
}
