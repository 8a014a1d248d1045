//! The shard master's messages and its log entry encoding.
//!
//! The client-facing messages live in the shared types crate
//! ([`shardkv_proto::master`]), because the client library must not depend on this
//! crate (which pulls in raft-rs); they are re-exported here, and each variant is
//! documented where it is defined:
//!
//! - [`Request`] `{ client, seq, op }` with [`Op`] = `Join` | `Leave` | `Move` | `Query` |
//!   `Abandon` | `Holder`: sent by a client to the replica it believes leads.
//! - [`Response`] = `Result<Config, MasterError>`: the created or requested configuration
//!   (the latest, for Abandon; the holding one, for Holder), or a typed error;
//!   [`MasterError::WrongLeader`] is the only retryable one.
//!
//! Replicas talk to each other only in Raft messages, opaque bytes produced by the Raft
//! layer. The one message of this crate's own is the **log entry**: the [`Request`]
//! itself, proposed by the leader and applied by every replica. It is encoded with
//! [`encode_entry`] (bincode 1.3, fixed-width integers) and decoded with
//! [`decode_entry`], both of which bound the size ([`MAX_ENTRY_BYTES`]) and return an
//! error rather than panicking on input.

pub use shardkv_proto::master::{MasterError, Op, Request, Response};
pub use shardkv_proto::Config;
use shardkv_raft::{decode_command, encode_command};

use crate::ShardMaster;

/// The largest log entry [`decode_entry`] accepts.
pub const MAX_ENTRY_BYTES: u64 = 1 << 20;

/// Why a request could not become a log entry, or log entry bytes could not become a
/// request. Fatal for that request or entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// The request encodes to more than [`MAX_ENTRY_BYTES`]; the client gets
    /// [`MasterError::RequestTooLarge`].
    #[error("request encodes to more than {MAX_ENTRY_BYTES} bytes")]
    TooLarge,
    /// The bytes are not a request this version encoded.
    #[error("log entry does not decode as a shard master request: {0}")]
    Decode(String),
}

/// `request` as log entry bytes, or [`EntryError::TooLarge`].
pub fn encode_entry(request: &Request) -> Result<Vec<u8>, EntryError> {
    encode_command::<ShardMaster>(request).ok_or(EntryError::TooLarge)
}

/// The [`Request`] in log entry `bytes`.
pub fn decode_entry(bytes: &[u8]) -> Result<Request, EntryError> {
    decode_command::<ShardMaster>(bytes).map_err(EntryError::Decode)
}
