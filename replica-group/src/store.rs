//! [`ShardStore`]: one shard's duplicate table, and the key/value semantics applied to
//! the shard's keys and values, which live in the group's [`Data`] under the shard's
//! prefix. The table is in memory and in snapshots, as the shard's phase is.
//!
//! ```text
//!   apply(index, request)
//!     |-- limits (key, value)            -> KeyTooLarge / ValueTooLarge, not remembered
//!     |-- Get                            -> Value(data.get(key)), never remembered
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

use serde::{Deserialize, Serialize};
use shardkv_proto::kv::{KvError, Op, Reply, Request, Response, MAX_VALUE_BYTES};
use shardkv_proto::ShardId;

use crate::data::{Data, DataError};
use crate::sessions::Sessions;
use crate::Index;

/// One shard's duplicate table (its keys and values are in the group's [`Data`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardStore {
    /// The shard's duplicate table.
    pub sessions: Sessions,
}

impl ShardStore {
    /// Applies the committed `request` (whose key is in `shard`) at log `index` to the
    /// shard's keys in `data`.
    pub fn apply(
        &mut self,
        data: &mut Data,
        shard: ShardId,
        index: Index,
        request: &Request,
    ) -> Result<Response, DataError> {
        let Request { client, seq, op } = request;
        // Limits were checked before proposing; an entry that passes them anyway (an
        // older server, a corrupt log) is refused identically on every replica.
        if let Err(error) = op.check_limits() {
            return Ok(Err(error));
        }
        if let Op::Get { key } = op {
            return Ok(Ok(Reply::Value(data.get(shard, key)?)));
        }
        // A failed write stops the node (the caller's error is fatal), so what the
        // table remembers for it is never used.
        let mut failed = None;
        let answer = self.sessions.once(*client, *seq, index, || {
            execute(data, shard, op).unwrap_or_else(|error| {
                failed = Some(error);
                Ok(Reply::Done)
            })
        });
        if let Some(error) = failed {
            return Err(error);
        }
        Ok(answer.unwrap_or_else(|last| {
            Err(KvError::StaleRequest {
                client: *client,
                seq: *seq,
                last,
            })
        }))
    }
}

/// Runs the write `op` on `shard`'s keys in `data`.
fn execute(data: &mut Data, shard: ShardId, op: &Op) -> Result<Response, DataError> {
    match op {
        Op::Get { .. } => unreachable!("gets are answered before execute"),
        Op::Put { key, value } => data.put(shard, key, value)?,
        Op::Append { key, value } => {
            let mut current = data.get(shard, key)?.unwrap_or_default();
            let len = current.len() + value.len();
            if len > MAX_VALUE_BYTES {
                return Ok(Err(KvError::ValueTooLarge {
                    len,
                    max: MAX_VALUE_BYTES,
                }));
            }
            current.extend_from_slice(value);
            data.put(shard, key, &current)?;
        }
        Op::Delete { key } => data.delete(shard, key)?,
    }
    Ok(Ok(Reply::Done))
}
