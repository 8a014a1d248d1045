//! Messages between shard-master clients (`Admin`, replica groups) and the shard master.
//!
//! A client sends a [`Request`] to the replica it believes leads; the leader replicates
//! it through Raft, every replica applies it in log order, and the leader answers with a
//! [`Response`]: the configuration the operation created (Join, Leave, Move) or asked for
//! (Query), or a [`MasterError`].
//!
//! Exactly-once: each client picks a random [`ClientId`] and numbers its changing
//! requests with [`Seq`] from [`FIRST_SEQ`] up, one at a time. A retry reuses the same
//! `(client, seq)`, and the shard master answers it with the original answer instead of
//! applying it again. Queries change nothing and are never deduplicated.
//!
//! Limits ([`MAX_GROUPS`], [`MAX_SERVERS_PER_GROUP`], [`MAX_ADDRESS_BYTES`]) bound the
//! size of a configuration, which every client and group downloads again and again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::ids::{ClientId, ConfigNum, GroupId, NodeId, Seq, ShardId};

/// The first sequence number of a client; 0 is never used by a well-behaved client.
pub const FIRST_SEQ: Seq = 1;

/// The most member groups a configuration may hold.
pub const MAX_GROUPS: usize = 4096;

/// The most servers one group may list.
pub const MAX_SERVERS_PER_GROUP: usize = 64;

/// The longest server address, in bytes.
pub const MAX_ADDRESS_BYTES: usize = 256;

/// A client's request to the shard master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The client's id (random per client process).
    pub client: ClientId,
    /// The request's sequence number within `client`; a retry reuses it.
    pub seq: Seq,
    /// What to do.
    pub op: Op,
}

/// The operations of the shard master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Add one or more new groups, each with its replicas' addresses, then rebalance.
    ///
    /// Sent by an operator (`shardkv join`) when new replica groups come up. Every gid
    /// must be new, non-zero, and list 1..=[`MAX_SERVERS_PER_GROUP`] non-empty addresses;
    /// otherwise nothing happens and the answer names the first offending gid. Joining
    /// several groups at once makes one configuration and one rebalance, so shards move
    /// once rather than once per group.
    Join {
        /// The new groups and their servers.
        groups: BTreeMap<GroupId, Vec<String>>,
    },
    /// Remove one or more member groups, then rebalance their shards onto the rest.
    ///
    /// Sent by an operator (`shardkv leave`) before decommissioning groups. Every gid
    /// must be a current member and listed once. When the last groups leave, every shard
    /// becomes unowned.
    Leave {
        /// The groups that leave.
        gids: Vec<GroupId>,
    },
    /// Give one shard to one member group.
    ///
    /// Sent by an operator to place a hot shard by hand, and by tests to force a
    /// migration. Always creates a new configuration, even when `gid` already owns the
    /// shard. The imbalance it may create is undone by the next Join or Leave.
    Move {
        /// The shard to move, `0..nshards`.
        shard: ShardId,
        /// Its new owner, a current member.
        gid: GroupId,
    },
    /// Fetch a configuration.
    ///
    /// Sent by replica groups polling for the next configuration, by clients refreshing
    /// their routing, and by operators. `None` (the lab's `-1`) and any number past the
    /// latest mean the latest configuration. Goes through the log so the answer is
    /// linearizable; `client` and `seq` are ignored.
    Query {
        /// The configuration wanted, or `None` for the latest.
        num: Option<ConfigNum>,
    },
    /// Declare a group that has left dead for good, so that the shards it was given but
    /// never installed come back from the groups that still hold them frozen.
    ///
    /// Sent by an operator (`shardkv abandon`) after `leave` of a group whose replicas
    /// are gone. The group must have been a member once and must not be one now; it can
    /// never join again. Creates no configuration: the answer is the latest. See
    /// [`Op::Holder`] for what the groups do with it, and `docs/architecture.md` ("A group
    /// that died for good can be abandoned") for what can be lost.
    Abandon {
        /// The group.
        gid: GroupId,
    },
    /// Where the data of `shard` is, for the group that owns it in configuration `num`.
    ///
    /// Answers the latest configuration at or before `num` whose owner of `shard` is
    /// not an abandoned group (configuration 0, owned by nobody, at the latest). When
    /// the answer is `num` itself, the owner there holds the shard's data; otherwise the
    /// owner in the answer does (or nobody, when it is [`crate::NO_GROUP`]). Sent by replica
    /// groups whose shard is stuck in a migration with an abandoned group; read-only
    /// like Query, and goes through the log like it.
    Holder {
        /// The shard.
        shard: ShardId,
        /// The configuration whose owner is asked about; past the latest means the
        /// latest.
        num: ConfigNum,
    },
}

impl Op {
    /// Whether the operation only reads (Query, Holder): never deduplicated, allowed to
    /// every caller.
    pub fn is_read(&self) -> bool {
        matches!(self, Op::Query { .. } | Op::Holder { .. })
    }
}

