//! The simulator's state: the clock, the one RNG, the event queue, the node table, the
//! network and the book of calls and requests in flight.
//!
//! `World` is plain data behind one `RefCell`. It never calls into a host or a task: the
//! methods that would (delivering a message, resolving a host's call) return an [`Invoke`]
//! for the driver to run once the borrow is released, and waking a task only pushes its id
//! onto the executor's ready queue. That split is what lets a host callback or a task use
//! the `Sim` handle freely without ever hitting a double borrow.
//!
//! Node ids are dense and shared by hosts and client endpoints, in creation order. A host
//! has an *incarnation* number that grows on every crash and restart; ticks, wakes,
//! requests and calls remember the incarnation they belong to, so nothing from a previous
//! life reaches the new host object.
//!
//! A crash also crashes the host's disk (its open file handles die, its bytes stay); a
//! power failure (`Sim::power_fail`) does that and then lets the disk lose what was not
//! synced.

use std::collections::BTreeMap;
use std::ops::Range;
use std::rc::Rc;
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::client::CallSlot;
use crate::config::duration_nanos;
use crate::event::{Event, EventQueue};
use crate::network::Network;
use crate::trace::Trace;
use crate::{CallId, Host, Persister, RequestId, SimConfig, SimNode};

/// Builds a host object for node `id` from its persister; called at start and on restart.
pub(crate) type Factory = Box<dyn FnMut(SimNode, Persister) -> Box<dyn Host>>;

/// The default virtual time after which `block_on` gives up.
const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(600);

/// A node: a host (server) or a client endpoint.
pub(crate) struct Node {
    pub(crate) name: String,
    /// Messages and requests delivered to this node.
    pub(crate) rpc_count: u64,
    /// `None` for client endpoints.
    pub(crate) host: Option<HostSlot>,
}

/// The simulator's side of one host.
pub(crate) struct HostSlot {
    /// Taken out while it runs, so the factory may use the `Sim` handle.
    pub(crate) factory: Option<Factory>,
    /// Taken out while a callback runs; `None` when down.
    pub(crate) object: Option<Box<dyn Host>>,
    pub(crate) up: bool,
    pub(crate) incarnation: u64,
    pub(crate) persister: Persister,
}

/// Who is waiting for a call's outcome.
pub(crate) enum Waiter {
    /// A task awaiting `ClientEnd::call`.
    Task(Rc<CallSlot>),
    /// The calling host, through `Host::on_response`.
    Host,
}

/// A call whose outcome has not been decided yet.
pub(crate) struct PendingCall {
    pub(crate) caller: SimNode,
    pub(crate) incarnation: u64,
    pub(crate) waiter: Waiter,
}

/// A request delivered to a host and not answered yet.
pub(crate) struct PendingRequest {
    pub(crate) host: SimNode,
    pub(crate) incarnation: u64,
    pub(crate) call: CallId,
    pub(crate) caller: SimNode,
}

/// A host callback the driver must run once the world is no longer borrowed.
pub(crate) struct Invoke {
    pub(crate) host: SimNode,
    pub(crate) incarnation: u64,
    pub(crate) kind: InvokeKind,
}

/// Which callback of [`Invoke`].
pub(crate) enum InvokeKind {
    Tick,
    Wake {
        token: u64,
    },
    Message {
        from: SimNode,
        payload: Vec<u8>,
    },
    Request {
        id: RequestId,
        payload: Vec<u8>,
    },
    Response {
        call: CallId,
        response: Option<Vec<u8>>,
    },
}

/// All simulator state except the executor's tasks.
pub(crate) struct World {
    pub(crate) seed: u64,
    pub(crate) config: SimConfig,
    pub(crate) rng: Xoshiro256PlusPlus,
    pub(crate) now: Duration,
    pub(crate) time_limit: Duration,
    pub(crate) queue: EventQueue,
    pub(crate) nodes: Vec<Node>,
    pub(crate) net: Network,
    pub(crate) calls: BTreeMap<CallId, PendingCall>,
    pub(crate) requests: BTreeMap<RequestId, PendingRequest>,
    pub(crate) next_request_id: RequestId,
    pub(crate) total_bytes: u64,
    pub(crate) trace: Trace,
}

impl World {
    pub(crate) fn new(seed: u64, config: SimConfig) -> Self {
        config.validate();
        World {
            seed,
            config,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            now: Duration::ZERO,
            time_limit: DEFAULT_TIME_LIMIT,
            queue: EventQueue::new(),
            nodes: Vec::new(),
            net: Network::new(),
            calls: BTreeMap::new(),
            requests: BTreeMap::new(),
            next_request_id: 0,
            total_bytes: 0,
            trace: Trace::new(),
        }
    }

    /// "seed N", for failure messages.
    pub(crate) fn replay_hint(&self) -> String {
        format!("seed {}", self.seed)
    }

