//! The kv lab cluster (6.824 shardkv `config.go`): [`MASTERS`] shard-master replicas (the
//! master lab's reference, hosted by its own harness), [`GIDS`] replica groups of
//! [`GROUP_SIZE`] replicas each, the clerks that talk to them, and the controls a
//! scenario uses to reshape their world: join and leave groups, shut down and start
//! groups or single servers, partitions.
//!
//! ```text
//!   scenario --join/leave--> master_lab::Cluster (Admin clerk, MasterHost<ServerLab> x3)
//!      |                                ^ Query
//!      | KvClerk = real Client          |
//!      +--> SimTransport --> Sim --events--> KvHost<L> --> L: KvLab   (groups 100, 101, 102)
//!                                              |  ^ PullShard / DeleteShard
//!                                              v  |
//!                                            KvHost<L> (another group)
//! ```
//!
//! Replica `i` of group `gid` is simulator host `g{gid}-{i}`, registered in the shared
//! [`AddressBook`] under that name, which is also its address in the configurations the
//! cluster joins; masters keep their master-lab names. A cluster is a bundle of shared
//! handles: clones are cheap and move into spawned clerk tasks.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use labrpc_sim::{Persister, Sim, SimNode};
use shardkv_proto::{GroupId, ShardId};

use super::agreement::Agreement;
use super::clerk::KvClerk;
use super::host::KvHost;
use super::lab::{KvLab, KvStart, Peer};
use super::ownership::Ownership;
use crate::linearizability::History;
use crate::master_lab::clerk::{Clerk, Groups};
use crate::master_lab::host::ReplicaIds;
use crate::master_lab::{Cluster as Masters, ServerLab};
use crate::sim_transport::{AddressBook, SimTransport};

/// Shard-master replicas, as in 6.824.
pub const MASTERS: usize = crate::master_lab::cluster::REPLICAS;
/// Replicas per group, as in 6.824.
pub const GROUP_SIZE: usize = 3;
/// The groups' ids.
pub const GIDS: [GroupId; 3] = [100, 101, 102];

/// The whole simulated deployment; see the module docs.
pub struct KvCluster<L: KvLab> {
    /// The simulator (sleeping, spawning, randomness, faults).
    pub sim: Sim,
    /// The shard masters and their harness.
    pub masters: Masters<ServerLab>,
    book: AddressBook,
    groups: Rc<BTreeMap<GroupId, ReplicaIds>>,
    /// Every client operation of the run.
    pub history: History,
    /// What the replicas said they serve, checked as it is recorded.
    pub ownership: Ownership,
    /// Whether replicas at one log index hold one state.
    pub agreement: Agreement,
    admin: Rc<RefCell<Option<Clerk>>>,
    clerks: Rc<RefCell<usize>>,
    _lab: std::marker::PhantomData<fn() -> L>,
}

impl<L: KvLab> Clone for KvCluster<L> {
    fn clone(&self) -> Self {
        KvCluster {
            sim: self.sim.clone(),
            masters: self.masters.clone(),
            book: self.book.clone(),
            groups: self.groups.clone(),
            history: self.history.clone(),
            ownership: self.ownership.clone(),
            agreement: self.agreement.clone(),
            admin: self.admin.clone(),
            clerks: self.clerks.clone(),
            _lab: std::marker::PhantomData,
        }
    }
}

/// The address (and simulator name) of replica `me` of group `gid`.
pub fn server_address(gid: GroupId, me: Peer) -> String {
    format!("g{gid}-{me}")
}

impl<L: KvLab> KvCluster<L> {
    /// Masters and every group of [`GIDS`] up, none joined; the network drops and delays
    /// messages when `unreliable`; replicas snapshot past `maxraftstate` bytes.
    pub fn new(seed: u64, unreliable: bool, maxraftstate: Option<u64>) -> Self {
        Self::with_session_timeout(seed, unreliable, maxraftstate, None)
    }

