//! The master lab suite: every scenario of `shardkv_tests::master_lab` over the seeds of the
//! environment (default 1..=3; `SHARDKV_SEED=S` or `SHARDKV_SEEDS=N`), against the reference
//! implementation, plus a determinism check.

use labrpc_sim::Persister;
use shardkv_proto::{Config, ConfigNum, MasterError, Request};
use shardkv_tests::master_lab::{
    bad_requests, faults, lab_scenarios, minimal, scenarios, MasterEffect, MasterLab, Peer, ReqId,
    ServerLab, PART,
};
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
    basic_join_leave,
    historical_queries,
    move_shards,
    concurrent_join_leave,
    minimal_transfers_after_joins,
    minimal_transfers_after_leaves,
    minimal_movement_again,
    multi_join_leave,
    concurrent_multi_join_leave,
    minimal_transfers_multi,
    same_config_after_leader_shutdown,
    minimal_transfers_random,
    unreliable_basic,
    unreliable_multi,
    partition_minority,
    partition_no_majority,
    unreliable_restarts,
    bad_requests,
);

/// Same seed, same run: two runs of an unreliable scenario with one seed have equal trace
/// digests, and another seed gives a different one.
#[test]
fn determinism() {
    let first = faults::unreliable_basic::<ServerLab>(7);
    let second = faults::unreliable_basic::<ServerLab>(7);
    let other = faults::unreliable_basic::<ServerLab>(8);
    assert_eq!(first.result, Ok(()), "seed 7 failed");
    assert_eq!(first, second, "seed 7 ran differently twice");
    assert_ne!(first.digest, other.digest, "seeds 7 and 8 ran identically");
}

/// A broken shard master: the reference, with its answers altered by `MUTATION` (1:
/// shards of odd-numbered configurations reversed; 2: every refusal reported as
/// `EmptyJoin`).
struct Mutant<const MUTATION: u8>(ServerLab);

impl<const MUTATION: u8> Mutant<MUTATION> {
    fn alter(config: &mut Config) {
        if MUTATION == 1 && config.num % 2 == 1 {
            config.shards.reverse();
        }
    }
}

impl<const MUTATION: u8> MasterLab for Mutant<MUTATION> {
    fn make(me: Peer, peers: &[Peer], persister: Persister) -> Self {
        Mutant(ServerLab::make(me, peers, persister))
    }
    fn on_peer_message(&mut self, from: Peer, bytes: Vec<u8>) {
        self.0.on_peer_message(from, bytes)
    }
    fn on_request(&mut self, req_id: ReqId, request: Request) {
        self.0.on_request(req_id, request)
    }
    fn on_tick(&mut self) {
        self.0.on_tick()
    }
    fn take_effects(&mut self) -> Vec<MasterEffect> {
        let mut effects = self.0.take_effects();
        for effect in &mut effects {
            match effect {
                MasterEffect::Reply {
                    response: Ok(config),
                    ..
                } => Self::alter(config),
                MasterEffect::Reply {
                    response: Err(error),
                    ..
                } if MUTATION == 2 && !error.is_retryable() => *error = MasterError::EmptyJoin,
                _ => {}
            }
        }
        effects
    }
    fn is_leader(&self) -> bool {
        self.0.is_leader()
    }
    fn applied_config(&self, num: Option<ConfigNum>) -> Config {
        let mut config = self.0.applied_config(num);
        Self::alter(&mut config);
        config
    }
}

/// The checkers have teeth: a master whose answers move shards needlessly fails the
/// minimal-transfer scenarios, and one whose errors are not the typed ones fails
/// `bad_requests`.
#[test]
fn mutants_are_caught() {
    let cases = [
        Scenario {
            name: "minimal_movement_again",
            part: PART,
            run: minimal::minimal_movement_again::<Mutant<1>>,
        },
        Scenario {
            name: "minimal_transfers_random",
            part: PART,
            run: minimal::minimal_transfers_random::<Mutant<1>>,
        },
        Scenario {
            name: "bad_requests",
            part: PART,
            run: bad_requests::bad_requests::<Mutant<2>>,
        },
    ];
    for scenario in cases {
        let outcome = run_one(&scenario, 1);
        assert!(outcome.result.is_err(), "mutant passed {}", scenario.name);
    }
    assert_eq!(lab_scenarios::<Mutant<0>>().len(), scenarios().len());
}
