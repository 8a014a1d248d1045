//! Raft messages between the replicas of one service, on one-way streams of their own.
//!
//! A replica dials each peer's address (the one its tarpc service listens on), writes
//! [`PREAMBLE`] and its raft id (8 bytes, big-endian), then one length-delimited frame
//! per batch of messages (a bincode `Vec<ByteBuf>`, at most [`MAX_FRAME_BYTES`]). Nothing
//! comes back: raft tolerates loss, so the sender needs no answer, and a broken stream
//! shows as a failed write; the sender dials again for a later batch.
//!
//! ```text
//!   peer task ──"SKVRAFT1", id, [frame]*──► listener: PREAMBLE? ──► Event::Peer ──► driver
//!   client ─────tarpc frames──────────────► listener: else ───────► tarpc (Node::call)
//! ```
//!
//! Why not a tarpc call per batch: each call is a request and an answer, a hand-off to
//! tarpc's dispatch task on the sending side and to a request future on the receiving
//! one. Over loopback on the 2-core VM a tarpc round trip takes ~58 us, a plain tokio
//! TCP one ~26 us; a write passes two raft hops (leader to follower and back).
//!
//! The listener tells the two kinds of connection apart by their first four bytes: a
//! tarpc connection starts with a frame length, and `PREAMBLE[..4]` read as one
//! (0x534B5652, 1.4 GB) is over [`MAX_FRAME_BYTES`], so no valid tarpc connection starts
//! that way.

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_bytes::ByteBuf;
use shardkv_client::tarpc_transport::MAX_FRAME_BYTES;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

use super::service::Event;

/// The first bytes of a raft stream: a tag and the format's version.
pub const PREAMBLE: [u8; 8] = *b"SKVRAFT1";

/// The frame codec of both ends.
fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME_BYTES)
        .new_codec()
}

/// The sending end of a raft stream to one peer: dialed on the first batch, and again
/// after a failure.
#[derive(Debug)]
pub struct Outgoing {
    me: u64,
    address: String,
    stream: Option<FramedWrite<TcpStream, LengthDelimitedCodec>>,
}

impl Outgoing {
    /// A stream from replica `me` to the peer at `address`, not yet dialed.
    pub fn new(me: u64, address: String) -> Self {
        Outgoing {
            me,
            address,
            stream: None,
        }
    }

    /// Sends `messages` as one frame within `timeout`, dialing first if needed. On an
    /// error the stream is dropped (the next send dials again) and the batch is lost.
    pub async fn send(&mut self, messages: Vec<Vec<u8>>, timeout: Duration) -> std::io::Result<()> {
        let messages: Vec<ByteBuf> = messages.into_iter().map(ByteBuf::from).collect();
        let frame = bincode::serialize(&messages).map_err(std::io::Error::other)?;
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
            .is_some_and(|stream| closed(stream.get_ref()))
        {
            self.stream = None;
        }
        let stream = match &mut self.stream {
            Some(stream) => stream,
            None => self.stream.insert(dial(&self.address, self.me).await?),
        };
        stream.send(frame.as_slice()).await
    }
}

/// True when the peer has closed `stream` (it never writes on it, so anything readable
/// is the end of the stream or an error): a restarted peer is dialed afresh rather than
/// sent a batch that would be lost. Without a readiness event this costs no system call.
fn closed(stream: &TcpStream) -> bool {
    match stream.try_read(&mut [0u8; 1]) {
        Err(error) => error.kind() != std::io::ErrorKind::WouldBlock,
        Ok(_) => true,
    }
}

/// Connects to `address` and introduces replica `me`.
async fn dial(
    address: &str,
    me: u64,
) -> std::io::Result<FramedWrite<TcpStream, LengthDelimitedCodec>> {
    let mut stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let mut hello = PREAMBLE.to_vec();
    hello.extend_from_slice(&me.to_be_bytes());
    stream.write_all(&hello).await?;
    Ok(FramedWrite::new(stream, codec()))
}

/// Reads a raft stream whose first four bytes (`PREAMBLE[..4]`) the listener has read,
/// handing each batch to `events`, until the peer closes it, sends something that is
/// not a raft stream, or the driver stops.
pub async fn receive(mut stream: TcpStream, peer: Option<SocketAddr>, events: mpsc::Sender<Event>) {
    let mut version = [0u8; PREAMBLE.len() - 4];
    let mut id = [0u8; 8];
    let hello = async {
        stream.read_exact(&mut version).await?;
        if version != PREAMBLE[4..] {
            return Err(std::io::Error::other(format!(
                "unknown raft stream version {version:?}"
            )));
        }
        stream.read_exact(&mut id).await
    };
    let hello = tokio::select! {
        hello = hello => hello,
        () = events.closed() => return,
    };
    if let Err(error) = hello {
        tracing::warn!(?peer, %error, "closing raft stream before its first frame");
        return;
    }
    let from = u64::from_be_bytes(id);
    let mut frames = FramedRead::new(stream, codec());
    loop {
        let frame = tokio::select! {
            frame = frames.next() => frame,
            () = events.closed() => return,
        };
        let messages = match frame.map(|frame| frame.map(|bytes| decode(&bytes))) {
            None => return,
            Some(Ok(Ok(messages))) => messages,
            Some(Ok(Err(error))) | Some(Err(error)) => {
                tracing::error!(?peer, from, %error, "closing raft stream: bad frame or read error");
                return;
            }
        };
        if events.send(Event::Peer { from, messages }).await.is_err() {
            return;
        }
    }
}

