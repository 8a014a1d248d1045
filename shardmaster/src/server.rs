//! [`Server`]: one shard-master replica, a sans-IO state machine over a Raft [`Replica`].
//!
//! The shard master needs nothing of the shared server shell but its state machine: a
//! [`Server`] is a `shardkv_raft::Host` over [`Machine`], with the [`Service`] events
//! every server has and the client requests of [`MasterService`]. The driver (simulator
//! or production runtime) feeds events in and carries effects out; the server never
//! reads a clock, opens a socket or draws a random number.
//!
//! ```text
//!   on_peer_message(bytes) ─┐                          ┌─► take_messages: (to, bytes)
//!   on_request(id, Request) ─┼─► Replica ─► advance() ─┼─► take_replies: Reply { req_id, response }
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
//! index, or a snapshot covers it, or this replica stops leading, the request
//! gets `WrongLeader` and the client retries (duplicate detection makes the retry safe
//! even if the first attempt commits after all). Queries go through the log too, so
//! their answers are linearizable. Who waits on which proposal is kept by the host, as in
//! the replica group.
//!
//! After every batch of applied entries, when the replica's persisted log reaches its
//! snapshot size ([`Replica::maybe_snapshot`]), the server snapshots the whole state at the
//! replica's applied index. On restart the replica hands the stored snapshot back first,
//! then replays the entries after it into a fresh [`ShardMaster`].
//!
//! # Caveats
//! - The number of requests in flight is bounded by the driver, not here.
//! - A replica removed from its group keeps answering as raft-rs lets it.

use shardkv_proto::Millis;
use shardkv_raft::{Host, Index, LogStore, Replica, ReplicaConfig, Service, StateMachine};

use crate::message::{encode_entry, EntryError, MAX_ENTRY_BYTES};
use crate::{MasterError, NodeId, Request, Response, ShardMaster};

/// The driver's id for one client request, echoed in its [`Reply`].
pub type RequestId = u64;

/// The answer to a client request (raft messages are `Service::take_messages`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The request's id, as given to [`MasterService::on_request`].
    pub req_id: RequestId,
    /// The answer.
    pub response: Response,
}

/// Why the server cannot go on: the replicated log failed, or a snapshot it handed back
/// does not decode. Fatal: the node must stop (and may restart from disk).
pub type ServerError = shardkv_raft::ServerError;

/// The shard master's state machine as the host drives it: it applies requests to the
/// configurations ([`ShardMaster`]) and keeps the replies produced for the driver.
pub struct Machine {
    replies: Vec<Reply>,
}

impl Machine {
    fn reply(&mut self, req_id: RequestId, response: Response) {
        self.replies.push(Reply { req_id, response });
    }
}

impl StateMachine for Machine {
    type Waiter = RequestId;
    type Answer = Response;
    type State = ShardMaster;
    fn apply(
        &mut self,
        master: &mut ShardMaster,
        index: Index,
        time: Millis,
        request: Request,
    ) -> Result<Response, String> {
        Ok(master.apply(index, time, &request))
    }

    fn answer(&mut self, req_id: RequestId, response: Response) {
        self.reply(req_id, response);
    }

    fn fail(&mut self, req_id: RequestId, hint: Option<NodeId>) {
        self.reply(req_id, Err(MasterError::WrongLeader { hint }));
    }
}

/// One shard-master replica: the shared server shell over the master's state machine
/// (see the module docs). The [`Service`] methods come with it; [`MasterService`] adds
/// client requests and their replies.
pub type Server<S> = Host<S, Machine>;

/// Opens a replica over `store` (restart-safe) with a fresh state machine of `nshards`
/// shards; a stored snapshot replaces it on the first event.
pub fn open<S: LogStore>(
    config: ReplicaConfig,
    store: S,
    nshards: usize,
) -> Result<Server<S>, ServerError> {
    Ok(with_replica(
        Replica::open(config, store)?,
        ShardMaster::new(nshards),
    ))
}

/// A server over an opened `replica` and a fresh `master` (for custom loggers or session
/// timeouts).
pub fn with_replica<S: LogStore>(replica: Replica<S>, master: ShardMaster) -> Server<S> {
    let machine = Machine {
        replies: Vec::new(),
    };
    Host::new(replica, master, machine)
}

/// What a shard-master replica does beyond every [`Service`]: client requests, and the
/// replies they get.
pub trait MasterService {
    /// The state machine as applied so far.
    fn master(&self) -> &ShardMaster;
    /// Replies produced since the last call, in order.
    fn take_replies(&mut self) -> Vec<Reply>;
    /// A client request, to be answered by a [`Reply`] carrying `req_id`.
    fn on_request(&mut self, req_id: RequestId, request: Request) -> Result<(), ServerError>;
}

impl<S: LogStore> MasterService for Server<S> {
    fn master(&self) -> &ShardMaster {
        self.state()
    }

    fn take_replies(&mut self) -> Vec<Reply> {
        std::mem::take(&mut self.machine_mut().replies)
    }

    fn on_request(&mut self, req_id: RequestId, request: Request) -> Result<(), ServerError> {
        match encode_entry(&request) {
            Ok(data) => self.propose(data, req_id),
            Err(EntryError::TooLarge) | Err(EntryError::Decode(_)) => {
                let error = MasterError::RequestTooLarge {
                    max_bytes: MAX_ENTRY_BYTES,
                };
                self.machine_mut().reply(req_id, Err(error));
                return Ok(());
            }
        }
        self.drive()
    }
}
