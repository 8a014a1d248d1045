//! The node's listener: accepts connections, serves [`Node`] over tarpc on most of them
//! and reads raft streams ([`super::raft_stream`]) on the rest, and turns every call
//! and every batch of raft messages into an [`Event`] for the driver.
//!
//! A connection whose bytes are not a valid frame (garbage, or a length header over
//! [`MAX_CALL_FRAME_BYTES`] on a tarpc connection or over
//! [`shardkv_client::tarpc_transport::MAX_FRAME_BYTES`] on a raft
//! stream) is logged and closed; the listener and every other connection carry on.
//!
//! With TLS a connection is handshaken first, and the certificate it presents says who
//! the caller is: calls carry that identity to the driver (which decides what the
//! caller may do), and a raft stream is heard only from the replica it names.
//!
//! What one connection, or many, can hold of a node is bounded ([`Limits`]): a node
//! serves at most `connections` at once and closes the rest as it accepts them, and at
//! most `per_identity` of one certificate's; a new connection must say what it is (its
//! TLS handshake, then a whole first request or a raft stream's hello) within
//! `handshake`; a connection that brings no whole frame for `idle`, with none of its
//! requests in flight, is closed (a raft stream a certificate vouches for excepted); a
//! connection has at most [`MAX_IN_FLIGHT`] calls in flight; and a frame takes memory
//! only as its bytes arrive ([`super::frame`]). Refusals are logged at powers of two of
//! their count, so a flood does not flood the log too.
//!
//! When the driver stops (its event queue closes), the listener and every connection
//! close too: peers see their connections fail and re-dial, so a node restarted in the
//! same process (as `shardkv demo` does) is reached afresh rather than through a
//! connection nobody serves any more.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use serde_bytes::ByteBuf;
use shardkv_client::tarpc_transport::{Node, NodeRequest, NodeResponse, MAX_FRAME_BYTES};
use shardkv_client::tls::{Identity, Tls};
use tarpc::context::Context;
use tarpc::server::{BaseChannel, Channel};
use tarpc::tokio_serde::formats::Bincode;
use tarpc::{ClientMessage, Response};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::codec::Framed;

use super::frame::FrameCodec;
use super::raft_stream::{self, ReplicaName, StreamPeers, PREAMBLE};
use super::timeline::{Tracer, Waypoint};

/// The largest frame a node reads on a tarpc connection: a request of
/// [`MAX_REQUEST_BYTES`](shardkv_proto::kv::MAX_REQUEST_BYTES) and tarpc's envelope fit
/// with room to spare, so a request a little over that limit is answered with an error
/// naming it rather than cut off with its connection. Answers (a shard's chunks with its
/// duplicate table, a catch-up's metadata) may be larger, up to
/// [`MAX_FRAME_BYTES`], the client's own limit.
pub const MAX_CALL_FRAME_BYTES: usize = 2 << 20;

/// Requests one connection may have in flight; past it the node reads no more of the
/// connection's requests until some are answered (TCP then holds the caller back).
const MAX_IN_FLIGHT: usize = 1024;

/// How long an accepted connection's answers may stay unacknowledged before TCP gives
/// the connection up: a caller that stops reading cannot hold its slot for ever.
const ANSWER_UNACKNOWLEDGED_LIMIT: Duration = Duration::from_secs(30);

/// What a node's listener allows its connections (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once, tarpc and raft streams together.
    pub connections: usize,
    /// Connections served at once per identity a certificate names (with TLS).
    pub per_identity: usize,
    /// How long a new connection has to send its first whole request or its hello.
    pub handshake: Duration,
    /// How long a connection may bring no whole frame, with nothing in flight, before it
    /// is closed.
    pub idle: Duration,
}

impl Limits {
    /// The default connections per node.
    pub const DEFAULT_CONNECTIONS: usize = 1024;
    /// The default connections per identity: a peer needs two (its raft stream and its
    /// calls), a client process one per node (more with `bench --conns`); many
    /// processes may share one client certificate.
    pub const DEFAULT_PER_IDENTITY: usize = 256;
    /// File descriptors a node keeps for itself beyond its served connections: its data
    /// files and the connections it dials (to its peers, the masters, other groups).
    pub const RESERVED_FILES: usize = 128;

