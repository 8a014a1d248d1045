//! The node's listener: accepts connections, serves [`Node`] over tarpc on most of them
//! and reads raft streams ([`super::raft_stream`]) on the rest, and turns every call
//! and every batch of raft messages into an [`Event`] for the driver.
//!
//! A connection whose bytes are not a valid frame (garbage, or a length header over
//! [`MAX_FRAME_BYTES`](shardkv_client::tarpc_transport::MAX_FRAME_BYTES)) is logged and
//! closed; the listener and every other connection carry on.
//!
//! When the driver stops (its event queue closes), the listener and every connection
//! close too: peers see their connections fail and re-dial, so a node restarted in the
//! same process (as `shardkv demo` does) is reached afresh rather than through a
//! connection nobody serves any more.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use serde_bytes::ByteBuf;
use shardkv_client::tarpc_transport::{Node, NodeRequest, NodeResponse};
use tarpc::context::Context;
use tarpc::server::{BaseChannel, Channel};
use tarpc::tokio_serde::formats::Bincode;
use tarpc::{ClientMessage, Response};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::Framed;

use super::raft_stream::{self, StreamPeers, PREAMBLE};
use super::timeline::{Tracer, Waypoint};

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
}

impl Node for NodeService {
    async fn call(self, _: Context, request: ByteBuf) -> ByteBuf {
        self.tracer.mark(Waypoint::CallReceived);
        let (reply, answer) = oneshot::channel();
        let request = request.into_vec();
        if self
            .events
            .send(Event::Call { request, reply })
            .await
            .is_err()
        {
            return ByteBuf::new();
        }
        let answer = answer.await.unwrap_or_default();
        self.tracer.mark(Waypoint::CallAnswered);
        ByteBuf::from(answer)
    }
}

/// Binds `listen` (before the driver starts, so a bad address fails the node at once).
pub async fn bind(listen: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(listen).await
}

/// Accepts connections on `listener`, forwarding calls and raft messages (those of the
/// replicas `membership` admits) to `events` (and marking client calls in and out on
/// `tracer`), until the driver drops the receiving end of `events`; the listener is
/// closed on return.
pub async fn serve(
    listener: TcpListener,
    events: mpsc::Sender<Event>,
    tracer: Tracer,
    membership: StreamPeers,
) {
    let service = NodeService { events, tracer };
    let membership = Arc::new(membership);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = service.events.closed() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let membership = Arc::clone(&membership);
                tokio::spawn(serve_stream(stream, peer, service.clone(), membership));
            }
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Serves one accepted connection: a raft stream if it starts with `PREAMBLE[..4]`,
/// else tarpc (those four bytes are its first frame's length).
async fn serve_stream(
    mut stream: TcpStream,
    peer: SocketAddr,
    service: NodeService,
    membership: Arc<StreamPeers>,
) {
    let mut head = [0u8; 4];
    let read = tokio::select! {
        read = stream.read_exact(&mut head) => read,
        () = service.events.closed() => return,
    };
    if let Err(error) = read {
        tracing::debug!(%peer, %error, "connection closed before its first frame");
        return;
    }
    if head == PREAMBLE[..4] {
        return raft_stream::receive(stream, peer, &membership, service.events).await;
    }
    // Tarpc, reading the four bytes again before the rest of the stream.
    let (reader, writer) = stream.into_split();
    let io = tokio::io::join(std::io::Cursor::new(head).chain(reader), writer);
    let framed = Framed::new(io, raft_stream::codec());
    let transport = tarpc::serde_transport::new(framed, Bincode::default());
    serve_connection(BaseChannel::with_defaults(transport), peer, service).await;
}

/// Serves one connection until it closes, sends a bad frame, or the driver stops.
///
/// The connection's requests run inside this one task (not a task each): answers the
/// driver sends together complete together, and tarpc writes them with one flush when
/// it next finds nothing more to send, so a batch of replies costs one `writev` per
/// connection rather than one per reply.
async fn serve_connection<T>(
    channel: BaseChannel<NodeRequest, NodeResponse, T>,
    peer: SocketAddr,
    service: NodeService,
) where
    T: tarpc::Transport<Response<NodeResponse>, ClientMessage<NodeRequest>> + Send + 'static,
{
    let mut requests = std::pin::pin!(channel.requests());
    let mut running = FuturesUnordered::new();
    loop {
        let request = tokio::select! {
            biased;
            Some(()) = running.next(), if !running.is_empty() => continue,
            request = requests.next() => request,
            () = service.events.closed() => None,
        };
        let Some(request) = request else { return };
        match request {
            Ok(request) => running.push(request.execute(service.clone().serve())),
            Err(error) => {
                tracing::error!(%peer, %error, "closing connection: bad frame or read error");
                return;
            }
        }
    }
}
