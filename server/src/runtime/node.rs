//! [`NodeSpec`] and [`run_node`]: one shardkv process's replica, from data directory to
//! shutdown.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use replica_group::data::{Data, DEFAULT_CACHE_BYTES, FJALL_DIR};
use replica_group::GroupOptions;
use shardkv_proto::{GroupId, DEFAULT_NSHARDS, NO_GROUP};
use shardkv_raft::{
    check_identity, record_identity, Background, DataDirOwner, NodeId, OsDisk, ReplicaConfig,
    Store, WalBackend,
};
use tokio::sync::{mpsc, watch};

use shardkv_client::tls::Tls;

use super::hosted::Fatal;
use super::raft_stream::{ReplicaName, StreamPeers};
use super::service::Limits;
use super::timeline::Tracer;
use super::{driver, service};

/// Events queued for the driver before callers wait.
const EVENT_QUEUE: usize = 4096;

/// How long a node waits for its data directory's lock (held a moment longer by a
/// thread still reading a snapshot for a follower when the node was stopped in this
/// process just before).
const DATA_DIR_LOCK_WAIT: Duration = Duration::from_secs(2);

/// Compact the log once the persisted raft log reaches this size (and
/// [`SNAPSHOT_LOG_MULTIPLE`] times the last snapshot's). A group replica's compaction is
/// a checkpoint of its data: one durable redb commit of everything applied since the last
/// one, so this sets how many writes share each rewritten B-tree page. Larger commits
/// write fewer pages per put over a large random key space, but hold more log and more
/// held writes in memory, and grow redb's file (it reuses freed pages only after a
/// durable commit); `docs/performance.md` has the measurements behind 32 MiB.
const SNAPSHOT_BYTES_THRESHOLD: u64 = 32 << 20;

/// The log must also be as large as the last snapshot. The shard master's snapshots
/// hold its whole (small) state and a group's are markers, so this only matters for a
/// master with a state larger than the threshold: it is not written out again for every
/// threshold's worth of log.
const SNAPSHOT_LOG_MULTIPLE: u64 = 1;

/// Which replicated service a node belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// A shard-master replica.
    Master,
    /// A replica of group `gid`, which asks the shard masters at `masters`.
    Group {
        /// The group.
        gid: GroupId,
        /// The shard masters' addresses (NodeId `i + 1` is `masters[i]`).
        masters: Vec<String>,
    },
}

/// The free space a node keeps on its data directory's file system by default: room for
/// the log's next segments and a checkpoint's pages while client writes are refused.
pub const DEFAULT_RESERVE_BYTES: u64 = 256 << 20;

/// Everything one node needs to start.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Master or group replica.
    pub role: Role,
    /// This replica's raft id (non-zero).
    pub id: NodeId,
    /// The address to listen on.
    pub listen: String,
    /// Every replica of the service, this one included, by raft id.
    pub peers: BTreeMap<NodeId, String>,
    /// Where this replica keeps its log and snapshots.
    pub data_dir: PathBuf,
    /// The cluster's shard count (the same on every node).
    pub nshards: usize,
    /// A group replica's page cache for its data (redb's cache; the data's held writes
    /// come on top, up to the flush size).
    pub cache_bytes: usize,
    /// What the node's listener allows its connections.
    pub limits: Limits,
    /// Mutual TLS for every connection, accepted and made (`None`: plaintext).
    pub tls: Option<Tls>,
    /// Free bytes to keep on the data directory's file system (0: no check); below it a
    /// group replica refuses client writes (`driver::Space`).
    pub reserve_bytes: u64,
}

impl NodeSpec {
    /// A spec with the default shard count.
    pub fn new(
        role: Role,
        id: NodeId,
        listen: String,
        peers: BTreeMap<NodeId, String>,
        data_dir: PathBuf,
    ) -> Self {
        NodeSpec {
            role,
            id,
            listen,
            peers,
            data_dir,
            nshards: DEFAULT_NSHARDS,
            cache_bytes: DEFAULT_CACHE_BYTES,
            limits: Limits::default(),
            tls: None,
            reserve_bytes: DEFAULT_RESERVE_BYTES,
        }
    }

    /// This replica as raft streams name it.
    pub fn replica(&self) -> ReplicaName {
        let service = match &self.role {
            Role::Master => NO_GROUP,
            Role::Group { gid, .. } => *gid,
        };
        ReplicaName {
            service,
            id: self.id,
        }
    }

