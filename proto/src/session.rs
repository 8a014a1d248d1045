//! [`Sessions`]: a duplicate table, one session per client, so that a request takes
//! effect at most once however late or often it arrives, and a retry gets its original
//! answer. The shard master keeps one table; a replica group keeps one per shard, and it
//! travels with the shard.
//!
//! A client numbers its requests `1, 2, 3, ...` and has one outstanding at a time. For
//! each client the table remembers the sequence number of its latest applied request
//! (of the kinds the server deduplicates), that request's answer (of the server's type
//! `R`) and when the client was last heard. When request `(client, seq)` is applied
//! ([`Sessions::once`], which runs [`Sessions::check`] and [`Sessions::record`]):
//!
//! - known client, `seq` greater than the remembered one: new; the server executes it
//!   and [`Sessions::record`]s the answer;
//! - known client, `seq` equal: a retry; answer with the remembered answer, change
//!   nothing;
//! - known client, `seq` smaller: a stray duplicate of a request the client no longer
//!   waits for; the server answers its `StaleRequest` error and changes nothing;
//! - **unknown client**: new only if the request proves it cannot have been applied
//!   before (below); otherwise refused ([`Check::Unknown`]), changing nothing.
//!
//! # Time
//!
//! Time is cluster time ([`Millis`]): the time the server's log entries carry, the same
//! on every replica at the same entry, so every replica expires the same sessions at the
//! same point and a snapshot carries the table exactly. A replica group gives each shard
//! its own clock, which travels with the shard (see the group's docs); the shard master
//! has one.
//!
//! # Unknown clients, and why nothing applies twice
//!
//! A table forgets a session when its client has been quiet for longer than the timeout
//! ([`Sessions::expire`]), or, least recently heard first, when it holds more than its
//! limit ([`Sessions::evict`]). It keeps one number about what it forgot: `forgotten`,
//! the latest time a forgotten session was heard.
//!
//! Every request carries `seen`: a time of this table's clock that its client observed
//! (servers put the clock in their answers) **before it first sent the request**, the
//! same on every retry. A request with `seen` 0 observed nothing and is always refused,
//! whoever sent it: that is how a client asks for the clock. So is one whose `seen` the
//! clock has not reached (a shard whose data and clock started over). An unknown
//! client's request is new only when
//!
//! ```text
//!   forgotten < seen <= now < seen + timeout
//! ```
//!
//! Why this never applies a request twice: had the request applied before, at time `t`,
//! its client's session would have been heard at `t` or later, and `t >= seen`: the
//! clock only moves forward and the request was sent after `seen` was observed (and,
//! should a clock ever stand behind a reading, `seen <= now` refuses the request rather
//! than take it as new). The client being unknown now means that session was
//! forgotten, so `forgotten >= t >= seen`, and the request is refused. The last
//! condition bounds how late a request never applied may still apply as new: at most one
//! timeout after its client observed the clock.
//!
//! A refused request changed nothing. A client that knows no earlier attempt of it can
//! have applied (each carried `seen` 0, or was refused, or never proposed) sends it again
//! with a fresh `seen`; otherwise it reports the outcome as unknown.
//!
//! # Bounds
//!
//! A table holds at most `limit` sessions: [`Sessions::evict`] forgets the least recently
//! heard beyond it, exactly as expiry would, only sooner. Forgetting a live client costs
//! it at most one refused request; it never costs exactly-once.
//!
//! # Encoding and travel
//!
//! A table serializes as a [`Table`]: its sessions and `forgotten` (the expiry index is
//! derived and rebuilt on deserialization). A table moving with a shard travels as a
//! [`Table`] too, with the shard's clock, and keeps its times: the new owner continues
//! the shard's clock from where it stood.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{ClientId, Millis, Seq};

/// The default session timeout: an hour of cluster time. Far past any client's retry
/// horizon; a table costs a few dozen bytes per client heard in that time, up to
/// [`DEFAULT_MAX_SESSIONS`].
pub const DEFAULT_SESSION_TIMEOUT_MS: Millis = 60 * 60 * 1000;

/// The default limit on one table's sessions.
pub const DEFAULT_MAX_SESSIONS: usize = 100_000;

