//! Messages of the replica groups: client requests (Get/Put/Append/Delete) and the
//! group-to-group shard migration protocol.
//!
//! # Clients
//!
//! A client routes a key to its shard ([`crate::key_to_shard`]), the shard to its group
//! (the latest [`crate::Config`] it knows), and sends a [`Request`] to the replica of that
//! group it believes leads. The leader replicates a Put, Append or Delete through its Raft
//! log and answers when it applies; it answers a Get once a ReadIndex round confirms it
//! still leads and it has applied through that index. The answer is a [`Response`]: a
//! [`Reply`] or a [`KvError`].
//!
//! Exactly-once: as with the shard master, each client picks a random [`ClientId`] and
//! numbers its requests with [`Seq`] from [`crate::master::FIRST_SEQ`] up, one request
//! outstanding at a time; a retry reuses the `(client, seq)` of the request it retries.
//! A group remembers, **per shard**, each client's latest mutating request and its
//! answer ([`DupEntry`]); that table travels with the shard when it moves, so a retried
//! Append sent to the new owner after a configuration change is not applied twice.
//! Gets change nothing and are never deduplicated. A shard forgets a client quiet for
//! the group's session timeout (an hour of cluster time by default); a request of a
//! client it does not know applies only when the request's [`Request::seen`] proves it
//! never applied before, and is refused with [`KvError::UnknownSession`] otherwise, so no
//! request applies twice however late it arrives ([`crate::session`] has the rule and
//! its proof).
//!
//! # Groups
//!
//! When a configuration moves a shard from group A to group B, B *pulls* it: B's leader
//! sends [`MigrationRequest::PullShard`] to A's replicas until one answers with
//! [`MigrationReply::ShardData`], installs the data through B's own log chunk by chunk
//! (each at most [`MIGRATION_CHUNK_BYTES`], the next asked after the last key
//! installed), then tells A
//! with [`MigrationRequest::DeleteShard`] that A may delete its copy; A deletes it
//! through A's log and answers [`MigrationReply::Deleted`]. Both requests name the
//! configuration that moved the shard, so a late or repeated message about an older move
//! is recognised and answered without effect.
//!
//! # Wire format
//!
//! Everything a group replica receives at its address is one [`GroupRequest`] and
//! everything it answers is one [`GroupResponse`], encoded with bincode 1.3's default
//! options (`bincode::serialize`, fixed-width little-endian integers), like the shard
//! master's messages. Servers bound what they decode; see the size limits below.
//!
//! # Size limits
//!
//! - [`MAX_KEY_BYTES`] (4 KiB): keys are routing and index material; etcd and TiKV keep
//!   theirs in the same range.
//! - [`MAX_VALUE_BYTES`] (256 KiB): keeps one request far under the Raft layer's 1 MiB
//!   per-message budget, so a single write never stalls replication. An Append whose
//!   *result* would pass the limit fails with [`KvError::ValueTooLarge`] and changes
//!   nothing.
//! - [`MAX_REQUEST_BYTES`] (1 MiB): what a server decodes from a client frame.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{ClientId, ConfigNum, Millis, NodeId, Seq, ShardId};

/// The longest key, in bytes (4 KiB).
pub const MAX_KEY_BYTES: usize = 4 * 1024;

/// The longest value, in bytes (256 KiB), after an Append as well as in a Put.
pub const MAX_VALUE_BYTES: usize = 256 * 1024;

/// The largest encoded client frame a server decodes (1 MiB): a key and a value at their
/// limits plus framing fit many times over.
pub const MAX_REQUEST_BYTES: u64 = 1 << 20;

/// A client's request to a replica group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The client's id (random per client process).
    pub client: ClientId,
    /// The request's sequence number within `client`; a retry reuses it.
    pub seq: Seq,
    /// The latest clock of the key's shard the client observed (from the
    /// [`GroupResponse::Kv`] answers of that shard) before it first sent this request,
    /// the same on every retry. It lets a group that does not know the client's session
    /// tell a request that cannot have applied before from one that may have (see
    /// [`crate::session`] and [`KvError::UnknownSession`]). A mutation with 0 observed
    /// nothing and is always refused, with the clock to send it again with.
    pub seen: Millis,
    /// What to do.
    pub op: Op,
}

