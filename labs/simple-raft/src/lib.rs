//! An example lab crate: what a student hands in, and how a course grades it.
//!
//! [`ForgetfulRaft`] implements the lab interface [`RaftLab`] by wrapping the reference
//! peer, with one deliberate simplification a student might make: it never reads its
//! [`Persister`] back. Every `make` starts from a fresh, empty persister, so a peer that
//! crashes and restarts has forgotten its term, its vote and its log. Runs without crashes
//! are unaffected, so the election and agreement parts pass; the scenarios that restart
//! peers (most of `raft-persistence`, and the crash scenarios of `raft-snapshot`) fail.
//!
//! `cargo run -p simple-raft -- --seeds 20` grades it (see `src/main.rs`: the whole `main`
//! is one [`shardkv_tests::grade::Suite`] expression); every failure prints its replay
//! command, e.g. `cargo run -p simple-raft -- persist1 --seed 1 --trace`.
//!
//! Caveats: this is a grading example, not a Raft to learn from; the real work is done by
//! [`ReplicaLab`].

use labrpc_sim::Persister;
use shardkv_tests::raft_lab::{Effects, Index, Peer, RaftLab, ReplicaLab, Term};

/// The command that replays a failure of this crate (printed before `TEST --seed S`).
pub const REPLAY_COMMAND: &str = "cargo run -p simple-raft --";

/// A Raft peer that forgets everything it persisted when it restarts.
pub struct ForgetfulRaft {
    inner: ReplicaLab,
}

impl RaftLab for ForgetfulRaft {
    /// The simplification: the persister handed in (holding the state of the previous
    /// incarnation) is ignored, and the peer writes into a fresh one nobody reads again.
    fn make(me: Peer, n: usize, _persister: Persister) -> Self {
        ForgetfulRaft {
            inner: ReplicaLab::make(me, n, Persister::new()),
        }
    }

    fn start(&mut self, command: Vec<u8>) -> Option<(Index, Term)> {
        self.inner.start(command)
    }

    fn get_state(&self) -> (Term, bool) {
        self.inner.get_state()
    }

    fn snapshot(&mut self, index: Index, snapshot: Vec<u8>) {
        self.inner.snapshot(index, snapshot)
    }

    fn step(&mut self, from: Peer, message: Vec<u8>) {
        self.inner.step(from, message)
    }

    fn tick(&mut self) {
        self.inner.tick()
    }

    fn take_effects(&mut self) -> Effects {
        self.inner.take_effects()
    }

    /// The reference peer's syncs complete through wake-ups: a wrapper must pass them on.
    fn wake(&mut self, token: u64) {
        self.inner.wake(token)
    }

    fn raft_state_size(&self, persister: &Persister) -> usize {
        self.inner.raft_state_size(persister)
    }
}
