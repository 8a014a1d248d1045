//! Linearizable Gets without a log entry: raft-rs's ReadIndex (`ReadOnlyOption::Safe`).
//!
//! ```text
//!   on_request(Get), leader, key served, an entry of its term committed
//!        │                                  (otherwise the Get goes through the log)
//!        ▼
//!   batch ──drive: one read_index(ctx) for every Get since the last drive──► asked[ctx]
//!        raft-rs: heartbeat round with ctx; a quorum answers
//!   Output::reads (ctx, read index) ──────────────────────────────────────► confirmed
//!   log applied through the read index ───► answer from the state: the value, or
//!                                            WrongGroup if the shard left meanwhile
//!   lost leadership before the read state, or READ_TIMEOUT_TICKS passed ──► WrongLeader
//! ```
//!
//! Why this is linearizable: raft-rs answers with its commit index *after* a quorum has
//! confirmed, in a round started after the Get arrived, that this replica still leads.
//! Every write acknowledged before the Get arrived is committed at or below that index,
//! and nothing past the commit index is applied, so the state the Get reads (applied
//! through the read index, perhaps further) holds every write that completed before it
//! and only committed ones. Ownership is checked again against that same state, as a
//! logged Get is checked when its entry applies. No clock is involved: no leases.
//!
//! Batching: the Gets that arrive between two runs of the Ready protocol share one
//! read index, i.e. one heartbeat round, however many there are.

use std::collections::BTreeMap;

use shardkv_raft::{Index, LogStore, Service};

use crate::effect::RequestId;
use crate::server::Server;
use crate::ServerError;

/// A Get not answered this many ticks after it was asked about fails with
/// `WrongLeader` (raft-rs drops reads silently, e.g. when leadership moves).
pub const READ_TIMEOUT_TICKS: u64 = 10;

/// Gets waiting together: (request id, key).
type Gets = Vec<(RequestId, Vec<u8>)>;

/// The Gets a leader is reading without the log; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Reads {
    next_ctx: u64,
    /// Taken since the last drive, not yet asked about.
    batch: Gets,
    /// Asked under a ctx, waiting for the read state: ctx → (tick asked, gets).
    asked: BTreeMap<u64, (u64, Gets)>,
    /// Confirmed: (read index, tick asked, gets), waiting for the state to apply the
    /// read index.
    confirmed: Vec<(Index, u64, Gets)>,
}

impl<S: LogStore> Server<S> {
    /// Takes a Get of `key` (served here) to answer by ReadIndex; the caller checked
    /// `replica.can_read_index()` (otherwise the Get goes through the log).
    pub(crate) fn read_later(&mut self, req_id: RequestId, key: Vec<u8>) {
        self.reads.batch.push((req_id, key));
    }

    /// Before a Ready: asks raft-rs for one read index for the whole batch.
    pub(crate) fn ask_reads(&mut self) {
        if self.reads.batch.is_empty() {
            return;
        }
        let gets = std::mem::take(&mut self.reads.batch);
        if !self.replica().can_read_index() {
            self.fail_gets(gets);
            return;
        }
        let ctx = self.reads.next_ctx;
        self.reads.next_ctx += 1;
        self.host.replica_mut().read_index(ctx);
        self.reads.asked.insert(ctx, (self.ticks, gets));
    }

    /// After a Ready: notes the read indexes raft-rs confirmed, answers every Get whose
    /// read index has applied, and fails the Gets whose read state cannot come any more
    /// (leadership lost: raft-rs forgot them).
    pub(crate) fn settle_reads(&mut self, confirmed: Vec<(u64, Index)>) -> Result<(), ServerError> {
        for (ctx, index) in confirmed {
            if let Some((asked_at, gets)) = self.reads.asked.remove(&ctx) {
                self.reads.confirmed.push((index, asked_at, gets));
            }
        }
        if !self.replica().is_leader() {
            let asked = std::mem::take(&mut self.reads.asked);
            asked
                .into_values()
                .for_each(|(_, gets)| self.fail_gets(gets));
        }
        // The replica's applied index, not the state's: empty entries (a new leader's
        // first) advance only the former, and the state holds everything through it.
        let applied = self.replica().applied_index();
        let (due, waiting) = std::mem::take(&mut self.reads.confirmed)
            .into_iter()
            .partition(|(index, _, _)| *index <= applied);
        self.reads.confirmed = waiting;
        for (_, _, gets) in due {
            for (req_id, key) in gets {
                let (answer, clock) =
                    self.state()
                        .read(&key)
                        .map_err(|error| ServerError::State {
                            index: applied,
                            reason: error.to_string(),
                        })?;
                self.reply_at(req_id, answer, clock);
            }
        }
        Ok(())
    }

    /// On a tick: fails the Gets asked about more than [`READ_TIMEOUT_TICKS`] ago.
    pub(crate) fn expire_reads(&mut self) {
        let now = self.ticks;
        let expired = |asked_at: u64| now.saturating_sub(asked_at) > READ_TIMEOUT_TICKS;
        let asked = std::mem::take(&mut self.reads.asked);
        for (ctx, (asked_at, gets)) in asked {
            match expired(asked_at) {
                true => self.fail_gets(gets),
                false => {
                    self.reads.asked.insert(ctx, (asked_at, gets));
                }
            }
        }
        let (late, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reads.confirmed)
            .into_iter()
            .partition(|(_, asked_at, _)| expired(*asked_at));
        self.reads.confirmed = waiting;
        late.into_iter()
            .for_each(|(_, _, gets)| self.fail_gets(gets));
    }

    fn fail_gets(&mut self, gets: Gets) {
        let error = self.wrong_leader();
        for (req_id, _) in gets {
            self.reply(req_id, Err(error.clone()));
        }
    }
}