/// One client's latest deduplicated request, the answer `R` it got, and when the client
/// was last heard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session<R> {
    /// The latest applied sequence number.
    pub seq: Seq,
    /// The answer that request got, returned again to a retry.
    pub response: R,
    /// The cluster time at which the client last made itself heard.
    pub heard: Millis,
}

/// A table as it is encoded and as it travels with a shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table<R> {
    /// Every session, by client.
    pub sessions: BTreeMap<ClientId, Session<R>>,
    /// The latest time a forgotten session was heard (0: none forgotten).
    pub forgotten: Millis,
}

impl<R> Default for Table<R> {
    fn default() -> Self {
        Table {
            sessions: BTreeMap::new(),
            forgotten: 0,
        }
    }
}

/// The verdict on an incoming request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check<R> {
    /// Not applied before: execute it, then [`Sessions::record`] the answer.
    New,
    /// A retry of the latest request: answer with its remembered answer.
    Duplicate(R),
    /// Older than the latest request: answer the server's `StaleRequest` error.
    Stale {
        /// The client's latest applied sequence number.
        last: Seq,
    },
    /// The client is unknown and the request cannot prove it never applied: refused
    /// (see the module docs).
    Unknown,
}

/// Why [`Sessions::once`] did not run a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Older than the client's latest applied request, `last`.
    Stale {
        /// The client's latest applied sequence number.
        last: Seq,
    },
    /// The client is unknown here and the request may have applied before.
    Unknown,
}

/// What a table's verdicts depend on besides the request: the time now and the
/// server's timeout (every replica must use the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// The cluster time of the entry applying.
    pub now: Millis,
    /// How long a quiet session is kept.
    pub timeout: Millis,
}

/// A duplicate table with answers of type `R` (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sessions<R> {
    by_client: BTreeMap<ClientId, Session<R>>,
    /// `(heard, client)` of every session, least recently heard first.
    by_time: BTreeSet<(Millis, ClientId)>,
    forgotten: Millis,
}

impl<R> Default for Sessions<R> {
    fn default() -> Self {
        Sessions {
            by_client: BTreeMap::new(),
            by_time: BTreeSet::new(),
            forgotten: 0,
        }
    }
}

