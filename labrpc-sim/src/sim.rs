//! [`Sim`], the handle tests and client libraries hold: hosts, faults, counters, tracing.
//!
//! `Sim` is a cheap `Rc` handle; clones share one simulation. Every method borrows the
//! world only for its own duration and never while a host callback or a task runs, so any
//! clone may be used from anywhere on the simulation's thread. The executor half of the
//! API (`spawn`, `sleep`, `block_on`) lives in `executor.rs` and `time.rs`, and the plumbing
//! that runs host callbacks in `driver.rs`.

use std::cell::{Cell, RefCell};
use std::fmt::{self, Display};
use std::ops::Range;
use std::rc::Rc;
use std::time::Duration;

use rand::{Rng, RngExt};

use crate::executor::Executor;
use crate::world::{HostSlot, World};
use crate::{CallId, ClientEnd, Context, Host, Persister, SimConfig, SimDisk, SimNode, TraceLine};

/// A deterministic simulation: virtual clock, one seeded RNG, hosts, network and executor.
#[derive(Clone)]
pub struct Sim {
    pub(crate) inner: Rc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) world: RefCell<World>,
    /// Outside the world so a host's `Context::call` can number calls without borrowing it.
    pub(crate) call_ids: Cell<CallId>,
    pub(crate) exec: Executor,
}

impl fmt::Debug for Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let world = self.inner.world.borrow();
        f.debug_struct("Sim")
            .field("seed", &world.seed)
            .field("now", &world.now)
            .finish()
    }
}

impl Sim {
    /// A simulation with `SimConfig::default()`.
    pub fn new(seed: u64) -> Sim {
        Sim::with_config(seed, SimConfig::default())
    }

    /// A simulation with explicit knobs. Panics if `config` is unusable (zero tick).
    pub fn with_config(seed: u64, config: SimConfig) -> Sim {
        let inner = Inner {
            world: RefCell::new(World::new(seed, config)),
            call_ids: Cell::new(0),
            exec: Executor::new(),
        };
        Sim {
            inner: Rc::new(inner),
        }
    }