    /// The default limits for one of `nodes` nodes in this process, after raising the
    /// process's open-files limit as far as it may go ([`raise_files_limit`]).
    pub fn for_process(nodes: usize) -> Self {
        Self::for_nodes(nodes, raise_files_limit())
    }

    /// The default limits for one of `nodes` nodes in a process whose open-files limit
    /// is `files`: [`Self::DEFAULT_CONNECTIONS`], fewer when the process could not open
    /// that many for every node, so that a flood of connections to one node cannot take
    /// the files the other nodes (and this one's own data) need.
    pub fn for_nodes(nodes: usize, files: u64) -> Self {
        let files = usize::try_from(files).unwrap_or(usize::MAX);
        let share = files / nodes.max(1);
        let connections = share
            .saturating_sub(Self::RESERVED_FILES)
            .clamp(16, Self::DEFAULT_CONNECTIONS);
        Limits {
            connections,
            ..Limits::default()
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections: Self::DEFAULT_CONNECTIONS,
            per_identity: Self::DEFAULT_PER_IDENTITY,
            handshake: Duration::from_secs(10),
            idle: Duration::from_secs(600),
        }
    }
}

/// Whether `error` (or an error it wraps) is the connection ending under the reader: a
/// TLS peer that closed its socket without a closing alert, or a reset.
fn ended_abruptly(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::{ConnectionReset, UnexpectedEof};
            return matches!(io.kind(), UnexpectedEof | ConnectionReset);
        }
        cause = error.source();
    }
    false
}

/// Raises this process's open-files limit to its hard limit (many systems start
/// processes at 1,024 with room to go higher) and returns the limit in force.
pub fn raise_files_limit() -> u64 {
    const FALLBACK: u64 = 1024;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::debug!(%error, "cannot raise the open-files limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(FALLBACK, |(soft, _)| soft)
        }
    }
}

/// Counts refusals of one kind and says when one is worth logging: the 1st, 2nd, 4th,
/// 8th, ... (a flood of them then costs a line per doubling, not a line each).
#[derive(Debug, Default)]
pub struct Refusals(AtomicU64);

impl Refusals {
    /// Counts one; `Some(count)` when this one should be logged.
    pub fn count(&self) -> Option<u64> {
        let count = self.0.fetch_add(1, Ordering::Relaxed) + 1;
        count.is_power_of_two().then_some(count)
    }
}

/// The listener's refusal counters, shared by its connections.
#[derive(Debug, Default)]
struct Counters {
    /// Connections closed as accepted, over [`Limits::connections`].
    over_limit: Refusals,
    /// Failed accepts (such as running out of file descriptors).
    accept_failed: Refusals,
    /// Connections that sent no whole first request or hello within the handshake.
    slow_handshake: Refusals,
    /// Connections closed for bringing no whole frame within the idle time.
    idle: Refusals,
    /// Connections whose TLS handshake failed or whose certificate was refused.
    refused: Refusals,
    /// Raft streams from a sender the replica does not take.
    strange_streams: Refusals,
    /// Connections served now, per identity their certificates name (with TLS).
    per_identity: std::sync::Mutex<std::collections::HashMap<Identity, usize>>,
}

/// One connection counted against its identity's limit; uncounted when dropped.
struct IdentitySlot {
    counters: Arc<Counters>,
    identity: Identity,
}

impl IdentitySlot {
    /// Counts a connection of `identity`, or says why not (its identity's limit is
    /// reached).
    fn take(counters: &Arc<Counters>, identity: &Identity, limit: usize) -> Result<Self, String> {
        let mut counts = counters
            .per_identity
            .lock()
            .map_err(|_| "the connection counts are poisoned".to_string())?;
        let count = counts.entry(identity.clone()).or_default();
        if *count >= limit {
            return Err(format!(
                "{identity} already has {count} connections, its limit"
            ));
        }
        *count += 1;
        Ok(IdentitySlot {
            counters: Arc::clone(counters),
            identity: identity.clone(),
        })
    }
}

impl Drop for IdentitySlot {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.counters.per_identity.lock() {
            if let Some(count) = counts.get_mut(&self.identity) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&self.identity);
                }
            }
        }
    }
}

