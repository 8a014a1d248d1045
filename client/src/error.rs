//! Errors of the client library ([`AdminError`] for the shard master's client,
//! [`ClientError`] for the data client), split into retryable and final ones.

use std::time::Duration;

use shardkv_proto::{KvError, MasterError};

use crate::retry::{AttemptFailure, Expired};

/// Why an [`crate::Admin`] operation failed.
///
/// Transient trouble (no leader, timeouts, unreachable or misbehaving servers) never
/// surfaces on its own: the admin retries it until an answer comes or the caller's
/// deadline passes, and only then reports [`AdminError::Timeout`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The shard master refused the request as invalid (unknown group, shard out of
    /// range, gid 0, ...). It created no configuration; sending the same request again
    /// will be refused again.
    #[error("shard master rejected the request: {0}")]
    Rejected(MasterError),
    /// No answer before the caller's deadline. The operation **may or may not** have
    /// taken effect: a Join, Leave or Move sent before the deadline can still commit.
    /// Query the latest configuration to find out before trying again, since a new
    /// attempt is a new request (a repeated Join of a group that did join is
    /// [`MasterError::AlreadyJoined`]).
    #[error(
        "no answer from the shard master within {deadline:?} ({attempts} attempts; last failure: {})",
        last_failure.as_ref().map_or_else(|| "none".to_string(), ToString::to_string)
    )]
    Timeout {
        /// The deadline that passed.
        deadline: Duration,
        /// How many RPCs were started.
        attempts: u64,
        /// Why the most recent finished attempt failed, if any finished.
        last_failure: Option<AttemptFailure>,
    },
    /// The admin was given no shard-master address.
    #[error("no shard master addresses given: pass the shard masters' host:port addresses")]
    NoMasters,
    /// The request could not be encoded (a bincode failure; not expected for
    /// well-formed requests).
    #[error("cannot encode the request: {0}")]
    Encode(String),
}

impl AdminError {
    /// Whether the same call may succeed later: only [`AdminError::Timeout`] (the
    /// cluster may recover). See its docs before retrying a Join, Leave or Move.
    pub fn is_retryable(&self) -> bool {
        matches!(self, AdminError::Timeout { .. })
    }
}

/// Why a [`crate::Client`] operation failed.
///
/// Transient trouble (no leader, a stale configuration, groups still receiving shards,
/// timeouts, unreachable or misbehaving servers) never surfaces on its own: the client
/// retries it until an answer comes or the caller's deadline passes, and only then
/// reports [`ClientError::Timeout`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The request is invalid and was not carried out; sending it again is refused
    /// again. A key over [`shardkv_proto::kv::MAX_KEY_BYTES`] or a value over
    /// [`shardkv_proto::kv::MAX_VALUE_BYTES`] is caught before anything is sent; an
    /// Append whose result would pass the value limit
    /// ([`KvError::ValueTooLarge`]), a [`KvError::Malformed`] frame and a
    /// [`KvError::StaleRequest`] come from the group, which changed nothing.
    #[error("request rejected: {0}")]
    Rejected(KvError),
    /// No answer before the caller's deadline. The operation **may or may not** have
    /// taken effect: a Put, Append or Delete sent before the deadline can still apply
    /// (once), even after later operations of the same handle (they may run under other
    /// sessions). Read the key to find out before repeating an Append, since a new call
    /// is a new request.
    #[error(
        "no answer within {deadline:?} ({attempts} attempts; last failure: {}); the operation may have taken effect",
        last_failure.as_ref().map_or_else(|| "none".to_string(), ToString::to_string)
    )]
    Timeout {
        /// The deadline that passed.
        deadline: Duration,
        /// How many RPCs were started, to the shard master and to replica groups.
        attempts: u64,
        /// Why the most recent finished attempt failed, if any finished.
        last_failure: Option<AttemptFailure>,
    },
    /// The operation **may or may not** have taken effect, and the cluster can no
    /// longer tell: it was retried after an attempt that may have applied, and the
    /// key's shard had forgotten the session by then (the client was cut off, or its
    /// retries went unanswered, for longer than the group's session timeout, an hour by
    /// default, or the shard forgot it sooner among more than 100,000 clients). It took effect at most once. Read the key to find out before repeating
    /// an Append, since a new call is a new request.
    #[error("outcome unknown after {attempts} attempts: the key's shard forgot this client's session (cut off past the session timeout, or evicted by a flood of clients) while an attempt may have applied; it took effect at most once; read the key to find out")]
    OutcomeUnknown {
        /// How many RPCs were started.
        attempts: u64,
    },
    /// The client was given no shard-master address, so it cannot learn a
    /// configuration.
    #[error("no shard master addresses given: pass the shard masters' host:port addresses")]
    NoMasters,
    /// The shard master refused the client's configuration query. It answers queries
    /// from anyone, so this means a misconfigured or misbehaving master.
    #[error("shard master rejected the configuration query: {0} (check that the addresses are the cluster's shard masters)")]
    MasterRejected(MasterError),
    /// The request could not be encoded (a bincode failure; not expected).
    #[error("cannot encode the request: {0}")]
    Encode(String),
}

