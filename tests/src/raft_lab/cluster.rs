//! The lab cluster: `n` lab peers in one simulator, and the controls a scenario uses to
//! reshape their world (6.824's `config.go`: `connect`, `disconnect`, `crash1`, `start1`,
//! `setunreliable`, RPC counters). The checks (`check_one_leader`, `one`, ...) live in
//! `checks.rs`.
//!
//! As in 6.824, `crash1` also disconnects a peer and `start1` leaves it disconnected: the
//! scenario reconnects it when it wants to. A cluster is a bundle of shared handles, so
//! clones are cheap and can move into spawned client tasks.

use std::cell::RefCell;
use std::future::Future;
use std::marker::PhantomData;
use std::rc::Rc;
use std::time::Duration;

use labrpc_sim::{Persister, Sim, SimNode};

use super::checker::Checker;
use super::host::{LabHost, PeerIds};
use super::lab::{Index, Peer, RaftLab, Term};
use crate::scenario::Outcome;
use crate::sim_run::{finish, new_sim};

/// Builds a peer from its index and persister (on start and on every restart).
pub type Maker<L> = Rc<dyn Fn(Peer, Persister) -> L>;

/// How a lab cluster starts.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClusterOptions {
    /// Start with an unreliable network (6.824 `make_config(.., unreliable, ..)`).
    pub unreliable: bool,
    /// Snapshot the test state machine every `SNAPSHOT_INTERVAL` applied indices.
    pub snapshots: bool,
}

/// `n` lab peers in a simulator, plus the checker of what they apply.
pub struct Cluster<L: RaftLab> {
    /// The simulator (for sleeping, spawning and randomness).
    pub sim: Sim,
    n: usize,
    ids: PeerIds,
    connected: Rc<RefCell<Vec<bool>>>,
    checker: Rc<RefCell<Checker>>,
    _lab: PhantomData<fn() -> L>,
}

impl<L: RaftLab> Clone for Cluster<L> {
    fn clone(&self) -> Self {
        Cluster {
            sim: self.sim.clone(),
            n: self.n,
            ids: self.ids.clone(),
            connected: self.connected.clone(),
            checker: self.checker.clone(),
            _lab: PhantomData,
        }
    }
}

impl<L: RaftLab> Cluster<L> {
    /// `n` peers made with [`RaftLab::make`], all connected.
    pub fn new(seed: u64, n: usize, options: ClusterOptions) -> Self {
        Self::with_maker(
            seed,
            n,
            options,
            Rc::new(move |me, persister| L::make(me, n, persister)),
        )
    }

    /// `n` peers made by `maker`, all connected.
    pub fn with_maker(seed: u64, n: usize, options: ClusterOptions, maker: Maker<L>) -> Self {
        let sim = new_sim(seed);
        sim.set_reliable(!options.unreliable);
        let ids: PeerIds = Rc::new(RefCell::new(Vec::with_capacity(n)));
        let checker = Rc::new(RefCell::new(Checker::new(n)));
        for me in 0..n {
            let (ids_for_host, checker, maker) = (ids.clone(), checker.clone(), maker.clone());
            let snapshots = options.snapshots;
            let id = sim.add_host(
                &format!("raft-{me}"),
                move |_id: SimNode, persister: Persister| {
                    // 6.824 `start1`: the state machine starts over (from the snapshot the peer
                    // delivers first).
                    checker.borrow_mut().restart(me);
                    let lab = maker(me, persister);
                    let host =
                        LabHost::new(me, lab, ids_for_host.clone(), checker.clone(), snapshots);
                    Box::new(host) as Box<dyn labrpc_sim::Host>
                },
            );
            ids.borrow_mut().push(id);
        }
        Cluster {
            sim,
            n,
            ids,
            connected: Rc::new(RefCell::new(vec![true; n])),
            checker,
            _lab: PhantomData,
        }
    }

    /// Number of peers.
    pub fn n(&self) -> usize {
        self.n
    }

    fn id(&self, peer: Peer) -> SimNode {
        self.ids.borrow()[peer]
    }

