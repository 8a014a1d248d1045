//! [`Server`]: one replica of one replica group, a sans-IO state machine over a Raft
//! [`Replica`].
//!
//! ```text
//!   on_peer_message(bytes) ─────────┐                      ┌─► take_messages (raft peers)
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
//! `Service::batch` lets a runtime hand over every event waiting at once: the Ready
//! protocol (and its one sync) then runs once for all of them.
//!
//! Migration requests: `PullShard` is answered at once from the applied state by any
//! replica (the offered shard is frozen, see the crate docs); `DeleteShard` is answered
//! at once when the verdict needs no change, and otherwise goes through the leader's log.
//!
//! Ticks drive Raft and, on the leader, the outgoing calls (see `poll.rs`).
//!
//! Everything between these events and the [`Replica`] (the Ready protocol, who waits on
//! which proposal, applying, snapshots, peer messages, sync completions, batches) is
//! `shardkv_raft::Host`, shared with the shard master: this file holds the group's
//! [`StateMachine`] ([`Machine`]) and its own events. The host snapshots when the log
//! passed its threshold, and at once after a `DeleteShard` applied.

use std::collections::BTreeMap;

use shardkv_proto::kv::{KvError, MigrationRequest, MigrationResponse, Op, Request, Response};
use shardkv_proto::{ConfigNum, GroupId, Millis, NodeId, ShardId};
use shardkv_raft::{Host, Index, LogStore, Replica, ReplicaConfig, Service, StateMachine};

use crate::abandon::Holders;
use crate::calls::Calls;
use crate::catch_up::{CatchUp, Views};
use crate::data::Data;
use crate::effect::{Effect, RequestId};
use crate::message::{encode_entry, Entry};
use crate::migration::DeleteVerdict;
use crate::options::{GroupOptions, ServerError};
use crate::reads::Reads;
use crate::state::{GroupState, Outcome};

/// Internal work the leader proposed, so it does not propose it twice at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Adopt configuration n.
    Config(ConfigNum),
    /// Install a shard pulled for configuration n.
    Install(ConfigNum, ShardId),
    /// Note that the shard's previous owner deleted it for configuration n.
    Acked(ConfigNum, ShardId),
    /// Hold a shard offered to an abandoned group in configuration n.
    Reclaim(ConfigNum, ShardId),
    /// Move the group's clock ([`Entry::Time`]).
    Time,
}

/// Who waits for a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiter {
    /// A client request.
    Client(RequestId),
    /// Another group's migration request.
    Group(RequestId),
    /// The leader's own work.
    Internal(Task),
}

/// The group's state machine as the host drives it: it applies entries to the shards
/// and sessions ([`GroupState`]) and keeps the effects produced for the driver.
pub struct Machine {
    effects: Vec<Effect>,
    /// A `DeleteShard` applied since the last snapshot: snapshot at once (challenge 1).
    deleted_since_snapshot: bool,
}

impl Machine {
    pub(crate) fn push(&mut self, effect: Effect) {
        self.effects.push(effect);
    }

    fn reply(&mut self, req_id: RequestId, response: Response, clock: Millis) {
        self.push(Effect::Reply {
            req_id,
            response,
            clock,
        });
    }

    pub(crate) fn answer_group(&mut self, req_id: RequestId, response: MigrationResponse) {
        self.push(Effect::MigrationReply { req_id, response });
    }
}

impl StateMachine for Machine {
    type Waiter = Waiter;
    type Answer = Outcome;
    type State = GroupState;
    fn apply(
        &mut self,
        state: &mut GroupState,
        index: Index,
        time: Millis,
        entry: Entry,
    ) -> Result<Outcome, String> {
        self.deleted_since_snapshot |= matches!(entry, Entry::DeleteShard { .. });
        (state.apply(index, time, entry)).map_err(|error| error.to_string())
    }

    /// A deleted shard must leave the persisted state now (6.824 challenge 1), not
    /// whenever the log next passes the threshold: an idle group never would.
    fn take_must_snapshot(&mut self) -> bool {
        std::mem::take(&mut self.deleted_since_snapshot)
    }

    fn answer(&mut self, waiter: Waiter, outcome: Outcome) {
        match (waiter, outcome) {
            (Waiter::Client(req_id), Outcome::Kv(response, clock)) => {
                self.reply(req_id, response, clock)
            }
            (Waiter::Group(req_id), Outcome::Migration(response)) => {
                self.answer_group(req_id, response)
            }
            (Waiter::Internal(_), Outcome::Internal) => {}
            (waiter, outcome) => panic!("entry for {waiter:?} applied as {outcome:?}"),
        }
    }

