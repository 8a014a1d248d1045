//! [`Replica`]: one member of a Raft group, as a deterministic state machine.
//!
//! Events go in through `tick`, `step` (bytes from a peer), `propose`, `read_index`,
//! `change_membership`, `transfer_leader` and `snapshot`; after each, the driver calls
//! `advance`, which runs raft-rs's Ready protocol against the [`LogStore`] and returns
//! an [`crate::Output`]: messages to send, committed content to apply, finished reads
//! and whether it still leads. Nothing here reads a clock, touches a socket or draws a random
//! number, so the simulator and the production runtime drive the same code.
//!
//! Restart: `open` on a store that holds state resumes from it. The state machine is
//! volatile, so the first `advance` returns the stored snapshot (if any) as
//! `Applied::Snapshot`, then replays every committed entry after it; raft-rs is told
//! (`Config.applied`) that the snapshot index is applied, so nothing before it replays.

use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType, Snapshot};
use raft::{RawNode, StateRole};

use crate::election::{ElectionSpread, Tick};
use crate::input;
use crate::membership::{bootstrap, sorted_voters, ConfHistory};
use crate::{
    tracing_logger, Error, Index, LogStore, Membership, NodeId, Proposal, ReplicaConfig, SyncJob,
    Term,
};

/// One Raft replica over a [`LogStore`]; see the module docs.
pub struct Replica<S: LogStore> {
    pub(crate) raw: RawNode<S>,
    pub(crate) config: ReplicaConfig,
    pub(crate) history: ConfHistory,
    /// Sorted voters of the applied configuration.
    pub(crate) voters: Vec<NodeId>,
    /// The stored snapshot, to hand to the state machine on the first `advance`.
    pub(crate) restored: Option<Snapshot>,
    /// Where messages that may leave before the Ready is persisted go at once (see
    /// [`Replica::send_early_with`]); `None`: they go in the `Output` like the rest.
    pub(crate) early: Option<EarlySink>,
    /// Where Readies to sync go (see [`Replica::sync_with`]); `None`: `advance` syncs
    /// the store itself.
    pub(crate) sync_sink: Option<SyncSink>,
    /// The syncs asked of `sync_sink` and reported done: Ready numbers.
    pub(crate) sync: SyncProgress,
    /// Whether the next size-triggered snapshot waits for this voter's stagger (see
    /// [`ReplicaConfig::snapshot_stagger`]): after opening, and after a snapshot every
    /// replica takes at the same entry (`snapshot_now`, a leader's snapshot installed).
    pub(crate) stagger_next: bool,
    /// Election ticks held back to spread election timeouts (`election.rs`).
    pub(crate) election: ElectionSpread,
    /// Peer messages refused before raft-rs (`input.rs`).
    pub(crate) refused: u64,
}

/// A driver's way to sync the store off the replica's thread: called with a Ready number
/// and the store's [`SyncJob`] for it, it must run the job (on any thread; jobs may be
/// merged, see [`SyncJob::merge`]) and then report the number with
/// [`Replica::on_synced`].
pub type SyncSink = Box<dyn FnMut(u64, SyncJob) + Send>;

/// Readies handed to a [`SyncSink`], and the messages waiting for them.
#[derive(Debug, Default)]
pub(crate) struct SyncProgress {
    /// The highest Ready number handed to the sink.
    pub(crate) asked: u64,
    /// The highest Ready number reported synced.
    pub(crate) done: u64,
    /// Messages that promise persistence, with the Ready number that must be synced
    /// before they may leave, in order.
    pub(crate) held: std::collections::VecDeque<(u64, NodeId, Vec<u8>)>,
}

impl SyncProgress {
    /// True while a sync asked of the sink has not been reported.
    pub(crate) fn outstanding(&self) -> bool {
        self.asked > self.done
    }
}

/// A leader's snapshot message, as [`Replica::step_unless`] shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotOffer {
    /// The leader that sent it.
    pub from: NodeId,
    /// The log index the snapshot stands for.
    pub index: Index,
    /// The term of that index.
    pub term: Term,
    /// True when this replica's log holds that entry already ([`Replica::has_entry`]):
    /// raft-rs then fast-forwards instead of installing the snapshot.
    pub in_log: bool,
}

