//! [`Peers`]: raft messages to the other replicas, batched per peer.
//!
//! Each peer has one sender task fed by a bounded queue. The task writes whatever has
//! queued as one frame on its raft stream to the peer ([`super::raft_stream`]), waits
//! for the write, then sends the next: messages to a peer stay in order on a stream
//! (after a re-dial, frames still buffered on the old one may arrive late, as raft
//! allows), and a slow peer (TCP pushing back) cannot make the node buffer without
//! bound. When the queue is full, or the peer is down, messages are dropped: raft
//! retransmits what matters.

use std::collections::BTreeMap;
use std::time::Duration;

use shardkv_client::tls::Tls;
use shardkv_raft::{EarlySink, NodeId};
use tokio::sync::mpsc;

use super::raft_stream::{Outgoing, ReplicaName};
use super::timeline::{Tracer, Waypoint};

/// Batches waiting per peer before new messages to it are dropped (an early message
/// is a batch of its own).
const QUEUE_BATCHES: usize = 256;

/// Messages in one frame, at most.
const BATCH_MESSAGES_MAX: usize = 256;

/// How long one batch may take before the connection counts as broken.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// After a failed send, the task waits this long before sending again.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The sending side of every peer's queue.
#[derive(Debug)]
pub struct Peers {
    queues: BTreeMap<NodeId, mpsc::Sender<Vec<Vec<u8>>>>,
}

impl Peers {
    /// Starts one sender task per peer in `addresses` (this node `me` excluded), over
    /// mutual TLS with `tls` if given; each marks [`Waypoint::PeerSend`] on `tracer`.
    pub fn start(
        me: ReplicaName,
        addresses: &BTreeMap<NodeId, String>,
        tracer: Tracer,
        tls: Option<Tls>,
    ) -> Self {
        let queues = addresses
            .iter()
            .filter(|(&id, _)| id != me.id)
            .map(|(&id, address)| {
                let (sender, receiver) = mpsc::channel(QUEUE_BATCHES);
                let stream = Outgoing::new(me, id, address.clone(), tls.clone());
                tokio::spawn(run_peer(id, stream, receiver, tracer));
                (id, sender)
            })
            .collect();
        Peers { queues }
    }

    /// Queues `messages` for peer `to`; drops them (logged) when it is unknown or its
    /// queue is full.
    pub fn send(&self, to: NodeId, messages: Vec<Vec<u8>>) {
        send(&self.queues, to, messages);
    }

    /// A sink that queues one message at a time, for `Replica::send_early_with`.
    pub fn early_sink(&self) -> EarlySink {
        let queues = self.queues.clone();
        Box::new(move |to, bytes| send(&queues, to, vec![bytes]))
    }
}

/// Queues `messages` for peer `to` in `queues` (see [`Peers::send`]).
fn send(queues: &BTreeMap<NodeId, mpsc::Sender<Vec<Vec<u8>>>>, to: NodeId, messages: Vec<Vec<u8>>) {
    match queues.get(&to) {
        Some(queue) => {
            if queue.try_send(messages).is_err() {
                tracing::debug!(to, "peer queue full; dropping raft messages");
            }
        }
        None => tracing::warn!(to, "raft message to an unknown peer dropped"),
    }
}

/// One peer's sender task; ends when the node drops its [`Peers`] and its early sink.
async fn run_peer(
    to: NodeId,
    mut stream: Outgoing,
    mut queue: mpsc::Receiver<Vec<Vec<u8>>>,
    tracer: Tracer,
) {
    while let Some(mut batch) = queue.recv().await {
        while batch.len() < BATCH_MESSAGES_MAX {
            match queue.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        tracer.mark(Waypoint::PeerSend);
        match stream.send(batch, SEND_TIMEOUT).await {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::InvalidInput => {
                tracing::warn!(to, %error, "raft batch dropped");
            }
            Err(error) => {
                tracing::debug!(to, %error, "raft send failed");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}
