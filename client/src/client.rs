//! [`Client`]: the data client (Get, Put, Append, Delete), a 6.824 clerk as a library.
//!
//! ```text
//!   get/put/append/delete(key, ...)
//!        | size limits checked here: too large -> Rejected, nothing sent
//!        | GroupRequest::Kv(Request { client, seq, seen, op })   (bincode 1.3)
//!        v
//!   Router: key -> shard -> group (cached config) -> believed leader (cached per group)
//!        |-- answer (with the shard's clock) ----------------------> Ok
//!        |-- KeyTooLarge / ValueTooLarge / StaleRequest / ... -----> Rejected
//!        |-- Wrong/NotLeader{hint}, timeout, unreachable, garbage -> next server of the group
//!        |-- UnknownSession{clock}: no attempt can have applied ---> resend, seen = clock
//!        |                          an attempt may have applied ---> OutcomeUnknown
//!        '-- WrongGroup, or shard unowned ------------------------> re-query the master,
//!                                                                    back off if nothing new
//!   (the whole operation, master queries included, is raced against the deadline)
//! ```
//!
//! # Exactly once
//!
//! A client draws a random [`ClientId`] from the transport when it is created (the same
//! id serves its configuration queries, in the shard master's separate session table).
//! Every Put, Append and Delete takes the next sequence number *before* its first
//! attempt and keeps it: every retry, to any replica of any group, after any
//! configuration change, resends the same request (with a new `seen` only after a
//! refusal that proves no attempt applied; see `shardkv_proto::session`). A group remembers each client's
//! latest mutation per shard and moves that memory with the shard, so a mutation whose
//! reply was lost, retried elsewhere, is applied once and the retry gets the original
//! answer: an Append is never doubled. Gets change nothing and are not deduplicated; they
//! take no number of their own and carry the latest one, so logs show which write a read
//! followed.
//!
//! Numbers are never reused, even by an operation abandoned at its deadline. A copy of
//! an abandoned mutation still in the network can apply *after* the deadline, until its
//! session's next mutation on the same shard applies (the group then refuses the older
//! number as stale). A handle's next operation may run under another session, so such a
//! late copy can land after later writes of the same handle, acknowledged ones included;
//! hence the warning on [`ClientError::Timeout`]: read before repeating or overwriting.
//!
//! # One handle, many operations
//!
//! A `Client` is a cheap handle: clones share the transport (and so its connections),
//! the cached configuration and the leader memory, and methods take `&self`, so the
//! tasks of a service run operations through one handle at once. The duplicate tables
//! remember one request per client id, so each operation runs under a *session* of its
//! own, taken from the handle's pool of idle ones (a new one, with a fresh random id,
//! when all are busy) and given back when it ends: a session never has two operations
//! outstanding, and its numbers are never reused. Over a `Send + Sync` transport (as
//! [`crate::TarpcTransport`] is) the handle is `Send + Sync` and its futures are `Send`.
//!
//! # Caveats
//!
//! - Linearizability comes from the servers (a Get is answered by the group's leader
//!   once a ReadIndex round confirms it still leads and it has applied that index; every
//!   other operation goes through the group's log); the client adds no caching of
//!   values.
//! - A reply that does not decode, or answers a different kind of request, is logged and
//!   retried elsewhere like a lost one: a group that only answers garbage looks
//!   unavailable, and the operation ends at the deadline (or never, without one).
//! - A new configuration is fetched only when the cluster says the cached one is stale,
//!   never in the background; the first operation of a client pays one extra query.
//! - The deadline covers one operation: 30 s by default ([`crate::retry::DEFAULT_DEADLINE`]);
//!   `deadline: None` retries until answered, as in 6.824.

use std::sync::{Arc, Mutex};

use tracing::Instrument as _;

use shardkv_proto::kv::{Op, Request};
use shardkv_proto::master::FIRST_SEQ;
use shardkv_proto::{ClientId, Config, Reply, Seq};

