//! The duplicate table: one session per client, so a retried request takes effect once.
//!
//! A client numbers its changing requests (Join, Leave, Move) `1, 2, 3, ...` and has one
//! outstanding at a time. For each client the table remembers the sequence number of its
//! latest applied request and that request's outcome. When request `(client, seq)` is
//! applied:
//!
//! - `seq` greater than the remembered one: new; execute it and remember it.
//! - `seq` equal: a retry; answer with the remembered outcome, change nothing.
//! - `seq` smaller: a stray duplicate of a request the client no longer waits for;
//!   answer [`MasterError::StaleRequest`], change nothing.
//! - unknown client: new.
//!
//! The outcome is stored as the number of the configuration the request created (all
//! configurations are kept, so the answer can be rebuilt) or its error: a few bytes per
//! client, whatever the configuration's size.
//!
//! # Expiry
//!
//! The table is bounded by expiring clients that have gone quiet. Time is the log index:
//! every replica applies the same entries at the same indices, so every replica expires
//! the same sessions at the same point, and a snapshot carries the table exactly. When
//! the entry at index `i` is applied, every session whose latest request (new, retried or
//! stale) was applied at an index `j` with `i - j > timeout_entries` is dropped first.
//! Since at most one session is touched per entry, the table never holds more than
//! `timeout_entries` sessions.
//!
//! Caveat: a client silent for longer than the timeout that then retries an old request
//! is treated as new and the request is applied again (a Join then fails with
//! `AlreadyJoined`, a Leave with `UnknownGroup`; a Move makes one more configuration).
//! The timeout must be far longer than any client's retry horizon.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use shardkv_proto::{ClientId, ConfigNum, MasterError, Seq};

use crate::Index;

/// The default session timeout, in log entries. Shard-master traffic is mostly polling
/// queries from groups, which also take log entries; a million entries is hours of
/// polling by hundreds of groups, far past any client's retry horizon, while the table
/// stays small (a few dozen bytes per session).
pub const DEFAULT_SESSION_TIMEOUT_ENTRIES: u64 = 1_000_000;

/// What a changing request produced: the configuration it created, or its error.
pub type Outcome = Result<ConfigNum, MasterError>;

/// One client's remembered latest request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The latest applied sequence number.
    pub seq: Seq,
    /// That request's outcome.
    pub outcome: Outcome,
    /// The log index at which the client last made itself heard.
    pub last_index: Index,
}

/// The verdict on an incoming request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Not seen before: execute it.
    New,
    /// A retry of the latest request: answer with its outcome.
    Duplicate(Outcome),
    /// Older than the latest request: answer `StaleRequest`.
    Stale {
        /// The client's latest applied sequence number.
        last: Seq,
    },
}

/// The duplicate table (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sessions {
    timeout_entries: u64,
    by_client: BTreeMap<ClientId, Session>,
    /// `(last_index, client)` for every session, oldest first, to expire in order.
    by_index: BTreeSet<(Index, ClientId)>,
}

impl Sessions {
    /// An empty table whose sessions expire after `timeout_entries` log entries.
    pub fn new(timeout_entries: u64) -> Self {
        assert!(timeout_entries > 0, "session timeout of 0 entries");
        Sessions {
            timeout_entries,
            by_client: BTreeMap::new(),
            by_index: BTreeSet::new(),
        }
    }

    /// Rebuilds a table from its sessions (as read from a snapshot).
    pub fn from_sessions(timeout_entries: u64, by_client: BTreeMap<ClientId, Session>) -> Self {
        let mut sessions = Sessions::new(timeout_entries);
        sessions.by_index = by_client
            .iter()
            .map(|(&client, session)| (session.last_index, client))
            .collect();
        sessions.by_client = by_client;
        sessions
    }

    /// The timeout, in log entries.
    pub fn timeout_entries(&self) -> u64 {
        self.timeout_entries
    }

    /// Every session, by client.
    pub fn sessions(&self) -> &BTreeMap<ClientId, Session> {
        &self.by_client
    }

