//! [`Admin`]: the shard master's client (Join, Leave, Move, Abandon, Query, Holder).
//!
//! An `Admin` sends one request at a time (its methods take `&mut self`) to the shard
//! master replicas and returns the configuration the request created or asked for.
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

use shardkv_proto::{ClientId, Config, ConfigNum, GroupId, Op, ShardId};

use crate::error::AdminError;
use crate::master::MasterSession;
use crate::retry::{within_deadline, Progress, RetryPolicy};
use crate::transport::Transport;

/// A client of the shard master, generic over its [`Transport`].
#[derive(Debug)]
pub struct Admin<T: Transport> {
    pub(crate) transport: T,
    pub(crate) session: MasterSession,
    pub(crate) policy: RetryPolicy,
}

impl<T: Transport> Admin<T> {
    /// An admin for the shard master replicas at `masters`, with the default
    /// [`RetryPolicy`] (1 s per RPC, no overall deadline).
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
        Admin {
            transport,
            session,
            policy,
        }
    }

    /// This admin's client id (random, drawn from the transport).
    pub fn client_id(&self) -> ClientId {
        self.session.client_id()
    }

    /// The shard master addresses, in NodeId order.
    pub fn masters(&self) -> &[String] {
        self.session.masters()
    }

    /// The retry policy in force.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Replaces the retry policy; applies from the next operation on.
    pub fn set_policy(&mut self, policy: RetryPolicy) {
        self.policy = policy;
    }

    /// The transport, for callers that share it.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Adds `groups` (gid → replica addresses) and rebalances; returns the new
    /// configuration.
    pub async fn join(
        &mut self,
        groups: BTreeMap<GroupId, Vec<String>>,
    ) -> Result<Config, AdminError> {
        self.request(Op::Join { groups }).await
    }

    /// Removes the groups `gids` and rebalances their shards onto the rest; returns the
    /// new configuration.
    pub async fn leave(&mut self, gids: Vec<GroupId>) -> Result<Config, AdminError> {
        self.request(Op::Leave { gids }).await
    }

    /// Gives `shard` to group `gid`; returns the new configuration.
    pub async fn move_shard(&mut self, shard: ShardId, gid: GroupId) -> Result<Config, AdminError> {
        self.request(Op::Move { shard, gid }).await
    }

    /// Declares group `gid`, which has left, dead for good: the shards it was given but
    /// never installed come back from the groups that hold them frozen. Returns the
    /// latest configuration (abandoning makes none). The group's id is retired.
    pub async fn abandon(&mut self, gid: GroupId) -> Result<Config, AdminError> {
        self.request(Op::Abandon { gid }).await
    }

    /// The configuration whose owner of `shard` holds the data for the owner in
    /// configuration `num`: the latest at or before `num` not owned by an abandoned
    /// group ([`Op::Holder`]).
    pub async fn holder(&mut self, shard: ShardId, num: ConfigNum) -> Result<Config, AdminError> {
        self.request(Op::Holder { shard, num }).await
    }

    /// Configuration `num`, or the latest for `None` or a number past the latest.
    pub async fn query(&mut self, num: Option<ConfigNum>) -> Result<Config, AdminError> {
        self.request(Op::Query { num }).await
    }

    /// Sends `op` under a fresh sequence number until a definitive answer or the
    /// deadline.
    async fn request(&mut self, op: Op) -> Result<Config, AdminError> {
        let mut progress = Progress::new(&self.policy);
        let work = self
            .session
            .request(&self.transport, &self.policy, op, &mut progress);
        match within_deadline(&self.transport, self.policy.deadline, work).await {
            Some(answer) => answer,
            None => Err(progress.expire(self.policy.deadline).into()),
        }
    }
}