    /// Like [`KvCluster::new`], the groups' sessions lasting `session_timeout_ms` of
    /// quiet (`None`: the implementation's default).
    pub fn with_session_timeout(
        seed: u64,
        unreliable: bool,
        maxraftstate: Option<u64>,
        session_timeout_ms: Option<shardkv_proto::Millis>,
    ) -> Self {
        let masters = Masters::<ServerLab>::new(seed, unreliable);
        let mut admin = masters.clerk();
        let book = admin.admin().transport().book().clone();
        let sim = masters.sim.clone();
        let groups = GIDS
            .iter()
            .map(|&gid| {
                (
                    gid,
                    add_group::<L>(
                        &sim,
                        &book,
                        &masters,
                        gid,
                        (maxraftstate, session_timeout_ms),
                    ),
                )
            })
            .collect();
        KvCluster {
            sim,
            masters,
            book,
            groups: Rc::new(groups),
            history: History::new(),
            ownership: Ownership::default(),
            agreement: Agreement::default(),
            admin: Rc::new(RefCell::new(Some(admin))),
            clerks: Rc::new(RefCell::new(0)),
            _lab: std::marker::PhantomData,
        }
    }

    /// The simulator node of replica `me` of group `gid`.
    pub fn node(&self, gid: GroupId, me: Peer) -> SimNode {
        self.groups[&gid].borrow()[me]
    }

    /// Every replica's node of group `gid`, in replica order.
    pub fn nodes(&self, gid: GroupId) -> Vec<SimNode> {
        self.groups[&gid].borrow().clone()
    }

    /// The persister of replica `me` of group `gid`.
    pub fn persister(&self, gid: GroupId, me: Peer) -> Persister {
        self.sim.persister(self.node(gid, me))
    }

    /// The servers of groups `gids`, as a Join lists them.
    pub fn servers(&self, gids: &[GroupId]) -> Groups {
        let servers = |gid| (0..GROUP_SIZE).map(|i| server_address(gid, i)).collect();
        gids.iter().map(|&gid| (gid, servers(gid))).collect()
    }

    /// A transport over a new client endpoint `name`, resolving every address.
    pub fn transport(&self, name: &str) -> SimTransport {
        SimTransport::with_new_end(&self.sim, name, self.book.clone())
    }

    /// A new data clerk (its own endpoint and client id) that retries until answered.
    pub fn clerk(&self) -> KvClerk {
        self.clerk_with_deadline(None)
    }

    /// A new data clerk that gives up on an operation after `deadline`, when given.
    pub fn clerk_with_deadline(&self, deadline: Option<Duration>) -> KvClerk {
        let n = {
            let mut clerks = self.clerks.borrow_mut();
            *clerks += 1;
            *clerks
        };
        let transport = self.transport(&format!("kv-clerk-{n}"));
        let masters = self.masters.masters();
        KvClerk::new(
            self.sim.clone(),
            n as u64,
            transport,
            masters,
            deadline,
            self.history.clone(),
        )
    }

    /// The cluster's administrator clerk, borrowed for one operation (a fresh one when
    /// another task holds it); give it back with [`KvCluster::return_admin`].
    pub fn take_admin(&self) -> Clerk {
        let admin = self.admin.borrow_mut().take();
        admin.unwrap_or_else(|| self.masters.clerk())
    }

    /// Gives the administrator clerk back, with the leader it has found.
    pub fn return_admin(&self, admin: Clerk) {
        *self.admin.borrow_mut() = Some(admin);
    }

    /// Join groups `gids` (6.824 `cfg.join`/`joinm`).
    pub async fn join(&self, gids: &[GroupId]) -> Result<(), String> {
        self.sim.trace("harness", format_args!("join {gids:?}"));
        let mut admin = self.take_admin();
        let result = admin.join(self.servers(gids)).await.map(|_| ());
        self.return_admin(admin);
        result
    }

    /// Leave groups `gids` (6.824 `cfg.leave`/`leavem`).
    pub async fn leave(&self, gids: &[GroupId]) -> Result<(), String> {
        self.sim.trace("harness", format_args!("leave {gids:?}"));
        let mut admin = self.take_admin();
        let result = admin.leave(gids).await.map(|_| ());
        self.return_admin(admin);
        result
    }

    /// Abandon group `gid`, which has left (`shardkv abandon`).
    pub async fn abandon(&self, gid: GroupId) -> Result<(), String> {
        self.sim.trace("harness", format_args!("abandon {gid}"));
        let mut admin = self.take_admin();
        let result = admin.abandon(gid).await.map(|_| ());
        self.return_admin(admin);
        result
    }

    /// Move `shard` to group `gid`.
    pub async fn move_shard(&self, shard: ShardId, gid: GroupId) -> Result<(), String> {
        self.sim
            .trace("harness", format_args!("move {shard} to {gid}"));
        let mut admin = self.take_admin();
        let result = admin.move_shard(shard, gid).await.map(|_| ());
        self.return_admin(admin);
        result
    }