/// The key/value operations. Keys and values are arbitrary bytes (empty allowed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Read the value of `key`.
    ///
    /// Answered with [`Reply::Value`] holding the value, or `None` when the key is
    /// absent. Served by ReadIndex, without a log entry (linearizable all the same: the
    /// leader confirms its leadership with a quorum and waits until it has applied
    /// through the read index), and never recorded in the duplicate table: repeating a
    /// read changes nothing.
    Get {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Set `key` to `value`, replacing any previous value.
    ///
    /// Answered with [`Reply::Done`]. Deduplicated by `(client, seq)`.
    Put {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The new value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Append `value` to the value of `key`; on an absent key, behaves as a Put.
    ///
    /// Answered with [`Reply::Done`], or [`KvError::ValueTooLarge`] when the result would
    /// pass [`MAX_VALUE_BYTES`] (then nothing changes). Deduplicated by `(client, seq)`:
    /// this is the operation that exactly-once exists for.
    Append {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The bytes to append.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Remove `key`; silent (still [`Reply::Done`]) when it is absent.
    ///
    /// Deduplicated by `(client, seq)`.
    Delete {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
}

impl Op {
    /// The key the operation touches.
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Get { key } | Op::Delete { key } => key,
            Op::Put { key, .. } | Op::Append { key, .. } => key,
        }
    }

    /// True for the operations that change state (and are deduplicated).
    pub fn is_mutation(&self) -> bool {
        !matches!(self, Op::Get { .. })
    }

    /// Checks the size limits: [`KvError::KeyTooLarge`] or [`KvError::ValueTooLarge`]
    /// (for an Append, only the appended bytes; the result is checked when applied).
    pub fn check_limits(&self) -> Result<(), KvError> {
        let key = self.key().len();
        if key > MAX_KEY_BYTES {
            return Err(KvError::KeyTooLarge {
                len: key,
                max: MAX_KEY_BYTES,
            });
        }
        match self {
            Op::Put { value, .. } | Op::Append { value, .. } if value.len() > MAX_VALUE_BYTES => {
                Err(KvError::ValueTooLarge {
                    len: value.len(),
                    max: MAX_VALUE_BYTES,
                })
            }
            _ => Ok(()),
        }
    }
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The answer to a Get: the value, or `None` when the key is absent.
    Value(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    /// The answer to a Put, Append or Delete: it took effect (exactly once).
    Done,
}

/// The group's answer to a [`Request`].
pub type Response = Result<Reply, KvError>;

/// Why a group did not carry out a request (or a migration message).
///
/// Retryable ([`KvError::is_retryable`]): [`KvError::WrongGroup`] (re-query the shard
/// master, then retry at the owner), [`KvError::WrongLeader`] and [`KvError::NotLeader`]
/// (retry at another replica of the same group). Every other variant means the request is bad and stays bad; it
/// changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// This group does not serve the key's shard now: it does not own it in its current
    /// configuration, or owns it but is still waiting for its data. Re-query the shard
    /// master for the latest configuration and retry (same `client`, `seq`).
    #[error("this group does not serve the key's shard now")]
    WrongGroup,
    /// This replica is not the leader, or lost leadership before the request committed.
    /// Retry at `hint` when given (the group's `NodeId` `i + 1` is its server `i` in the
    /// configuration), else at another replica. The request may still have been applied;
    /// the retry gets its original answer.
    #[error("not the leader (leader hint: {hint:?})")]
    WrongLeader {
        /// The replica this one believes leads, if any.
        hint: Option<NodeId>,
    },
    /// This replica is not the leader, and did not propose the request: this attempt
    /// certainly changed nothing. Retry at `hint` when given, else at another replica.
    /// (A server that cannot tell answers [`KvError::WrongLeader`].)
    #[error("not the leader, request not proposed (leader hint: {hint:?})")]
    NotLeader {
        /// The replica this one believes leads, if any.
        hint: Option<NodeId>,
    },
    /// The key is longer than [`MAX_KEY_BYTES`].
    #[error("key of {len} bytes, more than {max}")]
    KeyTooLarge {
        /// The key's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The value (or, for an Append, the value it would produce) is longer than
    /// [`MAX_VALUE_BYTES`].
    #[error("value of {len} bytes, more than {max}")]
    ValueTooLarge {
        /// The (resulting) value's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A request older than the client's latest applied one on this shard: the client
    /// already had its answer to a later request, so this is a stray duplicate, ignored.
    #[error("client {client}: request {seq} is older than applied request {last}")]
    StaleRequest {
        /// The client.
        client: ClientId,
        /// The request's sequence number.
        seq: Seq,
        /// The client's latest applied sequence number on the shard.
        last: Seq,
    },
    /// The frame did not decode as a request of this protocol version (or passed
    /// [`MAX_REQUEST_BYTES`]).
    #[error("malformed request: {reason}")]
    Malformed {
        /// What was wrong.
        reason: String,
    },
    /// The group's disk is nearly full: it refuses writes until there is room again, and
    /// still serves reads.
    #[error("no space: the group's disk is nearly full; writes are refused until there is room (reads still work)")]
    NoSpace,
    /// The shard does not know the client's session (it never wrote here, or was quiet
    /// past the session timeout) and the request's `seen` does not prove it never
    /// applied (or carries `seen` 0): refused, and nothing changed. When no earlier
    /// attempt of the request can have applied (each carried `seen` 0, or was refused, or
    /// never proposed), send it again with `seen` set to `clock`; otherwise its outcome is
    /// unknown: read the key to find out.
    #[error("unknown session: this shard does not know the client (new to the shard, or quiet past the session timeout) and the request may have applied before; resend it with seen = {clock} if no earlier attempt can have applied, else treat its outcome as unknown")]
    UnknownSession {
        /// The shard's clock when it refused.
        clock: Millis,
        /// The group's session timeout: how long a quiet client is remembered.
        timeout: Millis,
    },
    /// The caller's certificate does not allow the request (with mutual TLS, only a
    /// group replica's certificate may ask for shards).
    #[error("not allowed: {reason}")]
    NotAllowed {
        /// Who asked, and what it may not do.
        reason: String,
    },
}

impl KvError {
    /// Whether the same request may succeed if sent again (elsewhere or later).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            KvError::WrongGroup | KvError::WrongLeader { .. } | KvError::NotLeader { .. }
        )
    }
}

/// One client's entry in a shard's duplicate table: its latest applied mutating request
/// (`seq`), the answer it got (`response`) and when it was last heard, by the shard's
/// clock.
pub type DupEntry = crate::session::Session<Response>;

/// A shard's duplicate table as it ships with the shard in [`MigrationReply::ShardData`]
/// ([`crate::session::Sessions::to_table`] / [`crate::session::Sessions::from_table`]).
pub type DupTable = crate::session::Table<Response>;

/// The most bytes of keys and values one chunk of a moving shard carries (one pair may
/// be larger alone).
pub const MIGRATION_CHUNK_BYTES: usize = 1 << 20;

/// A request from one replica group to another, about one shard that changes owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MigrationRequest {
    /// "Give me `shard` as it stood when configuration `config_num` took it from you."
    ///
    /// Sent by the new owner's leader, while the shard is in its pulling phase, to the
    /// replicas of the shard's owner in configuration `config_num - 1` (round robin,
    /// every few ticks, until one answers with data). Any replica of the old owner may
    /// answer: once it has applied configuration `config_num` the shard is frozen there,
    /// identical on every replica, so no leader is needed. A replica that has not yet
    /// applied `config_num` answers [`MigrationReply::NotReady`].
    PullShard {
        /// The configuration that moved the shard.
        config_num: ConfigNum,
        /// The shard.
        shard: ShardId,
        /// The last key already received (the shard travels in chunks of at most
        /// [`MIGRATION_CHUNK_BYTES`]); `None` for the first chunk.
        after: Option<Vec<u8>>,
    },
    /// "I have durably installed `shard` for configuration `config_num`: delete yours."
    ///
    /// Sent by the new owner's leader after the install entry applied, to the same
    /// replicas it pulled from, until one answers [`MigrationReply::Deleted`]. The old
    /// owner's leader puts the deletion through its own log and answers once it applied;
    /// a replica already past `config_num` answers `Deleted` at once (the deletion
    /// applied before it could move on). This is the acknowledgement that makes shard
    /// garbage collection safe (6.824 challenge 1).
    DeleteShard {
        /// The configuration that moved the shard.
        config_num: ConfigNum,
        /// The shard.
        shard: ShardId,
    },
    /// "I am a replica of your group whose log is behind your compacted log: give me
    /// the state, at index `index` or later."
    ///
    /// A follower's catch-up (see `docs/architecture.md`). The first call (`view: None`)
    /// opens a read view of the answering replica's data at its applied index (at least
    /// `index`) and is answered with [`MigrationReply::StateMeta`]; each later call asks
    /// for the next chunk of that view, named by its applied index, after key `after`,
    /// and is answered with [`MigrationReply::StateChunk`]. The state at an applied index
    /// is the same on every replica, so a view is named by that index alone. A replica
    /// that applied less than `index`, or holds no view at `view`, answers
    /// [`MigrationReply::StateUnavailable`].
    PullState {
        /// The lowest applied index whose state the asker can use (its leader's snapshot).
        index: u64,
        /// The applied index of the view the chunks come from, once the first call
        /// opened it.
        view: Option<u64>,
        /// The last key (as stored: shard prefix included) already received; `None` for
        /// the first chunk.
        after: Option<Vec<u8>>,
    },
}