    /// Answers `waiter` with `WrongLeader` (internal work is simply dropped).
    fn fail(&mut self, waiter: Waiter, hint: Option<NodeId>) {
        let error = KvError::WrongLeader { hint };
        match waiter {
            Waiter::Client(req_id) => self.reply(req_id, Err(error), 0),
            Waiter::Group(req_id) => self.answer_group(req_id, Err(error)),
            Waiter::Internal(_) => {}
        }
    }
}

/// One replica group replica; see the module docs.
pub struct Server<S: LogStore> {
    pub(crate) host: Host<S, Machine>,
    pub(crate) options: GroupOptions,
    pub(crate) calls: Calls,
    /// Ticks since this process started (the call clock; never persisted).
    pub(crate) ticks: u64,
    /// Gets answered by ReadIndex (`reads.rs`).
    pub(crate) reads: Reads,
    /// Per pulling shard, the last key installed when its next chunk was last asked for
    /// at once (`poll.rs`): one such call per chunk applied, the rest at poll time.
    pub(crate) chunk_asked: BTreeMap<ShardId, Vec<u8>>,
    /// Where the data of shards stuck in a migration with an abandoned group is
    /// (`abandon.rs`).
    pub(crate) holders: Holders,
    /// This replica's copy of another's state, while it is behind the compacted log.
    pub(crate) catch_up: Option<CatchUp>,
    /// The views other replicas' catch-ups copy from.
    pub(crate) views: Views,
    /// The driver found the disk nearly full: client writes are refused, reads served.
    out_of_space: bool,
}

impl<S: LogStore> Service for Server<S> {
    type Store = S;
    type Machine = Machine;

    fn host(&self) -> &Host<S, Machine> {
        &self.host
    }

    fn host_mut(&mut self) -> &mut Host<S, Machine> {
        &mut self.host
    }

    fn into_host(self) -> Host<S, Machine> {
        self.host
    }

    /// The Ready protocol between the reads: one read index asked for the Gets that
    /// came in, the confirmed ones answered after; a replica that stops leading forgets
    /// its calls.
    fn run_ready(&mut self) -> Result<(), ServerError> {
        self.ask_reads();
        let confirmed = self.host.run_ready()?;
        self.settle_reads(confirmed)?;
        if !self.replica().is_leader() {
            self.calls.clear_leader_calls();
        }
        self.ask_next_chunks();
        Ok(())
    }

    /// A raft message from a peer; a leader's snapshot may start a catch-up
    /// (`catch_up.rs`).
    fn on_peer_message(&mut self, from: NodeId, bytes: &[u8]) -> Result<(), ServerError> {
        self.step_peer_message(from, bytes)?;
        self.drive()
    }

    /// One tick of logical time: Raft timers, then the leader's outgoing calls, and a
    /// catch-up's call when one is due.
    fn on_tick(&mut self) -> Result<(), ServerError> {
        self.host.tick();
        self.ticks += 1;
        self.expire_reads();
        self.calls.expire(self.ticks);
        self.expire_views();
        self.drive()?;
        self.maybe_call();
        self.keep_time();
        self.ask_state();
        self.drive()
    }
}

impl<S: LogStore> Server<S> {
    /// Opens a replica over `store` (restart-safe): a stored snapshot and the log after it
    /// rebuild the state on the first event.
    pub fn open(
        config: ReplicaConfig,
        store: S,
        data: Data,
        options: GroupOptions,
    ) -> Result<Self, ServerError> {
        Self::new(Replica::open(config, store)?, data, options)
    }

    /// A server over an opened `replica` (for custom loggers) and its `data`.
    ///
    /// # Panics
    /// If the options are unusable: gid 0, no shards, no masters, zero ticks or timeout.
    pub fn new(
        replica: Replica<S>,
        data: Data,
        options: GroupOptions,
    ) -> Result<Self, ServerError> {
        assert!(!options.masters.is_empty(), "no shard master addresses");
        assert!(
            options.poll_ticks > 0 && options.call_timeout_ticks > 0,
            "poll_ticks {} and call_timeout_ticks {} must be positive",
            options.poll_ticks,
            options.call_timeout_ticks
        );
        let state = GroupState::open(
            options.gid,
            options.nshards,
            options.session_timeout_ms,
            data,
        )
        .map_err(|error| ServerError::State {
            index: 0,
            reason: error.to_string(),
        })?;
        let machine = Machine {
            effects: Vec::new(),
            deleted_since_snapshot: false,
        };
        Ok(Server {
            host: Host::new(replica, state, machine),
            options,
            calls: Calls::default(),
            ticks: 0,
            reads: Reads::default(),
            chunk_asked: BTreeMap::new(),
            holders: Holders::default(),
            catch_up: None,
            views: Views::default(),
            out_of_space: false,
        })
    }

