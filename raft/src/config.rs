//! [`ReplicaConfig`]: the knobs of one replica, and how they map onto raft-rs's `Config`.
//!
//! [`ReplicaConfig::production`] is the one configuration real nodes and the lab suites'
//! reference replicas run; [`ReplicaConfig::new`] is the plain one unit tests start from.
//!
//! Election timing: raft-rs draws each election timeout from `[min_election_tick,
//! max_election_tick)` with an unseeded thread RNG, so raft-rs always gets the range
//! `[E, E + 1)`, a single value, and the spread of `election_ticks_spread` ticks is drawn
//! by the replica itself from `election_seed` (see `election.rs`): random on a real node,
//! a pure function of the seed in the simulator.

use crate::{Index, NodeId};

/// Configuration of one [`crate::Replica`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// This node's id (non-zero, unique in the group).
    pub id: NodeId,
    /// Initial voters, used only when the store is empty (first boot). Empty means the
    /// node joins an existing group and waits to be added by `change_membership`.
    pub peers: Vec<NodeId>,
    /// Ticks without hearing from a leader before campaigning (default 10); the actual
    /// timeout is drawn from `[E, E + election_ticks_spread)`.
    pub election_ticks: usize,
    /// Width of the range the election timeout is drawn from, `[E, E + spread)` (default
    /// 1: exactly `E`; see the module docs).
    pub election_ticks_spread: usize,
    /// Seeds the draws of the election timeout spread: the driver's entropy (the
    /// operating system's on a real node, the simulator's RNG in a simulated one).
    pub election_seed: u64,
    /// Ticks between leader heartbeats (default 2); must be below `election_ticks`.
    pub heartbeat_ticks: usize,
    /// The driver's tick period in milliseconds (default 50): a leader's entries carry a
    /// cluster time that moves by this much per tick it has led (see [`crate::Host`]).
    pub tick_ms: u64,
    /// Whether a leader tells its followers about a new commit index at once, with an
    /// extra append round (default true, raft-rs's default). When false, followers learn
    /// it from the next append or heartbeat: half the messages per write at low load, at
    /// the price of followers applying up to one heartbeat later. Safety is the same;
    /// only the leader serves reads.
    pub broadcast_commit: bool,
    /// `Replica::should_snapshot` turns true once `raft_state_bytes()` reaches this many
    /// bytes (6.824's maxraftstate). `None` never asks for a snapshot.
    pub snapshot_bytes_threshold: Option<u64>,
    /// When non-zero, `Replica::should_snapshot` also waits until the raft state reaches
    /// this multiple of the current snapshot's size (default 0: the threshold alone, as
    /// 6.824's maxraftstate). With a state much larger than the threshold, snapshotting
    /// every threshold bytes of log would write the whole state each time: a 30 MB
    /// state with an 8 MiB threshold writes about 4 snapshot bytes per log byte. With a
    /// multiple of 1 it is about one for a state of steady size (at most about two while
    /// the state grows, since the next snapshot holds what the log added), at the price
    /// of a log (on disk, in memory and replayed at restart) about the snapshot's size.
    pub snapshot_log_multiple: u64,
    /// Spreads a group's snapshots apart (default false). The replicas of a group apply
    /// the same log, so with one threshold they all snapshot at the same entry and a
    /// write arriving then waits for a majority that is busy encoding and writing
    /// snapshots. With this set, the voter at position `k` of `n` (by id) takes its
    /// first size-triggered snapshot (after opening, or after a snapshot all replicas
    /// took at one entry: `snapshot_now`, a leader's snapshot) only at `k / (2n)` more
    /// log than the threshold (and multiple) ask: in a group of three, at 1, 7/6 and
    /// 4/3 of it. Later ones come at the usual size, so the voters keep those offsets
    /// (apart from drift) and one replica at a time snapshots while a majority keeps
    /// its pace.
    pub snapshot_stagger: bool,
    /// Byte budget of the entries in one append message (default 1 MiB; one entry is
    /// always sent even if larger).
    pub max_size_per_msg: u64,
    /// Append messages in flight per follower before the leader waits (default 256).
    pub max_inflight_msgs: usize,
    /// Pre-vote phase, so a partitioned node rejoining does not depose the leader
    /// (default true).
    pub pre_vote: bool,
    /// A leader steps down when it has not heard from a quorum within an election
    /// timeout (default true). It also makes followers ignore votes while they have a
    /// live leader.
    pub check_quorum: bool,
}

