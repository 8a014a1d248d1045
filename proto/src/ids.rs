//! Identifier aliases used across shardkv.
//!
//! Every id is an unsigned integer alias so that signatures say what a number means
//! (`fn owner(shard: ShardId) -> GroupId`) without the ceremony of newtypes at every
//! serde and arithmetic boundary.

/// A replica group's id. Chosen by the operator when the group joins; never reused
/// while the group is a member. [`NO_GROUP`] (0) means "no group" and is never a real id.
pub type GroupId = u64;

/// The [`GroupId`] that means "no group": the owner of every shard in configuration 0,
/// and of every shard while no group has joined.
pub const NO_GROUP: GroupId = 0;

/// A shard's index, `0..nshards`.
///
/// `usize` because its main job is to index [`crate::Config::shards`]. serde formats
/// encode it as a fixed 64-bit integer (bincode 1.3 does), so the wire form does not
/// depend on the platform.
pub type ShardId = usize;

/// A configuration's number. Configuration 0 is the initial one (every shard unowned);
/// each change made by the shard master creates the next number.
pub type ConfigNum = u64;

/// A client's id, chosen at random by the client when it starts. With [`Seq`] it makes
/// the key of duplicate detection.
pub type ClientId = u64;

/// A client's request sequence number: starts at [`crate::master::FIRST_SEQ`] and goes
/// up by one per new request; a retry reuses the number of the request it retries.
pub type Seq = u64;

/// A Raft log index; the same numbers as the Raft layer's index.
pub type Index = u64;

/// Cluster time, in milliseconds: the time a replicated service's log entries carry
/// (stamped by their leader, only ever moving forward as they apply). Not a wall clock:
/// it counts the time the service has had a leader, and duplicate-table sessions expire
/// by it (see [`crate::session`]).
pub type Millis = u64;

/// A replica's id inside a Raft cluster (a shard-master replica or one replica of a
/// group); the same id the Raft layer uses.
pub type NodeId = u64;