use crate::error::ClientError;
use crate::master::MasterSession;
use crate::pool::{lock, Pool};
use crate::retry::{within_deadline, Progress, RetryPolicy};
use crate::route::{Clocks, KvCall, Link, Router};
use crate::transport::Transport;

/// A key/value client of a shardkv cluster, generic over its [`Transport`]: a handle
/// whose clones share one cluster connection. See the module docs.
#[derive(Debug)]
pub struct Client<T: Transport> {
    shared: Arc<Shared<T>>,
    /// This handle's retry policy (a clone starts with a copy).
    policy: RetryPolicy,
}

impl<T: Transport> Clone for Client<T> {
    fn clone(&self) -> Self {
        Client {
            shared: Arc::clone(&self.shared),
            policy: self.policy.clone(),
        }
    }
}

/// What the clones of one handle share.
#[derive(Debug)]
struct Shared<T> {
    transport: T,
    /// The shard-master session of configuration queries (its leader memory).
    master: Mutex<MasterSession>,
    /// The latest configuration seen and the groups' leader memory; an operation works
    /// on a copy and merges what it learned back.
    router: Mutex<Router>,
    /// Sessions not in use.
    sessions: Pool<Session>,
    /// The latest clock of each shard seen in answers, which requests carry.
    clocks: Clocks,
    /// The first session's id.
    first: ClientId,
}

/// One client id and its next mutation's sequence number.
#[derive(Debug)]
struct Session {
    client: ClientId,
    next_seq: Seq,
}

impl Session {
    fn new(client: ClientId) -> Self {
        Session {
            client,
            next_seq: FIRST_SEQ,
        }
    }

    /// The sequence number `op` carries: a fresh one for a mutation, the latest one
    /// (0 before any) for a Get.
    fn take_seq(&mut self, op: &Op) -> Seq {
        if !op.is_mutation() {
            return self.next_seq - 1;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }
}

impl<T: Transport> Client<T> {
    /// A client of the cluster whose shard master replicas are at `masters`, with the
    /// default [`RetryPolicy`] (1 s per RPC, 30 s per operation).
    ///
    /// `masters[i]` must be the replica with Raft NodeId `i + 1` (see
    /// [`crate::leader`]). Nothing is sent until the first operation, which fetches the
    /// latest configuration. An empty list is accepted here and reported as
    /// [`ClientError::NoMasters`] by every operation.
    pub fn new(transport: T, masters: Vec<String>) -> Self {
        Self::with_policy(transport, masters, RetryPolicy::default())
    }

    /// Like [`Client::new`], with an explicit retry policy; its deadline bounds each
    /// operation as a whole (configuration queries included).
    pub fn with_policy(transport: T, masters: Vec<String>, policy: RetryPolicy) -> Self {
        let master = MasterSession::new(&transport, masters);
        let first = master.client_id();
        let shared = Shared {
            transport,
            master: Mutex::new(master),
            router: Mutex::new(Router::default()),
            sessions: Pool::new(Session::new(first)),
            clocks: Clocks::default(),
            first,
        };
        Client {
            shared: Arc::new(shared),
            policy,
        }
    }

    /// The id of this handle's first session (random, drawn from the transport; it also
    /// serves the configuration queries). Operations running alongside others use
    /// further ids.
    pub fn client_id(&self) -> ClientId {
        self.shared.first
    }

    /// The shard master addresses, in NodeId order.
    pub fn masters(&self) -> Vec<String> {
        lock(&self.shared.master).masters().to_vec()
    }

    /// The configuration the handle routes by: the latest it has fetched, if any.
    pub fn config(&self) -> Option<Arc<Config>> {
        lock(&self.shared.router).config()
    }

    /// This handle's retry policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Replaces this handle's retry policy (not its clones'); applies from the next
    /// operation on.
    pub fn set_policy(&mut self, policy: RetryPolicy) {
        self.policy = policy;
    }

    /// The transport, for callers that share it.
    pub fn transport(&self) -> &T {
        &self.shared.transport
    }

