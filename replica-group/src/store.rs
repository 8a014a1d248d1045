//! [`ShardStore`]: one shard's duplicate table and clock, and the key/value semantics
//! applied to the shard's keys and values, which live in the group's [`Data`] under the
//! shard's prefix. The table and the clock are in memory and in the group's metadata,
//! as the shard's phase is.
//!
//! ```text
//!   apply(index, clock, request)
//!     |-- limits (key, value)            -> KeyTooLarge / ValueTooLarge, not remembered
//!     |-- Get                            -> Value(data.get(key)), never remembered
//!     '-- sessions.once(client, seq, seen)
//!           |-- retry: original answer / older: StaleRequest
//!           |-- unknown client, `seen` proves nothing: UnknownSession
//!           '-- Put / Append / Delete    -> Done (or ValueTooLarge: Append result too
//!                                           long), remembered in the duplicate table
//! ```
//!
//! Semantics: Put overwrites; Append appends, and on an absent key behaves as a Put;
//! Delete removes, silently when the key is absent. Every answer is a pure function of
//! the shard's state and the request, so every replica computes the same one.
//!
//! # The shard's clock
//!
//! Sessions are heard, expire and are proven new by the shard's own clock
//! ([`ShardClock`]), not the group's: a shard's table travels with the shard, and the
//! groups' clocks have nothing to do with each other. The shard's clock runs with the
//! group's while the shard is here and, when it arrives from another group, continues
//! from the time it had there. So it never moves back over the shard's whole life, which
//! is what a client's `seen` relies on (see `shardkv_proto::session`).
//!
//! Invariants: no stored key passes `MAX_KEY_BYTES`, no stored value `MAX_VALUE_BYTES`.

use serde::{Deserialize, Serialize};
use shardkv_proto::kv::{KvError, Op, Reply, Request, Response, MAX_VALUE_BYTES};
use shardkv_proto::session::{Clock, Refused, DEFAULT_MAX_SESSIONS};
use shardkv_proto::{Millis, ShardId};

use crate::data::{Data, DataError};
use crate::sessions::Sessions;

/// A shard's clock: the shard's time was `shard` when the group's was `group`, and runs
/// with the group's from there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardClock {
    /// The shard's time at the anchor.
    pub shard: Millis,
    /// The group's time at the anchor.
    pub group: Millis,
}

impl ShardClock {
    /// A clock that reads `shard` when the group's reads `group`.
    pub fn anchored(shard: Millis, group: Millis) -> Self {
        ShardClock { shard, group }
    }

    /// The shard's time when the group's is `group` (never before the anchor: the
    /// group's time only moves forward).
    pub fn at(&self, group: Millis) -> Millis {
        self.shard.saturating_add(group.saturating_sub(self.group))
    }
}

/// One shard's duplicate table and clock (its keys and values are in the group's
/// [`Data`]). The default is an empty shard whose clock reads the group's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardStore {
    /// The shard's duplicate table.
    pub sessions: Sessions,
    /// The shard's clock.
    pub clock: ShardClock,
}

impl ShardStore {
    /// The session clock at the group's time `group`, with the group's `timeout`.
    pub fn session_clock(&self, group: Millis, timeout: Millis) -> Clock {
        Clock {
            now: self.clock.at(group),
            timeout,
        }
    }

    /// Applies the committed `request` (whose key is in `shard`) to the shard's keys in
    /// `data`, at session clock `clock`.
    pub fn apply(
        &mut self,
        data: &mut Data,
        shard: ShardId,
        clock: Clock,
        request: &Request,
    ) -> Result<Response, DataError> {
        let Request {
            client,
            seq,
            seen,
            op,
        } = request;
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
        let answer = self.sessions.once(*client, *seq, Some(*seen), clock, || {
            execute(data, shard, op).unwrap_or_else(|error| {
                failed = Some(error);
                Ok(Reply::Done)
            })
        });
        if let Some(error) = failed {
            return Err(error);
        }
        for (client, heard) in self.sessions.evict(DEFAULT_MAX_SESSIONS) {
            tracing::debug!(client, heard, shard, "session evicted");
        }
        Ok(answer.unwrap_or_else(|refused| match refused {
            Refused::Stale { last } => Err(KvError::StaleRequest {
                client: *client,
                seq: *seq,
                last,
            }),
            Refused::Unknown => Err(KvError::UnknownSession {
                clock: clock.now,
                timeout: clock.timeout,
            }),
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
