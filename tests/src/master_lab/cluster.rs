//! The master lab cluster: [`REPLICAS`] master replicas in one simulator, the clerks that
//! talk to them (the real `Admin` over [`SimTransport`]), and the controls a scenario uses
//! to reshape their world (6.824 shardctrler `config.go`: `ShutdownServer`, `StartServer`,
//! `ConnectAll`, `Leader`, plus partitions and an unreliable network).
//!
//! ```text
//!   scenario --clerk.join/leave/move_shard/query--> Admin<SimTransport> --+
//!      |                                                                  v
//!      +--shutdown/start/partition--> Sim --events--> MasterHost<L> --> L: MasterLab
//! ```
//!
//! Replica `i` is simulator host `master-i`, registered in the [`AddressBook`] under the
//! same name; clerks list the masters in replica order, so the client's hint convention
//! (node id `i + 1` is `masters[i]`) matches the lab's. A cluster is a bundle of shared
//! handles: clones are cheap and move into spawned clerk tasks.

use std::cell::Cell;
use std::future::Future;
use std::marker::PhantomData;
use std::rc::Rc;
use std::time::Duration;

use labrpc_sim::{Persister, Sim, SimNode};
use shardkv_client::{Admin, RetryPolicy};
use shardkv_proto::{Config, ConfigNum};

use super::clerk::Clerk;
use super::host::{MasterHost, ReplicaIds};
use super::lab::{MasterLab, Peer};
use crate::scenario::Outcome;
use crate::sim_run::{finish, new_sim};
use crate::sim_transport::{AddressBook, SimTransport};

/// Master replicas per cluster, as in 6.824.
pub const REPLICAS: usize = 3;

/// How long replicas may take to agree after the network heals (virtual time).
pub const AGREE_TIMEOUT: Duration = Duration::from_secs(10);

/// `REPLICAS` master replicas in a simulator.
pub struct Cluster<L: MasterLab> {
    /// The simulator (sleeping, spawning, randomness, faults).
    pub sim: Sim,
    ids: ReplicaIds,
    book: AddressBook,
    clerks: Rc<Cell<usize>>,
    _lab: PhantomData<fn() -> L>,
}

impl<L: MasterLab> Clone for Cluster<L> {
    fn clone(&self) -> Self {
        Cluster {
            sim: self.sim.clone(),
            ids: self.ids.clone(),
            book: self.book.clone(),
            clerks: self.clerks.clone(),
            _lab: PhantomData,
        }
    }
}

impl<L: MasterLab> Cluster<L> {
    /// A cluster of [`REPLICAS`] replicas made with [`MasterLab::make`], all connected;
    /// the network drops and delays messages when `unreliable`.
    pub fn new(seed: u64, unreliable: bool) -> Self {
        let sim = new_sim(seed);
        sim.set_reliable(!unreliable);
        let ids: ReplicaIds = Default::default();
        let book = AddressBook::new();
        let peers: Vec<Peer> = (0..REPLICAS).collect();
        for me in 0..REPLICAS {
            let (ids_for_host, peers) = (ids.clone(), peers.clone());
            let name = address(me);
            let id = sim.add_host(&name, move |_id: SimNode, persister: Persister| {
                let lab = L::make(me, &peers, persister);
                Box::new(MasterHost::new(me, lab, ids_for_host.clone()))
                    as Box<dyn labrpc_sim::Host>
            });
            ids.borrow_mut().push(id);
            book.register(name, id);
        }
        Cluster {
            sim,
            ids,
            book,
            clerks: Rc::new(Cell::new(0)),
            _lab: PhantomData,
        }
    }

    /// The simulator node of replica `peer`.
    pub fn node(&self, peer: Peer) -> SimNode {
        self.ids.borrow()[peer]
    }

    /// Every replica's address, in replica order.
    pub fn masters(&self) -> Vec<String> {
        (0..REPLICAS).map(address).collect()
    }