    /// The shared apply checker.
    pub fn checker(&self) -> std::cell::Ref<'_, Checker> {
        self.checker.borrow()
    }

    /// Attach `peer` to the network.
    pub fn connect(&self, peer: Peer) {
        self.sim.trace("harness", format_args!("connect {peer}"));
        self.connected.borrow_mut()[peer] = true;
        self.sim.connect(self.id(peer));
    }

    /// Detach `peer` from the network.
    pub fn disconnect(&self, peer: Peer) {
        self.sim.trace("harness", format_args!("disconnect {peer}"));
        self.connected.borrow_mut()[peer] = false;
        self.sim.disconnect(self.id(peer));
    }

    /// Whether `peer` is attached (crashed peers are detached).
    pub fn is_connected(&self, peer: Peer) -> bool {
        self.connected.borrow()[peer]
    }

    /// Whether `peer` runs (not crashed).
    pub fn is_up(&self, peer: Peer) -> bool {
        self.sim.is_up(self.id(peer))
    }

    /// Crash `peer`: detach it and drop its volatile state (6.824 `crash1`).
    pub fn crash1(&self, peer: Peer) {
        self.disconnect(peer);
        self.sim.crash(self.id(peer));
    }

    /// Cut `peer` off and cut its power: it keeps only what its syncs covered (and a
    /// seeded part of the rest); restart it with [`Cluster::start1`].
    pub fn power_fail1(&self, peer: Peer) {
        self.disconnect(peer);
        self.sim.power_fail(self.id(peer));
    }

    /// (Re)start `peer` from its persister, still detached (6.824 `start1`).
    pub fn start1(&self, peer: Peer) {
        self.disconnect(peer);
        self.sim.restart(self.id(peer));
    }

    /// Make the network drop, delay and reorder messages (or stop doing so).
    pub fn set_unreliable(&self, unreliable: bool) {
        self.sim.set_reliable(!unreliable);
    }

    /// Delay most messages by 200..2200 ms (6.824 `setlongreordering`).
    pub fn set_long_reordering(&self, on: bool) {
        self.sim.set_long_reordering(on);
    }

    /// Run `f` on `peer`'s implementation and carry out its effects; `None` when crashed.
    pub fn with_lab<R>(&self, peer: Peer, f: impl FnOnce(&mut L) -> R) -> Option<R> {
        self.sim
            .with_host::<LabHost<L>, R>(self.id(peer), |host, cx| {
                let result = f(&mut host.lab);
                host.drain(cx);
                result
            })
    }

    /// `peer`'s (term, is_leader); `None` when crashed.
    pub fn get_state(&self, peer: Peer) -> Option<(Term, bool)> {
        self.with_lab(peer, |lab| lab.get_state())
    }

    /// Propose `command` at `peer`; `None` when crashed or not leader.
    pub fn start(&self, peer: Peer, command: Vec<u8>) -> Option<(Index, Term)> {
        self.sim
            .with_host::<LabHost<L>, _>(self.id(peer), |host, cx| {
                let bytes = command.len();
                let started = host.lab.start(command);
                match started {
                    Some((index, term)) => cx.trace(
                        "start",
                        format_args!("{peer} start {bytes}B at index {index} term {term}"),
                    ),
                    None => cx.trace("start", format_args!("{peer} start refused")),
                }
                host.drain(cx);
                started
            })
            .flatten()
    }

    /// Messages delivered to `peer` so far (6.824 `rpcCount`).
    pub fn rpc_count(&self, peer: Peer) -> u64 {
        self.sim.rpc_count(self.id(peer))
    }

    /// Messages delivered to any peer so far (6.824 `rpcTotal`).
    pub fn rpc_total(&self) -> u64 {
        (0..self.n).map(|p| self.rpc_count(p)).sum()
    }

    /// Bytes of every message sent so far (6.824 `bytesTotal`).
    pub fn bytes_total(&self) -> u64 {
        self.sim.total_bytes()
    }

    /// Largest persisted raft state of any running peer, snapshots excluded (6.824
    /// `LogSize`), as each peer counts it ([`RaftLab::raft_state_size`]; a crashed peer's
    /// state does not change until it runs again).
    pub fn log_size(&self) -> usize {
        (0..self.n)
            .filter_map(|p| {
                let persister = self.sim.persister(self.id(p));
                self.sim.with_host::<LabHost<L>, _>(self.id(p), |host, _| {
                    host.lab.raft_state_size(&persister)
                })
            })
            .max()
            .unwrap_or(0)
    }

    /// Sleep `duration` of virtual time.
    pub async fn sleep(&self, duration: Duration) {
        self.sim.sleep(duration).await
    }

    /// Sleep a whole number of milliseconds of virtual time.
    pub async fn sleep_ms(&self, ms: u64) {
        self.sim.sleep(Duration::from_millis(ms)).await
    }

    /// A random number in `0..bound` from the simulator's RNG.
    pub fn random(&self, bound: u64) -> u64 {
        self.sim.random_range(0..bound.max(1))
    }

    /// A fresh random command (6.824 `rand.Int()`), as decimal text.
    pub fn random_command(&self) -> Vec<u8> {
        command(self.sim.random_u64() >> 1)
    }

    /// Drive `body` to completion and summarise the run; frees the simulation after.
    pub fn run(&self, body: impl Future<Output = Result<(), String>>) -> Outcome {
        let result = self
            .sim
            .block_on(body)
            .and_then(|()| self.check_apply_error());
        finish(&self.sim, result, || self.describe())
    }

    /// One line on every peer: up or down, connected, term and role, last applied index.
    pub fn describe(&self) -> String {
        let peers: Vec<String> = (0..self.n)
            .map(|p| {
                let state = match self.get_state(p) {
                    Some((term, true)) => format!("term {term} leader"),
                    Some((term, false)) => format!("term {term}"),
                    None => "down".to_string(),
                };
                let net = if self.is_connected(p) {
                    ""
                } else {
                    " disconnected"
                };
                format!(
                    "{p}: {state}{net} applied {}",
                    self.checker().last_applied(p)
                )
            })
            .collect();
        format!("peers [{}]", peers.join("; "))
    }
}

/// The command bytes for number `x` (decimal text, so failures read well).
pub fn command(x: u64) -> Vec<u8> {
    x.to_string().into_bytes()
}
