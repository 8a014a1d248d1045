//! [`Sessions`]: a duplicate table, one session per client, so that a retried request
//! takes effect once and gets its original answer. The shard master keeps one table;
//! a replica group keeps one per shard, and it travels with the shard.
//!
//! A client numbers its requests `1, 2, 3, ...` and has one outstanding at a time. For
//! each client the table remembers the sequence number of its latest applied request
//! (of the kinds the server deduplicates) and that request's answer, of the server's
//! type `R`. When request `(client, seq)` is applied ([`Sessions::once`], which runs
//! the request through [`Sessions::check`] and [`Sessions::record`]):
//!
//! - unknown client, or `seq` greater than the remembered one: new; the server executes
//!   it and [`Sessions::record`]s the answer;
//! - `seq` equal: a retry; answer with the remembered answer, change nothing;
//! - `seq` smaller: a stray duplicate of a request the client no longer waits for; the
//!   server answers its `StaleRequest` error and changes nothing.
//!
//! # Expiry, in log time
//!
//! The table is bounded by expiring clients that have gone quiet. Time is the server's
//! Raft log index: every replica applies the same entries at the same indices, so every
//! replica expires the same sessions at the same point, and a snapshot carries the table
//! exactly. Before the entry at index `i` applies, the server calls
//! [`Sessions::expire`], which drops every session whose client was last heard at `j`
//! with `i - j > timeout`. Each entry touches at most one session, so a table never holds
//! more than `timeout + 1` sessions: those heard at `i - timeout ..= i`.
//!
//! A table that moves with a shard ([`Sessions::export`] as [`DupEntry`]s, then
//! [`Sessions::import`]) arrives from another group's log, whose indices mean nothing
//! here: every imported session is stamped as heard at the installing entry's index,
//! which only extends a session's life (never shortens it). Those sessions all share one
//! index, so until they expire together the bound above grows by their number.
//!
//! # Encoding
//!
//! A table serializes as its client → [`Session`] map alone; the expiry index is derived
//! and rebuilt on deserialization.
//!
//! # Caveats
//!
//! - A client silent for longer than the timeout that then retries an old request has it
//!   applied again. The timeout must be far longer than any client's retry horizon.
//! - The timeout is the server's (every replica must use the same), passed to each
//!   [`Sessions::expire`] rather than stored: a group holds many tables with one timeout.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{ClientId, Index, Seq};

/// The default session timeout, in log entries: at any realistic request rate (a shard
/// master's traffic is mostly groups polling with queries, which take log entries too)
/// a million entries is hours, far past any client's retry horizon, while a table costs
/// a few dozen bytes per client.
pub const DEFAULT_SESSION_TIMEOUT_ENTRIES: u64 = 1_000_000;

/// One client's latest deduplicated request and the answer `R` it got: what a table
/// remembers without its log time, and what travels with a shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DupEntry<R> {
    /// The latest applied sequence number.
    pub seq: Seq,
    /// The answer that request got, returned again to a retry.
    pub response: R,
}

/// One client's remembered latest request, with the log index it was last heard at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session<R> {
    /// The latest applied sequence number.
    pub seq: Seq,
    /// The answer that request got.
    pub response: R,
    /// The log index at which the client last made itself heard.
    pub last_index: Index,
}

/// The verdict on an incoming request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check<R> {
    /// Not seen before: execute it, then [`Sessions::record`] the answer.
    New,
    /// A retry of the latest request: answer with its remembered answer.
    Duplicate(R),
    /// Older than the latest request: answer the server's `StaleRequest` error.
    Stale {
        /// The client's latest applied sequence number.
        last: Seq,
    },
}

/// A duplicate table with answers of type `R` (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sessions<R> {
    by_client: BTreeMap<ClientId, Session<R>>,
    /// `(last_index, client)` of every session, oldest first, to expire in order.
    by_index: BTreeSet<(Index, ClientId)>,
}

impl<R> Default for Sessions<R> {
    fn default() -> Self {
        Sessions {
            by_client: BTreeMap::new(),
            by_index: BTreeSet::new(),
        }
    }
}