    /// Whether the disk under this replica is nearly full (its driver watches it): while
    /// it is, client writes are refused with [`KvError::NoSpace`] and reads served.
    /// Entries of the log (another replica's writes, shard moves) are still taken.
    pub fn set_out_of_space(&mut self, out: bool) {
        self.out_of_space = out;
    }

    /// The group this replica belongs to.
    pub fn gid(&self) -> GroupId {
        self.options.gid
    }

    /// The state machine as applied so far.
    pub fn state(&self) -> &GroupState {
        self.host.state()
    }

    /// Effects produced since the last call, in order.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.host.machine_mut().effects)
    }

    /// A client request, answered by an [`Effect::Reply`] carrying `req_id`.
    pub fn on_request(&mut self, req_id: RequestId, request: Request) -> Result<(), ServerError> {
        if let Err(error) = request.op.check_limits() {
            self.reply(req_id, Err(error));
            return Ok(());
        }
        if !self.replica().is_leader() {
            let hint = self.replica().leader_hint();
            self.reply(req_id, Err(KvError::NotLeader { hint }));
            return Ok(());
        }
        if !self.state().serves_key(request.op.key()) {
            self.reply(req_id, Err(KvError::WrongGroup));
            return Ok(());
        }
        if self.out_of_space && !matches!(request.op, Op::Get { .. }) {
            self.reply(req_id, Err(KvError::NoSpace));
            return Ok(());
        }
        // Refused when applied anyway, as the applied state stands: spare the log.
        if let Some(clock) = self.state().refuses_unknown(&request) {
            let timeout = self.state().session_timeout_ms();
            let refusal = KvError::UnknownSession { clock, timeout };
            self.reply_at(req_id, Err(refusal), clock);
            return Ok(());
        }
        match request.op {
            Op::Get { key } if self.replica().can_read_index() => self.read_later(req_id, key),
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
            MigrationRequest::PullShard {
                config_num,
                shard,
                after,
            } => {
                let chunk_bytes = self.options.chunk_bytes;
                let answer = self
                    .state()
                    .pull_answer(config_num, shard, after, chunk_bytes);
                let answer = answer.map_err(|error| ServerError::State {
                    index: self.state().applied_index,
                    reason: error.to_string(),
                })?;
                self.answer_group(req_id, answer);
                Ok(())
            }
            MigrationRequest::DeleteShard { config_num, shard } => {
                match self.state().delete_verdict(config_num, shard) {
                    DeleteVerdict::Answer(answer) => self.answer_group(req_id, answer),
                    DeleteVerdict::Propose if !self.replica().is_leader() => {
                        self.answer_group(req_id, Err(self.wrong_leader()));
                    }
                    DeleteVerdict::Propose => {
                        let entry = Entry::DeleteShard { config_num, shard };
                        self.propose(entry, Waiter::Group(req_id));
                    }
                }
                self.drive()
            }
            MigrationRequest::PullState { index, view, after } => {
                self.serve_state(req_id, index, view, after)
            }
        }
    }

    /// The leader of a group that applied nothing for 1/16 of the session timeout
    /// proposes an [`Entry::Time`]: quiet sessions expire, and the clock an answer
    /// carries stays within that of the leader's.
    fn keep_time(&mut self) {
        if !self.replica().is_leader() {
            return;
        }
        let stride = self.state().expiry_stride();
        if self.host.stamp() >= self.state().time().saturating_add(stride) {
            self.propose_task(Task::Time, Entry::Time);
        }
    }

    /// Proposes `entry` for `waiter`; a refusal fails the waiter at once.
    pub(crate) fn propose(&mut self, entry: Entry, waiter: Waiter) {
        self.host.propose(encode_entry(&entry), waiter);
    }

    pub(crate) fn wrong_leader(&self) -> KvError {
        KvError::WrongLeader {
            hint: self.replica().leader_hint(),
        }
    }

    /// Answers client request `req_id` without a shard clock (refused before the state).
    pub(crate) fn reply(&mut self, req_id: RequestId, response: Response) {
        self.reply_at(req_id, response, 0);
    }

    /// Answers client request `req_id` from the state, whose key's shard is at `clock`.
    pub(crate) fn reply_at(&mut self, req_id: RequestId, response: Response, clock: Millis) {
        self.host.machine_mut().reply(req_id, response, clock);
    }

    fn answer_group(&mut self, req_id: RequestId, response: MigrationResponse) {
        self.host.machine_mut().answer_group(req_id, response);
    }
}
