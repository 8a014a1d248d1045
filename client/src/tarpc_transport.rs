//! [`TarpcTransport`]: the production [`Transport`], tarpc over TCP with bincode frames.
//!
//! Every shardkv process (shard-master replica, replica-group replica) listens on one TCP
//! address and serves one tarpc service, [`Node`], for all its callers:
//!
//! ```text
//!   client / admin / other group --- Node::call(bytes) -> bytes ---> node
//! ```
//!
//! `call` carries the bytes the client library (or a group's migration code) encoded: a
//! bincode `master::Request` to a shard master, a bincode `kv::GroupRequest` to a group
//! replica; the answer is the matching encoded response. The transport neither inspects
//! nor validates them. (Raft messages between the replicas of one service share the
//! address but not tarpc: the server runtime sends them on one-way streams.)
//!
//! # Connections
//!
//! Connections are cached per address (one, or as many as
//! [`TarpcTransport::connections_per_node`] says) and shared by concurrent calls (tarpc
//! multiplexes requests over one connection). A failed call evicts the connection it
//! used, so the next call on it dials again: a restarted peer is reached on the first
//! calls after it is back. Frames are length-delimited and limited to [`MAX_FRAME_BYTES`] in both
//! directions.
//!
//! # Runtime
//!
//! This transport is `Send + Sync` and its futures are `Send`, so an `Admin` or a `Client`
//! over it, and their operations' futures, are too (`client/tests/send.rs` checks it):
//! they run on a multi-thread tokio runtime, in `tokio::spawn`, as well as on a
//! current-thread one. A tokio runtime must be running: the transport spawns one
//! dispatch task per connection.
//!
//! # Caveats
//!
//! - Plaintext unless made with [`TarpcTransport::with_tls`] (mutual TLS, see
//!   [`crate::tls`]); a plaintext transport can talk only to `--insecure` nodes.
//! - A call abandoned at its timeout may still be delivered; the servers' duplicate
//!   detection covers that (see [`crate::transport`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_bytes::ByteBuf;
use tarpc::client::RpcError;
use tarpc::tokio_serde::formats::Bincode;
use tarpc::{client, context};

use shardkv_proto::{GroupId, NO_GROUP};

use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::pool::lock;
use crate::tls::Tls;
use crate::transport::{Transport, TransportError};
use crate::{Admin, Client, RetryPolicy};

/// The largest frame a client reads or writes (64 MiB), and the largest a node reads on
/// a raft stream: answers such as a shard's chunks and batches of raft messages fit, and
/// a frame header announcing more is refused before any of its bytes are buffered. (A
/// node reads calls under a smaller limit of its own, 2 MiB.)
pub const MAX_FRAME_BYTES: usize = 64 << 20;

/// A replica of a service: a shard-master replica or a replica of one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ReplicaName {
    /// Its service: [`NO_GROUP`] (0) for the shard master, a group's gid for a group.
    pub service: GroupId,
    /// Its raft id within the service.
    pub id: u64,
}

impl std::fmt::Display for ReplicaName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.service {
            NO_GROUP => write!(f, "shard-master replica {}", self.id),
            gid => write!(f, "replica {} of group {gid}", self.id),
        }
    }
}

/// The tarpc service every shardkv node serves (see the module docs).
#[allow(missing_docs)]
mod service {
    use serde_bytes::ByteBuf;

    use super::ReplicaName;

    /// One service for all node kinds. Payloads are `ByteBuf`s: bincode writes them as
    /// one length and the bytes (as it would a `Vec<u8>`), but copies them whole
    /// instead of one byte at a time.
    #[tarpc::service]
    pub trait Node {
        /// A request encoded by its caller (a bincode `master::Request` or
        /// `kv::GroupRequest`); the answer is the matching encoded response.
        async fn call(request: ByteBuf) -> ByteBuf;
        /// Which replica serves here (answered by the node itself, whatever its state):
        /// how `shardkv join` checks that the addresses it is given are the group's.
        async fn identify() -> ReplicaName;
    }
}

pub use service::{Node, NodeClient, NodeRequest, NodeResponse, ServeNode};

/// A [`Transport`] over tarpc and TCP, with a connection cache; cheap to clone (clones
/// share the cache).
#[derive(Debug, Clone)]
pub struct TarpcTransport {
    /// Address → its connections, one slot per lane (`None`: not dialed, or dropped
    /// after a failure).
    connections: Arc<Mutex<HashMap<String, Vec<Option<NodeClient>>>>>,
    /// Connections to each node; a call takes the one with the fewest calls in flight.
    lanes: usize,
    /// Calls in flight on each lane (shared by every node): a call takes the lane with
    /// the fewest.
    in_flight: Arc<[AtomicUsize]>,
    /// Mutual TLS for every connection, if the cluster uses it.
    tls: Option<Tls>,
}

