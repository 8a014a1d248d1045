//! [`Server`]: one shard-master replica, a sans-IO state machine over a Raft [`Replica`].
//!
//! The driver (simulator or production runtime) feeds events in and carries effects out;
//! the server never reads a clock, opens a socket or draws a random number.
//!
//! ```text
//!   on_peer_message(bytes) ─┐                          ┌─► Effect::Send { to, bytes }
//!   on_request(id, Request) ─┼─► Replica ─► advance() ─┼─► Effect::Reply { req_id, response }
//!   on_tick() ──────────────┘     │ applied entries    │
//!                                 └─► ShardMaster::apply ┘   (snapshot when should_snapshot)
//! ```
//!
//! # Protocol
//!
//! A request reaching a follower is answered at once with `WrongLeader { hint }`. The
//! leader encodes it as a log entry and proposes it, remembering `(index, term) → req_id`.
//! When the entry at that index is applied, the answer of [`ShardMaster::apply`] goes to
//! the request if the applied entry has the proposal's term; if another entry took the
//! index, or raft reports the proposal lost, or this replica stops leading, the request
//! gets `WrongLeader` and the client retries (duplicate detection makes the retry safe
//! even if the first attempt commits after all). Queries go through the log too, so
//! their answers are linearizable. The bookkeeping of who waits on which proposal is
//! `shardkv_raft::Pending`, shared with the replica group servers.
//!
//! After every batch of applied entries, when the replica's persisted log reaches its
//! snapshot size ([`Replica::maybe_snapshot`]), the server snapshots the whole state at the
//! replica's applied index. On restart the replica hands the stored snapshot back first,
//! then replays the entries after it into a fresh [`ShardMaster`].
//!
//! # Caveats
//! - The number of requests in flight is bounded by the driver, not here.
//! - A replica removed from its group keeps answering as raft-rs lets it.

use shardkv_raft::{Fate, LogStore, Pending, Replica, ReplicaConfig, Step};

use crate::message::{decode_entry, encode_entry, EntryError, MAX_ENTRY_BYTES};
use crate::snapshot::SnapshotError;
use crate::{MasterError, NodeId, Request, Response, ShardMaster};

/// The driver's id for one client request, echoed in its [`Effect::Reply`].
pub type RequestId = u64;

/// Something the driver must do on the server's behalf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send encoded raft message `bytes` to replica `to`.
    Send {
        /// The destination replica.
        to: NodeId,
        /// The encoded message.
        bytes: Vec<u8>,
    },
    /// Answer the client request the driver registered as `req_id`.
    Reply {
        /// The request's id, as given to [`Server::on_request`].
        req_id: RequestId,
        /// The answer.
        response: Response,
    },
}

/// Why the server cannot go on: the replicated log failed, or a snapshot it handed back
/// does not decode. Fatal: the node must stop (and may restart from disk).
pub type ServerError = shardkv_raft::ServerError<SnapshotError>;

/// One shard-master replica; see the module docs.
pub struct Server<S: LogStore> {
    replica: Replica<S>,
    master: ShardMaster,
    /// The client requests waiting for their proposals.
    pending: Pending<RequestId>,
    effects: Vec<Effect>,
}

impl<S: LogStore> Server<S> {
    /// Opens a replica over `store` (restart-safe) with a fresh state machine of
    /// `nshards` shards; a stored snapshot replaces it on the first event.
    pub fn open(config: ReplicaConfig, store: S, nshards: usize) -> Result<Self, ServerError> {
        let replica = Replica::open(config, store)?;
        Ok(Self::new(replica, ShardMaster::new(nshards)))
    }

    /// A server over an opened `replica` and a fresh `master` (for custom loggers or
    /// session timeouts).
    pub fn new(replica: Replica<S>, master: ShardMaster) -> Self {
        Server {
            replica,
            master,
            pending: Pending::default(),
            effects: Vec::new(),
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
    pub fn master(&self) -> &ShardMaster {
        &self.master
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
            tracing::warn!(node = self.id(), %error, "dropped peer message");
        }
        self.drive()
    }

    /// One tick of logical time.
    pub fn on_tick(&mut self) -> Result<(), ServerError> {
        self.replica.tick();
        self.drive()
    }

    /// A client request, to be answered by an [`Effect::Reply`] carrying `req_id`.
    pub fn on_request(&mut self, req_id: RequestId, request: Request) -> Result<(), ServerError> {
        let data = match encode_entry(&request) {
            Ok(data) => data,
            Err(EntryError::TooLarge) | Err(EntryError::Decode(_)) => {
                let error = MasterError::RequestTooLarge {
                    max_bytes: MAX_ENTRY_BYTES,
                };
                self.reply(req_id, Err(error));
                return Ok(());
            }
        };
        match self.replica.propose(data) {
            Ok(proposal) => {
                if let Some(old) = self.pending.insert(proposal, req_id) {
                    self.fail(old);
                }
            }
            Err(shardkv_raft::Error::NotLeader { hint }) => {
                self.reply(req_id, Err(MasterError::WrongLeader { hint }));
            }
            Err(error) => {
                tracing::warn!(node = self.id(), %error, "proposal refused");
                self.fail(req_id);
            }
        }
        self.drive()
    }

    /// Runs the replica's Ready protocol once and turns its output into effects.
    fn drive(&mut self) -> Result<(), ServerError> {
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
        for req_id in settled.failed {
            self.fail(req_id);
        }
        let master = &self.master;
        self.replica.maybe_snapshot(|index| {
            assert!(
                index >= master.applied_index(),
                "state machine at {} ahead of the log at {index}",
                master.applied_index()
            );
            master.encode_snapshot()
        })?;
        Ok(())
    }

    fn apply(&mut self, step: Step<RequestId>) -> Result<(), ServerError> {
        match step {
            Step::Command { index, data, fate } => {
                let response = match decode_entry(&data) {
                    Ok(request) => Some(self.master.apply(index, &request)),
                    Err(error) => {
                        tracing::error!(node = self.id(), index, %error, "undecodable entry");
                        self.master.skip(index);
                        None
                    }
                };
                match (fate, response) {
                    (Some(Fate::Committed(req_id)), Some(response)) => self.reply(req_id, response),
                    (Some(Fate::Committed(req_id) | Fate::Displaced(req_id)), _) => {
                        self.fail(req_id)
                    }
                    (None, _) => {}
                }
            }
            Step::Snapshot {
                index,
                data,
                covered,
            } => {
                self.master
                    .restore(&data, index)
                    .map_err(|source| ServerError::Snapshot { index, source })?;
                covered.into_iter().for_each(|req_id| self.fail(req_id));
                tracing::info!(node = self.id(), index, "restored snapshot");
            }
            Step::Membership { index, .. } => self.master.skip(index),
        }
        Ok(())
    }

    /// Answers `req_id` with `WrongLeader`: its proposal may not commit.
    fn fail(&mut self, req_id: RequestId) {
        let hint = self.replica.leader_hint();
        self.reply(req_id, Err(MasterError::WrongLeader { hint }));
    }

    fn reply(&mut self, req_id: RequestId, response: Response) {
        self.effects.push(Effect::Reply { req_id, response });
    }
}
