//! The Raft lab suite rejects broken implementations: each mutant below wraps the reference
//! peer with one deliberate bug, and the scenarios that target that bug must fail on it.

use labrpc_sim::Persister;
use shardkv_tests::raft_lab::{
    agreement_faults, churn, persistence, power, snapshot, ApplyMsg, Effects, Index, Peer, RaftLab,
    ReplicaLab, Term,
};
use shardkv_tests::scenario::{run_one, Outcome, Scenario};

/// What a mutant does wrong.
trait Bug: 'static {
    /// Whether `make` hands the peer a fresh persister, forgetting everything on restart.
    const AMNESIA: bool = false;
    /// Whether `snapshot` is ignored, so the log is never compacted.
    const NO_COMPACTION: bool = false;
    /// Which peers report their syncs done as soon as they are asked, before the sync
    /// runs (the job still runs at its completion): `Some(true)` leaders, `Some(false)`
    /// followers.
    const EARLY_SYNC_REPORT: Option<bool> = None;
    /// Whether the sync completion a peer was waiting for when it went down is still
    /// reported to it after its restart (a driver that does not cancel completions with
    /// the incarnation): the restarted peer takes it for its own newest sync.
    const STALE_COMPLETION: bool = false;
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
    /// With [`Bug::STALE_COMPLETION`]: the Ready number of the sync the previous
    /// incarnation left pending, not yet reported.
    stale: Option<u64>,
    _bug: std::marker::PhantomData<B>,
}

thread_local! {
    /// With [`Bug::STALE_COMPLETION`]: per peer, the Ready number of the newest sync still
    /// pending when its incarnation ended (the host is dropped on a crash or power failure).
    static PENDING_AT_CRASH: std::cell::RefCell<std::collections::BTreeMap<Peer, u64>> =
        Default::default();
}

impl<B: Bug> Drop for Mutant<B> {
    fn drop(&mut self) {
        if B::STALE_COMPLETION {
            if let Some(number) = self.inner.io().newest_pending() {
                PENDING_AT_CRASH.with(|pending| pending.borrow_mut().insert(self.me, number));
            }
        }
    }
}

impl<B: Bug> Mutant<B> {
    /// With [`Bug::EARLY_SYNC_REPORT`], reports the newest sync asked as done at once when
    /// this peer's role matches.
    fn after_event(&mut self) {
        // The old completion arrives while the new incarnation waits for a sync.
        let waiting = self.inner.io().newest_pending().is_some();
        if let Some(number) = self.stale.filter(|_| waiting) {
            self.inner
                .with_replica(|replica, _| replica.on_synced(number));
            self.stale = None;
        }
        let Some(leaders) = B::EARLY_SYNC_REPORT else {
            return;
        };
        self.inner.with_replica(|replica, io| {
            if replica.is_leader() == leaders {
                if let Some(number) = io.newest_pending() {
                    replica.on_synced(number);
                }
            }
        });
    }
}

