//! The kv lab suite: every scenario of `shardkv_tests::kv_lab` over the seeds of the
//! environment (default 1..=3; `SHARDKV_SEED=S` or `SHARDKV_SEEDS=N`), against the
//! reference implementation, plus a determinism check and mutants the checkers catch.

use std::collections::BTreeMap;

use shardkv_proto::kv::{KvError, MigrationRequest, Op, Reply, Request};
use shardkv_proto::{ConfigNum, ShardId};
use shardkv_tests::kv_lab::PART;
use shardkv_tests::kv_lab::{
    lab_scenarios, scenarios, statics, unreliable, CallId, GroupLab, KvEffect, KvLab, KvStart,
};
use shardkv_tests::master_lab::{Peer, ReqId};
use shardkv_tests::scenario::{check, find, run_one, Scenario};

macro_rules! scenario_tests {
    ($($name:ident),* $(,)?) => {
        $(
            /// Runs the scenario of this name over the environment's seeds.
            #[test]
            fn $name() {
                check(&find(&scenarios(), stringify!($name)));
            }
        )*

        /// Every registered scenario has a test above.
        #[test]
        fn every_scenario_has_a_test() {
            let tested = [$(stringify!($name)),*];
            for scenario in scenarios() {
                assert!(tested.contains(&scenario.name), "scenario {} has no test", scenario.name);
            }
        }
    };
}

scenario_tests!(
    static_shards,
    rejection,
    join_leave,
    snapshot,
    miss_change,
    concurrent1,
    concurrent2,
    concurrent3,
    unreliable1,
    unreliable2,
    unreliable3,
    challenge1_delete,
    challenge1_concurrent,
    challenge2_unaffected,
    challenge2_partial,
    partition_in_group,
    master_majority_down,
    all_groups_crash,
    power_fail_one_replica,
    power_fail_minority,
    power_fail_whole_group,
    power_fail_during_migration,
    power_fail_during_catch_up,
    abandon_dead_group,
    session_expires_while_cut_off,
    stray_duplicate_after_expiry,
    sessions_across_moves,
);

/// Same seed, same run: two runs of an unreliable scenario with one seed have equal
/// trace digests, and another seed gives a different one.
#[test]
fn determinism() {
    let first = unreliable::unreliable3::<GroupLab>(7);
    let second = unreliable::unreliable3::<GroupLab>(7);
    let other = unreliable::unreliable3::<GroupLab>(8);
    assert_eq!(first.result, Ok(()), "seed 7 failed");
    assert_eq!(first, second, "seed 7 ran differently twice");
    assert_ne!(first.digest, other.digest, "seeds 7 and 8 ran identically");
}

/// A follower copying another replica's state whose log catches up meanwhile (it
/// applied through the copy's point before the last chunk came) drops the copy: seed 143
/// of `unreliable3` switched such a follower back two entries, and the check that
/// replicas agree caught it.
#[test]
fn a_copy_the_log_overtook_is_dropped() {
    let outcome = unreliable::unreliable3::<GroupLab>(143);
    assert_eq!(outcome.result, Ok(()));
}

/// A broken replica group: the reference, with `MUTATION` applied. 1: it answers for
/// shards it does not serve, from an empty store (a Get of any such key reads absent,
/// a write is acknowledged and dropped). 2: it forgets who sent each request (every
/// request gets a fresh client id), so a retried append is applied twice.
struct Mutant<const MUTATION: u8> {
    inner: GroupLab,
    gets: BTreeMap<ReqId, bool>,
}

impl<const MUTATION: u8> KvLab for Mutant<MUTATION> {
    fn make(start: KvStart) -> Self {
        let inner = GroupLab::make(start);
        Mutant {
            inner,
            gets: BTreeMap::new(),
        }
    }
    fn on_peer_message(&mut self, from: Peer, bytes: Vec<u8>) {
        self.inner.on_peer_message(from, bytes)
    }
    fn on_request(&mut self, req_id: ReqId, mut request: Request) {
        self.gets
            .insert(req_id, matches!(request.op, Op::Get { .. }));
        if MUTATION == 2 {
            request.client = request.client.rotate_left(17) ^ req_id;
        }
        self.inner.on_request(req_id, request)
    }
    fn on_migration_request(&mut self, req_id: ReqId, request: MigrationRequest) {
        self.inner.on_migration_request(req_id, request)
    }
    fn on_response(&mut self, call_id: CallId, reply: Option<Vec<u8>>) {
        self.inner.on_response(call_id, reply)
    }
    fn on_tick(&mut self) {
        self.inner.on_tick()
    }
    fn on_wake(&mut self, token: u64) {
        self.inner.on_wake(token)
    }
    fn take_effects(&mut self) -> Vec<KvEffect> {
        let mut effects = self.inner.take_effects();
        for effect in &mut effects {
            if let KvEffect::Reply {
                req_id, response, ..
            } = effect
            {
                let get = self.gets.remove(req_id).unwrap_or(false);
                if MUTATION == 1 && *response == Err(KvError::WrongGroup) {
                    *response = Ok(if get { Reply::Value(None) } else { Reply::Done });
                }
            }
        }
        effects
    }
    fn is_leader(&self) -> bool {
        self.inner.is_leader()
    }
    fn serving(&self) -> (ConfigNum, Vec<ShardId>) {
        self.inner.serving()
    }
    fn persisted_bytes(&self, persister: &labrpc_sim::Persister) -> usize {
        self.inner.persisted_bytes(persister)
    }
}

/// The checkers have teeth: a group answering for shards it does not own fails the
/// rejection probe and the linearizability check (with an HTML timeline), and one that
/// drops duplicate detection fails the unreliable scenarios' checks.
#[test]
fn mutants_are_caught() {
    let cases = [
        (
            "rejection",
            statics::rejection::<Mutant<1>> as fn(u64) -> _,
            "answered Ok",
        ),
        (
            "join_leave",
            shardkv_tests::kv_lab::join_leave::join_leave::<Mutant<1>>,
            "not linearizable",
        ),
        ("unreliable2", unreliable::unreliable2::<Mutant<2>>, ""),
        (
            "unreliable3",
            unreliable::unreliable3::<Mutant<2>>,
            "not linearizable",
        ),
    ];
    for (name, run, expected) in cases {
        let scenario = Scenario {
            name,
            part: PART,
            run,
        };
        let outcome = run_one(&scenario, 1);
        let message = outcome.result.expect_err(&format!("mutant passed {name}"));
        eprintln!("{name}: {message}\n");
        assert!(
            message.contains(expected),
            "{name} failed for another reason: {message}"
        );
        if expected == "not linearizable" {
            assert!(
                message.contains(".html"),
                "{name}: no timeline in {message}"
            );
        }
    }
    assert_eq!(lab_scenarios::<Mutant<0>>().len(), scenarios().len());
}