impl<R: Clone> Sessions<R> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a table from its encoded or travelling form.
    pub fn from_table(table: Table<R>) -> Self {
        let by_time = table
            .sessions
            .iter()
            .map(|(&client, session)| (session.heard, client))
            .collect();
        Sessions {
            by_client: table.sessions,
            by_time,
            forgotten: table.forgotten,
        }
    }

    /// The table in its encoded or travelling form.
    pub fn to_table(&self) -> Table<R> {
        Table {
            sessions: self.by_client.clone(),
            forgotten: self.forgotten,
        }
    }

    /// Every session, by client.
    pub fn sessions(&self) -> &BTreeMap<ClientId, Session<R>> {
        &self.by_client
    }

    /// The latest time a forgotten session was heard (0: none forgotten).
    pub fn forgotten(&self) -> Millis {
        self.forgotten
    }

    /// The number of sessions.
    pub fn len(&self) -> usize {
        self.by_client.len()
    }

    /// True when no client is remembered.
    pub fn is_empty(&self) -> bool {
        self.by_client.is_empty()
    }

    /// True when [`Sessions::expire`] would forget a session at `clock`.
    pub fn any_expired(&self, clock: Clock) -> bool {
        self.by_time
            .first()
            .is_some_and(|&(heard, _)| clock.now.saturating_sub(heard) > clock.timeout)
    }

    /// Forgets the sessions quiet for more than the timeout at `clock`; returns them
    /// with the time each was last heard, least recently heard first (for logs).
    pub fn expire(&mut self, clock: Clock) -> Vec<(ClientId, Millis)> {
        let mut expired = Vec::new();
        while self.any_expired(clock) {
            expired.extend(self.forget_oldest());
        }
        expired
    }

    /// Forgets the least recently heard sessions beyond `limit`; returns them as
    /// [`Sessions::expire`] does.
    pub fn evict(&mut self, limit: usize) -> Vec<(ClientId, Millis)> {
        let mut evicted = Vec::new();
        while self.by_client.len() > limit {
            evicted.extend(self.forget_oldest());
        }
        evicted
    }

    fn forget_oldest(&mut self) -> Option<(ClientId, Millis)> {
        let (heard, client) = self.by_time.pop_first()?;
        let removed = self.by_client.remove(&client);
        assert!(
            removed.is_some(),
            "expiry index names unknown client {client} (last heard {heard})"
        );
        self.forgotten = self.forgotten.max(heard);
        Some((client, heard))
    }

    /// Classifies request `(client, seq)` that observed the clock at `seen`; a known
    /// client is noted as heard now (for a new request, by the [`Sessions::record`] that
    /// must follow). `seen` of `None` takes an unknown client's request as new: for a
    /// server whose requests carry no observation (the shard master's, whose operations
    /// are checked against the configurations instead; see its docs).
    pub fn check(
        &mut self,
        client: ClientId,
        seq: Seq,
        seen: Option<Millis>,
        clock: Clock,
    ) -> Check<R> {
        if proves_nothing(seen, clock) {
            return Check::Unknown;
        }
        let Some(session) = self.by_client.get_mut(&client) else {
            return match self.unknown_unproven(seen, clock) {
                true => Check::Unknown,
                false => Check::New,
            };
        };
        let check = match seq.cmp(&session.seq) {
            std::cmp::Ordering::Greater => return Check::New,
            std::cmp::Ordering::Equal => Check::Duplicate(session.response.clone()),
            std::cmp::Ordering::Less => Check::Stale { last: session.seq },
        };
        let heard = std::mem::replace(&mut session.heard, clock.now);
        Self::reindex(&mut self.by_time, client, heard, clock.now);
        check
    }

    /// True when `seen` does not prove a request of a client this table does not know
    /// new: a forgotten client may have been heard at or after it, or it is a timeout
    /// old.
    fn unknown_unproven(&self, seen: Option<Millis>, clock: Clock) -> bool {
        if unknown_clients_are_new() {
            return false;
        }
        let proven = seen.is_none_or(|seen| {
            self.forgotten < seen && clock.now < seen.saturating_add(clock.timeout)
        });
        !proven
    }

    /// Moves `client` from `heard` to `now` in the expiry index.
    fn reindex(
        by_time: &mut BTreeSet<(Millis, ClientId)>,
        client: ClientId,
        heard: Millis,
        now: Millis,
    ) {
        if heard == now {
            return;
        }
        let removed = by_time.remove(&(heard, client));
        assert!(
            removed,
            "session of client {client} at {heard} missing from expiry index"
        );
        by_time.insert((now, client));
    }

    /// Runs request `(client, seq)`, which observed the clock at `seen`, at most once:
    /// a new request runs `execute` and its answer is remembered; a retry of the
    /// client's latest request gets the remembered answer; an older one, or one of an
    /// unknown client that may have applied before, is refused.
    pub fn once(
        &mut self,
        client: ClientId,
        seq: Seq,
        seen: Option<Millis>,
        clock: Clock,
        execute: impl FnOnce() -> R,
    ) -> Result<R, Refused> {
        match self.check(client, seq, seen, clock) {
            Check::New => {}
            Check::Duplicate(response) => {
                tracing::debug!(client, seq, "duplicate request");
                return Ok(response);
            }
            Check::Stale { last } => return Err(Refused::Stale { last }),
            Check::Unknown => {
                tracing::debug!(
                    client,
                    seq,
                    ?seen,
                    forgotten = self.forgotten,
                    "unknown session"
                );
                return Err(Refused::Unknown);
            }
        }
        let response = execute();
        self.record(client, seq, response.clone(), clock.now);
        Ok(response)
    }

    /// Remembers the answer of the new request `(client, seq)` applied at `now`.
    pub fn record(&mut self, client: ClientId, seq: Seq, response: R, now: Millis) {
        match self.by_client.get_mut(&client) {
            Some(session) => {
                assert!(
                    session.seq < seq,
                    "client {client}: recording seq {seq} after {}",
                    session.seq
                );
                session.seq = seq;
                session.response = response;
                let heard = std::mem::replace(&mut session.heard, now);
                Self::reindex(&mut self.by_time, client, heard, now);
            }
            None => {
                let session = Session {
                    seq,
                    response,
                    heard: now,
                };
                self.by_client.insert(client, session);
                self.by_time.insert((now, client));
            }
        }
        assert_eq!(
            self.by_time.len(),
            self.by_client.len(),
            "expiry index out of sync"
        );
    }
}