impl Default for TarpcTransport {
    fn default() -> Self {
        TarpcTransport {
            connections: Arc::default(),
            lanes: 1,
            in_flight: Arc::new([AtomicUsize::new(0)]),
            tls: None,
        }
    }
}

/// The most connections a transport keeps to one node.
pub const MAX_CONNECTIONS_PER_NODE: usize = 64;

impl TarpcTransport {
    /// A transport with an empty connection cache, one connection per node (many calls
    /// in flight on it). Must be used inside a tokio runtime.
    pub fn new() -> Self {
        Self::default()
    }

    /// A transport whose connections use mutual TLS with `tls` (see [`crate::tls`]).
    pub fn with_tls(tls: Tls) -> Self {
        TarpcTransport {
            tls: Some(tls),
            ..Self::default()
        }
    }

    /// This transport with `n` connections to each node (1 to
    /// [`MAX_CONNECTIONS_PER_NODE`]; clamped), each call taking the one with the fewest
    /// calls in flight: a busy service spreads its calls over several connections and so
    /// over a node's I/O threads. (Taking them in turn is slower for a handle shared by
    /// many tasks: `docs/performance.md`.)
    pub fn connections_per_node(mut self, n: usize) -> Self {
        self.lanes = n.clamp(1, MAX_CONNECTIONS_PER_NODE);
        self.in_flight = (0..self.lanes).map(|_| AtomicUsize::new(0)).collect();
        self
    }

    /// The tarpc client for `to`, dialing it (within `timeout`) if none is cached.
    pub async fn connect(&self, to: &str, timeout: Duration) -> Result<NodeClient, TransportError> {
        self.connect_lane(to, self.quietest_lane(), timeout).await
    }

    /// The client of connection `lane` to `to`, dialing it if none is cached.
    async fn connect_lane(
        &self,
        to: &str,
        lane: usize,
        timeout: Duration,
    ) -> Result<NodeClient, TransportError> {
        if let Some(client) = self.cached(to, lane) {
            return Ok(client);
        }
        let client = match tokio::time::timeout(timeout, self.dial(to)).await {
            Err(_) => return Err(TransportError::Timeout),
            Ok(Err(error)) => {
                tracing::debug!(to, %error, "connect failed");
                return Err(TransportError::Unreachable);
            }
            Ok(Ok(client)) => client,
        };
        let mut connections = lock(&self.connections);
        let lanes = (connections.entry(to.to_string())).or_default();
        // Clones made before `connections_per_node` share the cache with fewer lanes.
        if lanes.len() <= lane {
            lanes.resize(lane + 1, None);
        }
        lanes[lane] = Some(client.clone());
        Ok(client)
    }

    /// Connects to `to` (a TLS handshake after TCP's, with TLS) and starts a tarpc
    /// client on the connection.
    async fn dial(&self, to: &str) -> std::io::Result<NodeClient> {
        let stream = TcpStream::connect(to).await?;
        stream.set_nodelay(true)?;
        let codec = || {
            LengthDelimitedCodec::builder()
                .max_frame_length(MAX_FRAME_BYTES)
                .new_codec()
        };
        let config = client::Config::default();
        Ok(match &self.tls {
            None => {
                let framed = Framed::new(stream, codec());
                let transport = tarpc::serde_transport::new(framed, Bincode::default());
                NodeClient::new(config, transport).spawn()
            }
            Some(tls) => {
                let stream = tls.connector().connect(Tls::node_name(), stream).await?;
                let framed = Framed::new(stream, codec());
                let transport = tarpc::serde_transport::new(framed, Bincode::default());
                NodeClient::new(config, transport).spawn()
            }
        })
    }

    /// Like [`Transport::call`], as a `Send` future.
    pub async fn call_bytes(
        &self,
        to: &str,
        request: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        let started = Instant::now();
        let lane = self.quietest_lane();
        let counter = &self.in_flight[lane];
        counter.fetch_add(1, Ordering::Relaxed);
        let _done = scopeguard(|| counter.fetch_sub(1, Ordering::Relaxed));
        let client = self.connect_lane(to, lane, timeout).await?;
        let remaining = timeout.saturating_sub(started.elapsed());
        let call = client.call(deadline(remaining), ByteBuf::from(request));
        let result = tokio::time::timeout(remaining, call).await;
        self.finish(to, lane, result).map(ByteBuf::into_vec)
    }

    /// Which replica serves at `to`, within `timeout`.
    pub async fn identify(
        &self,
        to: &str,
        timeout: Duration,
    ) -> Result<ReplicaName, TransportError> {
        let started = Instant::now();
        let client = self.connect_lane(to, 0, timeout).await?;
        let remaining = timeout.saturating_sub(started.elapsed());
        let call = client.identify(deadline(remaining));
        let result = tokio::time::timeout(remaining, call).await;
        self.finish(to, 0, result)
    }