/// A successful answer to a [`MigrationRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MigrationReply {
    /// The answer to a PullShard: the next chunk of the shard's data, as it stood when
    /// configuration `config_num` was adopted (frozen since), and with the last chunk the
    /// shard's duplicate table. The receiver installs each chunk through its log.
    ShardData {
        /// The configuration that moved the shard (as asked).
        config_num: ConfigNum,
        /// The shard (as asked).
        shard: ShardId,
        /// The last key already received (as asked).
        after: Option<Vec<u8>>,
        /// The keys and values after `after`, in key order, up to
        /// [`MIGRATION_CHUNK_BYTES`] (at least one pair when any is left).
        #[serde(with = "crate::bytes_map")]
        kv: BTreeMap<Vec<u8>, Vec<u8>>,
        /// The last key of this chunk when more follow; `None` for the last chunk.
        next: Option<Vec<u8>>,
        /// The shard's duplicate table, with the last chunk (empty before it).
        sessions: DupTable,
        /// The shard's clock as the answering replica has it (at or after the shard froze
        /// there): the new owner continues the clock from it.
        clock: Millis,
    },
    /// The answering replica cannot act on the request yet: it has not applied
    /// configuration `config_num` (its current one is `current`), or the shard is not
    /// waiting to leave it. The asker retries later or at another replica.
    NotReady {
        /// The answering replica's current configuration.
        current: ConfigNum,
    },
    /// The answer to a DeleteShard: the shard is gone from the old owner (or was long
    /// ago). The new owner stops acknowledging.
    Deleted {
        /// The configuration that moved the shard (as asked).
        config_num: ConfigNum,
        /// The shard (as asked).
        shard: ShardId,
    },
    /// The answer to a PullState without a view: the view opened, named by the applied
    /// index it stands at, and the group's metadata there (configurations, phases,
    /// duplicate tables: everything but the keys).
    StateMeta {
        /// The applied index the view stands at.
        view: u64,
        /// The group's metadata at `view`, as the group encodes it.
        #[serde(with = "serde_bytes")]
        meta: Vec<u8>,
    },
    /// The answer to a PullState with a view: the next stored pairs after `after`, in
    /// key order, at most the group's chunk size (at least one pair when any is left).
    StateChunk {
        /// The view (as asked).
        view: u64,
        /// The last key already received (as asked).
        after: Option<Vec<u8>>,
        /// Stored keys (shard prefix included) and values.
        #[serde(with = "crate::bytes_map")]
        pairs: BTreeMap<Vec<u8>, Vec<u8>>,
        /// True when this is the view's last chunk.
        last: bool,
    },
    /// The answer to a PullState this replica cannot serve: it has applied only
    /// `applied` (less than asked), or the view is gone (expired, evicted, or the
    /// replica restarted). The asker starts over, here or elsewhere.
    StateUnavailable {
        /// The answering replica's applied index.
        applied: u64,
    },
}

