//! [`Admin`]: the shard master's client (Join, Leave, Move, Query).
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
//! The admin draws a random [`ClientId`] from the transport when it is created and
//! numbers its requests from [`FIRST_SEQ`]. Every operation takes a fresh sequence
//! number *before* its first attempt, and every retry of that operation resends the
//! identical bytes, so the shard master applies a retried Join, Leave or Move once and
//! answers the retry with the original answer. Queries take a number too (the master
//! ignores it); numbers are never reused, even by an operation abandoned at its
//! deadline, so a late copy of an abandoned request can never be mistaken for a new one.
//!
//! # Leader search
//!
//! See [`crate::leader`]: the admin remembers the last server that answered, follows
//! `WrongLeader` hints (NodeId `i + 1` = `masters[i]`), and otherwise walks the list.
//! Backoff and deadlines are described in [`crate::retry`].
//!
//! # Caveats
//!
//! - A reply that does not decode, or carries a configuration failing
//!   [`Config::check`], is logged and retried elsewhere like a lost reply. A master that
//!   always answers garbage therefore looks like an unavailable one.
//! - No client-side validation of requests: the shard master is the one authority on
//!   what is valid, and its typed errors come back as [`AdminError::Rejected`].

use std::collections::BTreeMap;

use shardkv_proto::master::FIRST_SEQ;
use shardkv_proto::{
    ClientId, Config, ConfigNum, GroupId, MasterError, Op, Request, Response, Seq, ShardId,
};

use crate::error::AdminError;
use crate::leader::{LeaderCursor, Next};
use crate::retry::{race_timer, AttemptFailure, Backoff, RetryPolicy};
use crate::transport::Transport;

/// A client of the shard master, generic over its [`Transport`].
#[derive(Debug)]
pub struct Admin<T: Transport> {
    transport: T,
    masters: Vec<String>,
    client: ClientId,
    next_seq: Seq,
    /// `None` only when `masters` is empty.
    cursor: Option<LeaderCursor>,
    policy: RetryPolicy,
}

/// What one operation's retry loop has done so far; read after a deadline cut it short.
#[derive(Debug, Default)]
struct Progress {
    attempts: u64,
    last_failure: Option<AttemptFailure>,
}

/// How one operation ended, short of the deadline.
enum Outcome {
    Done(Config),
    Rejected(MasterError),
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
        let client = transport.random_u64();
        let cursor =
            (!masters.is_empty()).then(|| LeaderCursor::new(masters.len(), transport.random_u64()));
        Admin {
            transport,
            masters,
            client,
            next_seq: FIRST_SEQ,
            cursor,
            policy,
        }
    }

    /// This admin's client id (random, drawn from the transport).
    pub fn client_id(&self) -> ClientId {
        self.client
    }

    /// The shard master addresses, in NodeId order.
    pub fn masters(&self) -> &[String] {
        &self.masters
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

    /// Configuration `num`, or the latest for `None` or a number past the latest.
    pub async fn query(&mut self, num: Option<ConfigNum>) -> Result<Config, AdminError> {
        self.request(Op::Query { num }).await
    }

    /// Sends `op` under a fresh sequence number until a definitive answer or the
    /// deadline.
    async fn request(&mut self, op: Op) -> Result<Config, AdminError> {
        let Some(cursor) = self.cursor.as_mut() else {
            return Err(AdminError::NoMasters);
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        let request = Request {
            client: self.client,
            seq,
            op,
        };
        let bytes = bincode::serialize(&request).map_err(|e| AdminError::Encode(e.to_string()))?;
        let mut progress = Progress::default();
        let work = retry_until_answer(
            &self.transport,
            &self.masters,
            cursor,
            &self.policy,
            &request,
            &bytes,
            &mut progress,
        );
        let outcome = match self.policy.deadline {
            None => Some(work.await),
            Some(deadline) => race_timer(work, self.transport.sleep(deadline)).await,
        };
        match outcome {
            Some(Outcome::Done(config)) => Ok(config),
            Some(Outcome::Rejected(error)) => Err(AdminError::Rejected(error)),
            None => {
                let deadline = self.policy.deadline.unwrap_or_default();
                tracing::debug!(
                    client = self.client,
                    seq,
                    attempts = progress.attempts,
                    ?deadline,
                    "shard master deadline passed"
                );
                Err(AdminError::Timeout {
                    deadline,
                    attempts: progress.attempts,
                    last_failure: progress.last_failure,
                })
            }
        }
    }
}

/// The retry loop of one operation: attempts `bytes` (the encoding of `request`) at the
/// cursor's server until a definitive answer, backing off between rounds. Unbounded by
/// itself; [`Admin::request`] bounds it with the caller's deadline when there is one.
async fn retry_until_answer<T: Transport>(
    transport: &T,
    masters: &[String],
    cursor: &mut LeaderCursor,
    policy: &RetryPolicy,
    request: &Request,
    bytes: &[u8],
    progress: &mut Progress,
) -> Outcome {
    let (client, seq) = (request.client, request.seq);
    let mut backoff = Backoff::new(policy);
    cursor.start_operation();
    loop {
        let server = masters[cursor.current()].as_str();
        progress.attempts += 1;
        let failure = match attempt(transport, server, bytes, policy).await {
            Ok(Ok(config)) => return Outcome::Done(config),
            Ok(Err(MasterError::WrongLeader { hint })) => AttemptFailure::WrongLeader { hint },
            Ok(Err(error)) => {
                tracing::debug!(client, seq, server, %error, "shard master rejected request");
                return Outcome::Rejected(error);
            }
            Err(failure) => failure,
        };
        if let AttemptFailure::BadReply(why) = &failure {
            tracing::warn!(
                client,
                seq,
                server,
                why = why.as_str(),
                "bad reply from shard master"
            );
        } else {
            tracing::debug!(client, seq, server, attempt = progress.attempts, %failure, "shard master attempt failed");
        }
        let hint = match failure {
            AttemptFailure::WrongLeader { hint } => hint,
            _ => None,
        };
        progress.last_failure = Some(failure);
        if cursor.failed(hint) == Next::BackOff {
            transport.sleep(backoff.next_delay()).await;
        }
    }
}

/// One RPC to `server`: the decoded, checked [`Response`], or why there is none.
async fn attempt<T: Transport>(
    transport: &T,
    server: &str,
    bytes: &[u8],
    policy: &RetryPolicy,
) -> Result<Response, AttemptFailure> {
    let reply = transport
        .call(server, bytes.to_vec(), policy.rpc_timeout)
        .await?;
    let response: Response =
        bincode::deserialize(&reply).map_err(|e| AttemptFailure::BadReply(e.to_string()))?;
    if let Ok(config) = &response {
        config
            .check()
            .map_err(|e| AttemptFailure::BadReply(e.to_string()))?;
    }
    Ok(response)
}