impl ReplicaConfig {
    /// Defaults for node `id` bootstrapping with voters `peers` (empty: joiner).
    pub fn new(id: NodeId, peers: Vec<NodeId>) -> Self {
        Self {
            id,
            peers,
            election_ticks: 10,
            election_ticks_spread: 1,
            election_seed: 0,
            heartbeat_ticks: 2,
            tick_ms: 50,
            broadcast_commit: true,
            snapshot_bytes_threshold: None,
            snapshot_log_multiple: 0,
            snapshot_stagger: false,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            pre_vote: true,
            check_quorum: true,
        }
    }

    /// The configuration real nodes and the reference replicas of the lab suites run,
    /// for node `id` bootstrapping with `peers`, with `entropy` seeding its election
    /// timeouts. On top of [`ReplicaConfig::new`]:
    ///
    /// - election timeouts drawn from `[E, 2E)` ticks, so replicas started together do
    ///   not split their votes in step forever;
    /// - commit indexes ride on the next append or heartbeat rather than an extra round
    ///   per write (measured: put x 1 client +15% throughput, -15% CPU per put);
    /// - snapshots staggered across the group, so a majority keeps its pace while one
    ///   replica snapshots.
    ///
    /// The snapshot threshold (and log multiple) is the caller's: the size of its state
    /// and its disk decide it (6.824's `maxraftstate` in the labs).
    pub fn production(id: NodeId, peers: Vec<NodeId>, entropy: u64) -> Self {
        let mut config = Self::new(id, peers);
        config.election_ticks_spread = config.election_ticks;
        config.election_seed = entropy;
        config.broadcast_commit = false;
        config.snapshot_stagger = true;
        config
    }

    /// The raft-rs configuration, restarting with `applied` as the applied index.
    pub(crate) fn to_raft(&self, applied: Index) -> raft::Config {
        raft::Config {
            id: self.id,
            election_tick: self.election_ticks,
            heartbeat_tick: self.heartbeat_ticks,
            min_election_tick: self.election_ticks,
            // The spread is the replica's own (`election.rs`): raft-rs draws nothing.
            max_election_tick: self.election_ticks + 1,
            applied,
            max_size_per_msg: self.max_size_per_msg,
            max_inflight_msgs: self.max_inflight_msgs,
            pre_vote: self.pre_vote,
            check_quorum: self.check_quorum,
            // Proposals made between two Readys go to each follower as one append.
            batch_append: true,
            skip_bcast_commit: !self.broadcast_commit,
            ..raft::Config::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the election timeout range holds exactly one value and the config validates.
    #[test]
    fn election_range_is_one_value() {
        let config = ReplicaConfig::new(1, vec![1, 2, 3]).to_raft(7);
        assert_eq!(config.min_election_tick(), 10);
        assert_eq!(config.max_election_tick(), 11);
        assert_eq!(config.applied, 7);
        assert!(config.pre_vote && config.check_quorum);
        config.validate().unwrap();
        assert!(!config.skip_bcast_commit);
        let production = ReplicaConfig::production(1, vec![1, 2, 3], 99);
        assert_eq!(production.election_ticks_spread, 10);
        let config = production.to_raft(0);
        assert_eq!(
            (config.min_election_tick(), config.max_election_tick()),
            (10, 11),
            "the spread is drawn by the replica, not by raft-rs"
        );
        assert!(config.skip_bcast_commit);
        config.validate().unwrap();
    }
}