/// The messages of one frame.
fn decode(frame: &[u8]) -> std::io::Result<Vec<Vec<u8>>> {
    let messages: Vec<ByteBuf> = bincode::deserialize(frame).map_err(std::io::Error::other)?;
    Ok(messages.into_iter().map(ByteBuf::into_vec).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::service;
    use crate::runtime::timeline::Tracer;
    use shardkv_client::TarpcTransport;

    const TIMEOUT: Duration = Duration::from_secs(10);

    /// A listener serving into a fresh event queue: (its address, the queue).
    async fn listening() -> (String, mpsc::Receiver<Event>) {
        let listener = service::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let (events, received) = mpsc::channel(16);
        tokio::spawn(service::serve(listener, events, Tracer::default()));
        (address, received)
    }

    /// The next event's raft batch: (from, messages).
    async fn next_batch(events: &mut mpsc::Receiver<Event>) -> (u64, Vec<Vec<u8>>) {
        match tokio::time::timeout(TIMEOUT, events.recv()).await {
            Ok(Some(Event::Peer { from, messages })) => (from, messages),
            other => panic!("expected a raft batch, got {other:?}"),
        }
    }

    /// Batches arrive whole and in order, marked with the sender's id; tarpc calls to
    /// the same address are still served (the listener reads their first four bytes
    /// to tell them apart, then hands them on).
    #[tokio::test]
    async fn batches_arrive_in_order_beside_tarpc() {
        let (address, mut events) = listening().await;
        let mut stream = Outgoing::new(7, address.clone());
        let batches = [vec![b"one".to_vec(), Vec::new()], vec![vec![9; 100_000]]];
        for batch in &batches {
            stream.send(batch.clone(), TIMEOUT).await.expect("send");
        }
        for batch in batches {
            assert_eq!(next_batch(&mut events).await, (7, batch));
        }

        let transport = TarpcTransport::new();
        let call = tokio::spawn(async move {
            transport
                .call_bytes(&address, b"request".to_vec(), TIMEOUT)
                .await
        });
        match tokio::time::timeout(TIMEOUT, events.recv()).await {
            Ok(Some(Event::Call { request, reply })) => {
                assert_eq!(request, b"request");
                let _ = reply.send(b"answer".to_vec());
            }
            other => panic!("expected a call, got {other:?}"),
        }
        let answer = call.await.expect("call task").expect("call");
        assert_eq!(answer, b"answer");
    }

    /// A stream of another version, or with a frame that does not decode, is closed;
    /// the listener and other streams carry on.
    #[tokio::test]
    async fn bad_streams_are_closed() {
        let (address, mut events) = listening().await;
        let mut bad_frame = PREAMBLE.to_vec();
        bad_frame.extend_from_slice(&3u64.to_be_bytes());
        bad_frame.extend_from_slice(&[0, 0, 0, 3, b'a', b'b', b'c']);
        let bad_version = *b"SKVRAFT9";
        for hello in [bad_frame, bad_version.to_vec(), b"SKVR".to_vec()] {
            let mut raw = TcpStream::connect(&address).await.expect("connect");
            raw.write_all(&hello).await.expect("write");
            if hello.len() == 4 {
                // Closed before its introduction: the listener just lets go.
                drop(raw);
                continue;
            }
            let mut rest = Vec::new();
            let read = tokio::time::timeout(TIMEOUT, raw.read_to_end(&mut rest)).await;
            assert!(
                matches!(read, Ok(Ok(0)) | Ok(Err(_))),
                "not closed: {read:?}"
            );
        }
        let mut stream = Outgoing::new(8, address);
        stream
            .send(vec![b"still".to_vec()], TIMEOUT)
            .await
            .expect("send");
        assert_eq!(next_batch(&mut events).await, (8, vec![b"still".to_vec()]));
    }

    /// A stream whose peer went away fails a later send; the send after that dials the
    /// peer's address afresh (a restarted node is reached again).
    #[tokio::test]
    async fn a_restarted_peer_is_dialed_again() {
        let (address, mut events) = listening().await;
        let mut stream = Outgoing::new(5, address.clone());
        stream
            .send(vec![b"before".to_vec()], TIMEOUT)
            .await
            .expect("send");
        assert_eq!(next_batch(&mut events).await.1, [b"before".to_vec()]);
        // The node stops: its listener and connections close with the driver's queue.
        drop(events);
        let listener = loop {
            match service::bind(&address).await {
                Ok(listener) => break listener,
                Err(_) => tokio::task::yield_now().await,
            }
        };
        let (sender, mut events) = mpsc::channel(16);
        tokio::spawn(service::serve(listener, sender, Tracer::default()));
        // A send may still go into the old connection before this node hears it was
        // closed (raft would retransmit it); the next ones reach the new listener.
        for _ in 0..100 {
            let _ = stream.send(vec![b"after".to_vec()], TIMEOUT).await;
            let poll = Duration::from_millis(50);
            if let Ok(event) = tokio::time::timeout(poll, events.recv()).await {
                match event {
                    Some(Event::Peer { from, messages }) => {
                        assert_eq!((from, messages), (5, vec![b"after".to_vec()]));
                        return;
                    }
                    other => panic!("expected a raft batch, got {other:?}"),
                }
            }
        }
        panic!("the restarted listener never heard from the stream");
    }
}