impl<R: Clone> Sessions<R> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a table from its sessions (as read from a snapshot).
    pub fn from_sessions(by_client: BTreeMap<ClientId, Session<R>>) -> Self {
        let by_index = by_client
            .iter()
            .map(|(&client, session)| (session.last_index, client))
            .collect();
        Sessions {
            by_client,
            by_index,
        }
    }

    /// Every session, by client.
    pub fn sessions(&self) -> &BTreeMap<ClientId, Session<R>> {
        &self.by_client
    }

    /// The number of sessions.
    pub fn len(&self) -> usize {
        self.by_client.len()
    }

    /// True when no client is remembered.
    pub fn is_empty(&self) -> bool {
        self.by_client.is_empty()
    }

    /// True when [`Sessions::expire`] would drop a session at `index`.
    pub fn any_expired(&self, index: Index, timeout_entries: u64) -> bool {
        self.by_index
            .first()
            .is_some_and(|&(last_index, _)| index.saturating_sub(last_index) > timeout_entries)
    }

    /// Drops the sessions quiet for more than `timeout_entries` at `index`; returns the
    /// expired clients with the index each was last heard at, oldest first (for logs).
    pub fn expire(&mut self, index: Index, timeout_entries: u64) -> Vec<(ClientId, Index)> {
        let mut expired = Vec::new();
        while self.any_expired(index, timeout_entries) {
            let Some((last_index, client)) = self.by_index.pop_first() else {
                break;
            };
            let removed = self.by_client.remove(&client);
            assert!(
                removed.is_some(),
                "expiry index names unknown client {client} (last heard {last_index})"
            );
            expired.push((client, last_index));
        }
        expired
    }

    /// Classifies request `(client, seq)`; a known client is noted as heard at `index`
    /// (for a new request, by the [`Sessions::record`] that must follow).
    pub fn check(&mut self, client: ClientId, seq: Seq, index: Index) -> Check<R> {
        let Some(session) = self.by_client.get_mut(&client) else {
            return Check::New;
        };
        let check = match seq.cmp(&session.seq) {
            std::cmp::Ordering::Greater => return Check::New,
            std::cmp::Ordering::Equal => Check::Duplicate(session.response.clone()),
            std::cmp::Ordering::Less => Check::Stale { last: session.seq },
        };
        let heard = std::mem::replace(&mut session.last_index, index);
        Self::reindex(&mut self.by_index, client, heard, index);
        check
    }

    /// Moves `client` from `heard` to `index` in the expiry index.
    fn reindex(
        by_index: &mut BTreeSet<(Index, ClientId)>,
        client: ClientId,
        heard: Index,
        index: Index,
    ) {
        if heard == index {
            return;
        }
        let removed = by_index.remove(&(heard, client));
        assert!(
            removed,
            "session of client {client} at {heard} missing from expiry index"
        );
        by_index.insert((index, client));
    }

    /// Runs request `(client, seq)`, applied at `index`, at most once: a new request
    /// runs `execute` and its answer is remembered; a retry of the client's latest
    /// request gets the remembered answer; an older one gets `Err(last)`, the client's
    /// latest applied sequence number (for the service's `StaleRequest` error).
    pub fn once(
        &mut self,
        client: ClientId,
        seq: Seq,
        index: Index,
        execute: impl FnOnce() -> R,
    ) -> Result<R, Seq> {
        match self.check(client, seq, index) {
            Check::New => {}
            Check::Duplicate(response) => {
                tracing::debug!(client, seq, "duplicate request");
                return Ok(response);
            }
            Check::Stale { last } => return Err(last),
        }
        let response = execute();
        self.record(client, seq, response.clone(), index);
        Ok(response)
    }

    /// Remembers the answer of the new request `(client, seq)` applied at `index`.
    pub fn record(&mut self, client: ClientId, seq: Seq, response: R, index: Index) {
        match self.by_client.get_mut(&client) {
            Some(session) => {
                assert!(
                    session.seq < seq,
                    "client {client}: recording seq {seq} after {}",
                    session.seq
                );
                session.seq = seq;
                session.response = response;
                let heard = std::mem::replace(&mut session.last_index, index);
                Self::reindex(&mut self.by_index, client, heard, index);
            }
            None => {
                let session = Session {
                    seq,
                    response,
                    last_index: index,
                };
                self.by_client.insert(client, session);
                self.by_index.insert((index, client));
            }
        }
        assert_eq!(
            self.by_index.len(),
            self.by_client.len(),
            "expiry index out of sync"
        );
    }

    /// The table as it ships with its shard (no log indices: they are this server's).
    pub fn export(&self) -> BTreeMap<ClientId, DupEntry<R>> {
        self.by_client
            .iter()
            .map(|(&client, session)| {
                let entry = DupEntry {
                    seq: session.seq,
                    response: session.response.clone(),
                };
                (client, entry)
            })
            .collect()
    }

    /// A table received with a shard, every session stamped as heard at `index` (the
    /// entry installing it; see the module docs).
    pub fn import(entries: BTreeMap<ClientId, DupEntry<R>>, index: Index) -> Self {
        let by_client = entries
            .into_iter()
            .map(|(client, entry)| {
                let session = Session {
                    seq: entry.seq,
                    response: entry.response,
                    last_index: index,
                };
                (client, session)
            })
            .collect();
        Self::from_sessions(by_client)
    }
}

impl<R: Serialize> Serialize for Sessions<R> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.by_client.serialize(serializer)
    }
}