impl ClientError {
    /// Whether the same call may succeed later: [`ClientError::Timeout`] and
    /// [`ClientError::OutcomeUnknown`]. See their docs before repeating an Append.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ClientError::Timeout { .. } | ClientError::OutcomeUnknown { .. }
        )
    }
}

impl From<Expired> for AdminError {
    fn from(expired: Expired) -> Self {
        let Expired {
            deadline,
            attempts,
            last_failure,
        } = expired;
        AdminError::Timeout {
            deadline,
            attempts,
            last_failure,
        }
    }
}

/// The same account, in the data client's terms (through [`AdminError::Timeout`]).
impl From<Expired> for ClientError {
    fn from(expired: Expired) -> Self {
        AdminError::from(expired).into()
    }
}

/// A configuration query fails the way an admin operation does; the client reports it
/// in its own terms.
impl From<AdminError> for ClientError {
    fn from(error: AdminError) -> Self {
        match error {
            AdminError::Rejected(error) => ClientError::MasterRejected(error),
            AdminError::NoMasters => ClientError::NoMasters,
            AdminError::Encode(why) => ClientError::Encode(why),
            AdminError::Timeout {
                deadline,
                attempts,
                last_failure,
            } => ClientError::Timeout {
                deadline,
                attempts,
                last_failure,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::TransportError;

    /// Only a client timeout invites a retry, and its message warns that the operation
    /// may have happened.
    #[test]
    fn client_errors() {
        let timeout = ClientError::Timeout {
            deadline: Duration::from_millis(500),
            attempts: 7,
            last_failure: Some(AttemptFailure::WrongGroup { gid: 100 }),
        };
        assert!(timeout.is_retryable());
        assert_eq!(
            timeout.to_string(),
            "no answer within 500ms (7 attempts; last failure: group 100 does not serve the \
             key's shard now); the operation may have taken effect"
        );
        let rejected = ClientError::Rejected(KvError::KeyTooLarge { len: 9, max: 8 });
        assert!(!rejected.is_retryable());
        assert!(!ClientError::NoMasters.is_retryable());
        assert_eq!(
            ClientError::from(AdminError::NoMasters),
            ClientError::NoMasters
        );
    }

    /// Only a timeout invites a retry; rejections and misconfiguration are final.
    #[test]
    fn only_timeout_is_retryable() {
        let timeout = AdminError::Timeout {
            deadline: Duration::from_secs(1),
            attempts: 3,
            last_failure: Some(AttemptFailure::Transport(TransportError::Unreachable)),
        };
        assert!(timeout.is_retryable());
        assert!(!AdminError::Rejected(MasterError::EmptyJoin).is_retryable());
        assert!(!AdminError::NoMasters.is_retryable());
        assert!(!AdminError::Encode("x".into()).is_retryable());
    }

    /// A timeout's message names the deadline, the attempt count and the last failure,
    /// so a command line can print it as a one-line error.
    #[test]
    fn timeout_message_is_one_informative_line() {
        let error = AdminError::Timeout {
            deadline: Duration::from_secs(2),
            attempts: 4,
            last_failure: Some(AttemptFailure::Transport(TransportError::Unreachable)),
        };
        assert_eq!(
            error.to_string(),
            "no answer from the shard master within 2s (4 attempts; last failure: server unreachable)"
        );
    }
}