/// What the listener hands the driver.
#[derive(Debug)]
pub enum Event {
    /// A batch of raft messages from peer `from`.
    Peer {
        /// The sending replica.
        from: u64,
        /// The encoded messages.
        messages: Vec<Vec<u8>>,
    },
    /// A caller's request and where to send its answer.
    Call {
        /// The encoded request.
        request: Vec<u8>,
        /// Receives the encoded answer.
        reply: oneshot::Sender<Vec<u8>>,
        /// Who the caller's certificate names (`None` without TLS: anyone may do
        /// anything).
        caller: Option<Arc<Identity>>,
    },
    /// The answer (`None`: failed) to an outgoing call of the server.
    Response {
        /// The server's id of the call.
        call_id: u64,
        /// The encoded answer.
        reply: Option<Vec<u8>>,
    },
    /// The node's sync thread made the store durable through Ready `number`, or failed.
    Synced {
        /// The highest Ready number the sync covers.
        number: u64,
        /// The sync's error, if it failed (fatal for the node).
        result: Result<(), String>,
    },
}

/// The tarpc service: forwards everything to the driver's queue.
#[derive(Debug, Clone)]
struct NodeService {
    events: mpsc::Sender<Event>,
    tracer: Tracer,
    me: ReplicaName,
    /// Who the connection's certificate names (`None` without TLS).
    caller: Option<Arc<Identity>>,
}

impl Node for NodeService {
    async fn call(self, _: Context, request: ByteBuf) -> ByteBuf {
        self.tracer.mark(Waypoint::CallReceived);
        let (reply, answer) = oneshot::channel();
        let request = request.into_vec();
        if self
            .events
            .send(Event::Call {
                request,
                reply,
                caller: self.caller.clone(),
            })
            .await
            .is_err()
        {
            return ByteBuf::new();
        }
        let answer = answer.await.unwrap_or_default();
        self.tracer.mark(Waypoint::CallAnswered);
        ByteBuf::from(answer)
    }

    async fn identify(self, _: Context) -> ReplicaName {
        self.me
    }
}

/// Connections the kernel queues for a listener before the node accepts them. Rust's and
/// mio's default, 128, drops the SYNs of a burst of new connections (each such client
/// then waits a second to try again).
const BACKLOG: u32 = 1024;

/// Binds `listen` (before the driver starts, so a bad address fails the node at once).
pub async fn bind(listen: &str) -> std::io::Result<TcpListener> {
    let mut failure = None;
    for address in tokio::net::lookup_host(listen).await? {
        let socket = match address {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        // As mio does on Unix: a restarted node binds its port again at once.
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        match socket.bind(address) {
            Ok(()) => return socket.listen(BACKLOG),
            Err(error) => failure = Some(error),
        }
    }
    Err(failure.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{listen} names no address"),
        )
    }))
}