impl<'de, R: Deserialize<'de> + Clone> Deserialize<'de> for Sessions<R> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        BTreeMap::deserialize(deserializer).map(Sessions::from_sessions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Table = Sessions<Result<u8, String>>;

    /// New, duplicate and stale requests are told apart by sequence number.
    #[test]
    fn classifies_by_seq() {
        let mut sessions = Table::new();
        assert_eq!(sessions.check(7, 1, 1), Check::New);
        sessions.record(7, 1, Ok(1), 1);
        assert_eq!(sessions.check(7, 1, 2), Check::Duplicate(Ok(1)));
        assert_eq!(sessions.check(7, 2, 3), Check::New);
        sessions.record(7, 2, Err("refused".into()), 3);
        assert_eq!(
            sessions.check(7, 2, 4),
            Check::Duplicate(Err("refused".into()))
        );
        assert_eq!(sessions.check(7, 1, 5), Check::Stale { last: 2 });
        assert_eq!(sessions.check(8, 2, 6), Check::New);
    }

    /// `once` runs a request the first time only; a retry gets the first answer and an
    /// older request its client's latest sequence number.
    #[test]
    fn once_runs_a_request_once() {
        let mut sessions = Table::new();
        let mut runs = 0;
        let mut run = |answer: u8| {
            runs += 1;
            Ok(answer)
        };
        assert_eq!(sessions.once(7, 1, 1, || run(1)), Ok(Ok(1)));
        assert_eq!(sessions.once(7, 1, 2, || run(9)), Ok(Ok(1)));
        assert_eq!(sessions.once(7, 2, 3, || run(2)), Ok(Ok(2)));
        assert_eq!(sessions.once(7, 1, 4, || run(9)), Err(2));
        assert_eq!(runs, 2);
    }

    /// A session expires exactly when it has been quiet for more than the timeout, and
    /// being heard (even through a retry) postpones expiry.
    #[test]
    fn expires_by_log_index() {
        let mut sessions = Table::new();
        sessions.record(1, 1, Ok(1), 1);
        sessions.record(2, 1, Ok(2), 2);
        assert_eq!(sessions.check(1, 1, 5), Check::Duplicate(Ok(1)));
        assert_eq!(sessions.expire(12, 10), []);
        assert_eq!(sessions.len(), 2);
        assert_eq!(sessions.expire(13, 10), [(2, 2)]);
        assert_eq!(sessions.sessions().keys().copied().collect::<Vec<_>>(), [1]);
        assert_eq!(sessions.expire(15, 10), []);
        assert_eq!(sessions.expire(16, 10), [(1, 5)]);
        assert!(sessions.is_empty());
        assert_eq!(sessions.check(1, 1, 17), Check::New);
    }

    /// A new request from a known client renews its session at the index it is
    /// recorded at, and the old index no longer counts.
    #[test]
    fn new_request_renews_session() {
        let mut sessions = Table::new();
        sessions.record(1, 1, Ok(1), 1);
        assert_eq!(sessions.check(1, 2, 8), Check::New);
        sessions.record(1, 2, Ok(2), 8);
        assert_eq!(sessions.expire(18, 10), []);
        assert_eq!(sessions.expire(19, 10), [(1, 8)]);
        assert!(sessions.is_empty());
    }

    /// One new client per entry: the table holds exactly `timeout + 1` sessions at most.
    #[test]
    fn bound_is_timeout_plus_one() {
        let timeout = 5;
        let mut sessions = Table::new();
        for index in 1..50 {
            sessions.expire(index, timeout);
            assert_eq!(sessions.check(index, 1, index), Check::New);
            sessions.record(index, 1, Ok(0), index);
            assert_eq!(sessions.len() as u64, (timeout + 1).min(index));
        }
    }

    /// Export then import keeps every client's answer and restamps its time.
    #[test]
    fn export_import_restamps() {
        let mut sessions = Table::new();
        sessions.record(1, 3, Ok(4), 9);
        sessions.record(2, 1, Err("refused".into()), 4);
        let mut imported = Table::import(sessions.export(), 100);
        assert_eq!(imported.export(), sessions.export());
        assert!(imported.sessions().values().all(|s| s.last_index == 100));
        imported.expire(110, 10);
        assert_eq!(
            imported.len(),
            2,
            "restamped sessions must not expire early"
        );
    }

    /// A table encodes as its session map alone (the expiry index is derived), and
    /// decoding rebuilds the index.
    #[test]
    fn encodes_as_its_map() {
        let mut sessions = Table::new();
        sessions.record(1, 3, Ok(4), 9);
        sessions.record(2, 1, Ok(5), 4);
        let bytes = bincode::serialize(&sessions).expect("encodes");
        let map = bincode::serialize(sessions.sessions()).expect("encodes");
        assert_eq!(bytes, map);
        let mut decoded: Table = bincode::deserialize(&bytes).expect("decodes");
        assert_eq!(decoded, sessions);
        assert_eq!(decoded.expire(15, 10), [(2, 4)]);
    }

    /// Rebuilding from the session map restores the expiry order.
    #[test]
    fn rebuild_from_sessions() {
        let mut sessions = Table::new();
        sessions.record(1, 3, Ok(4), 9);
        sessions.record(2, 1, Ok(5), 4);
        let rebuilt = Table::from_sessions(sessions.sessions().clone());
        assert_eq!(rebuilt, sessions);
        assert_eq!(rebuilt.clone().expire(15, 10), [(2, 4)]);
    }
}
