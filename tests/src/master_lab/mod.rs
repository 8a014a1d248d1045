//! The master lab suite (part `master`): 6.824's shard controller tests as seeded
//! simulations, run against any implementation of the lab interface [`MasterLab`].
//!
//! ```text
//!   scenario fn(seed) --drives--> Cluster (3 replicas; shutdown/start/partition/unreliable)
//!        |                           |
//!        | Clerk = real Admin        v
//!        +--> SimTransport --> labrpc_sim::Sim --events--> MasterHost<L> --> L: MasterLab
//!                                                                 (reference: ServerLab =
//!                                                                  shardmaster::Server)
//!   checks: exact members/servers, balance, exactly-minimal transfers, same history on
//!           every replica, typed errors for bad requests
//! ```
//!
//! Scenarios, with their 6.824 counterparts (`shardctrler/test_test.go`):
//!
//! | scenario | 6.824 |
//! | --- | --- |
//! | `basic_join_leave` | Basic leave/join |
//! | `historical_queries` | Historical queries |
//! | `move_shards` | Move |
//! | `concurrent_join_leave` | Concurrent leave/join |
//! | `minimal_transfers_after_joins` / `_after_leaves` | Minimal transfers after joins / leaves |
//! | `minimal_movement_again` | minimal movement again (2024) |
//! | `multi_join_leave` | Multi-group join/leave |
//! | `concurrent_multi_join_leave` | Concurrent multi leave/join |
//! | `minimal_transfers_multi` | Minimal transfers after multijoins / multileaves |
//! | `same_config_after_leader_shutdown` | Check Same config on servers |
//! | `minimal_transfers_random`, `unreliable_*`, `partition_*`, `bad_requests` | ours |
//!
//! Where 6.824 runs its tests one after another on one cluster, each scenario here builds
//! its own cluster and first replays the flows its 6.824 counterpart depends on (the
//! minimal-transfer tests start from the concurrent flow's state, for instance). 6.824's
//! minimal-transfer checks look at gids its scenario never uses and so cannot fail; ours
//! count moved shards against an independently computed minimum ([`checks`]).
//!
//! Timing: replicas tick every ~50 ms of virtual time; clerks use the client library's
//! default policy (1 s per RPC, retry until answered) except where a scenario expects no
//! answer (a clerk cut off with a minority gives up after 3 s).
//!
//! Grading another implementation: implement [`MasterLab`] and run
//! [`lab_scenarios::<YourServer>()`](lab_scenarios) through [`crate::scenario::run_seeds`].

pub mod bad_requests;
pub mod basic;
pub mod checks;
pub mod churn;
pub mod clerk;
pub mod cluster;
pub mod concurrent;
pub mod faults;
pub mod host;
pub mod lab;
pub mod minimal;
pub mod multi;
pub mod reference;

pub use clerk::Clerk;
pub use cluster::Cluster;
pub use lab::{MasterEffect, MasterLab, Peer, ReqId};
pub use reference::ServerLab;

use crate::scenario::Scenario;

/// The part name of the master lab.
pub const PART: &str = "master";

macro_rules! scenarios {
    ($lab:ty; $($module:ident::$name:ident),* $(,)?) => {
        vec![$(Scenario { name: stringify!($name), part: PART, run: $module::$name::<$lab> },)*]
    };
}

/// Every master scenario, for implementation `L`.
pub fn lab_scenarios<L: MasterLab>() -> Vec<Scenario> {
    scenarios![L;
        basic::basic_join_leave, basic::historical_queries, basic::move_shards,
        concurrent::concurrent_join_leave, minimal::minimal_transfers_after_joins,
        minimal::minimal_transfers_after_leaves, minimal::minimal_movement_again,
        multi::multi_join_leave, concurrent::concurrent_multi_join_leave,
        minimal::minimal_transfers_multi, multi::same_config_after_leader_shutdown,
        minimal::minimal_transfers_random, faults::unreliable_basic, faults::unreliable_multi,
        faults::partition_minority, faults::partition_no_majority, churn::unreliable_restarts,
        bad_requests::bad_requests,
    ]
}

/// Every master scenario, run against the reference implementation [`ServerLab`].
pub fn scenarios() -> Vec<Scenario> {
    lab_scenarios::<ServerLab>()
}
