//! The Raft lab suite rejects broken implementations: each mutant below wraps the reference
//! peer with one deliberate bug, and the scenarios that target that bug must fail on it.

use labrpc_sim::Persister;
use shardkv_tests::raft_lab::{
    agreement_faults, churn, persistence, snapshot, ApplyMsg, Effects, Index, Peer, RaftLab,
    ReplicaLab, Term,
};
use shardkv_tests::scenario::Outcome;

/// What a mutant does wrong.
trait Bug: 'static {
    /// Whether `make` hands the peer a fresh persister, forgetting everything on restart.
    const AMNESIA: bool = false;
    /// Whether `snapshot` is ignored, so the log is never compacted.
    const NO_COMPACTION: bool = false;
    /// Rewrite what peer `me` applies (drop it with `None`).
    fn applied(me: Peer, msg: ApplyMsg) -> Option<ApplyMsg> {
        let _ = me;
        Some(msg)
    }
}

/// The reference peer with bug `B`.
struct Mutant<B: Bug> {
    me: Peer,
    inner: ReplicaLab,
    _bug: std::marker::PhantomData<B>,
}

impl<B: Bug> RaftLab for Mutant<B> {
    fn make(me: Peer, n: usize, persister: Persister) -> Self {
        let persister = if B::AMNESIA {
            Persister::new()
        } else {
            persister
        };
        Mutant {
            me,
            inner: ReplicaLab::make(me, n, persister),
            _bug: std::marker::PhantomData,
        }
    }
    fn start(&mut self, command: Vec<u8>) -> Option<(Index, Term)> {
        self.inner.start(command)
    }
    fn get_state(&self) -> (Term, bool) {
        self.inner.get_state()
    }
    fn snapshot(&mut self, index: Index, snapshot: Vec<u8>) {
        if !B::NO_COMPACTION {
            self.inner.snapshot(index, snapshot)
        }
    }
    fn step(&mut self, from: Peer, message: Vec<u8>) {
        self.inner.step(from, message)
    }
    fn tick(&mut self) {
        self.inner.tick()
    }
    fn raft_state_size(&self, persister: &Persister) -> usize {
        self.inner.raft_state_size(persister)
    }
    fn wake(&mut self, token: u64) {
        self.inner.wake(token)
    }
    fn take_effects(&mut self) -> Effects {
        let mut effects = self.inner.take_effects();
        let me = self.me;
        effects.applied = effects
            .applied
            .into_iter()
            .filter_map(|m| B::applied(me, m))
            .collect();
        effects
    }
}

fn assert_fails(name: &str, outcome: Outcome, expected: &str) {
    match outcome.result {
        Ok(()) => panic!("{name} passed a broken implementation"),
        Err(message) => assert!(
            message.contains(expected),
            "{name} failed for another reason: {message}"
        ),
    }
}

struct Amnesia;
impl Bug for Amnesia {
    const AMNESIA: bool = true;
}

/// Forgetting the log and vote on restart loses committed entries. (Figure 8 alone rarely
/// catches it: it crashes only leaders, so a majority seldom forgets at once.)
#[test]
fn amnesia_is_caught() {
    assert_fails("persist1", persistence::persist1::<Mutant<Amnesia>>(1), "");
    assert_fails("persist3", persistence::persist3::<Mutant<Amnesia>>(1), "");
    assert_fails(
        "snapshot_all_crash",
        snapshot::snapshot_all_crash::<Mutant<Amnesia>>(1),
        "",
    );
}

struct SkipsApplies;
impl Bug for SkipsApplies {
    fn applied(me: Peer, msg: ApplyMsg) -> Option<ApplyMsg> {
        match msg {
            ApplyMsg::Command { index, .. } if me == 1 && index % 7 == 0 => None,
            msg => Some(msg),
        }
    }
}

/// A peer that skips a committed command is caught by the checker.
#[test]
fn skipped_apply_is_caught() {
    assert_fails(
        "backup",
        agreement_faults::backup::<Mutant<SkipsApplies>>(1),
        "skipped index",
    );
}

struct CorruptsValues;
impl Bug for CorruptsValues {
    fn applied(me: Peer, msg: ApplyMsg) -> Option<ApplyMsg> {
        match msg {
            ApplyMsg::Command { index, .. } if me == 2 && index == 20 => Some(ApplyMsg::Command {
                index,
                command: b"corrupt".to_vec(),
            }),
            msg => Some(msg),
        }
    }
}

/// Two peers applying different commands at one index are caught.
#[test]
fn divergent_values_are_caught() {
    assert_fails(
        "reliable_churn",
        churn::reliable_churn::<Mutant<CorruptsValues>>(1),
        "commit index=20",
    );
}

struct NoCompaction;
impl Bug for NoCompaction {
    const NO_COMPACTION: bool = true;
}

/// A peer that never compacts its log breaks the log size bound.
#[test]
fn missing_compaction_is_caught() {
    assert_fails(
        "snapshot_basic",
        snapshot::snapshot_basic::<Mutant<NoCompaction>>(1),
        "log size too large",
    );
}
