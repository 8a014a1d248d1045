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
//! their answers are linearizable.
//!
//! After every batch of applied entries, when the replica's persisted log passes its
//! threshold ([`Replica::should_snapshot`]), the server snapshots the whole state at the
//! replica's applied index. On restart the replica hands the stored snapshot back first,
//! then replays the entries after it into a fresh [`ShardMaster`].
//!
//! # Caveats
//! - The number of requests in flight is bounded by the driver, not here.
//! - A replica removed from its group keeps answering as raft-rs lets it.

use std::collections::BTreeMap;

use shardkv_raft::{Applied, Index, LogStore, Output, Replica, ReplicaConfig, Term};

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

/// Why the server cannot go on. Fatal: the node must stop (and may restart from disk).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The replicated log failed (storage failure or raft invariant).
    #[error("replicated log failed: {0}")]
    Raft(#[from] shardkv_raft::Error),
    /// A snapshot handed back by the log does not decode.
    #[error("cannot restore snapshot at index {index}: {source}")]
    Snapshot {
        /// The snapshot's index.
        index: Index,
        /// Why it does not decode.
        source: SnapshotError,
    },
}

impl ServerError {
    /// Always false: the server cannot recover from these without a restart.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// A proposal awaiting its entry's application.
#[derive(Debug, Clone, Copy)]
struct Pending {
    req_id: RequestId,
    term: Term,
}

/// One shard-master replica; see the module docs.
pub struct Server<S: LogStore> {
    replica: Replica<S>,
    master: ShardMaster,
    pending: BTreeMap<Index, Pending>,
    effects: Vec<Effect>,
    /// The index of the last snapshot this server took, so a log that stays above the
    /// threshold is not snapshotted again at the same index.
    snapshot_index: Index,
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
            pending: BTreeMap::new(),
            effects: Vec::new(),
            snapshot_index: 0,
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
                let pending = Pending {
                    req_id,
                    term: proposal.term,
                };
                if let Some(old) = self.pending.insert(proposal.index, pending) {
                    self.reply(old.req_id, Err(self.wrong_leader()));
                }
            }
            Err(shardkv_raft::Error::NotLeader { hint }) => {
                self.reply(req_id, Err(MasterError::WrongLeader { hint }));
            }
            Err(error) => {
                tracing::warn!(node = self.id(), %error, "proposal refused");
                self.reply(req_id, Err(self.wrong_leader()));
            }
        }
        self.drive()
    }

    /// Runs the replica's Ready protocol once and turns its output into effects.
    fn drive(&mut self) -> Result<(), ServerError> {
        let output: Output = self.replica.advance()?;
        self.effects.extend(
            output
                .messages
                .into_iter()
                .map(|(to, bytes)| Effect::Send { to, bytes }),
        );
        for applied in output.applied {
            self.apply(applied)?;
        }
        for lost in output.lost {
            if self
                .pending
                .get(&lost.index)
                .is_some_and(|p| p.term == lost.term)
            {
                self.fail_pending(lost.index);
            }
        }
        if !self.replica.is_leader() {
            let indices: Vec<Index> = self.pending.keys().copied().collect();
            indices
                .into_iter()
                .for_each(|index| self.fail_pending(index));
        }
        self.maybe_snapshot()
    }

    fn apply(&mut self, applied: Applied) -> Result<(), ServerError> {
        match applied {
            Applied::Command { index, term, data } => {
                let response = match decode_entry(&data) {
                    Ok(request) => Some(self.master.apply(index, &request)),
                    Err(error) => {
                        tracing::error!(node = self.id(), index, %error, "undecodable entry");
                        self.master.skip(index);
                        None
                    }
                };
                if let Some(pending) = self.pending.remove(&index) {
                    let response = match response {
                        Some(response) if pending.term == term => response,
                        _ => Err(self.wrong_leader()),
                    };
                    self.reply(pending.req_id, response);
                }
            }
            Applied::Snapshot { index, data, .. } => {
                self.master
                    .restore(&data)
                    .map_err(|source| ServerError::Snapshot { index, source })?;
                let covered: Vec<Index> = self.pending.range(..=index).map(|(&i, _)| i).collect();
                covered.into_iter().for_each(|i| self.fail_pending(i));
                tracing::info!(node = self.id(), index, "restored snapshot");
            }
            Applied::Membership { index, .. } => self.master.skip(index),
        }
        Ok(())
    }

    fn maybe_snapshot(&mut self) -> Result<(), ServerError> {
        let index = self.replica.applied_index();
        if self.replica.should_snapshot() && index > self.snapshot_index {
            assert!(
                index >= self.master.applied_index(),
                "state machine at {} ahead of the log at {index}",
                self.master.applied_index()
            );
            self.replica
                .snapshot(index, self.master.encode_snapshot())?;
            self.snapshot_index = index;
            tracing::debug!(node = self.id(), index, "snapshot taken");
        }
        Ok(())
    }

    fn fail_pending(&mut self, index: Index) {
        if let Some(pending) = self.pending.remove(&index) {
            self.reply(pending.req_id, Err(self.wrong_leader()));
        }
    }

    fn wrong_leader(&self) -> MasterError {
        let hint = self.replica.leader().filter(|&leader| leader != self.id());
        MasterError::WrongLeader { hint }
    }

    fn reply(&mut self, req_id: RequestId, response: Response) {
        self.effects.push(Effect::Reply { req_id, response });
    }
}