impl<B: Bug> RaftLab for Mutant<B> {
    fn make(me: Peer, n: usize, persister: Persister) -> Self {
        let persister = if B::AMNESIA {
            Persister::new()
        } else {
            persister
        };
        let stale = if B::STALE_COMPLETION {
            PENDING_AT_CRASH.with(|pending| pending.borrow_mut().remove(&me))
        } else {
            None
        };
        Mutant {
            me,
            inner: ReplicaLab::make(me, n, persister),
            stale,
            _bug: std::marker::PhantomData,
        }
    }
    fn start(&mut self, command: Vec<u8>) -> Option<(Index, Term)> {
        let started = self.inner.start(command);
        self.after_event();
        started
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
        self.inner.step(from, message);
        self.after_event();
    }
    fn tick(&mut self) {
        self.inner.tick();
        self.after_event();
    }
    fn raft_state_size(&self, persister: &Persister) -> usize {
        self.inner.raft_state_size(persister)
    }
    fn wake(&mut self, token: u64) {
        self.inner.wake(token);
        self.after_event();
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

struct FollowerAcksEarly;
impl Bug for FollowerAcksEarly {
    const EARLY_SYNC_REPORT: Option<bool> = Some(false);
}

struct LeaderCountsUnsynced;
impl Bug for LeaderCountsUnsynced {
    const EARLY_SYNC_REPORT: Option<bool> = Some(true);
}

struct StaleCompletion;
impl Bug for StaleCompletion {
    const STALE_COMPLETION: bool = true;
}

/// How many seeds the finder below tries per mutant and scenario.
const SEEDS: u64 = 200;

/// Fails unless `scenario` fails (or panics) on `seed`; the seeds were found by running
/// the mutant over seeds 1..=[`SEEDS`] (`shardkv grade` finds such seeds too).
fn assert_fails_on(name: &str, scenario: fn(u64) -> Outcome, seed: u64, expected: &str) {
    assert_fails(name, run_power(scenario, seed), expected);
}

/// Runs a power-failure scenario on `seed` from a clean slate (no stale completion left
/// by an earlier run on this thread).
fn run_power(scenario: fn(u64) -> Outcome, seed: u64) -> Outcome {
    PENDING_AT_CRASH.with(|pending| pending.borrow_mut().clear());
    run_one(&power_scenario(scenario), seed)
}

/// A power-failure scenario run on a mutant, as `run_one` takes it (panics become
/// failures).
fn power_scenario(run: fn(u64) -> Outcome) -> Scenario {
    Scenario {
        name: "mutant",
        part: "raft-persistence",
        run,
    }
}

/// A follower that acknowledges entries before its sync completes: after a power failure
/// it has lost entries the leader counted as replicated (it then refuses the leader's
/// heartbeat committing past its log, or a committed entry goes missing).
#[test]
fn a_follower_that_acks_before_its_sync_is_caught() {
    assert_fails_on(
        "power_fail_one",
        power::power_fail_one::<Mutant<FollowerAcksEarly>>,
        5,
        "past the last index",
    );
    assert_fails_on(
        "power_fail_all",
        power::power_fail_all::<Mutant<FollowerAcksEarly>>,
        15,
        "apply error",
    );
    assert_fails_on(
        "power_fail_after_ack",
        power::power_fail_after_ack::<Mutant<FollowerAcksEarly>>,
        1,
        "apply error",
    );
}

/// A leader that counts its own unsynced entries toward a commit: a power failure of the
/// whole group can lose an entry already applied.
#[test]
fn a_leader_that_counts_its_unsynced_entries_is_caught() {
    assert_fails_on(
        "power_fail_all",
        power::power_fail_all::<Mutant<LeaderCountsUnsynced>>,
        7,
        "apply error",
    );
}

/// A restarted peer that takes the completion of a sync its previous incarnation asked
/// for as its own: it acknowledges entries that are not yet durable, and losing power
/// again right after loses an entry the leader committed on that acknowledgement.
#[test]
fn a_completion_from_before_a_restart_is_caught() {
    assert_fails_on(
        "power_fail_after_ack",
        power::power_fail_after_ack::<Mutant<StaleCompletion>>,
        3,
        "apply error",
    );
}

/// Prints, per durability mutant and power-failure scenario, the first seed in 1..=[`SEEDS`] it
/// fails on: how the seeds above were found (run with `--ignored --nocapture` after a
/// change that moves the runs).
#[test]
#[ignore]
fn find_durability_mutant_seeds() {
    type Run = fn(u64) -> Outcome;
    let scenarios: [(&str, Run); 11] = [
        (
            "follower power_fail_one",
            power::power_fail_one::<Mutant<FollowerAcksEarly>>,
        ),
        (
            "follower power_fail_all",
            power::power_fail_all::<Mutant<FollowerAcksEarly>>,
        ),
        (
            "follower figure8_power",
            power::figure8_power::<Mutant<FollowerAcksEarly>>,
        ),
        (
            "leader power_fail_one",
            power::power_fail_one::<Mutant<LeaderCountsUnsynced>>,
        ),
        (
            "leader power_fail_all",
            power::power_fail_all::<Mutant<LeaderCountsUnsynced>>,
        ),
        (
            "leader figure8_power",
            power::figure8_power::<Mutant<LeaderCountsUnsynced>>,
        ),
        (
            "follower power_fail_after_ack",
            power::power_fail_after_ack::<Mutant<FollowerAcksEarly>>,
        ),
        (
            "stale power_fail_after_ack",
            power::power_fail_after_ack::<Mutant<StaleCompletion>>,
        ),
        (
            "stale power_fail_one",
            power::power_fail_one::<Mutant<StaleCompletion>>,
        ),
        (
            "stale power_fail_all",
            power::power_fail_all::<Mutant<StaleCompletion>>,
        ),
        (
            "stale figure8_power",
            power::figure8_power::<Mutant<StaleCompletion>>,
        ),
    ];
    let mut caught = Vec::new();
    for (name, run) in scenarios {
        let found = (1..=SEEDS).find_map(|seed| {
            let result = run_power(run, seed).result;
            result.err().map(|error| (seed, error))
        });
        println!("{name}: {found:?}");
        if found.is_some() {
            caught.extend(name.split_whitespace().next());
        }
    }
    for mutant in ["follower", "leader", "stale"] {
        assert!(
            caught.contains(&mutant),
            "no scenario catches the {mutant} mutant"
        );
    }
}