    pub(crate) fn world(&self) -> std::cell::RefMut<'_, World> {
        self.inner.world.borrow_mut()
    }

    /// The seed this run was created with.
    pub fn seed(&self) -> u64 {
        self.world().seed
    }

    /// Virtual time since the start.
    pub fn now(&self) -> Duration {
        self.world().now
    }

    /// Adds a host built by `factory`, which is called now and again on every restart with
    /// the host's id and its (surviving) persister. Returns the host's id.
    pub fn add_host<F>(&self, name: &str, factory: F) -> SimNode
    where
        F: FnMut(SimNode, Persister) -> Box<dyn Host> + 'static,
    {
        let slot = HostSlot {
            factory: Some(Box::new(factory)),
            object: None,
            up: false,
            incarnation: 0,
            persister: Persister::new(),
        };
        let id = self.world().add_node(name, Some(slot));
        self.restart(id);
        id
    }

    /// Crashes host `id` (`kill -9`): drops the host object (volatile state lost); requests
    /// it has not answered are never answered, calls it made are forgotten, pending ticks
    /// and wakes are cancelled, and its disk's open file handles die (every byte written
    /// stays, synced or not). No-op if already down. Panics if `id` is not a host.
    pub fn crash(&self, id: SimNode) {
        let object = self.world().crash(id);
        drop(object);
    }

    /// Cuts the power of host `id`: crashes it like [`Sim::crash`] if it is up, then lets
    /// its disk lose, keep or tear, at random from the simulation's RNG, everything not
    /// synced (see [`SimDisk::power_fail`]), even if the host was already down. The
    /// persister's key/value area and snapshot blob are untouched. The outcome is written
    /// to the trace, and so to the digest. Panics if `id` is not a host.
    pub fn power_fail(&self, id: SimNode) {
        let object = {
            let mut world = self.world();
            let object = world.crash(id);
            let disk = world.host_slot(id).persister.disk();
            let report = disk.power_fail_report(&mut world.rng);
            world.sim_line(format!("power_fail {id}: {report}"));
            object
        };
        drop(object);
    }

    /// Crashes host `id` if it is up, then builds a new incarnation with its factory and
    /// the same persister, and starts ticking it. Panics if `id` is not a host.
    pub fn restart(&self, id: SimNode) {
        self.crash(id);
        let (mut factory, persister) = {
            let mut world = self.world();
            let seed = world.seed;
            let slot = world.host_slot(id);
            let factory = slot.factory.take();
            let factory = factory.unwrap_or_else(|| {
                panic!("labrpc-sim: restart of host {id} from its own factory (seed {seed})")
            });
            let persister = slot.persister.clone();
            persister.set_entropy(world.rng.next_u64());
            (factory, persister)
        };
        let object = factory(id, persister);
        let mut world = self.world();
        world.host_slot(id).factory = Some(factory);
        world.boot(id, object);
    }

    /// The disk of host `id` (a shared handle, the same as its persister's). Panics if
    /// `id` is not a host.
    pub fn disk(&self, id: SimNode) -> SimDisk {
        self.world().host_slot(id).persister.disk()
    }

    /// Whether `id` is up: hosts between restart and crash; client endpoints always.
    pub fn is_up(&self, id: SimNode) -> bool {
        self.world().node_up(id)
    }

    /// The persister of host `id` (a shared handle, not a copy). Panics if `id` is not a host.
    pub fn persister(&self, id: SimNode) -> Persister {
        self.world().host_slot(id).persister.clone()
    }

    /// Runs `f` on host `id` downcast to `H`, with a `Context` whose effects are applied
    /// afterwards. `None` if the host is down, is not an `H`, or is already running.
    pub fn with_host<H: Host, R>(
        &self,
        id: SimNode,
        f: impl FnOnce(&mut H, &mut Context<'_>) -> R,
    ) -> Option<R> {
        {
            let mut world = self.world();
            let now = world.now;
            world.trace.event(now, b'w', id as u64, 0, &[]);
        }
        self.run_host(id, None, |host, cx| {
            crate::host::downcast_mut::<H>(host).map(|h| f(h, cx))
        })
        .flatten()
    }

    /// Adds a client endpoint (a node that can call hosts and be cut off like one).
    pub fn add_client(&self, name: &str) -> ClientEnd {
        let id = self.world().add_node(name, None);
        ClientEnd::new(self.clone(), id)
    }

    /// Reliable (default) or unreliable network: +0..27 ms on requests and messages, 10% of
    /// requests/messages and 10% of replies dropped.
    pub fn set_reliable(&self, reliable: bool) {
        self.fault(format!("reliable {reliable}"), |w| {
            w.net.set_reliable(reliable)
        });
    }

    /// Unreachable calls fail after 0..7000 ms instead of 0..100 ms.
    pub fn set_long_delays(&self, on: bool) {
        self.fault(format!("long_delays {on}"), |w| w.net.set_long_delays(on));
    }

    /// 2/3 of replies and messages are delayed by `200 + rand(1 + rand(2000))` ms.
    pub fn set_long_reordering(&self, on: bool) {
        self.fault(format!("long_reordering {on}"), |w| {
            w.net.set_long_reordering(on)
        });
    }

    /// Reconnects node `id` to the network.
    pub fn connect(&self, id: SimNode) {
        self.fault(format!("connect {id}"), |w| w.net.set_connected(id, true));
    }

    /// Disconnects node `id`: nothing reaches it or leaves it, including packets in flight.
    /// Unknown ids are ignored (they are unreachable anyway).
    pub fn disconnect(&self, id: SimNode) {
        self.fault(format!("disconnect {id}"), |w| {
            w.net.set_connected(id, false)
        });
    }

    /// Nodes in different sets cannot talk; nodes in no set reach everyone.
    pub fn partition(&self, sets: &[&[SimNode]]) {
        self.fault(format!("partition {sets:?}"), |w| w.net.partition(sets));
    }

    /// Clears the partition (connect/disconnect state is unchanged).
    pub fn heal(&self) {
        self.fault("heal".to_string(), |w| w.net.heal());
    }

    fn fault(&self, line: String, f: impl FnOnce(&mut World)) {
        let mut world = self.world();
        f(&mut world);
        world.sim_line(line);
    }

    /// Messages and requests delivered to node `id` (0 for unknown ids).
    pub fn rpc_count(&self, id: SimNode) -> u64 {
        self.world().nodes.get(id).map_or(0, |n| n.rpc_count)
    }

    /// Messages and requests delivered to all nodes.
    pub fn total_rpcs(&self) -> u64 {
        self.world().nodes.iter().map(|n| n.rpc_count).sum()
    }

    /// Bytes of every payload sent: messages, requests and replies, dropped or not.
    pub fn total_bytes(&self) -> u64 {
        self.world().total_bytes
    }

    /// A number from the simulation's one RNG.
    pub fn random_u64(&self) -> u64 {
        self.world().rng.next_u64()
    }

    /// A number uniformly drawn from `range` with the simulation's one RNG. Panics on an
    /// empty range.
    pub fn random_range(&self, range: Range<u64>) -> u64 {
        let mut world = self.world();
        assert!(
            range.start < range.end,
            "random_range: empty range {range:?} ({})",
            world.replay_hint()
        );
        world.rng.random_range(range)
    }

    /// The digest of everything processed so far (FNV-1a 64): same seed, same digest.
    pub fn digest(&self) -> u64 {
        self.world().trace.digest()
    }

    /// Keeps (or stops keeping) readable trace lines for [`Sim::trace_log`].
    pub fn set_trace_log(&self, on: bool) {
        self.world().trace.set_keep_lines(on);
    }

    /// The readable lines kept while the trace log was on.
    pub fn trace_log(&self) -> Vec<TraceLine> {
        self.world().trace.lines()
    }

    /// Writes a test-level trace line, hashed into the digest.
    pub fn trace(&self, topic: &str, line: impl Display) {
        let mut world = self.world();
        let now = world.now;
        world.trace.line(now, None, topic, line.to_string());
    }

    /// How to replay this run, for failure messages: `"seed N"`.
    pub fn replay_hint(&self) -> String {
        self.world().replay_hint()
    }

    /// Name given to node `id` when it was added.
    pub fn name(&self, id: SimNode) -> Option<String> {
        self.world().nodes.get(id).map(|n| n.name.clone())
    }
}
