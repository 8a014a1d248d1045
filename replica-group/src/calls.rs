//! [`Calls`]: the leader's outgoing calls to the shard master and to other groups.
//!
//! The leader has three kinds of work that need another service, each retried on its
//! own schedule until the answer arrives through the log:
//!
//! - poll the shard master for the next configuration (at most one call at a time);
//! - pull each `Pulling` shard from its previous owner (at most one call per shard);
//! - tell each `Acking` shard's previous owner to delete it (at most one call per shard).
//!
//! A shard stuck in a migration for a while also asks the shard master where its data
//! is (`abandon.rs`), at most [`MAX_HOLDER_CALLS`] shards at a time.
//!
//! So at most `1 + nshards + MAX_HOLDER_CALLS` calls are in flight, plus, on a follower behind the compacted
//! log, one catch-up call to a replica of its own group (`catch_up.rs`). A call is
//! forgotten when its answer arrives, when it is older than the call timeout (a driver
//! that never answers only delays the work), or, for a leader's call, when this replica
//! stops leading (a new leader starts over; the log makes repeated work harmless). Which server of a group (or which master) is asked
//! next is a cursor per target that moves on after every failure, and jumps to the
//! leader a `WrongLeader { hint }` names (`NodeId` `i + 1` is address `i`), by the same
//! rule as the client library ([`shardkv_proto::leader::next_server`]): a hint of 0,
//! past the end of the server list, or naming the server just asked is ignored.

use std::collections::BTreeMap;

use shardkv_proto::leader::next_server;
use shardkv_proto::{ConfigNum, NodeId, ShardId};

use crate::effect::CallId;

/// The most Holder queries in flight at once.
pub const MAX_HOLDER_CALLS: usize = 8;

/// What an outgoing call is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Purpose {
    /// A Query of the shard master for configuration `num`.
    Master {
        /// The configuration asked for.
        num: ConfigNum,
    },
    /// A `PullShard` to the previous owner.
    Pull {
        /// The configuration that moved the shard.
        config_num: ConfigNum,
        /// The shard.
        shard: ShardId,
    },
    /// A `DeleteShard` to the previous owner.
    Ack {
        /// The configuration that moved the shard.
        config_num: ConfigNum,
        /// The shard.
        shard: ShardId,
    },
    /// A `PullState` to a replica of this group (a follower's catch-up).
    CatchUp,
    /// A Holder query of the shard master for a shard stuck in a migration
    /// (`abandon.rs`).
    Holder {
        /// The configuration the group stood at when it asked.
        config_num: ConfigNum,
        /// The shard.
        shard: ShardId,
        /// The configuration whose owner of the shard is asked about.
        num: ConfigNum,
    },
}

/// Which server of a target to ask next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// The shard masters.
    Master,
    /// The previous owner of a shard (pulls and acks go to the same group).
    Shard(ShardId),
    /// This group's replicas.
    Peers,
    /// The shard masters, about one shard (one Holder query per shard at a time).
    Holder(ShardId),
}

impl Purpose {
    /// The target the call goes to.
    pub fn target(&self) -> Target {
        match self {
            Purpose::Master { .. } => Target::Master,
            Purpose::Pull { shard, .. } | Purpose::Ack { shard, .. } => Target::Shard(*shard),
            Purpose::CatchUp => Target::Peers,
            Purpose::Holder { shard, .. } => Target::Holder(*shard),
        }
    }
}

/// Outgoing calls in flight, and the server cursors; see the module docs.
#[derive(Debug, Default)]
pub struct Calls {
    next_id: CallId,
    /// Call id → (purpose, the tick after which it is forgotten).
    in_flight: BTreeMap<CallId, (Purpose, u64)>,
    /// Target → the position of the server to ask next (taken modulo the list's length).
    cursors: BTreeMap<Target, usize>,
}

impl Calls {
    /// Registers a call for `purpose` at tick `now`, forgotten after `timeout_ticks`.
    pub fn start(&mut self, purpose: Purpose, now: u64, timeout_ticks: u64) -> CallId {
        assert!(
            !self.busy(purpose.target()),
            "second call in flight to {:?} for {purpose:?}",
            purpose.target()
        );
        self.next_id += 1;
        self.in_flight
            .insert(self.next_id, (purpose, now + timeout_ticks));
        self.next_id
    }

    /// True while a call to `target` is in flight.
    pub fn busy(&self, target: Target) -> bool {
        self.in_flight.values().any(|(p, _)| p.target() == target)
    }

