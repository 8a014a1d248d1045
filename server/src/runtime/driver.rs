//! The driver loop: the one task that owns a node's sans-IO server.
//!
//! ```text
//!   tarpc listener ──Event::Call/Peer──┐
//!   outgoing calls ──Event::Response───┼──► driver ──► Hosted server ──► actions
//!   tokio interval ──tick (50 ms)──────┘      │  Send  ──► Peers (batched per peer)
//!   shutdown signal ───────────────────────────┘  Reply ──► the caller's oneshot
//!                                                 Call  ──► task: TarpcTransport ──► Event::Response
//! ```
//!
//! Everything the server does happens on this one task, as in the simulator. Events
//! already waiting when the driver wakes are handed over as one batch
//! (`Service::batch`), so under load many requests share one Ready and one sync (group
//! commit). The server writes each Ready to the store and hands the sync to the node's
//! sync thread (`Service::sync_with`), which reports back with `Event::Synced`; what a
//! Ready promises (acks, votes, the leader's own replies) waits for that report, so a
//! reply leaves only after its entry is on disk on a majority, the leader's included.
//! Readies written while a sync runs share the next one.

use std::collections::BTreeMap;
use std::time::Duration;

use shardkv_client::tls::Tls;
use shardkv_client::TarpcTransport;
use shardkv_raft::{NodeId, SyncJob};
use tokio::sync::{mpsc, oneshot, watch};

use super::hosted::{Action, Fatal, Hosted};
use super::peers::Peers;
use super::raft_stream::ReplicaName;
use super::service::Event;
use super::timeline::{Tracer, Waypoint};

/// Real time per tick: the simulator's tick counts (election 10, heartbeat 2) become a
/// 500 ms election timeout and 100 ms heartbeats.
pub const TICK: Duration = Duration::from_millis(50);

/// The most events handed to the server as one batch.
const MAX_BATCH: usize = 1024;

/// How long an outgoing call of the server may take (the group forgets a call after 20
/// ticks anyway).
const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// The driver's state besides the server.
struct Driver<H: Hosted> {
    server: H,
    peers: Peers,
    transport: TarpcTransport,
    events: mpsc::Sender<Event>,
    waiting: BTreeMap<u64, oneshot::Sender<Vec<u8>>>,
    next_req_id: u64,
    tracer: Tracer,
    space: Space,
    ticks: u64,
}

/// What a node gives its driver besides the server.
pub struct Wiring<'a> {
    /// The replica the node is.
    pub me: ReplicaName,
    /// Its service's replicas' addresses, by raft id.
    pub peers: &'a BTreeMap<NodeId, String>,
    /// The event queue the listener feeds, and its receiving end.
    pub events: (mpsc::Sender<Event>, mpsc::Receiver<Event>),
    /// Turns true when the node is to stop.
    pub shutdown: watch::Receiver<bool>,
    /// Records the steps of requests for `shardkv bench --timeline`.
    pub tracer: Tracer,
    /// Mutual TLS for every connection the node makes (raft streams, calls to other
    /// nodes), if the node runs it.
    pub tls: Option<Tls>,
    /// The node's data directory and the free space to keep there (see [`Space`]).
    pub space: Space,
}

/// The free space a node keeps on its data directory's file system: below `reserve`
/// bytes the node is out of space (a group refuses client writes, and says so, while
/// it goes on serving reads and taking its log's entries in the room left), until the
/// free space is back to twice the reserve. Checked every [`SPACE_CHECK_TICKS`] ticks.
#[derive(Debug, Clone)]
pub struct Space {
    /// The data directory.
    pub dir: std::path::PathBuf,
    /// The bytes to keep free (0: never out of space).
    pub reserve: u64,
    /// Whether the node is out of space now.
    out: bool,
}

/// Ticks between free-space checks (one second).
const SPACE_CHECK_TICKS: u64 = 20;

impl Space {
    /// Watches `dir`'s file system, keeping `reserve` bytes free.
    pub fn new(dir: std::path::PathBuf, reserve: u64) -> Self {
        Space {
            dir,
            reserve,
            out: false,
        }
    }

    /// Whether a node with `free` bytes left is out of space, given whether it was.
    fn out_of_space(was: bool, free: u64, reserve: u64) -> bool {
        match was {
            false => free < reserve,
            true => free < reserve.saturating_mul(2),
        }
    }

