//! The lab interface: what a sharded key/value server (6.824 `shardkv`) must offer to be
//! graded by the kv suite.
//!
//! 6.824's shardkv server is a `StartServer(servers, me, persister, maxraftstate, gid,
//! ctrlers, make_end)` whose `Get`/`PutAppend` handlers the tester reaches over labrpc,
//! and which calls the shard controllers and other groups through `make_end`. Here the
//! same server is a sans-IO state machine: events in (a peer's Raft message, a client
//! request, another group's migration request, the answer to a call it made, a tick),
//! effects out, which the harness drains after every event and carries through the
//! simulator.
//!
//! ```text
//!   Client (real shardkv_client) --GroupRequest::Kv--> sim --on_request(req_id, r)--> replica
//!   other group ----------------GroupRequest::Migration--on_migration_request(..)--> replica
//!   sim ---------------------------------------------on_peer_message(from, bytes)--> replica
//!   sim ---------------------------------------on_response(call_id, Some/None)-----> replica
//!   sim ---------------------------------------------------------on_tick()---------> replica
//!        replica --take_effects()--> Send { to, bytes }            -> a peer of its group
//!                                \-> Reply / MigrationReply         -> whoever asked
//!                                \-> Call { call_id, to: address }  -> master or group
//! ```
//!
//! Contract:
//! - `make` restores everything the replica persisted in its [`Persister`]; volatile
//!   state is lost in a crash. Persister writes are durable on return. `maxraftstate`
//!   (persisted Raft bytes before a snapshot; `None` never) is 6.824's.
//! - Every request gets at most one reply per incarnation. Client requests are answered
//!   with a `kv::Response`: `WrongLeader { hint }` (hint = **peer index + 1**, the
//!   client's convention: node id `i + 1` is the group's server `i`), `WrongGroup` when
//!   the group does not serve the key's shard now, or the answer.
//! - Calls go to addresses as a `Config` lists them (`masters[i]` or a group's servers);
//!   the harness answers each one exactly once, with `None` when it failed or timed out.
//!   Bytes to a master are a bincode `master::Request`, to a group a bincode
//!   `kv::GroupRequest`; the answers are the matching responses.
//! - The cluster has [`LAB_NSHARDS`] shards; configurations come from the shard master.
//! - Everything is deterministic: no clock, no unseeded randomness, no threads.

use labrpc_sim::Persister;
use shardkv_proto::kv::{MigrationRequest, MigrationResponse, Request, Response};
use shardkv_proto::{ConfigNum, GroupId, ShardId};

pub use crate::master_lab::{Peer, ReqId};
pub use shardkv_proto::LAB_NSHARDS;

/// The replica's id for one outgoing call, echoed in [`KvLab::on_response`].
pub type CallId = u64;

/// Something a replica wants done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvEffect {
    /// Deliver `bytes` to replica `to` of this group (its `on_peer_message`).
    Send {
        /// The destination replica.
        to: Peer,
        /// The message.
        bytes: Vec<u8>,
    },
    /// Answer the client request registered as `req_id`.
    Reply {
        /// The request's id, as given to [`KvLab::on_request`].
        req_id: ReqId,
        /// The answer.
        response: Response,
        /// The clock of the key's shard, for a server that keeps one (see
        /// `shardkv_proto::session`); 0 otherwise.
        clock: shardkv_proto::Millis,
    },
    /// Answer the migration request registered as `req_id`.
    MigrationReply {
        /// The request's id, as given to [`KvLab::on_migration_request`].
        req_id: ReqId,
        /// The answer.
        response: MigrationResponse,
    },
    /// Call the server at address `to`; the answer comes back through
    /// [`KvLab::on_response`] with `call_id`.
    Call {
        /// The replica's id for the call.
        call_id: CallId,
        /// A master's or another group's address.
        to: String,
        /// The encoded request.
        bytes: Vec<u8>,
    },
    /// Deliver [`KvLab::on_wake`] with `token` after a latency the simulator draws (a
    /// replica that models a sync thread, as the reference does).
    Wake {
        /// The replica's token.
        token: u64,
    },
}

/// How replica `me` of group `gid` is made (6.824 `StartServer`'s arguments).
#[derive(Clone, Debug)]
pub struct KvStart {
    /// The replica group.
    pub gid: GroupId,
    /// This replica's index in the group.
    pub me: Peer,
    /// Every replica's index, `me` included.
    pub peers: Vec<Peer>,
    /// The shard masters' addresses, in replica order.
    pub masters: Vec<String>,
    /// What survives a crash.
    pub persister: Persister,
    /// Persisted Raft bytes past which the replica snapshots (`None`: never).
    pub maxraftstate: Option<u64>,
    /// How long a quiet client's session lasts, in cluster time (`None`: the
    /// implementation's default). The session scenarios set it shorter than a client's
    /// retries, to check that no request applies twice once its session is forgotten.
    pub session_timeout_ms: Option<shardkv_proto::Millis>,
}

/// A replica group replica as the lab suite sees it. Implement this for your own
/// shardkv server to grade it.
pub trait KvLab: Sized + 'static {
    /// Make a replica, restoring whatever it persisted before a crash.
    fn make(start: KvStart) -> Self;

    /// A message that replica `from` of the same group sent with [`KvEffect::Send`].
    fn on_peer_message(&mut self, from: Peer, bytes: Vec<u8>);

    /// A client request, to be answered with a [`KvEffect::Reply`] carrying `req_id`.
    fn on_request(&mut self, req_id: ReqId, request: Request);

    /// Another group's migration request, answered with a [`KvEffect::MigrationReply`].
    fn on_migration_request(&mut self, req_id: ReqId, request: MigrationRequest);

    /// The reply to call `call_id`, or `None` when it failed or timed out.
    fn on_response(&mut self, call_id: CallId, reply: Option<Vec<u8>>);

    /// One tick of logical time (about every 50 ms of virtual time, jittered).
    fn on_tick(&mut self);

    /// A wake-up this replica asked for with [`KvEffect::Wake`] (the default asks for
    /// none). Wake-ups asked before a crash never arrive after it.
    fn on_wake(&mut self, token: u64) {
        let _ = token;
    }

    /// Take the effects accumulated since the last call, in order.
    fn take_effects(&mut self) -> Vec<KvEffect>;

    /// Whether this replica believes it leads its group.
    fn is_leader(&self) -> bool;

    /// The configuration this replica has applied, and the shards it would serve in it
    /// right now (owned in that configuration and its data held): a local read the
    /// harness uses to check ownership, never to answer clients.
    fn serving(&self) -> (ConfigNum, Vec<ShardId>);

    /// Bytes this replica persists, Raft state plus snapshot (6.824's `RaftStateSize() +
    /// len(ReadSnapshot())`), which the garbage-collection challenges bound. The default
    /// sizes the persister's key/value area and snapshot; a replica that keeps its log
    /// elsewhere says how large it is.
    fn persisted_bytes(&self, persister: &Persister) -> usize {
        persister.raft_state_size() + persister.snapshot_size()
    }

    /// A digest of this replica's whole replicated state (shards, their data and
    /// duplicate tables, configurations) and the log index it stands at, which the
    /// harness compares across the group's replicas: at one index they must agree. The
    /// default gives none, and is not checked.
    fn state_digest(&self) -> Option<(u64, u64)> {
        None
    }
}
