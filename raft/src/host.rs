//! [`Host`] and [`Service`]: the server shell both shardkv services share, written once.
//!
//! A replicated service is a [`Replicated`] state (how it becomes a snapshot and back),
//! a [`StateMachine`] (how committed entries change that state, how a waiter hears its
//! answer) plus the
//! events only it knows (client requests, calls to other servers). Everything between
//! those and the [`Replica`] is the same for the shard master and a replica group, and
//! lives here:
//!
//! ```text
//!   on_peer_message(bytes) ─┐             Host { replica, pending, state, machine }
//!   on_synced(number) ──────┼─► Service::drive ─► Host::run_ready:
//!   service events ─────────┘      │   Pending::advance ─► messages ─► take_messages
//!      (propose via Host)          │                    ─► Step::Command ─► machine.apply,
//!                                  │                         then answer / fail its waiter
//!                                  │                    ─► Step::Snapshot ─► state.restore
//!                                  │                    ─► failed waiters ─► machine.fail
//!                                  └─► snapshot when the log asks (or the machine must)
//! ```
//!
//! [`Service::batch`] defers the Ready protocol to the end of a batch of events, so a
//! runtime that finds many events waiting runs one Ready and one sync for all of them.
//!
//! A waiter whose proposal may not commit (lost, displaced, covered by a snapshot,
//! orphaned by a step-down, refused by raft) is failed with the replica's leader hint;
//! the client retries, which its duplicate detection makes safe.

use shardkv_proto::Millis;

use crate::{
    decode_entry, EarlySink, Error, Fate, Index, LogStore, NodeId, Pending, Replica, ReplicaConfig,
    ServerError, SnapshotData, SnapshotError, SnapshotOffer, Step, SyncSink, Term,
};

/// A state replicated by a log: it moves only by applying (or skipping) the log's
/// entries in order and by restoring snapshots, and it knows the last index it holds.
pub trait Replicated: Send + Sized + 'static {
    /// The commands its log entries carry (see [`crate::decode_command`]).
    type Command: serde::Serialize + serde::de::DeserializeOwned;
    /// The largest command, encoded, that a log entry may carry.
    const MAX_COMMAND_BYTES: u64;

    /// The last index applied (or skipped); 0 before any.
    fn applied_index(&self) -> Index;
    /// The cluster time as applied: the latest time a command applied so far carried
    /// (see [`Host`]); 0 before any.
    fn time(&self) -> Millis;
    /// Moves the applied index to `index` without a command (a membership change, an
    /// entry that does not decode); such entries carry no time, so the state's time
    /// stays.
    fn skip(&mut self, index: Index) -> Result<(), String>;
    /// Ends the applies of one Ready: a state that stores its changes commits them here
    /// as one unit. By default, nothing to do.
    fn commit(&mut self) -> Result<(), String> {
        Ok(())
    }
    /// Starts making the state durable through its applied index, for a state that
    /// keeps its own storage: the host calls it when the log is due for compaction and
    /// compacts through that index once [`Replicated::durable_index`] reached it; with
    /// `wait` (a clean stop), returns once it has. By default, nothing to do.
    fn checkpoint(&mut self, wait: bool) -> Result<(), String> {
        let _ = wait;
        Ok(())
    }
    /// The last index the state's own storage holds durably. By default the applied
    /// index: a state without storage of its own is made durable by its snapshot.
    fn durable_index(&self) -> Index {
        self.applied_index()
    }
    /// An encoder of the state as it is now into snapshot bytes (see
    /// [`crate::encode_image`]). The host runs it on the store's snapshot thread while
    /// the state goes on applying, so it must not see later changes.
    fn snapshot(&self) -> Result<SnapshotEncoder, String>;
    /// Replaces this state with the one in `bytes`, the snapshot of the log through
    /// `index`; refuses a snapshot that applied past `index` (see [`check_restored`]).
    /// On a decode or invariant error the state is unchanged.
    fn restore(&mut self, bytes: &[u8], index: Index) -> Result<(), SnapshotError>;
}

/// Makes a state's snapshot bytes, on any thread: what [`Replicated::snapshot`] returns.
pub type SnapshotEncoder = Box<dyn FnOnce() -> Vec<u8> + Send>;

/// Refuses a restored state whose applied index `applied` is past `index`, the log
/// index its snapshot stands for (entries after `index` would apply twice).
pub fn check_restored(applied: Index, index: Index) -> Result<(), SnapshotError> {
    match applied > index {
        true => Err(SnapshotError::Invalid(format!(
            "snapshot at log index {index} has applied index {applied}"
        ))),
        false => Ok(()),
    }
}

