//! The Raft lab, as handed out: a peer whose every method is yours to write.
//!
//! Implement [`Raft`] until `cargo run -p grader` gives full marks. The grader is the
//! course's crate (`labs/grader`), not yours: it depends on this crate, runs the lab's
//! scenarios against [`Raft`] in the deterministic simulator, and prints each failure with
//! the command that replays it with its event log, one column per peer:
//!
//! ```text
//! cargo run -p grader -- --seeds 20                       # grade every part
//! cargo run -p grader -- raft-election                    # one part
//! cargo run -p grader -- initial_election --seed 3 --trace  # replay a failure
//! ```
//!
//! The interface is 6.824's `Make`, `Start`, `GetState` and `Snapshot`, reshaped for a
//! world without threads or clocks (see [`RaftLab`] for the whole contract): the
//! simulator hands your peer events (a message from another peer in [`RaftLab::step`], a
//! tick of logical time in [`RaftLab::tick`]) and collects what it wants done from
//! [`RaftLab::take_effects`] after each one: messages to send, and commands and snapshots
//! for the state machine. Everything a peer does must follow from those events: no
//! `std::time`, no threads, no randomness but what you derive from them (seed a generator
//! from `me`, for instance), or a replay will not show what the failed run did.
//!
//! A suggested order, one part of the grader at a time:
//!
//! 1. `raft-election`: terms, votes and heartbeats. Keep `current_term`, `voted_for` and
//!    a role; on every [`RaftLab::tick`] count down an election timeout (about 10 ticks,
//!    different per peer) and, when it expires, become a candidate and send vote requests;
//!    a leader sends heartbeats every 2 ticks or so. Define your messages as a Rust enum
//!    and encode them to bytes however you like.
//! 2. `raft-agreement`: the log. [`RaftLab::start`] appends on the leader; append
//!    requests carry entries and the previous index and term; followers reply; the
//!    leader advances the commit index over a majority of its term and every peer hands
//!    newly committed commands out as [`ApplyMsg::Command`], in order, once each.
//! 3. `raft-persistence`: write `current_term`, `voted_for` and the log to the
//!    [`Persister`] before answering anything that depends on them, and read them back in
//!    [`RaftLab::make`]. Peers crash and restart with what they persisted, and nothing
//!    else.
//! 4. `raft-snapshot`: [`RaftLab::snapshot`] lets you drop the log through an index;
//!    persist the snapshot with the state, send it to peers that need entries you no
//!    longer have, and hand a received one to the state machine as
//!    [`ApplyMsg::Snapshot`]. After a restart, hand your own snapshot over first.
//!
//! Each method below says what the grader expects of it. A `todo!()` that runs fails the
//! run it is in with a panic, which the grader reports like any other failure; so does a
//! run that loops past the grader's time limit, aborts, or runs out of memory, and the
//! other tests are graded as usual.

use labrpc_sim::Persister;
pub use shardkv_tests::raft_lab::{ApplyMsg, Effects, Index, Peer, RaftLab, Term};

/// Your Raft peer. Add the fields it needs: at least its id, the number of peers, the
/// persister it was made with, its term, vote, role and log, and the effects it has
/// gathered since the last [`RaftLab::take_effects`].
pub struct Raft {
    /// This peer's id, `0..n`.
    pub me: Peer,
    /// Where this peer keeps what must survive a crash.
    pub persister: Persister,
}

impl RaftLab for Raft {
    /// Make peer `me` of `n`, restoring its term, vote and log (and snapshot) from
    /// `persister`: empty the first time, what it persisted before a crash after one.
    fn make(me: Peer, n: usize, persister: Persister) -> Self {
        let _ = (me, n, persister);
        todo!("make: restore the persisted state and start as a follower")
    }

    /// If this peer leads, append `command` to its log (persisted) and return its index
    /// and the current term; otherwise `None`. Return at once: replication happens on
    /// ticks and messages.
    fn start(&mut self, command: Vec<u8>) -> Option<(Index, Term)> {
        let _ = command;
        todo!("start: append on the leader")
    }

    /// The current term, and whether this peer believes it is the leader.
    fn get_state(&self) -> (Term, bool) {
        todo!("get_state")
    }

    /// The state machine holds everything through `index` in `snapshot`: keep the
    /// snapshot (persisted with the state) and drop the log through `index`.
    fn snapshot(&mut self, index: Index, snapshot: Vec<u8>) {
        let _ = (index, snapshot);
        todo!("snapshot: compact the log")
    }

    /// A message from peer `from`, as your peer encoded it: decode it, and answer or act
    /// (a vote, an append, a reply to either, a snapshot).
    fn step(&mut self, from: Peer, message: Vec<u8>) {
        let _ = (from, message);
        todo!("step: handle a message")
    }

    /// One tick of logical time (about 50 ms): count down the election timeout, or send
    /// heartbeats if leading.
    fn tick(&mut self) {
        todo!("tick: elections and heartbeats")
    }

    /// Everything gathered since the last call: messages to send, and committed commands
    /// and snapshots for the state machine, in order.
    fn take_effects(&mut self) -> Effects {
        todo!("take_effects: hand over messages and applied commands")
    }
}
