//! [`ShardStore`]: the data of one shard (its keys and values) and its duplicate table,
//! and the key/value semantics applied to them.
//!
//! ```text
//!   apply(index, request)
//!     |-- limits (key, value)            -> KeyTooLarge / ValueTooLarge, not remembered
//!     |-- Get                            -> Value(kv.get(key)), never remembered
//!     '-- sessions.once(client, seq)     -> retry: original answer / older: StaleRequest
//!           '-- Put / Append / Delete    -> Done (or ValueTooLarge: Append result too
//!                                           long), remembered in the duplicate table
//! ```
//!
//! Semantics: Put overwrites; Append appends, and on an absent key behaves as a Put;
//! Delete removes, silently when the key is absent. Every answer is a pure function of
//! the shard's state and the request, so every replica computes the same one.
//!
//! Invariants: no stored key passes `MAX_KEY_BYTES`, no stored value `MAX_VALUE_BYTES`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shardkv_proto::kv::{KvError, Op, Reply, Request, Response, MAX_VALUE_BYTES};

use crate::sessions::Sessions;
use crate::Index;

/// One shard's keys and values and its duplicate table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardStore {
    /// The shard's keys and values.
    #[serde(with = "shardkv_proto::bytes_map")]
    pub kv: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The shard's duplicate table.
    pub sessions: Sessions,
}

impl ShardStore {
    /// Applies the committed `request` (whose key is in this shard) at log `index`.
    pub fn apply(&mut self, index: Index, request: &Request) -> Response {
        let Request { client, seq, op } = request;
        // Limits were checked before proposing; an entry that passes them anyway (an
        // older server, a corrupt log) is refused identically on every replica.
        op.check_limits()?;
        if let Op::Get { key } = op {
            return Ok(Reply::Value(self.kv.get(key).cloned()));
        }
        let kv = &mut self.kv;
        self.sessions
            .once(*client, *seq, index, || execute(kv, op))
            .unwrap_or_else(|last| {
                Err(KvError::StaleRequest {
                    client: *client,
                    seq: *seq,
                    last,
                })
            })
    }

    /// Total bytes of keys and values (for logs and tests).
    pub fn data_bytes(&self) -> usize {
        self.kv.iter().map(|(k, v)| k.len() + v.len()).sum()
    }
}

/// Runs the write `op` on a shard's keys and values.
fn execute(kv: &mut BTreeMap<Vec<u8>, Vec<u8>>, op: &Op) -> Response {
    match op {
        Op::Get { .. } => unreachable!("gets are answered before execute"),
        Op::Put { key, value } => {
            kv.insert(key.clone(), value.clone());
        }
        Op::Append { key, value } => {
            let current = kv.get(key).map_or(0, Vec::len);
            let len = current + value.len();
            if len > MAX_VALUE_BYTES {
                return Err(KvError::ValueTooLarge {
                    len,
                    max: MAX_VALUE_BYTES,
                });
            }
            kv.entry(key.clone()).or_default().extend(value);
        }
        Op::Delete { key } => {
            kv.remove(key);
        }
    }
    Ok(Reply::Done)
}