    /// Drops the sessions that have been quiet for more than the timeout at `index`.
    pub fn expire(&mut self, index: Index) {
        while let Some(&(last_index, client)) = self.by_index.first() {
            if index.saturating_sub(last_index) <= self.timeout_entries {
                break;
            }
            self.by_index.pop_first();
            let removed = self.by_client.remove(&client);
            assert!(
                removed.is_some(),
                "expiry index names unknown client {client}"
            );
            tracing::debug!(client, last_index, index, "session expired");
        }
    }

    /// Classifies `(client, seq)` and, if the client is known, notes it was heard at `index`.
    pub fn check(&mut self, client: ClientId, seq: Seq, index: Index) -> Check {
        let Some(session) = self.by_client.get_mut(&client) else {
            return Check::New;
        };
        let removed = self.by_index.remove(&(session.last_index, client));
        assert!(
            removed,
            "session of client {client} missing from expiry index"
        );
        session.last_index = index;
        self.by_index.insert((index, client));
        match seq.cmp(&session.seq) {
            std::cmp::Ordering::Greater => Check::New,
            std::cmp::Ordering::Equal => Check::Duplicate(session.outcome.clone()),
            std::cmp::Ordering::Less => Check::Stale { last: session.seq },
        }
    }

    /// Remembers the outcome of the new request `(client, seq)` applied at `index`.
    pub fn record(&mut self, client: ClientId, seq: Seq, outcome: Outcome, index: Index) {
        let session = Session {
            seq,
            outcome,
            last_index: index,
        };
        if let Some(old) = self.by_client.insert(client, session) {
            assert!(
                old.seq < seq,
                "client {client}: seq {seq} after {}",
                old.seq
            );
            self.by_index.remove(&(old.last_index, client));
        }
        self.by_index.insert((index, client));
        assert_eq!(
            self.by_index.len(),
            self.by_client.len(),
            "expiry index out of sync"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// New, duplicate and stale requests are told apart by sequence number.
    #[test]
    fn classifies_by_seq() {
        let mut sessions = Sessions::new(100);
        assert_eq!(sessions.check(7, 1, 1), Check::New);
        sessions.record(7, 1, Ok(1), 1);
        assert_eq!(sessions.check(7, 1, 2), Check::Duplicate(Ok(1)));
        assert_eq!(sessions.check(7, 2, 3), Check::New);
        sessions.record(7, 2, Err(MasterError::EmptyJoin), 3);
        assert_eq!(
            sessions.check(7, 2, 4),
            Check::Duplicate(Err(MasterError::EmptyJoin))
        );
        assert_eq!(sessions.check(7, 1, 5), Check::Stale { last: 2 });
        assert_eq!(sessions.check(8, 2, 6), Check::New);
    }

    /// A session expires exactly when it has been quiet for more than the timeout, and
    /// being heard (even through a retry) postpones expiry.
    #[test]
    fn expires_by_log_index() {
        let mut sessions = Sessions::new(10);
        sessions.record(1, 1, Ok(1), 1);
        sessions.record(2, 1, Ok(2), 2);
        assert_eq!(sessions.check(1, 1, 5), Check::Duplicate(Ok(1)));
        sessions.expire(12);
        assert_eq!(
            sessions.sessions().keys().copied().collect::<Vec<_>>(),
            [1, 2]
        );
        sessions.expire(13);
        assert_eq!(sessions.sessions().keys().copied().collect::<Vec<_>>(), [1]);
        sessions.expire(15);
        assert_eq!(sessions.sessions().len(), 1);
        sessions.expire(16);
        assert!(sessions.sessions().is_empty());
        assert_eq!(sessions.check(1, 1, 17), Check::New);
    }

    /// Rebuilding from the session map restores the expiry order.
    #[test]
    fn rebuild_from_sessions() {
        let mut sessions = Sessions::new(10);
        sessions.record(1, 3, Ok(4), 9);
        sessions.record(2, 1, Ok(5), 4);
        let rebuilt = Sessions::from_sessions(10, sessions.sessions().clone());
        assert_eq!(rebuilt, sessions);
    }
}
