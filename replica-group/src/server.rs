//! [`Server`]: one replica of one replica group, a sans-IO state machine over a Raft
//! [`Replica`].
//!
//! ```text
//!   on_peer_message(bytes) ─────────┐                      ┌─► Effect::Send (raft peers)
//!   on_request(id, kv::Request) ────┤                      ├─► Effect::Reply (clients)
//!   on_migration_request(id, ..) ───┼─► Replica ─ advance ─┼─► Effect::MigrationReply
//!   on_response(call_id, bytes?) ───┤    │ applied entries  └─► Effect::Call (masters,
//!   on_tick() ──────────────────────┘    └─► GroupState::apply        other groups)
//! ```
//!
//! Client requests: a follower answers `WrongLeader { hint }` at once; so does any
//! replica for a request over the size limits (with the limit error). The leader answers
//! `WrongGroup` at once when it does not serve the key's shard. Otherwise it answers a
//! Get by ReadIndex (`reads.rs`), and proposes any other request and answers when its
//! entry applies (rechecking the shard there), or `WrongLeader` if the proposal is lost.
//!
//! [`Server::batch`] lets a runtime hand over every event waiting at once: the Ready
//! protocol (and its one sync) then runs once for all of them.
//!
//! Migration requests: `PullShard` is answered at once from the applied state by any
//! replica (the offered shard is frozen, see the crate docs); `DeleteShard` is answered
//! at once when the verdict needs no change, and otherwise goes through the leader's log.
//!
//! Ticks drive Raft and, on the leader, the outgoing calls (see `poll.rs`). After each
//! event the server snapshots when the log passed its threshold.

use shardkv_proto::kv::{KvError, MigrationRequest, MigrationResponse, Op, Request, Response};
use shardkv_proto::{ConfigNum, NodeId, ShardId};
use shardkv_raft::{Fate, LogStore, Pending, Replica, ReplicaConfig, SnapshotData, Step};

use crate::calls::Calls;
use crate::effect::{Effect, RequestId};
use crate::message::{decode_entry, encode_entry, Entry};
use crate::migration::DeleteVerdict;
use crate::options::{GroupOptions, ServerError};
use crate::reads::Reads;
use crate::state::{GroupState, Outcome};

/// Internal work the leader proposed, so it does not propose it twice at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Task {
    Config(ConfigNum),
    Install(ConfigNum, ShardId),
    Acked(ConfigNum, ShardId),
}

/// Who waits for a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waiter {
    Client(RequestId),
    Group(RequestId),
    Internal(Task),
}

/// One replica group replica; see the module docs.
pub struct Server<S: LogStore> {
    pub(crate) replica: Replica<S>,
    pub(crate) state: GroupState,
    pub(crate) options: GroupOptions,
    pub(crate) pending: Pending<Waiter>,
    pub(crate) calls: Calls,
    pub(crate) effects: Vec<Effect>,
    /// Ticks since this process started (the call clock; never persisted).
    pub(crate) ticks: u64,
    /// A `DeleteShard` applied since the last snapshot: snapshot at once (challenge 1).
    pub(crate) deleted_since_snapshot: bool,
    /// Gets answered by ReadIndex (`reads.rs`).
    pub(crate) reads: Reads,
    /// Inside [`Server::batch`]: events only feed raft-rs; the Ready protocol runs once
    /// at the end.
    deferred: bool,
}

impl<S: LogStore> Server<S> {
    /// Opens a replica over `store` (restart-safe): a stored snapshot and the log after it
    /// rebuild the state on the first event.
    pub fn open(
        config: ReplicaConfig,
        store: S,
        options: GroupOptions,
    ) -> Result<Self, ServerError> {
        Ok(Self::new(Replica::open(config, store)?, options))
    }

    /// A server over an opened `replica` (for custom loggers).
    ///
    /// # Panics
    /// If the options are unusable: gid 0, no shards, no masters, zero ticks or timeout.
    pub fn new(replica: Replica<S>, options: GroupOptions) -> Self {
        assert!(!options.masters.is_empty(), "no shard master addresses");
        assert!(
            options.poll_ticks > 0 && options.call_timeout_ticks > 0,
            "poll_ticks {} and call_timeout_ticks {} must be positive",
            options.poll_ticks,
            options.call_timeout_ticks
        );
        let state = GroupState::with_session_timeout(
            options.gid,
            options.nshards,
            options.session_timeout_entries,
        );
        Server {
            replica,
            state,
            options,
            pending: Pending::default(),
            calls: Calls::default(),
            effects: Vec::new(),
            ticks: 0,
            deleted_since_snapshot: false,
            reads: Reads::default(),
            deferred: false,
        }
    }

