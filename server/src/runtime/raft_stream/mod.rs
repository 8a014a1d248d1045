//! Raft messages between the replicas of one service, on one-way streams of their own.
//!
//! A replica dials each peer's address (the one its tarpc service listens on), writes
//! [`PREAMBLE`], its service and its raft id (a [`ReplicaName`]: 8 bytes each, big-endian),
//! then one length-delimited frame per batch of messages (a bincode `Vec<ByteBuf>`, at
//! most [`MAX_FRAME_BYTES`]). Nothing comes back: raft tolerates loss, so the sender
//! needs no answer, and a broken stream shows as a failed write; the sender dials again
//! for a later batch.
//!
//! ```text
//!   peer task ──"SKVRAFT2", service, id, [frame]*──► listener: PREAMBLE? ──► Event::Peer ──► driver
//!   client ─────tarpc frames───────────────────────► listener: else ───────► tarpc (Node::call)
//! ```
//!
//! The receiver takes batches only from a replica of its own service that its
//! [`StreamPeers`] lists: every service numbers its replicas 1, 2, 3, ..., so a `--peers`
//! list that names another service's node (a typo) would otherwise feed one service's
//! raft messages to another's raft, which at best fails a raft-rs assertion. Such a
//! stream is logged as an error once and its frames are dropped unread (kept open, so
//! its sender does not dial again for every heartbeat). Without TLS this guards against
//! mistakes, not attacks (the hello is only a claim). With TLS the certificate says who
//! is speaking: a stream whose hello names another replica than its certificate, or a
//! replica the membership refuses, is closed at once, and the dialer checks that the
//! certificate it meets names the peer it meant to reach.
//!
//! Why not a tarpc call per batch: each call is a request and an answer, a hand-off to
//! tarpc's dispatch task on the sending side and to a request future on the receiving
//! one. Over loopback on the 2-core VM a tarpc round trip takes ~58 us, a plain tokio
//! TCP one ~26 us; a write passes two raft hops (leader to follower and back).
//!
//! Nothing answering also means nothing shows that a peer vanished without closing its
//! connections (a host cut off or powered off): on Linux, TCP gives up on a stream whose
//! data stays unacknowledged for [`UNACKNOWLEDGED_LIMIT`] (`TCP_USER_TIMEOUT`), so the
//! next batch dials again, and the receiving end probes an idle stream
//! ([`KEEPALIVE_IDLE`]) so a half-open one is closed rather than kept forever.
//!
//! The listener tells the two kinds of connection apart by their first four bytes: a
//! tarpc connection starts with a frame length, and `PREAMBLE[..4]` read as one
//! (0x534B5652, 1.4 GB) is over [`MAX_FRAME_BYTES`], so no valid tarpc connection starts
//! that way.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_bytes::ByteBuf;
use shardkv_client::tarpc_transport::MAX_FRAME_BYTES;
use shardkv_client::tls::{Identity, Tls};
use shardkv_proto::NodeId;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::either::Either;

use super::frame::FrameCodec;
use super::service::{Event, Refusals};

/// The first bytes of a raft stream: a tag and the format's version (2: the hello
/// names the service too).
pub const PREAMBLE: [u8; 8] = *b"SKVRAFT2";

/// A replica as raft streams (and [`Node::identify`](shardkv_client::tarpc_transport::Node))
/// name it.
pub use shardkv_client::tarpc_transport::ReplicaName;

/// Whose raft streams a replica takes: the other replicas of its service it was
/// started with.
#[derive(Debug, Clone)]
pub struct StreamPeers {
    /// This replica.
    pub me: ReplicaName,
    /// The raft ids of its service's replicas (this one may be among them).
    pub peers: BTreeSet<u64>,
}