/// The shard master's answer: the configuration the operation created (Join, Leave,
/// Move) or asked for (Query), or why nothing happened.
pub type Response = Result<Config, MasterError>;

/// Why the shard master did not carry out a request.
///
/// Only [`MasterError::WrongLeader`] is retryable (see [`MasterError::is_retryable`]);
/// every other variant says the request is bad and will stay bad, and the shard master
/// created no configuration for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum MasterError {
    /// This replica is not the leader, or lost leadership before the request committed.
    /// Retry at `hint` when given, else at another replica. The request may still have
    /// been applied: the retry (same `client`, `seq`) gets its original answer.
    #[error("not the leader (leader hint: {hint:?})")]
    WrongLeader {
        /// The replica this one believes leads, if any.
        hint: Option<NodeId>,
    },
    /// A Join naming no group.
    #[error("join names no group")]
    EmptyJoin,
    /// A Leave naming no group.
    #[error("leave names no group")]
    EmptyLeave,
    /// Group id 0 means "no group" and cannot join, leave, or receive a shard.
    #[error("group id 0 is reserved")]
    ReservedGroup,
    /// A Join of a group that is already a member.
    #[error("group {gid} has already joined")]
    AlreadyJoined {
        /// The group.
        gid: GroupId,
    },
    /// A Leave of, or a Move to, a group that is not a member; an Abandon of a group
    /// that never was one.
    #[error("group {gid} is not a member")]
    UnknownGroup {
        /// The group.
        gid: GroupId,
    },
    /// A Leave listing the same group twice.
    #[error("group {gid} is listed twice")]
    DuplicateGroup {
        /// The group.
        gid: GroupId,
    },
    /// A Join giving a group no servers.
    #[error("group {gid} lists no servers")]
    NoServers {
        /// The group.
        gid: GroupId,
    },
    /// A Join giving a group more than [`MAX_SERVERS_PER_GROUP`] servers.
    #[error("group {gid} lists {count} servers, more than {max}")]
    TooManyServers {
        /// The group.
        gid: GroupId,
        /// How many servers it listed.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A Join giving a group an empty address, or one longer than [`MAX_ADDRESS_BYTES`].
    #[error("group {gid}: server {index} has an empty or over-long address")]
    BadAddress {
        /// The group.
        gid: GroupId,
        /// The address's position in the group's list.
        index: usize,
    },
    /// A Join that would make more than [`MAX_GROUPS`] member groups.
    #[error("join would make {count} groups, more than {max}")]
    TooManyGroups {
        /// The member count the Join would reach.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A request too large to replicate (its encoding passes the log entry limit).
    #[error("request too large to replicate (limit {max_bytes} bytes)")]
    RequestTooLarge {
        /// The limit, in encoded bytes.
        max_bytes: u64,
    },
    /// A Move of a shard number outside `0..nshards`.
    #[error("shard {shard} out of range (the cluster has {nshards} shards)")]
    ShardOutOfRange {
        /// The shard asked for.
        shard: ShardId,
        /// The cluster's shard count.
        nshards: usize,
    },
    /// A request older than the client's latest applied one: the client has already
    /// had its answer to a later request, so this is a stray duplicate and is ignored.
    #[error("client {client}: request {seq} is older than applied request {last}")]
    StaleRequest {
        /// The client.
        client: ClientId,
        /// The request's sequence number.
        seq: Seq,
        /// The client's latest applied sequence number.
        last: Seq,
    },
    /// An Abandon of a group that is still a member: it must leave first.
    #[error("group {gid} is still a member: leave it first")]
    StillMember {
        /// The group.
        gid: GroupId,
    },
    /// A Join or an Abandon of a group that was abandoned: its id is retired.
    #[error("group {gid} was abandoned: its id cannot be used again")]
    Abandoned {
        /// The group.
        gid: GroupId,
    },
    /// The caller's certificate does not allow the request (with mutual TLS, changing
    /// the configuration takes an administrator's certificate).
    #[error("not allowed: {reason}")]
    NotAllowed {
        /// Who asked, and what it may not do.
        reason: String,
    },
}

impl MasterError {
    /// Whether the same request may succeed if sent again (to another replica or later).
    pub fn is_retryable(&self) -> bool {
        matches!(self, MasterError::WrongLeader { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only WrongLeader invites a retry; a bad request stays bad.
    #[test]
    fn only_wrong_leader_is_retryable() {
        assert!(MasterError::WrongLeader { hint: Some(2) }.is_retryable());
        assert!(!MasterError::EmptyJoin.is_retryable());
        assert!(!MasterError::UnknownGroup { gid: 4 }.is_retryable());
        assert!(!MasterError::StaleRequest {
            client: 1,
            seq: 1,
            last: 2
        }
        .is_retryable());
    }
}