    /// This replica's id.
    pub fn id(&self) -> NodeId {
        self.replica.id()
    }

    /// The replicated log.
    pub fn replica(&self) -> &Replica<S> {
        &self.replica
    }

    /// See [`Replica::send_early_with`]: the production driver sends a leader's appends
    /// before the leader's own sync.
    pub fn send_early_with(&mut self, sink: shardkv_raft::EarlySink) {
        self.replica.send_early_with(sink);
    }

    /// See [`Replica::sync_with`]: the production driver syncs the store on another
    /// thread and reports each sync with [`Server::on_synced`].
    pub fn sync_with(&mut self, sink: shardkv_raft::SyncSink) {
        self.replica.sync_with(sink);
    }

    /// The store is durable through Ready `number` (see [`Replica::on_synced`]).
    pub fn on_synced(&mut self, number: u64) -> Result<(), ServerError> {
        self.replica.on_synced(number);
        self.drive()
    }

    /// Makes the store durable for a clean stop (see [`Replica::flush`]).
    pub fn flush(&mut self) -> Result<(), ServerError> {
        Ok(self.replica.flush()?)
    }

    /// The state machine as applied so far.
    pub fn state(&self) -> &GroupState {
        &self.state
    }

    /// Consumes the server, returning its log store (to simulate a restart).
    pub fn into_store(self) -> S {
        self.replica.into_store()
    }

    /// Effects produced since the last call, in order.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// A raft message from a peer. Bytes that do not decode are logged and dropped.
    pub fn on_peer_message(&mut self, bytes: &[u8]) -> Result<(), ServerError> {
        if let Err(error) = self.replica.step(bytes) {
            tracing::warn!(node = self.id(), gid = self.options.gid, %error, "dropped peer message");
        }
        self.drive()
    }

    /// Runs `events` (calls of the `on_*` methods) with the Ready protocol run once at
    /// the end instead of after each: the proposals and messages of the whole batch
    /// share one sync, one append per follower and one read index. A runtime that
    /// finds several events waiting hands them over this way; answers are the same.
    pub fn batch<R>(
        &mut self,
        events: impl FnOnce(&mut Self) -> Result<R, ServerError>,
    ) -> Result<R, ServerError> {
        let was_deferred = std::mem::replace(&mut self.deferred, true);
        let result = events(self);
        self.deferred = was_deferred;
        let result = result?;
        self.drive()?;
        Ok(result)
    }

    /// One tick of logical time: Raft timers, then the leader's outgoing calls.
    pub fn on_tick(&mut self) -> Result<(), ServerError> {
        self.replica.tick();
        self.ticks += 1;
        self.expire_reads();
        self.drive()?;
        self.maybe_call();
        self.drive()
    }

    /// A client request, answered by an [`Effect::Reply`] carrying `req_id`.
    pub fn on_request(&mut self, req_id: RequestId, request: Request) -> Result<(), ServerError> {
        if let Err(error) = request.op.check_limits() {
            self.reply(req_id, Err(error));
            return Ok(());
        }
        if !self.replica.is_leader() {
            self.reply(req_id, Err(self.wrong_leader()));
            return Ok(());
        }
        if !self.state.serves_key(request.op.key()) {
            self.reply(req_id, Err(KvError::WrongGroup));
            return Ok(());
        }
        match request.op {
            Op::Get { key } if self.replica.can_read_index() => self.read_later(req_id, key),
            op => self.propose(Entry::Kv(Request { op, ..request }), Waiter::Client(req_id)),
        }
        self.drive()
    }

    /// Another group's migration request, answered by an [`Effect::MigrationReply`].
    pub fn on_migration_request(
        &mut self,
        req_id: RequestId,
        request: MigrationRequest,
    ) -> Result<(), ServerError> {
        match request {
            MigrationRequest::PullShard { config_num, shard } => {
                let answer = self.state.pull_answer(config_num, shard);
                self.answer_group(req_id, answer);
                Ok(())
            }
            MigrationRequest::DeleteShard { config_num, shard } => {
                match self.state.delete_verdict(config_num, shard) {
                    DeleteVerdict::Answer(answer) => self.answer_group(req_id, answer),
                    DeleteVerdict::Propose if !self.replica.is_leader() => {
                        self.answer_group(req_id, Err(self.wrong_leader()));
                    }
                    DeleteVerdict::Propose => {
                        let entry = Entry::DeleteShard { config_num, shard };
                        self.propose(entry, Waiter::Group(req_id));
                    }
                }
                self.drive()
            }
        }
    }