/// The command type of state machine `M`'s state.
pub type Command<M> = <<M as StateMachine>::State as Replicated>::Command;

/// The part of a replicated service that [`Host`] drives: a deterministic state machine
/// over committed entries, and where its answers and raft messages go.
pub trait StateMachine {
    /// Who waits on a proposal (a client request, another server's call, internal work).
    type Waiter;
    /// What applying a command answers its waiter with.
    type Answer;
    /// The replicated state it applies commands to.
    type State: Replicated;

    /// Applies `command`, committed at `index` with cluster time `time` (its leader's
    /// stamp: the state keeps the latest it has seen, so its time never moves back), to
    /// `state`; an error (the state's storage failed) stops the server. (An entry that
    /// does not decode as a command never gets here: the host logs it and skips it on
    /// every replica alike.)
    fn apply(
        &mut self,
        state: &mut Self::State,
        index: Index,
        time: Millis,
        command: Command<Self>,
    ) -> Result<Self::Answer, String>;
    /// True (once) when the state must be snapshotted now rather than when the log next
    /// passes its threshold.
    fn take_must_snapshot(&mut self) -> bool {
        false
    }
    /// Answers `waiter`: its proposal committed and applied as `answer`.
    fn answer(&mut self, waiter: Self::Waiter, answer: Self::Answer);
    /// Fails `waiter`: its proposal may or may not commit; `leader_hint` is where the
    /// leader may be.
    fn fail(&mut self, waiter: Self::Waiter, leader_hint: Option<NodeId>);
}

/// A replica, the waiters of its proposals, the replicated state and the state machine
/// that applies to it.
pub struct Host<S: LogStore, M: StateMachine> {
    replica: Replica<S>,
    pending: Pending<M::Waiter>,
    state: M::State,
    machine: M,
    /// Encoded raft messages `(to, bytes)` to send, in order.
    messages: Vec<(NodeId, Vec<u8>)>,
    /// Inside [`Service::batch`]: events only feed raft-rs; the Ready protocol runs once
    /// at the end.
    deferred: bool,
    /// The machine asked for a snapshot now ([`StateMachine::take_must_snapshot`]), not
    /// yet started.
    must_snapshot: bool,
    /// The checkpoint under way: the index the log is compacted through once the state
    /// holds it durably, and whether that compaction was asked for now.
    checkpointing: Option<(Index, bool)>,
    /// How this replica, while it leads, stamps its proposals with cluster time.
    clock: LeaderClock,
}

/// A leader's cluster clock: the state's time when it began leading in `term`, plus the
/// ticks it has led since. Every proposal carries `max(state's time, base + ticks x
/// tick_ms)`, so the time entries carry moves with the time the group has a leader, and
/// never with a wall clock: a new leader whose ticks run slower only delays expiry, and
/// a stepped system clock changes nothing.
#[derive(Debug, Clone, Copy, Default)]
struct LeaderClock {
    term: Term,
    base: Millis,
    ticks: u64,
}

impl<S: LogStore, M: StateMachine> Host<S, M> {
    /// Opens a replica over `store` (restart-safe) for `machine` and a fresh `state`: a
    /// stored snapshot and the log after it rebuild the state on the first event.
    pub fn open(
        config: ReplicaConfig,
        store: S,
        state: M::State,
        machine: M,
    ) -> Result<Self, Error> {
        Ok(Self::new(Replica::open(config, store)?, state, machine))
    }

