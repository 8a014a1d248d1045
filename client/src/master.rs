//! `MasterSession`: one client's session with the shard master, shared by
//! [`crate::Admin`] (every operation) and [`crate::Client`] (configuration queries).
//!
//! A session owns what must outlive one request: the replicas and the believed leader,
//! the client id and the next sequence number. It owns no transport and no deadline:
//! its owner lends the transport and races the request against its own deadline, so a
//! `Client` can bound a configuration query and the key/value request it serves with one
//! deadline, and count their attempts together.
//!
//! Every request takes a fresh sequence number before its first attempt and every retry
//! resends the identical bytes, so the shard master applies a retried Join, Leave or
//! Move once and answers the retry with the original answer. Queries take a number too
//! (the master ignores it); numbers are never reused, even by a request abandoned at its
//! owner's deadline, so a late copy of an abandoned request can never be mistaken for a
//! new one.

use tracing::Instrument as _;

use shardkv_proto::master::FIRST_SEQ;
use shardkv_proto::{ClientId, Config, MasterError, Op, Request, Response, Seq};

use crate::error::AdminError;
use crate::leader::Replicas;
use crate::retry::{AttemptFailure, Progress, RetryPolicy};
use crate::service::call_until_answer;
use crate::transport::Transport;

/// A client's session with the shard master. See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct MasterSession {
    /// `None` only when the client was given no shard-master address.
    replicas: Option<Replicas>,
    client: ClientId,
    next_seq: Seq,
}

impl MasterSession {
    /// A session with the replicas at `masters` (`masters[i]` has NodeId `i + 1`). Draws
    /// the client id, then (for a non-empty list) the first server, from `transport`.
    pub(crate) fn new<T: Transport>(transport: &T, masters: Vec<String>) -> Self {
        let client = transport.random_u64();
        let replicas = Replicas::new(masters, || transport.random_u64());
        MasterSession {
            replicas,
            client,
            next_seq: FIRST_SEQ,
        }
    }

    /// A copy that sends one request under this session's next number, which this
    /// session then skips: copies made for concurrent requests never share a number.
    pub(crate) fn reserve(&mut self) -> Self {
        let copy = self.clone();
        self.next_seq += 1;
        copy
    }

    /// Takes the leader memory of `other`, a copy that has run a request.
    pub(crate) fn learn_leader(&mut self, other: &MasterSession) {
        self.replicas.clone_from(&other.replicas);
    }

    /// A session with the same servers and leader memory, under client id `client`,
    /// numbering its requests from the first.
    pub(crate) fn fork(&self, client: ClientId) -> Self {
        MasterSession {
            replicas: self.replicas.clone(),
            client,
            next_seq: FIRST_SEQ,
        }
    }

    /// The sequence number the session's next request takes.
    pub(crate) fn next_seq(&self) -> Seq {
        self.next_seq
    }

    /// The session's client id.
    pub(crate) fn client_id(&self) -> ClientId {
        self.client
    }

    /// The shard master addresses, in NodeId order (empty when none were given).
    pub(crate) fn masters(&self) -> &[String] {
        self.replicas.as_ref().map_or(&[], Replicas::servers)
    }

    /// Sends `op` under a fresh sequence number until a definitive answer: the
    /// configuration it created or asked for, or [`AdminError::Rejected`],
    /// [`AdminError::NoMasters`] or [`AdminError::Encode`]; never
    /// [`AdminError::Timeout`], since the caller owns the deadline.
    pub(crate) async fn request<T: Transport>(
        &mut self,
        transport: &T,
        policy: &RetryPolicy,
        op: Op,
        progress: &mut Progress,
    ) -> Result<Config, AdminError> {
        let Some(replicas) = self.replicas.as_mut() else {
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
        let span = tracing::debug_span!("shard_master", client = self.client, seq);
        let answer = call_until_answer(transport, replicas, policy, &bytes, progress, decode)
            .instrument(span.clone())
            .await;
        if let Err(error) = &answer {
            span.in_scope(|| tracing::debug!(%error, "shard master rejected request"));
        }
        answer.map_err(AdminError::Rejected)
    }
}

/// A shard master's reply: a checked configuration or a final rejection; a
/// `WrongLeader` or anything malformed is a failed attempt.
fn decode(reply: &[u8]) -> Result<Result<Config, MasterError>, AttemptFailure> {
    let bad = |e: &dyn std::fmt::Display| AttemptFailure::BadReply(e.to_string());
    let response: Response = bincode::deserialize(reply).map_err(|e| bad(&e))?;
    match response {
        Ok(config) => {
            config.check().map_err(|e| bad(&e))?;
            Ok(Ok(config))
        }
        Err(MasterError::WrongLeader { hint }) => Err(AttemptFailure::WrongLeader { hint }),
        Err(error) => Ok(Err(error)),
    }
}