/// A driver's way to send a raft message at once: `(to, encoded message)`.
pub type EarlySink = Box<dyn FnMut(NodeId, Vec<u8>) + Send>;

impl<S: LogStore> std::fmt::Debug for Replica<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("id", &self.id())
            .field("term", &self.term())
            .field("leader", &self.leader())
            .field("applied", &self.applied_index())
            .field("commit", &self.commit_index())
            .field("voters", &self.voters)
            .finish()
    }
}

impl<S: LogStore> Replica<S> {
    /// Opens the replica over `store` (restart-safe), logging through `tracing`.
    pub fn open(config: ReplicaConfig, store: S) -> Result<Self, Error> {
        let logger = tracing_logger(config.id);
        Self::open_with_logger(config, store, &logger)
    }

    /// Like [`Replica::open`] with an explicit slog logger (e.g. `discard_logger()`).
    ///
    /// An empty store with non-empty `config.peers` is bootstrapped with those voters
    /// (every founding member must be given the same `peers`); an empty store without
    /// peers waits to be added to a group.
    pub fn open_with_logger(
        config: ReplicaConfig,
        mut store: S,
        logger: &slog::Logger,
    ) -> Result<Self, Error> {
        let state = store.initial_state()?;
        let empty = !state.initialized() && store.last_index()? == 0;
        if empty && !config.peers.is_empty() {
            bootstrap(&mut store, &config.peers)?;
        }
        let conf_state = store.initial_state()?.conf_state;
        let applied = store.first_index()? - 1;
        let restored = match applied {
            0 => None,
            _ => Some(store.restore_snapshot()?),
        };
        let raw = RawNode::new(&config.to_raft(applied), store, logger)?;
        Ok(Self {
            election: ElectionSpread::new(config.election_seed, config.election_ticks_spread),
            raw,
            voters: sorted_voters(&conf_state),
            history: ConfHistory::new(applied, conf_state),
            restored,
            config,
            early: None,
            sync_sink: None,
            sync: SyncProgress::default(),
            stagger_next: true,
            refused: 0,
        })
    }

    /// Hands the messages raft-rs allows to leave before a Ready is persisted (a
    /// leader's appends and heartbeats) to `sink` as `advance` meets them, before it
    /// writes and syncs, instead of returning them in the `Output`. A driver that sends
    /// them from `sink` lets the followers write and sync the entries while the leader
    /// does: one sync on a write's path instead of two. Messages that promise what is
    /// being persisted (votes, append responses) still come in the `Output`, after the
    /// sync. Without a sink (the simulator) every message is in the `Output`.
    pub fn send_early_with(&mut self, sink: EarlySink) {
        self.early = Some(sink);
    }

    /// Hands every sync a Ready needs to `sink` instead of syncing the store inside
    /// `advance`, so the driver's thread goes on with other events while the disk
    /// syncs (raft-rs's asynchronous persistence). `advance` still writes each Ready's
    /// entries and hard state to the store, then calls `sink(number)` and holds back the
    /// messages that promise them (votes, append responses) until the driver reports
    /// with [`Replica::on_synced`] that the store is durable through that Ready; the
    /// leader counts its own log as replicated, and applies committed entries, only
    /// then too. Followers' acknowledgements still commit. A Ready holding a snapshot
    /// from the leader is synced inside `advance` as before. Without a sink (the
    /// simulator) `advance` syncs the store itself.
    pub fn sync_with(&mut self, sink: SyncSink) {
        self.sync_sink = Some(sink);
    }

    /// Reports that every store write made before `sink(number)` was called is durable
    /// (see [`Replica::sync_with`]); call `advance` next. Stale or repeated numbers are
    /// ignored.
    pub fn on_synced(&mut self, number: u64) {
        let number = number.min(self.sync.asked);
        if number <= self.sync.done {
            return;
        }
        self.sync.done = number;
        self.raw.on_persist_ready(number);
    }

    /// True while a sync handed to the [`SyncSink`] has not been reported done.
    pub fn is_syncing(&self) -> bool {
        self.sync.outstanding()
    }