    /// The purpose of call `call_id`, forgetting it; `None` for unknown or forgotten calls.
    pub fn finish(&mut self, call_id: CallId) -> Option<Purpose> {
        self.in_flight.remove(&call_id).map(|(purpose, _)| purpose)
    }

    /// Forgets calls whose timeout passed at tick `now`.
    pub fn expire(&mut self, now: u64) {
        self.in_flight.retain(|_, (_, deadline)| *deadline > now);
    }

    /// Forgets every call a leader makes (leadership lost); a catch-up's call stays.
    pub fn clear_leader_calls(&mut self) {
        self.in_flight
            .retain(|_, (purpose, _)| *purpose == Purpose::CatchUp);
    }

    /// The position of the next server of `target` to ask, among `len` servers.
    pub fn cursor(&self, target: Target, len: usize) -> usize {
        assert!(len > 0, "no servers for {target:?}");
        self.cursors.get(&target).copied().unwrap_or(0) % len
    }

    /// A call to `target`, one of `len` servers, failed with the leader hint its server
    /// gave, if any: ask the hinted server next when the hint is usable, else the next
    /// one ([`next_server`]). Nothing moves for a target with no servers.
    pub fn failed(&mut self, target: Target, len: usize, hint: Option<NodeId>) {
        if len == 0 {
            return;
        }
        let cursor = self.cursors.entry(target).or_insert(0);
        *cursor = next_server(*cursor % len, len, hint);
    }

    /// Number of calls in flight for `purpose`s matching `kind`.
    pub fn count(&self, kind: impl Fn(&Purpose) -> bool) -> usize {
        self.in_flight.values().filter(|(p, _)| kind(p)).count()
    }

    /// Number of calls in flight.
    pub fn len(&self) -> usize {
        self.in_flight.len()
    }

    /// True when no call is in flight.
    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Calls are one per target, expire by tick, and cursors follow hints or rotate.
    #[test]
    fn bookkeeping() {
        let mut calls = Calls::default();
        let master = calls.start(Purpose::Master { num: 1 }, 0, 10);
        let pull = Purpose::Pull {
            config_num: 1,
            shard: 3,
        };
        let id = calls.start(pull, 5, 10);
        assert!(calls.busy(Target::Master) && calls.busy(Target::Shard(3)));
        assert_eq!(calls.finish(id), Some(pull));
        assert_eq!(calls.finish(id), None);
        calls.expire(10);
        assert_eq!(calls.finish(master), None, "expired at its deadline");
        assert_eq!(calls.cursor(Target::Master, 3), 0);
        calls.failed(Target::Master, 3, None);
        assert_eq!(calls.cursor(Target::Master, 3), 1);
        calls.failed(Target::Master, 3, Some(3));
        assert_eq!(calls.cursor(Target::Master, 3), 2);
        calls.failed(Target::Master, 3, None);
        assert_eq!(calls.cursor(Target::Master, 3), 0);
        calls.failed(Target::Shard(1), 3, None);
        assert_eq!(
            calls.cursor(Target::Master, 3),
            0,
            "another target's failure"
        );
    }

    /// A hint outside the target's server list (0, one past the end, far past it) is
    /// ignored: the cursor moves to the next server instead of wrapping the hint around.
    #[test]
    fn out_of_range_hints_are_ignored() {
        for hint in [0, 4, 5, 9] {
            let mut calls = Calls::default();
            let target = Target::Shard(1);
            calls.failed(target, 3, None);
            assert_eq!(calls.cursor(target, 3), 1);
            calls.failed(target, 3, Some(hint));
            assert_eq!(calls.cursor(target, 3), 2, "hint {hint}");
            calls.failed(target, 3, Some(hint));
            assert_eq!(calls.cursor(target, 3), 0, "hint {hint}");
        }
    }

    /// The hint is checked against the target's list: node 4 is followed among four
    /// servers and ignored among three; a target without servers does not move.
    #[test]
    fn hints_are_checked_against_the_list_in_use() {
        let mut calls = Calls::default();
        calls.failed(Target::Master, 4, Some(4));
        assert_eq!(calls.cursor(Target::Master, 4), 3);
        let mut calls = Calls::default();
        calls.failed(Target::Master, 3, Some(4));
        assert_eq!(calls.cursor(Target::Master, 3), 1);
        calls.failed(Target::Master, 0, Some(1));
        assert_eq!(calls.cursor(Target::Master, 3), 1);
    }
}