/// Accepts connections on `listener`, within `limits`, forwarding calls and raft
/// messages (those of the replicas `membership` admits) to `events` (and marking client
/// calls in and out on `tracer`), until the driver drops the receiving end of `events`;
/// the listener is closed on return.
pub async fn serve(
    listener: TcpListener,
    events: mpsc::Sender<Event>,
    tracer: Tracer,
    membership: StreamPeers,
    limits: Limits,
    tls: Option<Tls>,
) {
    let me = membership.me;
    let service = NodeService {
        events,
        tracer,
        me,
        caller: None,
    };
    let membership = Arc::new(membership);
    let slots = Arc::new(Semaphore::new(limits.connections));
    let counters = Arc::new(Counters::default());
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = service.events.closed() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                    if let Some(count) = counters.over_limit.count() {
                        tracing::warn!(
                            %peer,
                            count,
                            limit = limits.connections,
                            "closing a connection as accepted: the node serves its limit"
                        );
                    }
                    continue;
                };
                let connection = Connection {
                    peer,
                    tls: tls.clone(),
                    service: service.clone(),
                    membership: Arc::clone(&membership),
                    limits,
                    counters: Arc::clone(&counters),
                    _slot: slot,
                };
                tokio::spawn(connection.serve(stream));
            }
            Err(error) => {
                if let Some(count) = counters.accept_failed.count() {
                    tracing::warn!(%error, count, "accept failed");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// One accepted connection and what it needs; it holds one of the node's connection
/// slots until it ends.
struct Connection {
    peer: SocketAddr,
    tls: Option<Tls>,
    service: NodeService,
    membership: Arc<StreamPeers>,
    limits: Limits,
    counters: Arc<Counters>,
    _slot: OwnedSemaphorePermit,
}

impl Connection {
    /// Serves the connection: with TLS, after a handshake (within the handshake time)
    /// that shows who the peer is; then a raft stream if it starts with `PREAMBLE[..4]`,
    /// else tarpc (those four bytes are its first frame's length).
    async fn serve(self, stream: TcpStream) {
        let peer = self.peer;
        let handshake = Instant::now() + self.limits.handshake;
        // Probes a connection that goes quiet, so a peer that vanished without closing
        // it (a host cut off) does not hold it for ever.
        if let Err(error) = raft_stream::keep_alive(&stream) {
            tracing::debug!(%peer, %error, "cannot switch on TCP keepalive");
        }
        #[cfg(target_os = "linux")]
        if let Err(error) =
            socket2::SockRef::from(&stream).set_tcp_user_timeout(Some(ANSWER_UNACKNOWLEDGED_LIMIT))
        {
            tracing::debug!(%peer, %error, "cannot set TCP_USER_TIMEOUT");
        }
        let Some(tls) = self.tls.clone() else {
            return self.serve_stream(stream, None, handshake).await;
        };
        let accepted = tokio::select! {
            accepted = tokio::time::timeout_at(handshake, tls.acceptor().accept(stream)) => accepted,
            () = self.service.events.closed() => return,
        };
        let stream = match accepted {
            Err(_) => return self.slow_handshake(),
            Ok(Err(error)) => return self.refuse(format!("TLS handshake failed: {error}")),
            Ok(Ok(stream)) => stream,
        };
        let caller = tls.peer_identity(stream.get_ref().1.peer_certificates());
        let per_identity = self.limits.per_identity;
        let slot = caller.and_then(|caller| {
            let slot = IdentitySlot::take(&self.counters, &caller, per_identity)?;
            Ok((caller, slot))
        });
        match slot {
            Ok((caller, _slot)) => self.serve_stream(stream, Some(caller), handshake).await,
            Err(why) => self.refuse(why),
        }
    }

    /// Serves the connection's bytes once any TLS handshake is done; `caller` is who its
    /// certificate says the peer is (`None` without TLS).
    async fn serve_stream<S>(self, mut stream: S, caller: Option<Identity>, handshake: Instant)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let peer = self.peer;
        let mut head = [0u8; 4];
        let read = tokio::select! {
            read = tokio::time::timeout_at(handshake, stream.read_exact(&mut head)) => read,
            () = self.service.events.closed() => return,
        };
        match read {
            Err(_) => return self.slow_handshake(),
            Ok(Err(error)) => {
                tracing::debug!(%peer, %error, "connection closed before its first frame");
                return;
            }
            Ok(Ok(_)) => {}
        }
        if head == PREAMBLE[..4] {
            let events = self.service.events.clone();
            // A stream whose certificate names its sender needs no idle limit (keepalive
            // probes find a peer that vanished); an unauthenticated one keeps it.
            let deadlines = raft_stream::Deadlines {
                hello: handshake,
                idle: caller.is_none().then_some(self.limits.idle),
            };
            let from = raft_stream::Sender {
                peer,
                membership: &self.membership,
                caller: caller.as_ref(),
                refusals: &self.counters.strange_streams,
            };
            match raft_stream::receive(stream, from, events, deadlines).await {
                Err(raft_stream::TimedOut::Hello) => self.slow_handshake(),
                Err(raft_stream::TimedOut::Idle) => self.idle(),
                Ok(()) => {}
            }
            return;
        }
        // Tarpc, reading the four bytes again before the rest of the stream.
        let (reader, writer) = tokio::io::split(stream);
        let io = tokio::io::join(std::io::Cursor::new(head).chain(reader), writer);
        let codec = FrameCodec::asymmetric(MAX_CALL_FRAME_BYTES, MAX_FRAME_BYTES);
        let framed = Framed::new(io, codec);
        // tarpc's own serde transport takes tokio-util's codec only; this is the same
        // stack (bincode over length-delimited frames) over ours.
        let transport = tarpc::tokio_serde::Framed::new(framed, Bincode::default());
        self.serve_calls(BaseChannel::with_defaults(transport), caller, handshake)
            .await;
    }

    /// Closes a connection whose TLS handshake failed or whose certificate names no one
    /// this cluster admits.
    fn refuse(&self, why: String) {
        if let Some(count) = self.counters.refused.count() {
            let peer = self.peer;
            tracing::warn!(%peer, count, "closing a connection: {why}");
        }
    }

    fn slow_handshake(&self) {
        if let Some(count) = self.counters.slow_handshake.count() {
            let (peer, within) = (self.peer, self.limits.handshake);
            tracing::warn!(
                %peer,
                count,
                "closing a connection that said nothing whole within {within:?}"
            );
        }
    }

    fn idle(&self) {
        if let Some(count) = self.counters.idle.count() {
            let (peer, idle) = (self.peer, self.limits.idle);
            tracing::info!(%peer, count, "closing a connection idle for {idle:?}");
        }
    }

    /// Serves tarpc calls until the connection closes, sends a bad frame, goes idle (no
    /// first request by `handshake`; later, no request for `idle` with none in flight),
    /// or the driver stops.
    ///
    /// The connection's requests run inside this one task (not a task each): answers the
    /// driver sends together complete together, and tarpc writes them with one flush when
    /// it next finds nothing more to send, so a batch of replies costs one `writev` per
    /// connection rather than one per reply.
    async fn serve_calls<T>(
        self,
        channel: BaseChannel<NodeRequest, NodeResponse, T>,
        caller: Option<Identity>,
        handshake: Instant,
    ) where
        T: tarpc::Transport<Response<NodeResponse>, ClientMessage<NodeRequest>> + Send + 'static,
    {
        let peer = self.peer;
        let service = NodeService {
            caller: caller.map(Arc::new),
            ..self.service.clone()
        };
        let mut requests = std::pin::pin!(channel.requests());
        let mut running = FuturesUnordered::new();
        let mut deadline = None;
        loop {
            let quiet = deadline.unwrap_or(handshake);
            let request = tokio::select! {
                biased;
                Some(()) = running.next(), if !running.is_empty() => {
                    deadline = Some(Instant::now() + self.limits.idle);
                    continue;
                }
                request = requests.next(), if running.len() < MAX_IN_FLIGHT => request,
                () = self.service.events.closed() => None,
                () = tokio::time::sleep_until(quiet), if running.is_empty() => {
                    match deadline {
                        None => self.slow_handshake(),
                        Some(_) => self.idle(),
                    }
                    return;
                }
            };
            let Some(request) = request else { return };
            match request {
                Ok(request) => {
                    deadline = Some(Instant::now() + self.limits.idle);
                    running.push(request.execute(service.clone().serve()));
                }
                // A caller that went away without closing TLS (a CLI process exiting) is
                // not an error of the connection's.
                Err(error) if ended_abruptly(&error) => {
                    tracing::debug!(%peer, %error, "connection closed by the caller");
                    return;
                }
                Err(error) => {
                    tracing::error!(%peer, %error, "closing connection: bad frame or read error");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One node gets the default; nodes sharing a process share its open files, keeping
    /// some for each node's own files and dialed connections.
    #[test]
    fn connection_limits_share_the_open_files() {
        let limit = |nodes, files| Limits::for_nodes(nodes, files).connections;
        assert_eq!(limit(1, 1_048_576), Limits::DEFAULT_CONNECTIONS);
        assert_eq!(limit(12, 20_000), Limits::DEFAULT_CONNECTIONS);
        assert_eq!(limit(12, 4_096), 4_096 / 12 - Limits::RESERVED_FILES);
        assert_eq!(limit(1, 1_024), 1_024 - Limits::RESERVED_FILES);
        assert_eq!(limit(453, 20_000), 16, "a floor, however many nodes");
    }

    /// The 1st, 2nd, 4th, 8th, ... refusal is logged.
    #[test]
    fn refusals_are_logged_at_powers_of_two() {
        let refusals = Refusals::default();
        let logged: Vec<u64> = (0..20).filter_map(|_| refusals.count()).collect();
        assert_eq!(logged, [1, 2, 4, 8, 16]);
    }
}