    fn replica_config(&self) -> ReplicaConfig {
        let mut voters: Vec<NodeId> = self.peers.keys().copied().collect();
        if !voters.contains(&self.id) {
            voters.push(self.id);
            voters.sort_unstable();
        }
        // The configuration the lab suites' reference replicas run too; the election
        // timeouts' spread (500-1000 ms) is seeded from the operating system.
        let mut config = ReplicaConfig::production(self.id, voters, rand::random());
        config.snapshot_bytes_threshold = Some(SNAPSHOT_BYTES_THRESHOLD);
        config.snapshot_log_multiple = SNAPSHOT_LOG_MULTIPLE;
        config
    }
}

/// Opens the node's data directory, binds its address and serves until `shutdown`
/// turns true (then flushes and returns), or until a fatal error. On return the address
/// is released and the data directory closed, so the node can be started again in the
/// same process.
pub async fn run_node(spec: NodeSpec, shutdown: watch::Receiver<bool>) -> Result<(), Fatal> {
    let data_dir = spec.data_dir.clone();
    let group = matches!(spec.role, Role::Group { .. });
    let cache_bytes = spec.cache_bytes;
    let me = spec.replica();
    let (backend, data) = tokio::task::spawn_blocking(move || {
        let disk = open_data_dir(&data_dir, DATA_DIR_LOCK_WAIT)?;
        // Whose directory this is, and whether it holds what it must, before anything
        // in it is opened (a directory without its log would open as a new replica).
        let owner = DataDirOwner {
            service: me.service,
            id: me.id,
        };
        let required: &[&str] = if group { &[FJALL_DIR] } else { &[] };
        let recorded = check_identity(&disk, owner, required)?;
        let data = match group {
            true => Some(Data::open(&disk, cache_bytes, Background::Threads)?),
            false => None,
        };
        let backend = WalBackend::open(disk.clone(), Background::Threads)?;
        if !recorded {
            record_identity(&disk, owner)?;
        }
        Ok::<_, Fatal>((backend, data))
    })
    .await
    .map_err(|error| format!("opening the data directory failed: {error}"))??;
    let store = Store::open(backend)?;
    let listener = service::bind(&spec.listen)
        .await
        .map_err(|error| format!("cannot listen on {}: {error}", spec.listen))?;
    // A group replica's requests can be traced (`shardkv bench --timeline`), under its
    // port: unique among the nodes of one process.
    let tracer = match (&spec.role, listener.local_addr()) {
        (Role::Group { .. }, Ok(address)) => Tracer::node(address.port()),
        _ => Tracer::default(),
    };
    let (sender, receiver) = mpsc::channel(EVENT_QUEUE);
    let membership = StreamPeers {
        me,
        peers: spec.peers.keys().copied().collect(),
    };
    let accept = tokio::spawn(service::serve(
        listener,
        sender.clone(),
        tracer,
        membership,
        spec.limits,
        spec.tls.clone(),
    ));
    let wiring = driver::Wiring {
        me,
        peers: &spec.peers,
        events: (sender, receiver),
        shutdown,
        tracer,
        tls: spec.tls.clone(),
        space: driver::Space::new(spec.data_dir.clone(), spec.reserve_bytes),
    };
    let config = spec.replica_config();
    let result = match &spec.role {
        Role::Master => {
            let server = shardmaster::open(config, store, spec.nshards)?;
            driver::run(server, wiring).await
        }
        Role::Group { gid, masters } => {
            let mut options = GroupOptions::new(*gid, spec.nshards, masters.clone());
            options.peers = spec.peers.clone();
            let data = data.ok_or("a group replica opened without its data")?;
            let server = replica_group::Server::open(config, store, data, options)?;
            driver::run(server, wiring).await
        }
    };
    // The driver has dropped the event queue: the listener closes; wait for it so the
    // address is free again when this returns.
    let _ = accept.await;
    result
}

/// Opens and locks `path`, trying again every 10 ms for up to `wait` while its lock is
/// held.
fn open_data_dir(path: &std::path::Path, wait: Duration) -> Result<OsDisk, Fatal> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        match OsDisk::open(path) {
            Err(error)
                if error.kind() == std::io::ErrorKind::WouldBlock
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(error) => {
                return Err(
                    format!("cannot open the data directory {}: {error}", path.display()).into(),
                )
            }
            Ok(disk) => return Ok(disk),
        }
    }
}