    /// The value of `key`, or `None` when it is absent.
    pub async fn get(&self, key: impl Into<Vec<u8>>) -> Result<Option<Vec<u8>>, ClientError> {
        let key = key.into();
        match self.run(Op::Get { key }).await? {
            Reply::Value(value) => Ok(value),
            Reply::Done => unreachable!("the router checks the reply kind"),
        }
    }

    /// Sets `key` to `value`, replacing any previous value.
    pub async fn put(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<(), ClientError> {
        let (key, value) = (key.into(), value.into());
        self.mutate(Op::Put { key, value }).await
    }

    /// Appends `value` to the value of `key` (a put when `key` is absent). Fails with
    /// [`ClientError::Rejected`]`(`[`shardkv_proto::KvError::ValueTooLarge`]`)`, changing
    /// nothing, when the result would pass the value limit.
    pub async fn append(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<(), ClientError> {
        let (key, value) = (key.into(), value.into());
        self.mutate(Op::Append { key, value }).await
    }

    /// Removes `key`; succeeds when it is absent too.
    pub async fn delete(&self, key: impl Into<Vec<u8>>) -> Result<(), ClientError> {
        let key = key.into();
        self.mutate(Op::Delete { key }).await
    }

    /// Runs a Put, Append or Delete, whose answer is "done".
    async fn mutate(&self, op: Op) -> Result<(), ClientError> {
        match self.run(op).await? {
            Reply::Done => Ok(()),
            Reply::Value(_) => unreachable!("the router checks the reply kind"),
        }
    }

    /// Asks the shard master for the latest configuration (until an answer or the
    /// policy's deadline) and keeps it for routing; returns the configuration the handle
    /// routes by afterwards (a newer one another operation learned meanwhile, if any).
    /// Operations fetch the configuration themselves when they need it; this is for a
    /// caller that wants to know the cluster answers before it serves, as
    /// [`crate::builder::ClientBuilder::build`] does.
    pub async fn refresh(&self) -> Result<Arc<Config>, ClientError> {
        self.routed(None, self.shared.first).await?;
        let config = lock(&self.shared.router).config();
        Ok(config.expect("a configuration was just adopted"))
    }

    /// Checks `op`, numbers it, and sends it until an answer or the deadline.
    async fn run(&self, op: Op) -> Result<Reply, ClientError> {
        op.check_limits().map_err(ClientError::Rejected)?;
        let transport = &self.shared.transport;
        let mut session = (self.shared.sessions).lease(|| Session::new(transport.random_u64()));
        let seq = session.take_seq(&op);
        let client = session.client;
        let call = KvCall::new(Request {
            client,
            seq,
            seen: 0,
            op,
        });
        let span = tracing::debug_span!("kv", client, seq);
        let seed = client ^ seq.rotate_left(32);
        let reply = self.routed(Some(call), seed).instrument(span).await?;
        Ok(reply.expect("a call brings a reply"))
    }

    /// Sends `call` (or, with `None`, queries the latest configuration) with a copy of
    /// the handle's router, until an answer or the policy's deadline, and merges what
    /// the copy learned back; its backoff's jitter is drawn from `seed`.
    async fn routed(&self, call: Option<KvCall>, seed: u64) -> Result<Option<Reply>, ClientError> {
        let transport = &self.shared.transport;
        let policy = &self.policy;
        let mut link = Link {
            transport,
            policy,
            master: &self.shared.master,
            clocks: &self.shared.clocks,
        };
        let mut router = lock(&self.shared.router).clone();
        let mut progress = Progress::new(policy, seed);
        let work = async {
            match call {
                Some(mut call) => (router.send(&mut link, &mut call, &mut progress))
                    .await
                    .map(Some),
                None => router
                    .refresh(&mut link, &mut progress)
                    .await
                    .map(|()| None),
            }
        };
        let answer = match within_deadline(transport, policy.deadline, work).await {
            Some(answer) => answer,
            None => Err(progress.expire(policy.deadline).into()),
        };
        lock(&self.shared.router).absorb(router);
        answer
    }
}
