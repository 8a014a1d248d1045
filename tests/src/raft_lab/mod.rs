//! The Raft lab suite: 6.824's Raft tests (2A-2D) as seeded simulations, run against any
//! implementation of the lab interface [`RaftLab`].
//!
//! ```text
//!   scenario fn(seed) ---drives---> Cluster (6.824 config.go)
//!                                     |  connect/disconnect/crash1/start1, one(), wait()
//!                                     v
//!   labrpc_sim::Sim --events--> LabHost<L> --step/tick--> L: RaftLab (student or ReplicaLab)
//!         ^                         |  <--take_effects--
//!         +------ messages ---------+--- applied ---> Checker (one value per index, order, gaps)
//! ```
//!
//! Timing. Peers tick every 50 ms of virtual time (jittered by up to half); the reference
//! peer heartbeats every 2 ticks and calls an election after 10, so the suite keeps 6.824's
//! constants: a new leader is expected within `ELECTION_TIMEOUT` (1 s), `one` waits up to
//! 10 s. Where 6.824 bounds RPCs we bound one-way messages (a request and its reply are
//! two), at about twice 6.824's numbers; see `agreement_faults.rs`. Snapshot scenarios
//! bound each persister's raft state at 6.824's 2000 bytes (see `snapshot.rs`).
//!
//! Sizes. Every loop runs as many times as in 6.824 (Figure 8: 1000 iterations): the
//! simulator is fast enough that the whole suite over three seeds takes a few seconds in
//! a debug build, and over 50 seeds under a minute.
//!
//! Adaptations to the sans-IO world, each explained where it is made: indices are checked
//! relative to the first command (a raft-rs leader commits an empty entry first); a
//! restarted peer hands its snapshot to the harness instead of the harness reading the
//! persister; Figure 8 unreliable ends long reordering when it heals the network.
//!
//! Grading another implementation: implement [`RaftLab`] (and, optionally,
//! [`RaftLabMembership`]) and run [`lab_scenarios::<YourPeer>()`](lab_scenarios) through
//! [`crate::scenario::run_seeds`].

pub mod agreement;
pub mod agreement_faults;
pub mod checker;
pub mod checks;
pub mod churn;
pub mod cluster;
pub mod election;
pub mod host;
pub mod lab;
pub mod membership;
pub mod persistence;
pub mod power;
pub mod reference;
pub mod snapshot;
pub mod unreliable;

pub use cluster::{command, Cluster, ClusterOptions};
pub use lab::{ApplyMsg, Effects, Index, Peer, RaftLab, RaftLabMembership, Term};
pub use reference::ReplicaLab;

use crate::scenario::Scenario;

/// Part names of the Raft lab.
pub const PARTS: [&str; 4] = [
    "raft-election",
    "raft-agreement",
    "raft-persistence",
    "raft-snapshot",
];

macro_rules! scenarios {
    ($lab:ty; $($part:literal => [$($module:ident::$name:ident),* $(,)?]),* $(,)?) => {
        vec![$($(Scenario { name: stringify!($name), part: $part, run: $module::$name::<$lab> },)*)*]
    };
}

/// Every scenario of the lab interface, for implementation `L`.
pub fn lab_scenarios<L: RaftLab>() -> Vec<Scenario> {
    scenarios![L;
        "raft-election" => [election::initial_election, election::re_election, election::many_elections],
        "raft-agreement" => [
            agreement::basic_agree, agreement::rpc_bytes, agreement::follower_failure,
            agreement::leader_failure, agreement::fail_agree, agreement::fail_no_agree,
            agreement_faults::concurrent_starts, agreement_faults::rejoin, agreement_faults::backup,
            agreement_faults::rpc_count,
        ],
        "raft-persistence" => [
            persistence::persist1, persistence::persist2, persistence::persist3, persistence::figure8,
            unreliable::unreliable_agree, unreliable::figure8_unreliable, churn::reliable_churn,
            churn::unreliable_churn, power::power_fail_one, power::figure8_power,
            power::power_fail_all, power::power_fail_after_ack,
        ],
        "raft-snapshot" => [
            snapshot::snapshot_basic, snapshot::snapshot_install, snapshot::snapshot_install_unreliable,
            snapshot::snapshot_install_crash, snapshot::snapshot_install_unreliable_crash,
            snapshot::snapshot_all_crash, snapshot::snapshot_init,
        ],
    ]
}

/// The scenarios that also need [`RaftLabMembership`], for implementation `L`.
pub fn membership_scenarios<L: RaftLabMembership>() -> Vec<Scenario> {
    scenarios![L; "raft-agreement" => [membership::membership_churn]]
}

/// Every Raft scenario, run against the reference implementation [`ReplicaLab`].
pub fn raft_scenarios() -> Vec<Scenario> {
    let mut all = lab_scenarios::<ReplicaLab>();
    all.extend(membership_scenarios::<ReplicaLab>());
    all
}