    /// A host over an opened `replica` (for custom loggers).
    pub fn new(replica: Replica<S>, state: M::State, machine: M) -> Self {
        Host {
            replica,
            pending: Pending::default(),
            state,
            machine,
            messages: Vec::new(),
            deferred: false,
            must_snapshot: false,
            checkpointing: None,
            clock: LeaderClock::default(),
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

    /// The replicated log, to feed (ticks, read indexes).
    pub fn replica_mut(&mut self) -> &mut Replica<S> {
        &mut self.replica
    }

    /// The replicated state as applied so far.
    pub fn state(&self) -> &M::State {
        &self.state
    }

    /// The state machine.
    pub fn machine(&self) -> &M {
        &self.machine
    }

    /// The state machine, to hand effects to.
    pub fn machine_mut(&mut self) -> &mut M {
        &mut self.machine
    }

    /// Consumes the host, returning its log store (to simulate a restart).
    pub fn into_store(self) -> S {
        self.replica.into_store()
    }

    /// Consumes the host, returning its log store and its state (to simulate a restart
    /// of a state that keeps its own storage).
    pub fn into_parts(self) -> (S, M::State) {
        (self.replica.into_store(), self.state)
    }

    /// Feeds a raft message that arrived from peer `from`; bytes that do not decode, and
    /// messages refused before raft-rs (one naming a sender other than `from` among
    /// them), are logged and dropped.
    pub fn step(&mut self, from: NodeId, bytes: &[u8]) {
        self.step_unless(from, bytes, |_| false);
    }

    /// Like [`Host::step`], except that a leader's snapshot for which `hold` answers true
    /// is returned instead of stepped (see [`Replica::step_unless`]).
    pub fn step_unless(
        &mut self,
        from: NodeId,
        bytes: &[u8],
        hold: impl FnOnce(&SnapshotOffer) -> bool,
    ) -> Option<SnapshotOffer> {
        match self.replica.step_unless(Some(from), bytes, hold) {
            Ok(held) => held,
            // Refused before raft-rs: logged at the 1st, 2nd, 4th, 8th... so that a peer
            // sending them without end (forged, or a replica that lost its log hearing
            // its leader) cannot flood the log.
            Err(Error::Decode(reason)) => {
                let refused = self.replica.refused_messages();
                if refused.is_power_of_two() {
                    tracing::warn!(node = self.id(), refused, %reason, "refused peer message");
                }
                None
            }
            Err(error) => {
                tracing::warn!(node = self.id(), %error, "dropped peer message");
                None
            }
        }
    }

    /// The replicated state, for a state that moves ahead by data it fetched from
    /// another replica rather than by the log (a follower's catch-up): it may only move
    /// to a point the group committed. Entries it then holds already are skipped.
    pub fn state_mut(&mut self) -> &mut M::State {
        &mut self.state
    }

    /// One tick of logical time: raft's timers, and the leader's cluster clock.
    pub fn tick(&mut self) {
        self.replica.tick();
        if self.replica.is_leader() {
            self.leader_clock().ticks += 1;
        }
    }

    /// The leader's clock for the current term, started at the state's time when the
    /// term's first tick or proposal finds it unset.
    fn leader_clock(&mut self) -> &mut LeaderClock {
        let term = self.replica.term();
        if self.clock.term != term {
            self.clock = LeaderClock {
                term,
                base: self.state.time(),
                ticks: 0,
            };
        }
        &mut self.clock
    }

    /// The cluster time a proposal made now carries (see `LeaderClock`); at least 1,
    /// so that a state that applied any command has a time.
    pub fn stamp(&mut self) -> Millis {
        let tick_ms = self.replica.config().tick_ms;
        let applied = self.state.time();
        let clock = *self.leader_clock();
        let led = clock
            .base
            .saturating_add(clock.ticks.saturating_mul(tick_ms));
        applied.max(led).max(1)
    }

    /// Proposes command bytes `command` (see [`crate::encode_command`]) for `waiter`,
    /// stamped with the cluster time ([`Host::stamp`]); a refusal (not the leader, busy)
    /// fails the waiter at once, and a proposal that takes the index of an older one
    /// fails that one's waiter.
    pub fn propose(&mut self, command: Vec<u8>, waiter: M::Waiter) {
        let data = crate::image::stamp_command(self.stamp(), command);
        match self.replica.propose(data) {
            Ok(proposal) => {
                if let Some(old) = self.pending.insert(proposal, waiter) {
                    self.fail(old);
                }
            }
            Err(Error::NotLeader { hint }) => {
                let hint = hint.or(self.replica.leader_hint());
                self.machine.fail(waiter, hint);
            }
            Err(error) => {
                tracing::warn!(node = self.id(), %error, "proposal refused");
                self.fail(waiter);
            }
        }
    }

    /// Fails `waiter` with the replica's leader hint.
    pub fn fail(&mut self, waiter: M::Waiter) {
        let hint = self.replica.leader_hint();
        self.machine.fail(waiter, hint);
    }

    /// True when some waiter of an in-flight proposal satisfies `f`.
    pub fn is_waiting(&self, f: impl Fn(&M::Waiter) -> bool) -> bool {
        self.pending.any(f)
    }

    /// Runs the replica's Ready protocol once and hands its output to the state machine
    /// (see the module docs), then snapshots when the log or the machine asks. Returns
    /// the `(ctx, read index)` pairs raft-rs confirmed.
    pub fn run_ready(&mut self) -> Result<Vec<(u64, Index)>, ServerError> {
        let settled = self.pending.advance(&mut self.replica)?;
        self.messages.extend(settled.messages);
        for step in settled.applied {
            self.apply(step)?;
        }
        for waiter in settled.failed {
            self.fail(waiter);
        }
        let applied = self.state.applied_index();
        self.state.commit().map_err(|reason| ServerError::State {
            index: applied,
            reason,
        })?;
        self.must_snapshot |= self.machine.take_must_snapshot();
        self.compact(applied)?;
        Ok(settled.reads)
    }

    /// Log compaction by checkpoint: when the log is due for it (or the machine asked),
    /// starts a checkpoint of the state at `applied`; once the state holds that index
    /// durably, compacts the log through it, with the state's snapshot bytes (a state
    /// without storage of its own is durable at once, and its bytes hold it all).
    fn compact(&mut self, applied: Index) -> Result<(), ServerError> {
        let failed = |reason| ServerError::State {
            index: applied,
            reason,
        };
        // A state ahead of the log (its storage held entries the log is still replaying
        // after a restart, or it copied a later state) waits: a snapshot must stand for
        // exactly what the state holds at its index.
        let caught_up = applied <= self.replica.applied_index();
        if self.checkpointing.is_none()
            && caught_up
            && self.replica.snapshot_due(self.must_snapshot)?
        {
            let now = std::mem::take(&mut self.must_snapshot);
            self.state.checkpoint(false).map_err(failed)?;
            self.checkpointing = Some((applied, now));
        }
        let Some((index, now)) = self.checkpointing else {
            return Ok(());
        };
        if self.state.durable_index() < index {
            return Ok(());
        }
        self.checkpointing = None;
        let encoder = self.state.snapshot().map_err(failed)?;
        // At the state's index, which lags raft's by the empty entries of new leaders:
        // the snapshot stands for exactly what the state holds.
        let encode = |_| SnapshotData::encode_later(encoder);
        match now {
            true => self.replica.snapshot_now_at(index, encode)?,
            false => self.replica.maybe_snapshot_at(index, encode)?,
        };
        Ok(())
    }

    fn apply(&mut self, step: Step<M::Waiter>) -> Result<(), ServerError> {
        match step {
            Step::Command { index, fate, .. } | Step::Membership { index, fate, .. }
                if index <= self.state.applied_index() && !reapply_replayed() =>
            {
                // The state's own storage holds this entry already (a restart replays the
                // log from its snapshot): not again. No client waits on it after a restart;
                // a waiter, if any, retries.
                if let Some(Fate::Committed(waiter) | Fate::Displaced(waiter)) = fate {
                    self.fail(waiter);
                }
            }
            Step::Command { index, data, fate } => {
                let answer = match decode_entry::<M::State>(&data) {
                    Ok((time, command)) => Some(
                        self.machine
                            .apply(&mut self.state, index, time, command)
                            .map_err(|reason| ServerError::State { index, reason })?,
                    ),
                    Err(error) => {
                        tracing::error!(node = self.id(), index, %error, "undecodable entry");
                        self.state
                            .skip(index)
                            .map_err(|reason| ServerError::State { index, reason })?;
                        None
                    }
                };
                match (fate, answer) {
                    (Some(Fate::Committed(waiter)), Some(answer)) => {
                        self.machine.answer(waiter, answer)
                    }
                    (Some(Fate::Committed(waiter) | Fate::Displaced(waiter)), _) => {
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
                covered.into_iter().for_each(|waiter| self.fail(waiter));
                tracing::info!(node = self.id(), index, "restored snapshot");
            }
            Step::Membership { index, fate, .. } => {
                self.state
                    .skip(index)
                    .map_err(|reason| ServerError::State { index, reason })?;
                // A host proposes commands only; a membership waiter has no answer.
                if let Some(Fate::Committed(waiter) | Fate::Displaced(waiter)) = fate {
                    self.fail(waiter);
                }
            }
        }
        Ok(())
    }
}

/// A server built on a [`Host`]: the events every service handles the same way. A
/// service supplies its host and, when it does more than the host around them,
/// [`Service::run_ready`] and [`Service::on_tick`]; its own events (requests, calls) end
/// with [`Service::drive`]. A bare [`Host`] is a service that does nothing more.
pub trait Service {
    /// The log store.
    type Store: LogStore;
    /// The state machine.
    type Machine: StateMachine;

    /// The host.
    fn host(&self) -> &Host<Self::Store, Self::Machine>;
    /// The host, to drive.
    fn host_mut(&mut self) -> &mut Host<Self::Store, Self::Machine>;
    /// Runs the Ready protocol once with what the service does around it (by default
    /// nothing: [`Host::run_ready`], its confirmed reads unused).
    fn run_ready(&mut self) -> Result<(), ServerError> {
        self.host_mut().run_ready().map(drop)
    }

    /// Runs [`Service::run_ready`], or nothing inside a [`Service::batch`] (the batch
    /// runs it once at its end).
    fn drive(&mut self) -> Result<(), ServerError> {
        if self.host().deferred {
            return Ok(());
        }
        self.run_ready()
    }

    /// Runs `events` (calls of the `on_*` methods) with the Ready protocol run once at
    /// the end instead of after each: the proposals and messages of the whole batch
    /// share one sync, one append per follower and one read index. Answers are the same.
    fn batch<R, E>(&mut self, events: impl FnOnce(&mut Self) -> Result<R, E>) -> Result<R, E>
    where
        E: From<ServerError>,
        Self: Sized,
    {
        let was_deferred = std::mem::replace(&mut self.host_mut().deferred, true);
        let result = events(self);
        self.host_mut().deferred = was_deferred;
        let result = result?;
        self.drive()?;
        Ok(result)
    }

    /// The host, consumed (to simulate a restart: [`Host::into_store`]).
    fn into_host(self) -> Host<Self::Store, Self::Machine>;

    /// This replica's id.
    fn id(&self) -> NodeId {
        self.host().id()
    }

    /// The replicated log.
    fn replica(&self) -> &Replica<Self::Store> {
        self.host().replica()
    }

    /// The encoded raft messages `(to, bytes)` produced since the last call, in order.
    fn take_messages(&mut self) -> Vec<(NodeId, Vec<u8>)> {
        std::mem::take(&mut self.host_mut().messages)
    }

    /// A raft message that arrived from peer `from`. Bytes that do not decode are logged
    /// and dropped.
    fn on_peer_message(&mut self, from: NodeId, bytes: &[u8]) -> Result<(), ServerError> {
        self.host_mut().step(from, bytes);
        self.drive()
    }

    /// One tick of logical time (raft's timers, the leader's clock).
    fn on_tick(&mut self) -> Result<(), ServerError> {
        self.host_mut().tick();
        self.drive()
    }

    /// The store is durable through Ready `number` (see [`Replica::on_synced`]).
    fn on_synced(&mut self, number: u64) -> Result<(), ServerError> {
        self.host_mut().replica.on_synced(number);
        self.drive()
    }

    /// See [`Replica::send_early_with`]: the production driver sends a leader's appends
    /// before the leader's own sync.
    fn send_early_with(&mut self, sink: EarlySink) {
        self.host_mut().replica.send_early_with(sink);
    }

    /// See [`Replica::sync_with`]: the production driver syncs the store on another
    /// thread and reports each sync with [`Service::on_synced`].
    fn sync_with(&mut self, sink: SyncSink) {
        self.host_mut().replica.sync_with(sink);
    }

    /// Makes the store durable for a clean stop (see [`Replica::flush`]), and the state
    /// too ([`Replicated::checkpoint`]), so a restart replays little.
    fn flush(&mut self) -> Result<(), ServerError> {
        let host = self.host_mut();
        host.replica.flush()?;
        let index = host.state.applied_index();
        host.state
            .checkpoint(true)
            .map_err(|reason| ServerError::State { index, reason })
    }
}

/// A host is the service of a state machine that needs nothing around the Ready protocol
/// (the shard master).
impl<S: LogStore, M: StateMachine> Service for Host<S, M> {
    type Store = S;
    type Machine = M;

    fn host(&self) -> &Self {
        self
    }

    fn host_mut(&mut self) -> &mut Self {
        self
    }

    fn into_host(self) -> Self {
        self
    }
}

/// The `ReapplyReplayed` mutant ([`crate::mutants`]) is on.
fn reapply_replayed() -> bool {
    #[cfg(feature = "mutants")]
    return crate::mutants::active(crate::mutants::Mutation::ReapplyReplayed);
    #[cfg(not(feature = "mutants"))]
    false
}