    /// Proposes `entry` for `waiter`; a refusal fails the waiter at once.
    pub(crate) fn propose(&mut self, entry: Entry, waiter: Waiter) {
        match self.replica.propose(encode_entry(&entry)) {
            Ok(proposal) => {
                if let Some(old) = self.pending.insert(proposal, waiter) {
                    self.fail(old);
                }
            }
            Err(error) => {
                tracing::debug!(node = self.id(), %error, "proposal refused");
                self.fail(waiter);
            }
        }
    }

    /// Runs the replica's Ready protocol once and turns its output into effects
    /// (deferred to the end of a [`Server::batch`]).
    pub(crate) fn drive(&mut self) -> Result<(), ServerError> {
        if self.deferred {
            return Ok(());
        }
        self.ask_reads();
        let settled = self.pending.advance(&mut self.replica)?;
        self.effects.extend(
            settled
                .messages
                .into_iter()
                .map(|(to, bytes)| Effect::Send { to, bytes }),
        );
        for step in settled.applied {
            self.apply(step)?;
        }
        for waiter in settled.failed {
            self.fail(waiter);
        }
        self.settle_reads(settled.reads);
        if !self.replica.is_leader() {
            self.calls.clear();
        }
        let state = &self.state;
        let encode = |index| {
            assert!(
                index >= state.applied_index(),
                "state machine at {} ahead of the log at {index}",
                state.applied_index()
            );
            // The clone shares the shards' data with the state (copy on write), so it
            // costs nothing here and encodes on the store's snapshot thread while this
            // replica goes on applying.
            let image = state.clone();
            SnapshotData::encode_later(move || image.encode_snapshot())
        };
        // A deleted shard must leave the persisted state now (6.824 challenge 1), not
        // whenever the log next passes the threshold: an idle group never would.
        if std::mem::take(&mut self.deleted_since_snapshot) {
            self.replica.snapshot_now(encode)?;
        } else {
            self.replica.maybe_snapshot(encode)?;
        }
        Ok(())
    }

    fn apply(&mut self, step: Step<Waiter>) -> Result<(), ServerError> {
        match step {
            Step::Command { index, data, fate } => {
                let outcome = match decode_entry(&data) {
                    Ok(entry) => {
                        self.deleted_since_snapshot |= matches!(entry, Entry::DeleteShard { .. });
                        Some(self.state.apply(index, entry))
                    }
                    Err(error) => {
                        tracing::error!(node = self.id(), index, %error, "undecodable entry");
                        self.state.skip(index);
                        None
                    }
                };
                match (fate, outcome) {
                    (Some(Fate::Committed(waiter)), Some(outcome)) => self.settle(waiter, outcome),
                    (Some(Fate::Committed(waiter)) | Some(Fate::Displaced(waiter)), _) => {
                        self.fail(waiter)
                    }
                    (None, _) => {}
                }
            }
            Step::Snapshot {
                index,
                data,
                covered,
            } => {
                self.state
                    .restore(&data, index)
                    .map_err(|source| ServerError::Snapshot { index, source })?;
                covered.into_iter().for_each(|w| self.fail(w));
                tracing::info!(node = self.id(), index, "restored snapshot");
            }
            Step::Membership { index, .. } => self.state.skip(index),
        }
        Ok(())
    }

    fn settle(&mut self, waiter: Waiter, outcome: Outcome) {
        match (waiter, outcome) {
            (Waiter::Client(req_id), Outcome::Kv(response)) => self.reply(req_id, response),
            (Waiter::Group(req_id), Outcome::Migration(response)) => {
                self.answer_group(req_id, response)
            }
            (Waiter::Internal(_), Outcome::Internal) => {}
            (waiter, outcome) => panic!("entry for {waiter:?} applied as {outcome:?}"),
        }
    }

    /// Answers `waiter` with `WrongLeader` (internal work is simply dropped).
    fn fail(&mut self, waiter: Waiter) {
        let error = self.wrong_leader();
        match waiter {
            Waiter::Client(req_id) => self.reply(req_id, Err(error)),
            Waiter::Group(req_id) => self.answer_group(req_id, Err(error)),
            Waiter::Internal(_) => {}
        }
    }

    pub(crate) fn wrong_leader(&self) -> KvError {
        KvError::WrongLeader {
            hint: self.replica.leader_hint(),
        }
    }

    pub(crate) fn reply(&mut self, req_id: RequestId, response: Response) {
        self.effects.push(Effect::Reply { req_id, response });
    }

    fn answer_group(&mut self, req_id: RequestId, response: MigrationResponse) {
        self.effects
            .push(Effect::MigrationReply { req_id, response });
    }
}