    /// Crash replica `me` of group `gid` and cut it off; its persister survives.
    pub fn shutdown_server(&self, gid: GroupId, me: Peer) {
        self.sim
            .trace("harness", format_args!("shutdown {gid}/{me}"));
        self.sim.disconnect(self.node(gid, me));
        self.sim.crash(self.node(gid, me));
    }

    /// Cut replica `me` of group `gid` off and cut its power: its disk keeps only what
    /// its syncs covered (and a seeded part of the rest); restart it with
    /// [`KvCluster::start_server`].
    pub fn power_fail_server(&self, gid: GroupId, me: Peer) {
        self.sim
            .trace("harness", format_args!("power failure {gid}/{me}"));
        self.sim.disconnect(self.node(gid, me));
        self.sim.power_fail(self.node(gid, me));
    }

    /// Restart replica `me` of group `gid` from its persister, connected.
    pub fn start_server(&self, gid: GroupId, me: Peer) {
        self.sim.trace("harness", format_args!("start {gid}/{me}"));
        self.sim.restart(self.node(gid, me));
        self.sim.connect(self.node(gid, me));
    }

    /// Crash every replica of group `gid` (6.824 `ShutdownGroup`).
    pub fn shutdown_group(&self, gid: GroupId) {
        (0..GROUP_SIZE).for_each(|me| self.shutdown_server(gid, me));
    }

    /// Restart every replica of group `gid` (6.824 `StartGroup`).
    pub fn start_group(&self, gid: GroupId) {
        (0..GROUP_SIZE).for_each(|me| self.start_server(gid, me));
    }

    /// Whether replica `me` of group `gid` runs.
    pub fn is_up(&self, gid: GroupId, me: Peer) -> bool {
        self.sim.is_up(self.node(gid, me))
    }

    /// Run `f` on a replica's implementation (no effects carried out); `None` when down.
    pub fn with_lab<R>(&self, gid: GroupId, me: Peer, f: impl FnOnce(&L) -> R) -> Option<R> {
        self.sim
            .with_host::<KvHost<L>, R>(self.node(gid, me), |host, _| f(&host.lab))
    }

    /// Sleep `ms` milliseconds of virtual time.
    pub async fn sleep_ms(&self, ms: u64) {
        self.sim.sleep(Duration::from_millis(ms)).await
    }

    /// One line on every group replica: down, or leader, configuration and shards served.
    pub fn describe(&self) -> String {
        let mut lines = Vec::new();
        for &gid in &GIDS {
            for me in 0..GROUP_SIZE {
                let view = self.with_lab(gid, me, |lab| (lab.is_leader(), lab.serving()));
                lines.push(match view {
                    None => format!("{gid}/{me}: down"),
                    Some((leads, (num, shards))) => format!(
                        "{gid}/{me}: {}config {num} serving {shards:?}",
                        if leads { "leader " } else { "" }
                    ),
                });
            }
        }
        format!("groups [{}]", lines.join("; "))
    }
}

fn add_group<L: KvLab>(
    sim: &Sim,
    book: &AddressBook,
    masters: &Masters<ServerLab>,
    gid: GroupId,
    (maxraftstate, session_timeout_ms): (Option<u64>, Option<shardkv_proto::Millis>),
) -> ReplicaIds {
    let ids: ReplicaIds = Default::default();
    let peers: Vec<Peer> = (0..GROUP_SIZE).collect();
    for me in 0..GROUP_SIZE {
        let name = server_address(gid, me);
        let (ids_for_host, book_for_host) = (ids.clone(), book.clone());
        let (peers, master_addresses) = (peers.clone(), masters.masters());
        let id = sim.add_host(&name, move |_id: SimNode, persister: Persister| {
            let start = KvStart {
                gid,
                me,
                peers: peers.clone(),
                masters: master_addresses.clone(),
                persister,
                maxraftstate,
                session_timeout_ms,
            };
            let lab = L::make(start);
            let host = KvHost::new(gid, me, lab, ids_for_host.clone(), book_for_host.clone());
            Box::new(host) as Box<dyn labrpc_sim::Host>
        });
        ids.borrow_mut().push(id);
        book.register(name, id);
    }
    ids
}
