//! [`Admin`]: the shard master's client (Join, Leave, Move, Abandon, Query, Holder).
//!
//! An `Admin` sends requests to the shard master replicas and returns the configuration
//! each created or asked for. It is a cheap handle like [`crate::Client`]: clones share
//! the transport, methods take `&self`, and each request runs under a session of its own
//! from the handle's pool, so requests run at once and each still applies once.
//!
//! ```text
//!   join/leave/move_shard/query
//!        | Request { client, seq, op }  (bincode 1.3)
//!        v
//!   +--> call(masters[cursor]) --reply--> decode --Ok(config)------------> return Ok
//!   |        |                               |----Err(bad request)-------> return Rejected
//!   |        | timeout / unreachable /       '----Err(WrongLeader{hint})--+
//!   |        | undecodable reply                                          |
//!   |        v                                                            v
//!   '---- cursor.failed(hint): hinted server or the next one; after a full round, back off
//!                      (the whole loop is raced against the caller's deadline)
//! ```
//!
//! # Exactly once
//!
//! The admin draws a random client id from the transport when it is created and
//! numbers its requests from [`shardkv_proto::master::FIRST_SEQ`]. Every operation takes
//! a fresh sequence number *before* its first attempt, and every retry of that operation
//! resends the identical bytes, so the shard master applies a retried Join, Leave or
//! Move once and answers the retry with the original answer (see [`crate::master`],
//! the session the admin shares with the data [`crate::Client`]).
//!
//! # Leader search
//!
//! See [`crate::leader`]: the admin remembers the last server that answered, follows
//! `WrongLeader` hints (NodeId `i + 1` = `masters[i]`), and otherwise walks the list.
//! The loop itself is [`crate::service`]'s, shared with the data client. Backoff and
//! deadlines are described in [`crate::retry`].
//!
//! # Caveats
//!
//! - A reply that does not decode, or carries a configuration failing
//!   [`Config::check`], is logged and retried elsewhere like a lost reply. A master that
//!   always answers garbage therefore looks like an unavailable one.
//! - No client-side validation of requests: the shard master is the one authority on
//!   what is valid, and its typed errors come back as [`AdminError::Rejected`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use shardkv_proto::{ClientId, Config, ConfigNum, GroupId, Op, ShardId};

use crate::error::AdminError;
use crate::master::MasterSession;
use crate::pool::{lock, Pool};
use crate::retry::{within_deadline, Progress, RetryPolicy};
use crate::transport::Transport;

/// A client of the shard master, generic over its [`Transport`]: a handle whose clones
/// share one connection to the cluster.
#[derive(Debug)]
pub struct Admin<T: Transport> {
    shared: Arc<AdminShared<T>>,
    /// This handle's retry policy (a clone starts with a copy).
    policy: RetryPolicy,
}

impl<T: Transport> Clone for Admin<T> {
    fn clone(&self) -> Self {
        Admin {
            shared: Arc::clone(&self.shared),
            policy: self.policy.clone(),
        }
    }
}

/// What the clones of one admin handle share.
#[derive(Debug)]
struct AdminShared<T> {
    transport: T,
    /// Sessions not in use.
    sessions: Pool<MasterSession>,
    /// The session given back last: a new session starts from its leader memory.
    latest: Mutex<MasterSession>,
    /// The first session's id.
    first: ClientId,
}

impl<T: Transport> Admin<T> {
    /// An admin for the shard master replicas at `masters`, with the default
    /// [`RetryPolicy`] (1 s per RPC, 30 s per operation).
    ///
    /// `masters[i]` must be the replica with Raft NodeId `i + 1` (see
    /// [`crate::leader`]). An empty list is accepted here and reported as
    /// [`AdminError::NoMasters`] by every operation.
    pub fn new(transport: T, masters: Vec<String>) -> Self {
        Self::with_policy(transport, masters, RetryPolicy::default())
    }

    /// Like [`Admin::new`], with an explicit retry policy.
    pub fn with_policy(transport: T, masters: Vec<String>, policy: RetryPolicy) -> Self {
        let session = MasterSession::new(&transport, masters);
        let shared = AdminShared {
            first: session.client_id(),
            latest: Mutex::new(session.clone()),
            sessions: Pool::new(session),
            transport,
        };
        Admin {
            shared: Arc::new(shared),
            policy,
        }
    }

    /// The id of this handle's first session (random, drawn from the transport).
    /// Requests running alongside others use further ids.
    pub fn client_id(&self) -> ClientId {
        self.shared.first
    }

    /// The shard master addresses, in NodeId order.
    pub fn masters(&self) -> Vec<String> {
        lock(&self.shared.latest).masters().to_vec()
    }

    /// The retry policy in force.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Replaces this handle's retry policy (not its clones'); applies from the next
    /// operation on.
    pub fn set_policy(&mut self, policy: RetryPolicy) {
        self.policy = policy;
    }

    /// The transport, for callers that share it.
    pub fn transport(&self) -> &T {
        &self.shared.transport
    }

    /// Adds `groups` (gid → replica addresses) and rebalances; returns the new
    /// configuration.
    pub async fn join(&self, groups: BTreeMap<GroupId, Vec<String>>) -> Result<Config, AdminError> {
        self.request(Op::Join { groups }).await
    }

    /// Removes the groups `gids` and rebalances their shards onto the rest; returns the
    /// new configuration.
    pub async fn leave(&self, gids: Vec<GroupId>) -> Result<Config, AdminError> {
        self.request(Op::Leave { gids }).await
    }

    /// Gives `shard` to group `gid`; returns the new configuration.
    pub async fn move_shard(&self, shard: ShardId, gid: GroupId) -> Result<Config, AdminError> {
        self.request(Op::Move { shard, gid }).await
    }

    /// Declares group `gid`, which has left, dead for good: the shards it was given but
    /// never installed come back from the groups that hold them frozen. Returns the
    /// latest configuration (abandoning makes none). The group's id is retired.
    pub async fn abandon(&self, gid: GroupId) -> Result<Config, AdminError> {
        self.request(Op::Abandon { gid }).await
    }

    /// The configuration whose owner of `shard` holds the data for the owner in
    /// configuration `num`: the latest at or before `num` not owned by an abandoned
    /// group ([`Op::Holder`]).
    pub async fn holder(&self, shard: ShardId, num: ConfigNum) -> Result<Config, AdminError> {
        self.request(Op::Holder { shard, num }).await
    }

    /// Configuration `num`, or the latest for `None` or a number past the latest.
    pub async fn query(&self, num: Option<ConfigNum>) -> Result<Config, AdminError> {
        self.request(Op::Query { num }).await
    }

    /// Sends `op` under a fresh sequence number until a definitive answer or the
    /// deadline.
    async fn request(&self, op: Op) -> Result<Config, AdminError> {
        let (transport, policy) = (&self.shared.transport, &self.policy);
        let mut session = (self.shared.sessions).lease(|| {
            let latest = lock(&self.shared.latest);
            latest.fork(transport.random_u64())
        });
        let seed = session.client_id() ^ session.next_seq().rotate_left(32);
        let mut progress = Progress::new(policy, seed);
        let work = session.request(transport, policy, op, &mut progress);
        let answer = match within_deadline(transport, policy.deadline, work).await {
            Some(answer) => answer,
            None => Err(progress.expire(policy.deadline).into()),
        };
        *lock(&self.shared.latest) = (*session).clone();
        answer
    }
}
