//! [`GroupOptions`]: the settings of a replica group server, and its fatal errors
//! ([`ServerError`], the Raft crate's, with this crate's snapshot error).
//!
//! Every replica of a group must use the same options: the session timeout is part of the
//! replicated state machine's semantics, and the shard count fixes key routing.

use std::collections::BTreeMap;

use shardkv_proto::kv::MIGRATION_CHUNK_BYTES;
use shardkv_proto::{GroupId, Millis, NodeId};

use crate::sessions::DEFAULT_SESSION_TIMEOUT_MS;

/// The settings of one replica group server; every replica of a group uses the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOptions {
    /// This group's id (non-zero).
    pub gid: GroupId,
    /// The cluster's shard count.
    pub nshards: usize,
    /// The shard masters' addresses (`NodeId` `i + 1` is `masters[i]`).
    pub masters: Vec<String>,
    /// This group's replicas' addresses by raft id, where a follower that fell behind
    /// the compacted log copies the state from (`catch_up.rs`). Empty: such a follower
    /// waits for the log instead (it may wait forever).
    pub peers: BTreeMap<NodeId, String>,
    /// The most bytes of keys and values one answer of a shard move or a catch-up
    /// carries (one pair may be larger alone; default [`MIGRATION_CHUNK_BYTES`]).
    pub chunk_bytes: usize,
    /// Sessions expire after this much cluster time of silence, checked every 1/16 of
    /// it (so up to 1/16 late; default [`DEFAULT_SESSION_TIMEOUT_MS`], an hour). Every
    /// replica of the group must use the same value.
    pub session_timeout_ms: Millis,
    /// The leader polls the shard master, and retries pulls and acks, every this many
    /// ticks (default 5: every 2.5 heartbeats).
    pub poll_ticks: u64,
    /// An outgoing call with no answer after this many ticks is forgotten (default 20).
    pub call_timeout_ticks: u64,
}

impl GroupOptions {
    /// Defaults for group `gid` of a cluster of `nshards` shards with these masters.
    pub fn new(gid: GroupId, nshards: usize, masters: Vec<String>) -> Self {
        GroupOptions {
            gid,
            nshards,
            masters,
            peers: BTreeMap::new(),
            chunk_bytes: MIGRATION_CHUNK_BYTES,
            session_timeout_ms: DEFAULT_SESSION_TIMEOUT_MS,
            poll_ticks: 5,
            call_timeout_ticks: 20,
        }
    }
}

/// Why the server cannot go on: the replicated log failed, or a snapshot it handed back
/// does not restore. Fatal: the node must stop (and may restart from disk).
pub type ServerError = shardkv_raft::ServerError;