impl StreamPeers {
    /// Why a stream from `from` is refused, if it is.
    fn refuses(&self, from: ReplicaName) -> Option<String> {
        if from.service != self.me.service || from.id == self.me.id {
            Some(format!("this is {}", self.me))
        } else if !self.peers.contains(&from.id) {
            let peers: Vec<String> = self.peers.iter().map(u64::to_string).collect();
            Some(format!("{}'s peers are {}", self.me, peers.join(",")))
        } else {
            None
        }
    }
}

/// How long a raft stream's data may stay unacknowledged before TCP gives the stream up
/// (as the tarpc call per batch it replaced gave up after its one-second deadline).
const UNACKNOWLEDGED_LIMIT: Duration = Duration::from_secs(2);

/// How long a received raft stream may stay silent before TCP probes the peer (every
/// second, three times, then it closes it).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);

/// The frame codec of raft streams: length-delimited, at most [`MAX_FRAME_BYTES`].
fn codec() -> FrameCodec {
    FrameCodec::new(MAX_FRAME_BYTES)
}

/// When a received stream must have said something: its hello by `hello`, then a whole
/// frame at least every `idle`.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// When the hello must have arrived whole.
    pub hello: Instant,
    /// The longest a stream may go without a whole frame (`None`: no limit, for a
    /// stream whose certificate names a replica; keepalive probes find a dead one).
    pub idle: Option<Duration>,
}

/// Why [`receive`] closed a stream that had not failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimedOut {
    /// The hello was not whole by its deadline.
    Hello,
    /// No whole frame arrived for the idle time.
    Idle,
}

/// The sending end of a raft stream to one peer: dialed on the first batch, and again
/// after a failure.
#[derive(Debug)]
pub struct Outgoing {
    me: ReplicaName,
    /// The peer's raft id (its service is `me`'s).
    to: NodeId,
    address: String,
    tls: Option<Tls>,
    stream: Option<FramedWrite<Wire, FrameCodec>>,
}

/// A dialed stream's bytes: plain TCP, or TLS over it.
type Wire = Either<TcpStream, tokio_rustls::client::TlsStream<TcpStream>>;

impl Outgoing {
    /// A stream from replica `me` to its peer `to` at `address` (over mutual TLS with
    /// `tls`, if given: the peer's certificate must name replica `to`), not yet dialed.
    pub fn new(me: ReplicaName, to: NodeId, address: String, tls: Option<Tls>) -> Self {
        Outgoing {
            me,
            to,
            address,
            tls,
            stream: None,
        }
    }

    /// Sends `messages` as one frame within `timeout`, dialing first if needed. On an
    /// error the stream is dropped (the next send dials again) and the batch is lost.
    pub async fn send(&mut self, messages: Vec<Vec<u8>>, timeout: Duration) -> std::io::Result<()> {
        let messages: Vec<ByteBuf> = messages.into_iter().map(ByteBuf::from).collect();
        let frame = bincode::serialize(&messages).map_err(std::io::Error::other)?;
        if frame.len() > MAX_FRAME_BYTES {
            // Refused before a byte is written: the stream stays usable.
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "a batch of {} bytes is over the {MAX_FRAME_BYTES} byte frame limit",
                    frame.len()
                ),
            ));
        }
        let sent = tokio::time::timeout(timeout, self.send_frame(frame)).await;
        let result = sent.unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "raft send timed out",
            ))
        });
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    async fn send_frame(&mut self, frame: Vec<u8>) -> std::io::Result<()> {
        if self
            .stream
            .as_ref()
            .is_some_and(|stream| closed(tcp(stream.get_ref())))
        {
            self.stream = None;
        }
        let stream = match &mut self.stream {
            Some(stream) => stream,
            None => {
                let to = ReplicaName {
                    service: self.me.service,
                    id: self.to,
                };
                let dialed = dial(&self.address, self.me, to, self.tls.as_ref()).await?;
                self.stream.insert(dialed)
            }
        };
        stream.send(frame.as_slice()).await
    }
}

/// The TCP stream under `wire`.
fn tcp(wire: &Wire) -> &TcpStream {
    match wire {
        Either::Left(stream) => stream,
        Either::Right(stream) => stream.get_ref().0,
    }
}