    /// Checks the free space; `Some(out)` when the node changed from in to out of space
    /// or back.
    fn check(&mut self) -> Option<bool> {
        if self.reserve == 0 {
            return None;
        }
        let free = match rustix::fs::statvfs(&self.dir) {
            Ok(stat) => stat.f_bavail.saturating_mul(stat.f_frsize),
            Err(error) => {
                tracing::debug!(dir = %self.dir.display(), %error, "cannot read the free space");
                return None;
            }
        };
        let out = Self::out_of_space(self.out, free, self.reserve);
        if out == self.out {
            return None;
        }
        self.out = out;
        match out {
            true => tracing::error!(
                dir = %self.dir.display(),
                free,
                reserve = self.reserve,
                "out of space: refusing client writes until the free space is back to twice the reserve"
            ),
            false => tracing::warn!(dir = %self.dir.display(), free, "space again: taking writes"),
        }
        Some(out)
    }
}

/// Runs `server` until `wiring.shutdown` turns true; flushes it before returning.
pub async fn run<H: Hosted + Send + 'static>(server: H, wiring: Wiring<'_>) -> Result<(), Fatal> {
    let Wiring {
        me,
        peers,
        events,
        mut shutdown,
        tracer,
        tls,
        space,
    } = wiring;
    let transport = match &tls {
        None => TarpcTransport::new(),
        Some(tls) => TarpcTransport::with_tls(tls.clone()),
    };
    let (sender, mut receiver) = events;
    let peers = Peers::start(me, peers, tracer, tls);
    let mut server = server;
    server.send_early_with(peers.early_sink());
    let (sink, syncer) = start_syncer(me.id, sender.clone(), tracer)
        .map_err(|error| format!("cannot start the sync thread: {error}"))?;
    server.sync_with(sink);
    let mut driver = Driver {
        server,
        peers,
        transport,
        events: sender,
        waiting: BTreeMap::new(),
        next_req_id: 1,
        tracer,
        space,
        ticks: 0,
    };
    let result = serve_events(&mut driver, &mut receiver, &mut shutdown).await;
    // The last flush waits for a snapshot still being written, and dropping the store
    // joins its snapshot threads: both block, so they run off the runtime's workers
    // (other nodes of this process keep running meanwhile).
    let Driver {
        server,
        peers,
        transport,
        events,
        waiting,
        next_req_id: _,
        tracer: _,
        space: _,
        ticks: _,
    } = driver;
    drop((peers, transport, events, waiting));
    let finish = move || {
        let mut server = server;
        result.and_then(|()| Ok(server.flush()?))
    };
    let result = match tokio::task::spawn_blocking(finish).await {
        Ok(result) => result,
        Err(error) => Err(format!("the final flush failed: {error}").into()),
    };
    // The sync thread may hold files of the store in a job: it ends once the server (with
    // its sink) and the queue are gone; wait for it, so the data directory is closed on
    // return.
    drop(receiver);
    let _ = tokio::task::spawn_blocking(move || syncer.join()).await;
    result
}

/// Runs the driver loop until `shutdown` turns true or the queue closes.
async fn serve_events<H: Hosted>(
    driver: &mut Driver<H>,
    receiver: &mut mpsc::Receiver<Event>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), Fatal> {
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            _ = ticks.tick() => driver.tick()?,
            event = receiver.recv() => match event {
                Some(event) => driver.handle_batch(event, receiver)?,
                None => return Ok(()),
            },
        }
        driver.dispatch();
    }
}

impl<H: Hosted> Driver<H> {
    fn tick(&mut self) -> Result<(), Fatal> {
        self.waiting.retain(|_, reply| !reply.is_closed());
        self.ticks += 1;
        // From the first tick on: a node starting on a full disk refuses writes
        // before it can lead.
        if self.ticks % SPACE_CHECK_TICKS == 1 {
            if let Some(out) = self.space.check() {
                self.server.set_out_of_space(out);
            }
        }
        Ok(self.server.on_tick()?)
    }

