//! The Raft lab suite: every scenario of `shardkv_tests::raft_lab` over the seeds of the
//! environment (default 1..=3; `SHARDKV_SEED=S` or `SHARDKV_SEEDS=N`), against the reference
//! implementation, plus the determinism check of the simulator and harness.

use shardkv_tests::raft_lab::{churn, raft_scenarios, ReplicaLab};
use shardkv_tests::scenario::{check, find, run_one};

macro_rules! scenario_tests {
    ($($name:ident),* $(,)?) => {
        $(
            /// Runs the scenario of this name over the environment's seeds.
            #[test]
            fn $name() {
                check(&find(&raft_scenarios(), stringify!($name)));
            }
        )*

        /// Every registered scenario has a test above.
        #[test]
        fn every_scenario_has_a_test() {
            let tested = [$(stringify!($name)),*];
            for scenario in raft_scenarios() {
                assert!(tested.contains(&scenario.name), "scenario {} has no test", scenario.name);
            }
        }
    };
}

scenario_tests!(
    initial_election,
    re_election,
    many_elections,
    basic_agree,
    rpc_bytes,
    follower_failure,
    leader_failure,
    fail_agree,
    fail_no_agree,
    concurrent_starts,
    rejoin,
    backup,
    rpc_count,
    persist1,
    persist2,
    persist3,
    figure8,
    unreliable_agree,
    figure8_unreliable,
    reliable_churn,
    unreliable_churn,
    snapshot_basic,
    snapshot_install,
    snapshot_install_unreliable,
    snapshot_install_crash,
    snapshot_install_unreliable_crash,
    snapshot_all_crash,
    snapshot_init,
    membership_churn,
    power_fail_one,
    figure8_power,
    power_fail_all,
    power_fail_after_ack,
);

/// Same seed, same run: two runs of a churn scenario with one seed have equal trace
/// digests, and another seed gives a different one.
#[test]
fn determinism() {
    let first = churn::unreliable_churn::<ReplicaLab>(7);
    let second = churn::unreliable_churn::<ReplicaLab>(7);
    let other = churn::unreliable_churn::<ReplicaLab>(8);
    assert_eq!(first.result, Ok(()), "seed 7 failed");
    assert_eq!(first, second, "seed 7 ran differently twice");
    assert_ne!(first.digest, other.digest, "seeds 7 and 8 ran identically");
}

/// Every scenario replays exactly: two runs with one seed give equal outcomes and digests.
#[test]
fn every_scenario_replays() {
    for scenario in raft_scenarios() {
        let first = run_one(&scenario, 11);
        let second = run_one(&scenario, 11);
        assert_eq!(
            first, second,
            "scenario {} ran differently twice with seed 11",
            scenario.name
        );
    }
}