    /// Peer messages refused before raft-rs (malformed bytes included) since this replica
    /// opened.
    pub fn refused_messages(&self) -> u64 {
        self.refused
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// The configuration this replica was opened with.
    pub fn config(&self) -> &ReplicaConfig {
        &self.config
    }

    /// Advances logical time by one tick (elections, heartbeats, quorum checks).
    ///
    /// A non-leader waiting for a sync its driver runs ([`Replica::sync_with`]) lets
    /// the tick pass: a node that cannot persist should not campaign, and raft-rs
    /// requires a node that wins at once (a sole voter) to have its whole log persisted
    /// (it asserts so in `become_leader`). Its election is delayed by the sync at most.
    pub fn tick(&mut self) {
        if self.sync.outstanding() && !self.is_leader() {
            return;
        }
        if !self.is_leader() {
            let elapsed = self.raw.raft.election_elapsed;
            if self.election.tick(elapsed, self.config.election_ticks) == Tick::Hold {
                // The clock runs on (the lease ends as raft-rs's does); the campaign waits.
                self.raw.raft.election_elapsed += 1;
                return;
            }
        }
        self.raw.tick();
    }

    /// Steps an encoded raft message from a peer. Malformed bytes and messages raft-rs
    /// must not see (`input.rs`: another node's, kinds no peer sends, terms at the edge
    /// of `u64`, commits past this log, configurations raft-rs cannot restore) are
    /// refused with an error, counted ([`Replica::refused_messages`]), and change nothing.
    /// raft-rs also refuses responses from nodes outside the configuration; drivers may
    /// log and ignore step errors.
    pub fn step(&mut self, message: &[u8]) -> Result<(), Error> {
        self.step_unless(None, message, |_| false).map(drop)
    }

    /// Like [`Replica::step`], for a message that arrived from peer `sender` (as its
    /// transport knows it): a message naming another sender is refused too.
    pub fn step_from(&mut self, sender: NodeId, message: &[u8]) -> Result<(), Error> {
        self.step_unless(Some(sender), message, |_| false).map(drop)
    }

    /// Like [`Replica::step`], except that a snapshot from the leader for which `hold`
    /// answers true is not stepped but returned: a state machine that must fetch the
    /// state the snapshot stands for (its bytes are only a marker) steps it once it has
    /// (see `replica_group`'s catch-up).
    pub fn step_unless(
        &mut self,
        sender: Option<NodeId>,
        message: &[u8],
        hold: impl FnOnce(&SnapshotOffer) -> bool,
    ) -> Result<Option<SnapshotOffer>, Error> {
        let message = Message::parse_from_bytes(message).map_err(|error| {
            self.refused += 1;
            Error::Decode(error.to_string())
        })?;
        let receiver = input::Receiver {
            id: self.id(),
            term: self.raw.raft.term,
            leader: self.is_leader(),
            leader_id: self.raw.raft.leader_id,
            last_index: self.raw.raft.raft_log.last_index(),
            sender,
        };
        if let Err(refused) = input::check(&message, &receiver) {
            self.refused += 1;
            return Err(Error::Decode(refused));
        }
        if message.get_msg_type() == MessageType::MsgSnapshot {
            let meta = message.get_snapshot().get_metadata();
            let offer = SnapshotOffer {
                from: message.from,
                index: meta.index,
                term: meta.term,
                in_log: self.has_entry(meta.index, meta.term),
            };
            if hold(&offer) {
                return Ok(Some(offer));
            }
        }
        self.raw.step(message)?;
        Ok(None)
    }

    /// True when this replica's log holds entry `index` of `term` (so a snapshot through
    /// it needs no state from elsewhere: raft-rs fast-forwards to it).
    pub fn has_entry(&self, index: Index, term: Term) -> bool {
        self.raw.raft.raft_log.match_term(index, term)
    }

    /// Proposes `data` (non-empty) as a command. Ok means appended to this leader's log;
    /// it commits iff an `Applied::Command` shows up at the same index and term (a
    /// [`crate::Pending`] tracks that for a caller that waits on it).
    pub fn propose(&mut self, data: Vec<u8>) -> Result<Proposal, Error> {
        self.check_can_propose()?;
        if data.is_empty() {
            // raft-rs uses empty entries as leader no-ops; they are never reported.
            return Err(Error::Raft(raft::Error::ConfigInvalid(
                "empty command: empty entries are reserved for leader no-ops".into(),
            )));
        }
        let before = self.raw.raft.raft_log.last_index();
        self.raw.propose(Vec::new(), data)?;
        self.appended(before)
    }

    /// Errors unless this node is a leader able to accept proposals now.
    pub(crate) fn check_can_propose(&self) -> Result<(), Error> {
        if self.raw.raft.state != StateRole::Leader {
            return Err(Error::NotLeader {
                hint: self.leader(),
            });
        }
        if let Some(target) = self.raw.raft.lead_transferee {
            return Err(Error::NotLeader { hint: Some(target) });
        }
        if !self.raw.raft.promotable() {
            return Err(Error::NotLeader { hint: None });
        }
        Ok(())
    }

    /// The one entry a successful proposal appended after `before`.
    pub(crate) fn appended(&self, before: Index) -> Result<Proposal, Error> {
        let index = self.raw.raft.raft_log.last_index();
        assert!(
            index == before + 1,
            "proposal appended up to {index}, log was at {before}"
        );
        Ok(Proposal {
            index,
            term: self.term(),
        })
    }

    /// True when [`Replica::read_index`] would be served: this replica leads and has
    /// committed an entry of its term (raft-rs drops reads before that).
    pub fn can_read_index(&self) -> bool {
        self.raw.raft.state == StateRole::Leader && self.raw.raft.commit_to_current_term()
    }

    /// Starts a linearizable read at this leader: once a quorum confirms its leadership,
    /// `(ctx, index)` shows up in `Output::reads`. Silently dropped on a non-leader (raft-rs
    /// would forward it to the leader, which refuses read requests from the network:
    /// `input.rs`), or when the leader has not yet committed an entry in its term: retry
    /// after a timeout.
    pub fn read_index(&mut self, ctx: u64) {
        if self.is_leader() {
            self.raw.read_index(ctx.to_be_bytes().to_vec());
        }
    }

    /// Proposes a membership change (see `membership.rs` for the rules). `Busy` while
    /// another change is in flight; `NotLeader { hint }` when asked to remove this leader
    /// (leadership is being handed to `hint`: retry there).
    pub fn change_membership(&mut self, change: Membership) -> Result<Proposal, Error> {
        self.propose_membership(change)
    }

    /// Asks this leader to hand leadership to `to`; ignored by non-leaders (raft-rs would
    /// forward the request to the leader, which refuses it from the network: `input.rs`).
    pub fn transfer_leader(&mut self, to: NodeId) {
        if self.is_leader() {
            self.raw.transfer_leader(to);
        }
    }

    /// Current term.
    pub fn term(&self) -> Term {
        self.raw.raft.term
    }

    /// True when this node is the leader.
    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// The leader this node knows of (itself included), if any.
    pub fn leader(&self) -> Option<NodeId> {
        Some(self.raw.raft.leader_id).filter(|id| *id != 0)
    }

    /// The leader to send a client to instead of this node: the known leader, unless it
    /// is this node itself (which, asked to redirect, is not taking the request).
    pub fn leader_hint(&self) -> Option<NodeId> {
        self.leader().filter(|&leader| leader != self.id())
    }

    /// Highest log index handed to the state machine.
    pub fn applied_index(&self) -> Index {
        self.raw.raft.raft_log.applied
    }

    /// Highest log index known committed.
    pub fn commit_index(&self) -> Index {
        self.raw.raft.raft_log.committed
    }

    /// Voters of the applied configuration (incoming side when joint), sorted.
    pub fn voters(&self) -> Vec<NodeId> {
        self.voters.clone()
    }

    /// Persisted bytes of log, hard state and conf state (snapshot excluded).
    pub fn raft_state_bytes(&self) -> u64 {
        self.raw.store().raft_state_bytes()
    }

    /// The log store.
    pub fn store(&self) -> &S {
        self.raw.store()
    }

    /// Consumes the replica, giving its store back (to close it or "crash" in tests).
    pub fn into_store(self) -> S {
        self.raw.raft.r.raft_log.store
    }
}