    /// Maps a call's outcome to the transport's errors, evicting the connection on any
    /// failure so the next call dials again.
    fn finish<R>(
        &self,
        to: &str,
        lane: usize,
        result: Result<Result<R, RpcError>, tokio::time::error::Elapsed>,
    ) -> Result<R, TransportError> {
        let error = match result {
            Ok(Ok(reply)) => return Ok(reply),
            Err(_) | Ok(Err(RpcError::DeadlineExceeded)) => TransportError::Timeout,
            // The connection ended with the call on it: the request may have been
            // written and executed, so this is not `Unreachable` (which promises it was
            // not delivered).
            Ok(Err(other)) => TransportError::Other(other.to_string()),
        };
        tracing::debug!(to, %error, "call failed; dropping the connection");
        let mut connections = lock(&self.connections);
        if let Some(slot) = connections
            .get_mut(to)
            .and_then(|lanes| lanes.get_mut(lane))
        {
            *slot = None;
        }
        Err(error)
    }

    /// The lane with the fewest calls in flight (the first of those tied).
    fn quietest_lane(&self) -> usize {
        (0..self.lanes)
            .min_by_key(|&lane| self.in_flight[lane].load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    fn cached(&self, to: &str, lane: usize) -> Option<NodeClient> {
        let connections = lock(&self.connections);
        connections.get(to)?.get(lane)?.clone()
    }
}

/// Runs `f` when dropped (a call's lane count goes down however the call ends, its
/// future dropped at a deadline included).
fn scopeguard<F: FnMut() -> usize>(f: F) -> impl Drop {
    struct Guard<F: FnMut() -> usize>(F);
    impl<F: FnMut() -> usize> Drop for Guard<F> {
        fn drop(&mut self) {
            (self.0)();
        }
    }
    Guard(f)
}

/// A tarpc context whose deadline is `timeout` from now.
fn deadline(timeout: Duration) -> context::Context {
    let mut ctx = context::current();
    ctx.deadline = Instant::now() + timeout;
    ctx
}

impl Transport for TarpcTransport {
    fn call(
        &self,
        to: &str,
        request: Vec<u8>,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<Vec<u8>, TransportError>> {
        self.call_bytes(to, request, timeout)
    }

    fn sleep(&self, d: Duration) -> impl std::future::Future<Output = ()> {
        tokio::time::sleep(d)
    }

    /// The tokio clock since the first call in this process.
    fn now(&self) -> Duration {
        static START: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
        START.get_or_init(tokio::time::Instant::now).elapsed()
    }

    /// A number from `rand`'s thread-local generator (seeded from the OS): client ids
    /// and the starting server need numbers that differ between processes, not
    /// cryptographic strength.
    fn random_u64(&self) -> u64 {
        rand::random()
    }
}

impl Admin<TarpcTransport> {
    /// An admin for the shard masters at `masters` over a fresh [`TarpcTransport`],
    /// retrying under `policy`. Run it inside a tokio runtime (see the module docs).
    pub fn connect(masters: Vec<String>, policy: RetryPolicy) -> Self {
        Admin::with_policy(TarpcTransport::new(), masters, policy)
    }
}

impl Client<TarpcTransport> {
    /// A data client for the cluster whose shard masters are at `masters`, over a fresh
    /// [`TarpcTransport`], retrying under `policy`. Run it inside a tokio runtime (see
    /// the module docs); clone it into every task that needs it.
    pub fn connect(masters: Vec<String>, policy: RetryPolicy) -> Self {
        Client::with_policy(TarpcTransport::new(), masters, policy)
    }
}

#[cfg(test)]
mod lane_tests {
    use super::*;

    /// A call takes the connection with the fewest calls in flight (the first of those
    /// tied), and the count follows the guard.
    #[test]
    fn calls_take_the_quietest_lane() {
        let transport = TarpcTransport::new().connections_per_node(3);
        assert_eq!(transport.quietest_lane(), 0);
        transport.in_flight[0].store(2, Ordering::Relaxed);
        transport.in_flight[1].store(1, Ordering::Relaxed);
        assert_eq!(transport.quietest_lane(), 2);
        {
            let counter = &transport.in_flight[2];
            counter.fetch_add(5, Ordering::Relaxed);
            let _done = scopeguard(|| counter.fetch_sub(5, Ordering::Relaxed));
            assert_eq!(transport.quietest_lane(), 1);
        }
        assert_eq!(transport.quietest_lane(), 2);
        let clamped = TarpcTransport::new().connections_per_node(0);
        assert_eq!((clamped.lanes, clamped.quietest_lane()), (1, 0));
    }
}
