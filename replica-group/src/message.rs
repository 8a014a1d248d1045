//! The replica group's messages: what goes through its Raft log, and how everything is
//! encoded.
//!
//! The messages clients and other groups send live in the shared types crate
//! ([`shardkv_proto::kv`]: `Request`, `Response`, `MigrationRequest`, ... each variant
//! documented there), because the client library must not depend on this crate. Raft
//! messages between the replicas of one group are opaque bytes of the Raft layer.
//!
//! This crate's own message is the **log entry** ([`Entry`]): every change to a group's
//! state is one, proposed by the leader and applied by every replica in log order. Entries
//! are encoded with bincode 1.3 (fixed-width integers) by [`encode_entry`] and decoded by
//! [`decode_entry`], which bounds the size and returns an error on bad bytes.

use std::collections::BTreeMap;

use bincode::Options;
use serde::{Deserialize, Serialize};
use shardkv_proto::kv::{DupTable, Request};
use shardkv_proto::{Config, ConfigNum, Millis, ShardId};

/// The largest log entry [`decode_entry`] accepts (1 GiB): an install entry carries a
/// whole shard, so this bounds a shard's size (see the crate caveats).
pub const MAX_ENTRY_BYTES: u64 = 1 << 30;

/// One entry of a group's Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Entry {
    /// A client's key/value request.
    ///
    /// Proposed by the leader when a client request passes the size limits and the
    /// leader serves its shard. When applied, the shard's phase is checked again (a
    /// configuration may have applied in between): a shard not served then gets
    /// `WrongGroup`; otherwise the request runs against the shard's data and duplicate
    /// table. A Get comes here only when the leader cannot use ReadIndex yet (no entry
    /// of its term committed, see `reads.rs`); it is linearizable either way.
    Kv(Request),
    /// Adopt the next configuration.
    ///
    /// Proposed by the leader after the shard master answered its poll for configuration
    /// `current + 1` while every shard was stable. Applied only if it is exactly the next
    /// one and every shard is still stable; otherwise ignored (a repeat proposal, or one
    /// from a deposed leader). Adopting sets each shard's phase: gained shards start
    /// pulling, lost shards freeze for their new owner.
    Config(Config),
    /// Install one chunk of a pulled shard.
    ///
    /// Proposed by the leader when the previous owner answered `PullShard` with a chunk.
    /// Applied only while the shard is still `Pulling` in configuration `config_num` and
    /// has received exactly the keys through `after` (a repeat or a stale chunk is
    /// ignored); the keys are written, not yet served. The last chunk (`next` is `None`)
    /// brings the duplicate table, and the shard is served from there on. The entries
    /// make the install durable on a quorum before the old owner is told to delete its
    /// copy.
    InstallShard {
        /// The configuration that moved the shard.
        config_num: ConfigNum,
        /// The shard.
        shard: ShardId,
        /// The last key installed before this chunk; `None` for the first.
        after: Option<Vec<u8>>,
        /// The chunk's keys and values.
        #[serde(with = "shardkv_proto::bytes_map")]
        kv: BTreeMap<Vec<u8>, Vec<u8>>,
        /// The chunk's last key when more follow; `None` for the last chunk.
        next: Option<Vec<u8>>,
        /// The duplicate table, with the last chunk.
        sessions: DupTable,
        /// The shard's clock at the previous owner, which the install continues.
        clock: Millis,
    },
    /// Delete a shard given away: the new owner has installed it.
    ///
    /// Proposed by the leader when the new owner's `DeleteShard` arrives while the shard
    /// is `Offering` in configuration `config_num`. Applied only in that state; the data
    /// goes, and with it from the next snapshot on (6.824 challenge 1). Going through the
    /// log means every replica deletes, and a restarted one does not resurrect the shard.
    DeleteShard {
        /// The configuration that moved the shard.
        config_num: ConfigNum,
        /// The shard.
        shard: ShardId,
    },
    /// The previous owner confirmed it deleted its copy.
    ///
    /// Proposed by the leader when `DeleteShard` was answered `Deleted`. Applied only
    /// while the shard is `Acking` in configuration `config_num`: the shard becomes
    /// plainly `Serving`, which lets the group adopt its next configuration.
    ShardAcked {
        /// The configuration that moved the shard.
        config_num: ConfigNum,
        /// The shard.
        shard: ShardId,
    },
    /// Keep a shard offered to an abandoned group, for its next owner.
    ///
    /// Proposed by the leader when the shard master answers that the group the shard is
    /// offered to was abandoned and that this group holds the shard's data
    /// (`abandon.rs`). Applied only while the shard is `Offering` in configuration
    /// `config_num`: it becomes `Held`, which is stable, so the group can move on.
    Reclaim {
        /// The configuration that moved the shard.
        config_num: ConfigNum,
        /// The shard.
        shard: ShardId,
    },
    /// Nothing but the entry's cluster time.
    ///
    /// Proposed by a leader whose group applied no entry for 1/16 of the session
    /// timeout: applying it moves the group's clock, so quiet sessions expire and the
    /// clocks in answers (read from the applied state) stay close to the leader's.
    Time,
}

/// Log entry bytes that do not decode. Fatal for that entry (skipped, logged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("log entry does not decode as a replica group entry: {0}")]
pub struct EntryError(pub String);

impl EntryError {
    /// Always false: the bytes will not change.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

pub(crate) fn options() -> impl Options {
    bincode::DefaultOptions::new().with_fixint_encoding()
}

/// `entry` as log entry bytes.
pub fn encode_entry(entry: &Entry) -> Vec<u8> {
    options()
        .serialize(entry)
        .expect("an in-memory entry always encodes")
}

/// The [`Entry`] in log entry `bytes`.
pub fn decode_entry(bytes: &[u8]) -> Result<Entry, EntryError> {
    shardkv_raft::decode_command::<crate::GroupState>(bytes).map_err(EntryError)
}

#[cfg(test)]
mod tests {
    use shardkv_proto::kv::Op;

    use super::*;

    /// Entries round-trip, and garbage is an error rather than a panic.
    #[test]
    fn round_trip_and_garbage() {
        let entry = Entry::Kv(Request {
            client: 1,
            seq: 2,
            seen: 3,
            op: Op::Append {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            },
        });
        assert_eq!(decode_entry(&encode_entry(&entry)), Ok(entry));
        assert!(decode_entry(&[9, 9, 9, 9, 9]).is_err());
        assert!(decode_entry(&[]).is_err());
    }
}