    /// A new clerk (its own client endpoint and client id) without a deadline: it
    /// retries until answered, as 6.824's clerk does.
    pub fn clerk(&self) -> Clerk {
        self.clerk_with_policy(RetryPolicy {
            deadline: None,
            ..RetryPolicy::default()
        })
    }

    /// A new clerk that gives up on an operation after `deadline` of virtual time.
    pub fn clerk_with_deadline(&self, deadline: Duration) -> Clerk {
        self.clerk_with_policy(RetryPolicy {
            deadline: Some(deadline),
            ..RetryPolicy::default()
        })
    }

    fn clerk_with_policy(&self, policy: RetryPolicy) -> Clerk {
        let n = self.clerks.get();
        self.clerks.set(n + 1);
        let transport = self.transport(&format!("clerk-{n}"));
        Clerk::new(Admin::with_policy(transport, self.masters(), policy))
    }

    /// A transport over a new client endpoint `name`, resolving the replicas' addresses.
    pub fn transport(&self, name: &str) -> SimTransport {
        SimTransport::with_new_end(&self.sim, name, self.book.clone())
    }

    /// Crash replica `peer` and cut it off (6.824 `ShutdownServer`); its persister survives.
    pub fn shutdown_server(&self, peer: Peer) {
        self.sim.trace("harness", format_args!("shutdown {peer}"));
        self.sim.disconnect(self.node(peer));
        self.sim.crash(self.node(peer));
    }

    /// Restart replica `peer` from its persister, still cut off (6.824 `StartServer`).
    pub fn start_server(&self, peer: Peer) {
        self.sim.trace("harness", format_args!("start {peer}"));
        self.sim.restart(self.node(peer));
    }

    /// Connect every replica (6.824 `ConnectAll`).
    pub fn connect_all(&self) {
        for peer in 0..REPLICAS {
            self.sim.connect(self.node(peer));
        }
    }

    /// Whether replica `peer` runs.
    pub fn is_up(&self, peer: Peer) -> bool {
        self.sim.is_up(self.node(peer))
    }

    /// The first replica that believes it leads (6.824 `Leader`).
    pub fn leader(&self) -> Option<Peer> {
        (0..REPLICAS).find(|&p| self.with_lab(p, |lab| lab.is_leader()) == Some(true))
    }

    /// Configuration `num` as replica `peer` has applied it; `None` when it is down.
    pub fn applied_config(&self, peer: Peer, num: Option<ConfigNum>) -> Option<Config> {
        self.with_lab(peer, |lab| lab.applied_config(num))
    }

    /// Run `f` on `peer`'s implementation and carry out its effects; `None` when down.
    pub fn with_lab<R>(&self, peer: Peer, f: impl FnOnce(&mut L) -> R) -> Option<R> {
        self.sim
            .with_host::<MasterHost<L>, R>(self.node(peer), |host, cx| {
                let result = f(&mut host.lab);
                host.drain(cx);
                result
            })
    }

    /// Sleep `ms` milliseconds of virtual time.
    pub async fn sleep_ms(&self, ms: u64) {
        self.sim.sleep(Duration::from_millis(ms)).await
    }

    /// Drive `body` to completion and summarise the run; frees the simulation after.
    pub fn run(&self, body: impl Future<Output = Result<(), String>>) -> Outcome {
        let result = self.sim.block_on(body);
        finish(&self.sim, result, || self.describe())
    }

    /// One line on every replica: down, leader, latest applied configuration.
    pub fn describe(&self) -> String {
        let replicas: Vec<String> = (0..REPLICAS)
            .map(|p| {
                match self.with_lab(p, |lab| (lab.is_leader(), lab.applied_config(None).num)) {
                    Some((leads, num)) => {
                        format!("{p}: {}config {num}", if leads { "leader " } else { "" })
                    }
                    None => format!("{p}: down"),
                }
            })
            .collect();
        format!("replicas [{}]", replicas.join("; "))
    }
}

/// The address of replica `peer`.
pub fn address(peer: Peer) -> String {
    format!("master-{peer}")
}