    /// Adds a node and returns its id.
    pub(crate) fn add_node(&mut self, name: &str, host: Option<HostSlot>) -> SimNode {
        let id = self.nodes.len();
        self.nodes.push(Node {
            name: name.to_string(),
            rpc_count: 0,
            host,
        });
        self.net.add_node(id);
        let kind = if self.nodes[id].host.is_some() {
            "host"
        } else {
            "client"
        };
        self.sim_line(format!("add {kind} {id} {name:?}"));
        id
    }

    /// The host slot of `id`; panics with a clear message if `id` is not a host.
    pub(crate) fn host_slot(&mut self, id: SimNode) -> &mut HostSlot {
        let seed = self.seed;
        match self.nodes.get_mut(id).and_then(|n| n.host.as_mut()) {
            Some(slot) => slot,
            None => panic!("labrpc-sim: node {id} is not a host (seed {seed})"),
        }
    }

    /// Whether `id` can send and receive: client endpoints always, hosts while up.
    pub(crate) fn node_up(&self, id: SimNode) -> bool {
        match self.nodes.get(id) {
            Some(Node {
                host: Some(slot), ..
            }) => slot.up,
            Some(Node { host: None, .. }) => true,
            None => false,
        }
    }

    /// Whether `id` is a host that is up.
    pub(crate) fn host_up(&self, id: SimNode) -> bool {
        matches!(self.nodes.get(id), Some(Node { host: Some(slot), .. }) if slot.up)
    }

    /// labrpc reachability: the link works and both ends are up.
    pub(crate) fn reachable(&self, a: SimNode, b: SimNode) -> bool {
        self.net.link_ok(a, b) && self.node_up(a) && self.node_up(b)
    }

    /// The current incarnation of host `id` if it is up.
    pub(crate) fn live_incarnation(&self, id: SimNode) -> Option<u64> {
        match self.nodes.get(id) {
            Some(Node {
                host: Some(slot), ..
            }) if slot.up => Some(slot.incarnation),
            _ => None,
        }
    }

    /// Schedules `event` `delay` from now.
    pub(crate) fn schedule(&mut self, delay: Duration, event: Event) {
        let at = self.now.saturating_add(delay);
        self.queue.push(at, event);
    }

    /// Schedules the next tick of host `id` in incarnation `incarnation`.
    pub(crate) fn schedule_tick(&mut self, host: SimNode, incarnation: u64) {
        let (lo, hi) = self.config.tick_range_nanos();
        let interval = Duration::from_nanos(self.rng.random_range(lo..=hi));
        self.schedule(interval, Event::Tick { host, incarnation });
    }

    /// Schedules wake `token` of host `host` in incarnation `incarnation`, after a delay
    /// drawn uniformly in nanoseconds from `delay` (exactly `delay.start` if it is empty).
    pub(crate) fn schedule_wake(
        &mut self,
        host: SimNode,
        incarnation: u64,
        delay: Range<Duration>,
        token: u64,
    ) {
        let (lo, hi) = (duration_nanos(delay.start), duration_nanos(delay.end));
        let nanos = if lo < hi {
            self.rng.random_range(lo..hi)
        } else {
            lo
        };
        let event = Event::Wake {
            host,
            incarnation,
            token,
        };
        self.schedule(Duration::from_nanos(nanos), event);
    }

    /// Marks host `id` down and forgets everything tied to its current life: requests it
    /// has not answered (never answered now), calls it made (never reported now), ticks
    /// and wakes (their incarnation is gone) and its disk's open file handles (the bytes
    /// stay, synced or not). Returns the host object so the caller can drop it outside the
    /// borrow.
    pub(crate) fn crash(&mut self, id: SimNode) -> Option<Box<dyn Host>> {
        let slot = self.host_slot(id);
        if !slot.up {
            return None;
        }
        slot.up = false;
        slot.incarnation += 1;
        let object = slot.object.take();
        slot.persister.disk().crash();
        self.requests.retain(|_, r| r.host != id);
        self.calls.retain(|_, c| c.caller != id);
        self.sim_line(format!("crash {id}"));
        object
    }

    /// Installs a freshly built host object as a new incarnation and starts its ticks.
    pub(crate) fn boot(&mut self, id: SimNode, object: Box<dyn Host>) {
        let slot = self.host_slot(id);
        assert!(!slot.up, "labrpc-sim: boot of host {id} while it is up");
        slot.up = true;
        slot.incarnation += 1;
        slot.object = Some(object);
        let incarnation = slot.incarnation;
        self.schedule_tick(id, incarnation);
        self.sim_line(format!("boot {id} incarnation {incarnation}"));
    }

    /// A simulator-written trace line (topic "sim"), hashed like any other.
    pub(crate) fn sim_line(&mut self, line: String) {
        self.trace.line(self.now, None, "sim", line);
    }

    /// Folds a dropped packet into the digest, so drops are part of the fingerprint.
    pub(crate) fn note_drop(&mut self, what: u8, a: u64, b: u64) {
        self.trace
            .event(self.now, b'x', u64::from(what), a, &b.to_le_bytes());
    }
}
