//! Errors of the client library, split into retryable and final ones.

use std::time::Duration;

use shardkv_proto::MasterError;

use crate::retry::AttemptFailure;

/// Why an [`crate::Admin`] operation failed.
///
/// Transient trouble (no leader, timeouts, unreachable or misbehaving servers) never
/// surfaces on its own: the admin retries it until an answer comes or the caller's
/// deadline passes, and only then reports [`AdminError::Timeout`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    #[error("no shard master addresses given")]
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::TransportError;

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
