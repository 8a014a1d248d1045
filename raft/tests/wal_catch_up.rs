//! A follower that fell behind the leader's compacted log catches up from a snapshot that
//! the leader reads from its write-ahead log's snapshot file on a thread of its own (the first ask answers
//! "temporarily unavailable"; raft-rs asks again with the next heartbeat answer).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use shardkv_raft::raft::eraftpb::{Message, MessageType};
use shardkv_raft::{
    discard_logger, Applied, Background, NodeId, OsDisk, Replica, ReplicaConfig, Store, WalBackend,
};

use protobuf::Message as _;

type WalReplica = Replica<Store<WalBackend<OsDisk>>>;

/// Three replicas on write-ahead logs, messages passed by hand; `down` nodes neither send nor
/// receive.
struct Group {
    _dir: tempfile::TempDir,
    nodes: BTreeMap<NodeId, WalReplica>,
    applied: BTreeMap<NodeId, Vec<Applied>>,
    snapshots_sent: usize,
}

impl Group {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let nodes = (1..=3)
            .map(|id| {
                let disk = OsDisk::open(dir.path().join(format!("n{id}"))).unwrap();
                let backend = WalBackend::open(disk, Background::Threads).unwrap();
                let store = Store::open(backend).unwrap();
                let config = ReplicaConfig::new(id, vec![1, 2, 3]);
                let replica = Replica::open_with_logger(config, store, &discard_logger()).unwrap();
                (id, replica)
            })
            .collect();
        Group {
            _dir: dir,
            nodes,
            applied: BTreeMap::new(),
            snapshots_sent: 0,
        }
    }

    /// Advances every live node and delivers what they send, until nothing moves.
    fn settle(&mut self, down: &[NodeId]) {
        loop {
            let mut sent = Vec::new();
            for (&id, replica) in self.nodes.iter_mut().filter(|(id, _)| !down.contains(id)) {
                let output = replica.advance().unwrap();
                self.applied.entry(id).or_default().extend(output.applied);
                sent.extend(output.messages);
            }
            if sent.is_empty() {
                return;
            }
            for (to, bytes) in sent {
                let message = Message::parse_from_bytes(&bytes).unwrap();
                if message.get_msg_type() == MessageType::MsgSnapshot {
                    self.snapshots_sent += 1;
                }
                if !down.contains(&to) {
                    self.nodes.get_mut(&to).unwrap().step(&bytes).unwrap();
                }
            }
        }
    }

    fn tick(&mut self, down: &[NodeId]) {
        for (_, replica) in self.nodes.iter_mut().filter(|(id, _)| !down.contains(id)) {
            replica.tick();
        }
        self.settle(down);
    }

    fn node(&mut self, id: NodeId) -> &mut WalReplica {
        self.nodes.get_mut(&id).unwrap()
    }
}

#[test]
fn a_lagging_follower_gets_the_snapshot_read_off_the_leaders_thread() {
    let mut group = Group::new();
    let down = [3];
    while !group.node(1).is_leader() {
        group.node(1).tick();
        group.settle(&down);
    }
    let mut last = 0;
    for n in 0..20u8 {
        last = group.node(1).propose(vec![n]).unwrap().index;
        group.settle(&down);
    }
    group.node(1).snapshot(last, b"state@20".to_vec()).unwrap();
    group.node(1).flush().unwrap();
    group.settle(&down);

    // Node 3 comes back: its next entry is compacted away on the leader, whose first
    // ask for the snapshot starts a read; heartbeats bring the next asks.
    let deadline = Instant::now() + Duration::from_secs(60);
    let caught_up = |group: &Group| {
        group.applied.get(&3).is_some_and(|applied| {
            applied
                .iter()
                .any(|a| matches!(a, Applied::Snapshot { index, data, .. } if *index == last && data == b"state@20"))
        })
    };
    while !caught_up(&group) {
        assert!(Instant::now() < deadline, "node 3 never got the snapshot");
        group.tick(&[]);
        std::thread::yield_now();
    }
    assert!(group.snapshots_sent >= 1);
    let follower = group.node(3).applied_index();
    assert!(follower >= last, "node 3 applied {follower} < {last}");
}