impl<R: Serialize + Clone> Serialize for Sessions<R> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        TableRef {
            sessions: &self.by_client,
            forgotten: self.forgotten,
        }
        .serialize(serializer)
    }
}

/// [`Table`] over borrowed sessions (the same fields in the same order, so the same
/// bytes), to encode a table without copying it.
#[derive(Serialize)]
struct TableRef<'a, R> {
    sessions: &'a BTreeMap<ClientId, Session<R>>,
    forgotten: Millis,
}

impl<'de, R: Deserialize<'de> + Clone> Deserialize<'de> for Sessions<R> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Table::deserialize(deserializer).map(Sessions::from_table)
    }
}

/// True when `seen` proves nothing, whoever sent it: nothing observed (0), or a time the
/// clock has not reached (a clock that started over below the reading).
fn proves_nothing(seen: Option<Millis>, clock: Clock) -> bool {
    seen.is_some_and(|seen| seen == 0 || seen > clock.now)
}

/// The `UnknownSessionsAreNew` mutant ([`crate::mutants`]) is on.
fn unknown_clients_are_new() -> bool {
    #[cfg(feature = "mutants")]
    return crate::mutants::active(crate::mutants::Mutation::UnknownSessionsAreNew);
    #[cfg(not(feature = "mutants"))]
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    type Table = Sessions<Result<u8, String>>;

    const HOUR: Millis = DEFAULT_SESSION_TIMEOUT_MS;

    fn at(now: Millis) -> Clock {
        Clock { now, timeout: 10 }
    }

    /// New, duplicate and stale requests of known clients are told apart by sequence
    /// number.
    #[test]
    fn classifies_by_seq() {
        let mut sessions = Table::new();
        assert_eq!(sessions.check(7, 1, Some(1), at(1)), Check::New);
        sessions.record(7, 1, Ok(1), 1);
        assert_eq!(
            sessions.check(7, 1, Some(1), at(2)),
            Check::Duplicate(Ok(1))
        );
        assert_eq!(sessions.check(7, 2, Some(1), at(3)), Check::New);
        sessions.record(7, 2, Err("refused".into()), 3);
        assert_eq!(
            sessions.check(7, 2, Some(1), at(4)),
            Check::Duplicate(Err("refused".into()))
        );
        assert_eq!(
            sessions.check(7, 1, Some(1), at(5)),
            Check::Stale { last: 2 }
        );
        // A request that observed nothing, or a time the clock has not reached, is
        // refused, known client or not.
        assert_eq!(sessions.check(7, 3, Some(0), at(5)), Check::Unknown);
        assert_eq!(sessions.check(7, 3, Some(6), at(5)), Check::Unknown);
        assert_eq!(sessions.check(8, 2, Some(6), at(6)), Check::New);
    }

    /// An unknown client's request is new only when it observed the clock after
    /// everything forgotten and within a timeout of now; a request that never observed
    /// the clock never is.
    #[test]
    fn unknown_clients_must_prove_the_request_is_new() {
        let mut sessions = Table::new();
        assert_eq!(sessions.check(1, 5, Some(0), at(3)), Check::Unknown);
        assert_eq!(sessions.check(1, 5, Some(1), at(3)), Check::New);
        sessions.record(2, 1, Ok(2), 4);
        assert_eq!(sessions.expire(at(15)), [(2, 4)]);
        assert_eq!(sessions.forgotten(), 4);
        assert_eq!(sessions.check(2, 1, Some(4), at(15)), Check::Unknown);
        assert_eq!(sessions.check(2, 1, Some(6), at(15)), Check::New);
        // Observed too long ago: refused even though nothing that late was forgotten.
        assert_eq!(sessions.check(3, 1, Some(5), at(16)), Check::Unknown);
        assert_eq!(sessions.check(3, 1, Some(7), at(16)), Check::New);
        // A reading ahead of the clock proves nothing (the clock stood behind it).
        assert_eq!(sessions.check(4, 1, Some(17), at(16)), Check::Unknown);
        assert_eq!(sessions.check(4, 1, Some(16), at(16)), Check::New);
    }

    /// The scenario the rule exists for: an Append applied, its client cut off past the
    /// expiry, the retry arriving after: refused, not applied again.
    #[test]
    fn a_retry_after_expiry_is_refused_not_reapplied() {
        let mut sessions = Table::new();
        let clock = |now| Clock { now, timeout: HOUR };
        let mut runs = 0;
        let mut run = || {
            runs += 1;
            Ok(runs)
        };
        assert_eq!(
            sessions.once(9, 4, Some(100), clock(200), &mut run),
            Ok(Ok(1))
        );
        sessions.expire(clock(200 + HOUR + 1));
        assert!(sessions.is_empty());
        let late = sessions.once(9, 4, Some(100), clock(200 + HOUR + 1), &mut run);
        assert_eq!(late, Err(Refused::Unknown));
        // Someone else's traffic long after: still refused.
        sessions.record(10, 1, Ok(0), 5 * HOUR);
        let later = sessions.once(9, 4, Some(100), clock(5 * HOUR), &mut run);
        assert_eq!(later, Err(Refused::Unknown));
        assert_eq!(runs, 1);
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
        assert_eq!(sessions.once(7, 1, Some(1), at(1), || run(1)), Ok(Ok(1)));
        assert_eq!(sessions.once(7, 1, Some(1), at(2), || run(9)), Ok(Ok(1)));
        assert_eq!(sessions.once(7, 2, Some(1), at(3), || run(2)), Ok(Ok(2)));
        assert_eq!(
            sessions.once(7, 1, Some(1), at(4), || run(9)),
            Err(Refused::Stale { last: 2 })
        );
        assert_eq!(runs, 2);
    }

    /// A session expires exactly when it has been quiet for more than the timeout, and
    /// being heard (even through a retry) postpones expiry.
    #[test]
    fn expires_by_time() {
        let mut sessions = Table::new();
        sessions.record(1, 1, Ok(1), 1);
        sessions.record(2, 1, Ok(2), 2);
        assert_eq!(
            sessions.check(1, 1, Some(1), at(5)),
            Check::Duplicate(Ok(1))
        );
        assert_eq!(sessions.expire(at(12)), []);
        assert_eq!(sessions.len(), 2);
        assert_eq!(sessions.expire(at(13)), [(2, 2)]);
        assert_eq!(sessions.sessions().keys().copied().collect::<Vec<_>>(), [1]);
        assert_eq!(sessions.expire(at(15)), []);
        assert_eq!(sessions.expire(at(16)), [(1, 5)]);
        assert!(sessions.is_empty());
        assert_eq!(sessions.forgotten(), 5);
    }

    /// Beyond the limit the least recently heard sessions go, and count as forgotten.
    #[test]
    fn evicts_least_recently_heard() {
        let mut sessions = Table::new();
        for client in 1..=5 {
            sessions.record(client, 1, Ok(0), client * 10);
        }
        assert_eq!(
            sessions.check(1, 1, Some(1), at(60)),
            Check::Duplicate(Ok(0))
        );
        assert_eq!(sessions.evict(3), [(2, 20), (3, 30)]);
        assert_eq!(sessions.forgotten(), 30);
        assert_eq!(sessions.check(3, 2, Some(30), at(60)), Check::Unknown);
        assert_eq!(
            sessions.check(1, 1, Some(1), at(61)),
            Check::Duplicate(Ok(0))
        );
    }

    /// A table encodes as a [`super::Table`] and decodes to the same table, expiry
    /// order included; travelling keeps every time.
    #[test]
    fn encodes_and_travels_as_a_table() {
        let mut sessions = Table::new();
        sessions.record(1, 3, Ok(4), 9);
        sessions.record(2, 1, Err("refused".into()), 4);
        sessions.record(3, 1, Ok(0), 1);
        sessions.evict(2);
        let bytes = bincode::serialize(&sessions).expect("encodes");
        let table = bincode::serialize(&sessions.to_table()).expect("encodes");
        assert_eq!(bytes, table);
        let mut decoded: Table = bincode::deserialize(&bytes).expect("decodes");
        assert_eq!(decoded, sessions);
        assert_eq!(decoded.forgotten(), 1);
        assert_eq!(decoded.expire(at(15)), [(2, 4)]);
        let travelled = Table::from_table(sessions.to_table());
        assert_eq!(travelled, sessions);
    }
}
