//! The kv lab suite (part `kv`): 6.824's sharded key/value tests as seeded simulations,
//! run against any implementation of the lab interface [`KvLab`], with every client
//! operation checked for linearizability.
//!
//! ```text
//!   scenario fn(seed) --drives--> KvCluster: 3 masters + groups 100, 101, 102 (3 replicas)
//!      |                            join/leave, shutdown/start group or server, partitions
//!      | KvClerk = real Client, each op recorded in a linearizability History
//!      +--> SimTransport --> Sim --events--> KvHost<L> --> L: KvLab (reference: GroupLab =
//!                                                 |         replica_group::Server)
//!                                                 '--calls--> MasterHost<ServerLab>, KvHost
//!   checks on every run: linearizable history (HTML timeline on failure), no acknowledged
//!   append lost or doubled, one owner per shard per configuration
//! ```
//!
//! Scenarios, with their 6.824 counterparts (`shardkv/test_test.go`):
//!
//! | scenario | 6.824 |
//! | --- | --- |
//! | `static_shards` | TestStaticShards |
//! | `rejection` | TestStaticShards' "exactly the other groups' keys", per replica |
//! | `join_leave` | TestJoinLeave |
//! | `snapshot` | TestSnapshot |
//! | `miss_change` | TestMissChange |
//! | `concurrent1` / `2` / `3` | TestConcurrent1 / 2 / 3 |
//! | `unreliable1` / `2` / `3` | TestUnreliable1 / 2 / 3 |
//! | `challenge1_delete` | TestChallenge1Delete |
//! | `challenge1_concurrent` | TestChallenge1Concurrent |
//! | `challenge2_unaffected` / `_partial` | TestChallenge2Unaffected / Partial |
//! | `partition_in_group`, `master_majority_down`, `all_groups_crash` | ours |
//! | `power_fail_*` | ours |
//! | `abandon_dead_group` | ours |
//! | `session_expires_while_cut_off`, `stray_duplicate_after_expiry`, `sessions_across_moves` | ours |
//!
//! Adaptations: 6.824's wall-clock waits become virtual-time waits, shortened where a
//! scenario only waits for migrations ([`KvCluster::settle`] waits for them exactly);
//! keys route by FNV-1a, so "the key of shard s" is searched for rather than `"s"`;
//! groups down at a scenario's end are restarted before the final reads.
//!
//! Grading another implementation: implement [`KvLab`] and run
//! [`lab_scenarios::<YourServer>()`](lab_scenarios) through [`crate::scenario::run_seeds`].

pub mod abandon;
pub mod agreement;
pub mod challenge;
pub mod checks;
pub mod clerk;
pub mod cluster;
pub mod concurrent;
pub mod host;
pub mod join_leave;
pub mod lab;
pub mod ours;
pub mod ownership;
pub mod power;
pub mod reference;
pub mod sessions;
pub mod settle;
pub mod statics;
pub mod unreliable;
pub mod workload;

pub use clerk::KvClerk;
pub use cluster::KvCluster;
pub use lab::{CallId, KvEffect, KvLab, KvStart};
pub use reference::GroupLab;

use crate::scenario::Scenario;

/// The part name of the kv lab.
pub const PART: &str = "kv";

macro_rules! scenarios {
    ($lab:ty; $($module:ident::$name:ident),* $(,)?) => {
        vec![$(Scenario { name: stringify!($name), part: PART, run: $module::$name::<$lab> },)*]
    };
}

/// Every kv scenario, for implementation `L`.
pub fn lab_scenarios<L: KvLab>() -> Vec<Scenario> {
    scenarios![L;
        statics::static_shards, statics::rejection, join_leave::join_leave, join_leave::snapshot,
        join_leave::miss_change, concurrent::concurrent1, concurrent::concurrent2,
        concurrent::concurrent3, unreliable::unreliable1, unreliable::unreliable2,
        unreliable::unreliable3, challenge::challenge1_delete, challenge::challenge1_concurrent,
        challenge::challenge2_unaffected, challenge::challenge2_partial,
        ours::partition_in_group, ours::master_majority_down, ours::all_groups_crash,
        power::power_fail_one_replica, power::power_fail_minority, power::power_fail_whole_group,
        power::power_fail_during_migration, power::power_fail_during_catch_up,
        abandon::abandon_dead_group, sessions::session_expires_while_cut_off,
        sessions::stray_duplicate_after_expiry, sessions::sessions_across_moves,
    ]
}

/// Every kv scenario, run against the reference implementation [`GroupLab`].
pub fn scenarios() -> Vec<Scenario> {
    lab_scenarios::<GroupLab>()
}
