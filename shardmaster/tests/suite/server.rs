//! Scenario tests of [`Server`]: three replicas over in-memory stores, driven event by
//! event through a lossless in-order network, asserting the replies they emit.

use shardkv_raft::{discard_logger, MemBackend, Replica, ReplicaConfig, Store};
use shardmaster::{
    MasterError, MasterService, NodeId, Op, Reply, Request, Response, Server, Service, ShardMaster,
};

use crate::harness::join_op;

type TestServer = Server<Store<MemBackend>>;

fn config(id: NodeId, threshold: Option<u64>) -> ReplicaConfig {
    let mut config = ReplicaConfig::new(id, vec![1, 2, 3]);
    config.snapshot_bytes_threshold = threshold;
    config
}

fn open(id: NodeId, store: Store<MemBackend>, threshold: Option<u64>) -> TestServer {
    let replica =
        Replica::open_with_logger(config(id, threshold), store, &discard_logger()).expect("opens");
    shardmaster::with_replica(replica, ShardMaster::new(10))
}

struct Cluster {
    servers: Vec<TestServer>,
    replies: Vec<(NodeId, u64, Response)>,
    /// A replica cut off from the network: messages to and from it are dropped.
    down: Option<NodeId>,
}

impl Cluster {
    fn new(threshold: Option<u64>) -> Self {
        let servers = (1..=3)
            .map(|id| {
                open(
                    id,
                    Store::open(MemBackend::new()).expect("store"),
                    threshold,
                )
            })
            .collect();
        let mut cluster = Cluster {
            servers,
            replies: Vec::new(),
            down: None,
        };
        cluster.elect();
        cluster
    }

    /// Delivers every effect until none is left (bounded).
    fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut sends = Vec::new();
            for server in &mut self.servers {
                let from = server.id();
                for (to, bytes) in server.take_messages() {
                    if self.down != Some(to) && self.down != Some(from) {
                        sends.push((from, to, bytes));
                    }
                }
                for Reply { req_id, response } in server.take_replies() {
                    self.replies.push((from, req_id, response));
                }
            }
            if sends.is_empty() {
                return;
            }
            for (from, to, bytes) in sends {
                self.servers[to as usize - 1]
                    .on_peer_message(from, &bytes)
                    .expect("step");
            }
        }
        panic!("network never went quiet");
    }

    fn tick_all(&mut self) {
        for i in 0..self.servers.len() {
            self.servers[i].on_tick().expect("tick");
            self.pump();
        }
    }

    fn elect(&mut self) -> NodeId {
        for _ in 0..500 {
            if let Some(leader) = self.leader() {
                return leader;
            }
            self.tick_all();
        }
        panic!("no leader elected");
    }

    fn leader(&self) -> Option<NodeId> {
        self.servers
            .iter()
            .find(|s| s.replica().is_leader())
            .map(|s| s.id())
    }

    /// Sends `request` to `to` and returns its reply, ticking until one arrives.
    fn call(&mut self, to: NodeId, req_id: u64, request: Request) -> Response {
        self.servers[to as usize - 1]
            .on_request(req_id, request)
            .expect("request");
        for _ in 0..200 {
            self.pump();
            if let Some(pos) = self.replies.iter().position(|r| r.0 == to && r.1 == req_id) {
                return self.replies.remove(pos).2;
            }
            self.tick_all();
        }
        panic!("request {req_id} never answered");
    }
}

/// The leader answers a Join with the configuration it created, every replica applies
/// it, a follower redirects to the leader, and a retried request takes effect once.
#[test]
fn leader_replicates_and_followers_redirect() {
    let mut cluster = Cluster::new(None);
    let leader = cluster.leader().expect("leader");
    let join = Request {
        client: 5,
        seq: 1,
        op: join_op(&[1, 2]),
    };
    let config = cluster.call(leader, 1, join.clone()).expect("join");
    assert_eq!(config.num, 1);
    assert_eq!(config.shards, vec![1, 1, 1, 1, 1, 2, 2, 2, 2, 2]);
    assert_eq!(cluster.call(leader, 2, join), Ok(config.clone()));
    cluster.tick_all();
    for server in &cluster.servers {
        assert_eq!(
            server.master().configs().len(),
            2,
            "replica {}",
            server.id()
        );
        assert_eq!(server.master().latest(), &config);
    }
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    let query = Request {
        client: 6,
        seq: 1,
        op: Op::Query { num: None },
    };
    assert_eq!(
        cluster.call(follower, 3, query),
        Err(MasterError::WrongLeader { hint: Some(leader) })
    );
}

/// With a small log threshold the replicas snapshot, and a restarted replica rebuilds
/// the same state from its snapshot and the log after it.
#[test]
fn snapshot_and_restart() {
    let threshold = Some(1024);
    let mut cluster = Cluster::new(threshold);
    let leader = cluster.leader().expect("leader");
    for seq in 1..=40u64 {
        let op = match seq {
            1 => join_op(&[1, 2, 3]),
            _ => Op::Move {
                shard: (seq % 10) as usize,
                gid: seq % 3 + 1,
            },
        };
        cluster
            .call(leader, seq, Request { client: 9, seq, op })
            .expect("applied");
    }
    cluster.tick_all();
    let restarted_id = (1..=3).find(|&id| id != leader).expect("a follower");
    let slot = restarted_id as usize - 1;
    let expected = cluster.servers[slot].master().configs().to_vec();
    assert_eq!(expected.len(), 41);
    let store = {
        let placeholder = open(
            restarted_id,
            Store::open(MemBackend::new()).expect("store"),
            threshold,
        );
        std::mem::replace(&mut cluster.servers[slot], placeholder)
            .into_host()
            .into_store()
    };
    assert!(store.snapshot_index() > 0, "no snapshot was taken");
    cluster.servers[slot] = open(restarted_id, store, threshold);
    cluster.tick_all();
    cluster.tick_all();
    assert_eq!(cluster.servers[slot].master().configs(), &expected[..]);
}

/// A follower cut off while the leader compacts its log catches up by installing the
/// leader's snapshot, and ends with the same configurations.
#[test]
fn lagging_follower_installs_snapshot() {
    let threshold = Some(1024);
    let mut cluster = Cluster::new(threshold);
    let leader = cluster.leader().expect("leader");
    let lagging = (1..=3).find(|&id| id != leader).expect("a follower");
    cluster.down = Some(lagging);
    for seq in 1..=40u64 {
        let op = match seq {
            1 => join_op(&[1, 2, 3]),
            _ => Op::Move {
                shard: (seq % 10) as usize,
                gid: seq % 3 + 1,
            },
        };
        cluster
            .call(leader, seq, Request { client: 9, seq, op })
            .expect("applied");
    }
    let leader_store = cluster.servers[leader as usize - 1].replica().store();
    assert!(leader_store.snapshot_index() > 1, "leader did not compact");
    assert_eq!(
        cluster.servers[lagging as usize - 1]
            .master()
            .configs()
            .len(),
        1
    );
    cluster.down = None;
    for _ in 0..20 {
        cluster.tick_all();
    }
    let expected = cluster.servers[leader as usize - 1]
        .master()
        .configs()
        .to_vec();
    assert_eq!(expected.len(), 41);
    assert_eq!(
        cluster.servers[lagging as usize - 1].master().configs(),
        &expected[..]
    );
}
