//! The lab interface: what a shard-master (6.824 "shard controller") implementation must
//! offer to be graded by the master suite.
//!
//! 6.824's shard controller is a `StartServer(servers, me, persister)` whose RPC handlers
//! `Join`/`Leave`/`Move`/`Query` the tester reaches over labrpc. Here the same server is a
//! sans-IO state machine: it receives events (a message from a peer replica, a client
//! request, a tick) and leaves effects behind (messages for peers, replies to requests),
//! which the harness drains after every event and carries through the simulator.
//!
//! ```text
//!   Admin (real client) --Request--> sim --on_request(req_id, request)--> replica
//!   sim ----------------------------------on_peer_message(from, bytes)--> replica
//!   sim ----------------------------------on_tick()---------------------> replica
//!                   replica --take_effects()--> Send { to, bytes }      -> sim network
//!                                           \-> Reply { req_id, response } -> Admin
//! ```
//!
//! Contract:
//! - `make` restores everything the replica persisted in its [`Persister`]; volatile state
//!   is lost in a crash. The persister's writes are durable on return.
//! - Every request gets exactly one reply per incarnation, unless the replica crashes
//!   first: the configuration it created or asked for, or a [`MasterError`](shardkv_proto::MasterError). A replica that
//!   cannot serve it (not the leader, lost leadership) answers
//!   [`MasterError::WrongLeader`](shardkv_proto::MasterError::WrongLeader); its `hint`, when given, names the leader as
//!   **peer index + 1** (the client's convention: node id `i + 1` is `masters[i]`).
//! - Replies are linearizable (Queries included) and retried requests (same client and
//!   sequence number) take effect once.
//! - The cluster has [`LAB_NSHARDS`] shards.
//! - Everything is deterministic: no clock, no unseeded randomness, no threads. Time passes
//!   only through [`MasterLab::on_tick`] (about every 50 ms of virtual time, jittered).

use labrpc_sim::Persister;
use shardkv_proto::{Config, ConfigNum, Request, Response};

pub use shardkv_proto::LAB_NSHARDS;

/// Index of a replica in the lab cluster: `0..n`.
pub type Peer = usize;

/// The harness's id for one client request, echoed in its [`MasterEffect::Reply`].
pub type ReqId = u64;

/// Something a replica wants done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MasterEffect {
    /// Deliver `bytes` to replica `to` (its `on_peer_message`).
    Send {
        /// The destination replica.
        to: Peer,
        /// The message.
        bytes: Vec<u8>,
    },
    /// Answer the request the harness registered as `req_id`.
    Reply {
        /// The request's id, as given to [`MasterLab::on_request`].
        req_id: ReqId,
        /// The answer.
        response: Response,
    },
    /// Deliver [`MasterLab::on_wake`] with `token` after a latency the simulator draws
    /// (a replica that models a sync thread, as the reference does).
    Wake {
        /// The replica's token.
        token: u64,
    },
}

/// A shard-master replica as the lab suite sees it. Implement this for your own shard
/// controller to grade it.
pub trait MasterLab: Sized + 'static {
    /// Make replica `me` of the cluster `peers` (every replica's index, `me` included),
    /// restoring whatever it persisted in `persister` before a crash (6.824
    /// `StartServer`).
    fn make(me: Peer, peers: &[Peer], persister: Persister) -> Self;

    /// A message that replica `from` sent with [`MasterEffect::Send`].
    fn on_peer_message(&mut self, from: Peer, bytes: Vec<u8>);

    /// A client request, to be answered with a [`MasterEffect::Reply`] carrying `req_id`.
    fn on_request(&mut self, req_id: ReqId, request: Request);

    /// One tick of logical time.
    fn on_tick(&mut self);

    /// A wake-up this replica asked for with [`MasterEffect::Wake`] (the default asks for
    /// none). Wake-ups asked before a crash never arrive after it.
    fn on_wake(&mut self, token: u64) {
        let _ = token;
    }

    /// Take the effects accumulated since the last call, in order.
    fn take_effects(&mut self) -> Vec<MasterEffect>;

    /// Whether this replica believes it leads (6.824 `GetState`'s `isLeader`).
    fn is_leader(&self) -> bool;

    /// Configuration `num` (the latest for `None` or past the latest) as this replica has
    /// applied it so far: a local, possibly stale read the harness uses to compare
    /// replicas, never to answer clients.
    fn applied_config(&self, num: Option<ConfigNum>) -> Config;
}