/// A group's answer to a [`MigrationRequest`]; errors are [`KvError::WrongLeader`]
/// (a DeleteShard must reach the leader) or [`KvError::Malformed`].
pub type MigrationResponse = Result<MigrationReply, KvError>;

/// Everything a replica group server receives at its address (see the wire format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupRequest {
    /// A client's key/value request, answered with [`GroupResponse::Kv`].
    Kv(Request),
    /// Another group's migration request, answered with [`GroupResponse::Migration`].
    Migration(MigrationRequest),
}

/// Everything a replica group server answers (see the wire format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupResponse {
    /// The answer to [`GroupRequest::Kv`], with the clock of the key's shard when the
    /// group answered from its state (0 when it did not: not the leader, wrong group, a
    /// request refused before it reached the state). A client keeps the latest clock of
    /// each shard it saw, to stamp its next requests' [`Request::seen`].
    Kv(Response, Millis),
    /// The answer to [`GroupRequest::Migration`].
    Migration(MigrationResponse),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only WrongGroup, WrongLeader and NotLeader invite a retry; bad requests stay bad.
    #[test]
    fn retryable_split() {
        assert!(KvError::WrongGroup.is_retryable());
        assert!(KvError::NotLeader { hint: None }.is_retryable());
        assert!(KvError::WrongLeader { hint: None }.is_retryable());
        assert!(!KvError::KeyTooLarge { len: 9, max: 8 }.is_retryable());
        assert!(!KvError::ValueTooLarge { len: 9, max: 8 }.is_retryable());
        assert!(!KvError::Malformed { reason: "x".into() }.is_retryable());
        let stale = KvError::StaleRequest {
            client: 1,
            seq: 1,
            last: 2,
        };
        assert!(!stale.is_retryable());
    }

    /// Limits are checked on the key and the value, at exactly the documented bounds.
    #[test]
    fn limits_at_the_boundary() {
        let key = vec![0; MAX_KEY_BYTES];
        let value = vec![0; MAX_VALUE_BYTES];
        let ok = Op::Put {
            key: key.clone(),
            value: value.clone(),
        };
        assert_eq!(ok.check_limits(), Ok(()));
        let long_key = Op::Get {
            key: vec![0; MAX_KEY_BYTES + 1],
        };
        assert_eq!(
            long_key.check_limits(),
            Err(KvError::KeyTooLarge {
                len: MAX_KEY_BYTES + 1,
                max: MAX_KEY_BYTES
            })
        );
        let long_value = Op::Append {
            key,
            value: vec![0; MAX_VALUE_BYTES + 1],
        };
        assert_eq!(
            long_value.check_limits(),
            Err(KvError::ValueTooLarge {
                len: MAX_VALUE_BYTES + 1,
                max: MAX_VALUE_BYTES
            })
        );
        assert!(!Op::Get { key: vec![] }.is_mutation());
        assert!(Op::Delete { key: vec![] }.is_mutation());
    }
}
