//! Errors of the replicated log, split into *retryable* and *fatal*.
//!
//! Three enums, one per layer:
//!
//! - [`StoreError`]: what a [`crate::LogStore`] or [`crate::Backend`] reports. A backend
//!   I/O failure or a corrupt record is fatal: the node must stop (raft-rs itself treats
//!   any storage error as "this instance is now inoperable"). Out-of-range requests
//!   (`Compacted`, `Unavailable`, `SnapshotOutOfDate`) are the caller's mistake and change
//!   nothing.
//! - [`Error`]: what a [`crate::Replica`] reports. `NotLeader` and `Busy` are the normal
//!   "try again elsewhere / later" answers; everything else is fatal or a bad input.
//! - [`ServerError`]: what a server driving a replica and its state machine reports
//!   when it must stop: the log failed, or a snapshot does not restore. Always fatal.
//!
//! Callers decide with [`Error::is_retryable`] / [`StoreError::is_retryable`].

use crate::{Index, NodeId};

/// A failure of a [`crate::LogStore`] or its [`crate::Backend`].
#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    /// The backend failed to read or write (an I/O error, disk full). Fatal.
    #[error("storage backend failed: {0}")]
    Backend(String),
    /// A stored record could not be decoded or contradicts another record. Fatal: the
    /// store refuses to guess.
    #[error("corrupt stored record {what}: {reason}")]
    Corrupt {
        /// Which record (key or role).
        what: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The requested index was compacted into the snapshot.
    #[error("index {index} is compacted (first index {first_index})")]
    Compacted {
        /// Requested index.
        index: Index,
        /// First index still in the log.
        first_index: Index,
    },
    /// The requested index is beyond what the log (or the applied state) holds.
    #[error("index {index} is unavailable (last index {last_index})")]
    Unavailable {
        /// Requested index.
        index: Index,
        /// Last index available for this request.
        last_index: Index,
    },
    /// A snapshot older than the one already installed was offered.
    #[error("snapshot at {index} is older than the installed snapshot at {installed}")]
    SnapshotOutOfDate {
        /// Index of the offered snapshot.
        index: Index,
        /// Index of the installed snapshot.
        installed: Index,
    },
}

impl StoreError {
    /// True when retrying later (or elsewhere) may succeed. Storage errors never are:
    /// out-of-range requests must be corrected, and I/O or corruption is fatal.
    pub fn is_retryable(&self) -> bool {
        false
    }

    /// Wraps this error for raft-rs's `Storage` trait, keeping the range errors raft-rs
    /// reacts to (`Compacted` makes a leader send a snapshot).
    pub(crate) fn into_raft(self) -> raft::Error {
        let storage = match self {
            StoreError::Compacted { .. } => raft::StorageError::Compacted,
            StoreError::Unavailable { .. } => raft::StorageError::Unavailable,
            StoreError::SnapshotOutOfDate { .. } => raft::StorageError::SnapshotOutOfDate,
            other => raft::StorageError::Other(Box::new(other)),
        };
        raft::Error::Store(storage)
    }
}

/// A failure of a [`crate::Replica`] operation.
#[derive(thiserror::Error, Debug)]
pub enum Error {
    /// This replica is not the leader (or is handing leadership over). Retry at `hint`
    /// when known. Retryable.
    #[error("not the leader (leader hint {hint:?})")]
    NotLeader {
        /// The node believed to lead (or about to lead), if any.
        hint: Option<NodeId>,
    },
    /// A membership change is already in flight (proposed and not applied, or the
    /// configuration is still joint). Retry after it applies. Retryable.
    #[error("a membership change is pending")]
    Busy,
    /// The log store failed; see [`StoreError`].
    #[error("log store: {0}")]
    Store(#[from] StoreError),
    /// raft-rs refused the operation (invalid configuration, invalid conf change,
    /// message from an unknown peer, dropped proposal).
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// Bytes from the network (or a committed entry) did not decode.
    #[error("malformed input: {0}")]
    Decode(String),
}

impl Error {
    /// True when the same request may succeed later or at another node: `NotLeader`,
    /// `Busy`, and raft-rs's `ProposalDropped` (leadership changed under the proposal).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::NotLeader { .. } | Error::Busy => true,
            Error::Raft(raft::Error::ProposalDropped) => true,
            Error::Store(error) => error.is_retryable(),
            Error::Raft(_) | Error::Decode(_) => false,
        }
    }
}

/// Why snapshot bytes handed back by the log do not restore into a state machine.
/// Fatal: the bytes are not a snapshot this version of the state machine wrote, and
/// retrying will not change them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// bincode could not decode the bytes.
    #[error("snapshot does not decode: {0}")]
    Decode(String),
    /// The bytes come from another format version.
    #[error("snapshot version {found}, expected {expected}")]
    Version {
        /// The version found.
        found: u32,
        /// The version this code writes and reads.
        expected: u32,
    },
    /// The bytes decode but break an invariant of the state.
    #[error("snapshot state is invalid: {0}")]
    Invalid(String),
    /// The state's own storage failed while taking the snapshot in.
    #[error("storing the snapshot failed: {0}")]
    Storage(String),
}

impl SnapshotError {
    /// Always false: snapshot errors mean corrupt or foreign bytes, or a failed disk.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// Why a server over a [`crate::Replica`] cannot go on: its replicated log failed, or a
/// snapshot the log handed back does not restore into its state machine. Fatal: the
/// node must stop (and may restart from disk).
#[derive(thiserror::Error, Debug)]
pub enum ServerError {
    /// The replicated log failed (storage failure or raft invariant).
    #[error("replicated log failed: {0}")]
    Raft(#[from] Error),
    /// The state machine's own storage failed applying, committing or snapshotting.
    #[error("state machine storage failed at index {index}: {reason}")]
    State {
        /// The applied index it failed at.
        index: Index,
        /// What failed.
        reason: String,
    },
    /// A snapshot handed back by the log does not restore.
    #[error("cannot restore snapshot at index {index}: {source}")]
    Snapshot {
        /// The snapshot's index.
        index: Index,
        /// Why it does not restore.
        source: SnapshotError,
    },
}

impl ServerError {
    /// Always false: the server cannot recover from these without a restart.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the retryable/fatal split the clients rely on.
    #[test]
    fn retryable_split() {
        assert!(Error::NotLeader { hint: Some(2) }.is_retryable());
        assert!(Error::Busy.is_retryable());
        assert!(Error::Raft(raft::Error::ProposalDropped).is_retryable());
        assert!(!Error::Decode("x".into()).is_retryable());
        assert!(!Error::Store(StoreError::Backend("disk".into())).is_retryable());
        assert!(!Error::Raft(raft::Error::StepLocalMsg).is_retryable());
    }
}