/// True when the peer has closed `stream` (it never writes on it, so anything readable
/// is the end of the stream or an error; with TLS, the receiving node sends no session
/// tickets, so the bytes of an alert closing it): a restarted peer is dialed afresh rather than
/// sent a batch that would be lost. Without a readiness event this costs no system call.
fn closed(stream: &TcpStream) -> bool {
    match stream.try_read(&mut [0u8; 1]) {
        Err(error) => error.kind() != std::io::ErrorKind::WouldBlock,
        Ok(_) => true,
    }
}

/// Connects to `address` (with a TLS handshake, with `tls`, to a node whose certificate
/// names replica `to`) and introduces replica `me`.
async fn dial(
    address: &str,
    me: ReplicaName,
    to: ReplicaName,
    tls: Option<&Tls>,
) -> std::io::Result<FramedWrite<Wire, FrameCodec>> {
    let stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    #[cfg(target_os = "linux")]
    socket2::SockRef::from(&stream).set_tcp_user_timeout(Some(UNACKNOWLEDGED_LIMIT))?;
    let mut wire = match tls {
        None => Either::Left(stream),
        Some(tls) => {
            let stream = tls.connector().connect(Tls::node_name(), stream).await?;
            let found = tls.peer_identity(stream.get_ref().1.peer_certificates());
            match found {
                Ok(found) if found == Identity::Replica(to) => {}
                Ok(found) => {
                    return Err(std::io::Error::other(format!(
                        "{address} is {found}, not {to}"
                    )))
                }
                Err(why) => return Err(std::io::Error::other(format!("{address}: {why}"))),
            }
            Either::Right(stream)
        }
    };
    wire.write_all(&hello(me)).await?;
    Ok(FramedWrite::new(wire, codec()))
}

/// The bytes that open a raft stream from `me`.
fn hello(me: ReplicaName) -> Vec<u8> {
    let mut hello = PREAMBLE.to_vec();
    hello.extend_from_slice(&me.service.to_be_bytes());
    hello.extend_from_slice(&me.id.to_be_bytes());
    hello
}

/// Reads the rest of a hello whose first four bytes the listener has read.
async fn read_hello(stream: &mut (impl AsyncRead + Unpin)) -> std::io::Result<ReplicaName> {
    let mut version = [0u8; PREAMBLE.len() - 4];
    stream.read_exact(&mut version).await?;
    if version != PREAMBLE[4..] {
        return Err(std::io::Error::other(format!(
            "unknown raft stream version {:?} (this shardkv speaks {:?})",
            String::from_utf8_lossy(&version),
            String::from_utf8_lossy(&PREAMBLE[4..]),
        )));
    }
    let (mut service, mut id) = ([0u8; 8], [0u8; 8]);
    stream.read_exact(&mut service).await?;
    stream.read_exact(&mut id).await?;
    Ok(ReplicaName {
        service: u64::from_be_bytes(service),
        id: u64::from_be_bytes(id),
    })
}

/// Where a received raft stream comes from.
pub struct Sender<'a> {
    /// The peer's address.
    pub peer: SocketAddr,
    /// Whose streams the receiving replica takes.
    pub membership: &'a StreamPeers,
    /// Who the peer's certificate names, with TLS: its hello must name the same replica.
    pub caller: Option<&'a Identity>,
    /// Counts refused streams, so that a flood of them logs a line per doubling.
    pub refusals: &'a Refusals,
}