    /// Handles `first` and every event already waiting behind it (up to
    /// [`MAX_BATCH`]) as one batch: one Ready, one sync, one append per follower.
    fn handle_batch(
        &mut self,
        first: Event,
        receiver: &mut mpsc::Receiver<Event>,
    ) -> Result<(), Fatal> {
        let mut events = vec![first];
        while events.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(event) => events.push(event),
                Err(_) => break,
            }
        }
        tracing::trace!(count = events.len(), "event batch");
        self.tracer.mark_batch(&events);
        let Driver {
            server,
            waiting,
            next_req_id,
            ..
        } = self;
        server.batch(|server| {
            events
                .into_iter()
                .try_for_each(|event| handle(server, waiting, next_req_id, event))
        })
    }

    /// Carries out the server's actions: raft messages batched per peer, replies, calls.
    fn dispatch(&mut self) {
        let mut batches: BTreeMap<NodeId, Vec<Vec<u8>>> = BTreeMap::new();
        for action in self.server.take_actions() {
            match action {
                Action::Send { to, bytes } => batches.entry(to).or_default().push(bytes),
                Action::Reply { req_id, bytes } => {
                    if let Some(reply) = self.waiting.remove(&req_id) {
                        let _ = reply.send(bytes);
                    }
                }
                Action::Call { call_id, to, bytes } => self.call(call_id, to, bytes),
            }
        }
        for (to, messages) in batches {
            self.peers.send(to, messages);
        }
    }

    fn call(&self, call_id: u64, to: String, bytes: Vec<u8>) {
        let transport = self.transport.clone();
        let events = self.events.clone();
        tokio::spawn(async move {
            let reply = transport.call_bytes(&to, bytes, CALL_TIMEOUT).await.ok();
            let _ = events.send(Event::Response { call_id, reply }).await;
        });
    }
}

/// Hands one event to the server, registering a call's reply channel under a new id.
fn handle<H: Hosted>(
    server: &mut H,
    waiting: &mut BTreeMap<u64, oneshot::Sender<Vec<u8>>>,
    next_req_id: &mut u64,
    event: Event,
) -> Result<(), Fatal> {
    match event {
        Event::Peer { from, messages } => {
            tracing::trace!(from, count = messages.len(), "raft batch");
            messages
                .iter()
                .try_for_each(|message| Ok(server.on_peer_message(from, message)?))
        }
        Event::Call {
            request,
            reply,
            caller,
        } => {
            let req_id = *next_req_id;
            *next_req_id += 1;
            match server.on_call(req_id, &request, caller.as_deref())? {
                Some(answer) => {
                    let _ = reply.send(answer);
                }
                None => {
                    waiting.insert(req_id, reply);
                }
            }
            Ok(())
        }
        Event::Response { call_id, reply } => server.on_response(call_id, reply),
        Event::Synced { number, result } => {
            result.map_err(|error| format!("cannot sync the store: {error}"))?;
            Ok(server.on_synced(number)?)
        }
    }
}

/// Starts the node's sync thread: it runs the store's sync job for each Ready number
/// the server hands over (jobs that queued up during a sync are merged and share the
/// next one) and reports back through `events`; a failed or panicking job is reported
/// as an error, which stops the node. It ends when the server drops the returned sink
/// or the driver stops listening.
fn start_syncer(
    me: NodeId,
    events: mpsc::Sender<Event>,
    tracer: Tracer,
) -> std::io::Result<(shardkv_raft::SyncSink, std::thread::JoinHandle<()>)> {
    let (asks, asked) = std::sync::mpsc::channel::<(u64, SyncJob)>();
    let thread = std::thread::Builder::new()
        .name(format!("shardkv-sync-{me}"))
        .spawn(move || {
            while let Ok((mut number, mut job)) = asked.recv() {
                for (later, more) in asked.try_iter() {
                    number = number.max(later);
                    job.merge(more);
                }
                tracer.mark(Waypoint::FlushStart);
                let synced = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run()));
                tracer.mark(Waypoint::FlushEnd);
                let result = match synced {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(error)) => Err(error.to_string()),
                    Err(_) => Err("the sync panicked".to_string()),
                };
                let failed = result.is_err();
                if events
                    .blocking_send(Event::Synced { number, result })
                    .is_err()
                    || failed
                {
                    break;
                }
            }
        })?;
    let sink: shardkv_raft::SyncSink = Box::new(move |number, job| {
        // The thread only ends once the driver has stopped listening, or after
        // reporting a failure that stops the node.
        tracer.mark(Waypoint::SyncAsked);
        let _ = asks.send((number, job));
    });
    Ok((sink, thread))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Out of space below the reserve, and in again only at twice it (so a node near the
    /// line does not flap); a reserve of 0 never trips.
    #[test]
    fn out_of_space_has_hysteresis() {
        let out = Space::out_of_space;
        assert!(!out(false, 300, 256));
        assert!(out(false, 255, 256));
        assert!(out(true, 300, 256), "back in only at twice the reserve");
        assert!(!out(true, 512, 256));
        assert!(!out(false, 0, 0));
    }
}