/// Reads a raft stream whose first four bytes (`PREAMBLE[..4]`) the listener has read,
/// handing each batch to `events` if the receiving replica admits its sender (its
/// `membership` lists it and, with TLS, its certificate names the replica its hello
/// does; else dropping it), until the peer closes it, sends something that is not a
/// raft stream, the driver stops, or it misses one of its `deadlines` (then the error
/// says which).
pub async fn receive<S: AsyncRead + Unpin>(
    mut stream: S,
    from: Sender<'_>,
    events: mpsc::Sender<Event>,
    deadlines: Deadlines,
) -> Result<(), TimedOut> {
    let Sender {
        peer,
        membership,
        caller,
        refusals,
    } = from;
    let hello = tokio::select! {
        hello = tokio::time::timeout_at(deadlines.hello, read_hello(&mut stream)) => hello,
        () = events.closed() => return Ok(()),
    };
    let sender = match hello {
        Err(_) => return Err(TimedOut::Hello),
        Ok(Ok(sender)) => sender,
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
            tracing::debug!(%peer, "raft stream closed before its first frame");
            return Ok(());
        }
        Ok(Err(error)) => {
            tracing::warn!(%peer, %error, "closing raft stream before its first frame");
            return Ok(());
        }
    };
    let refused = match caller {
        Some(caller) if *caller != Identity::Replica(sender) => {
            Some(format!("the stream's certificate names {caller}"))
        }
        _ => membership.refuses(sender),
    };
    if let Some(why) = &refused {
        if let Some(count) = refusals.count() {
            tracing::error!(
                %peer,
                count,
                "dropping the raft messages of {sender}: {why} (check the nodes' --peers, \
                 --gid and roles)"
            );
        }
        // An authenticated peer that is refused is closed: it is a stranger or a
        // misconfigured node, and its frames are not worth reading.
        if caller.is_some() {
            return Ok(());
        }
    }
    let from = sender.id;
    let mut frames = FramedRead::new(stream, codec());
    loop {
        let frame = tokio::select! {
            frame = idle_limited(deadlines.idle, frames.next()) => frame,
            () = events.closed() => return Ok(()),
        };
        let messages = match frame {
            Err(_) => return Err(TimedOut::Idle),
            Ok(None) => return Ok(()),
            Ok(Some(Ok(_))) if refused.is_some() => continue,
            Ok(Some(Ok(bytes))) => match decode(&bytes) {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::error!(%peer, from, %error, "closing raft stream: bad frame");
                    return Ok(());
                }
            },
            // A TLS peer that stopped without closing TLS (a process exiting).
            Ok(Some(Err(error))) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
                tracing::debug!(%peer, from, %error, "raft stream closed");
                return Ok(());
            }
            // A peer that stopped or gave up mid-frame (its send timed out), or an
            // oversized frame header.
            Ok(Some(Err(error))) => {
                tracing::warn!(%peer, from, %error, "raft stream broken");
                return Ok(());
            }
        };
        if events.send(Event::Peer { from, messages }).await.is_err() {
            return Ok(());
        }
    }
}

/// `next`, or `Err` when `idle` passes first (never, without a limit).
async fn idle_limited<T>(
    idle: Option<Duration>,
    next: impl std::future::Future<Output = T>,
) -> Result<T, tokio::time::error::Elapsed> {
    match idle {
        Some(idle) => tokio::time::timeout(idle, next).await,
        None => Ok(next.await),
    }
}

/// Switches on TCP keepalive probes for an accepted connection (see [`KEEPALIVE_IDLE`]).
#[cfg(target_os = "linux")]
pub fn keep_alive(stream: &TcpStream) -> std::io::Result<()> {
    let probes = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(Duration::from_secs(1))
        .with_retries(3);
    socket2::SockRef::from(stream).set_tcp_keepalive(&probes)
}

#[cfg(not(target_os = "linux"))]
pub fn keep_alive(_: &TcpStream) -> std::io::Result<()> {
    Ok(())
}

/// The messages of one frame.
fn decode(frame: &[u8]) -> std::io::Result<Vec<Vec<u8>>> {
    let messages: Vec<ByteBuf> = bincode::deserialize(frame).map_err(std::io::Error::other)?;
    Ok(messages.into_iter().map(ByteBuf::into_vec).collect())
}

#[cfg(test)]
mod tests;
