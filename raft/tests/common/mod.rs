//! A tiny deterministic cluster for scenario tests: replicas over `MemBackend`, a FIFO
//! of in-flight messages, partitions by node, crash (keep the backend) and restart.
//!
//! Nothing is random: tests decide who ticks when. Each node runs a toy state machine
//! (the list of applied commands) whose snapshot bytes are the commands, length-prefixed.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use shardkv_raft::{
    discard_logger, Applied, Fate, MemBackend, NodeId, Output, Pending, Proposal, Replica,
    ReplicaConfig, Store,
};

pub type TestReplica = Replica<Store<MemBackend>>;

/// One node: a replica (None while crashed), its disk, and what it observed.
pub struct Node {
    pub replica: Option<TestReplica>,
    pub disk: Option<MemBackend>,
    pub config: ReplicaConfig,
    /// Every `Applied` item, across restarts.
    pub applied: Vec<Applied>,
    /// Toy state machine: applied commands since the last snapshot install/restart.
    pub commands: Vec<Vec<u8>>,
    /// Proposals awaiting their fate, each its own waiter.
    pub pending: Pending<Proposal>,
    /// Proposals that may not commit (displaced, passed over, orphaned by a step-down).
    pub lost: Vec<Proposal>,
    pub reads: Vec<(u64, u64)>,
}

/// The cluster: nodes by id, messages in flight, isolated nodes.
pub struct Cluster {
    pub nodes: BTreeMap<NodeId, Node>,
    pub queue: VecDeque<(NodeId, NodeId, Vec<u8>)>,
    pub isolated: BTreeSet<NodeId>,
    /// How many of the next snapshot messages the network loses.
    pub drop_snapshots: usize,
    /// Every message delivered, in order (to compare runs).
    pub trace: Vec<(NodeId, NodeId, Vec<u8>)>,
}

pub const ELECTION_TICKS: usize = 10;

pub fn encode_commands(commands: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for command in commands {
        out.extend_from_slice(&(command.len() as u32).to_be_bytes());
        out.extend_from_slice(command);
    }
    out
}

pub fn decode_commands(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while bytes.len() >= 4 {
        let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        out.push(bytes[4..4 + len].to_vec());
        bytes = &bytes[4 + len..];
    }
    out
}

fn is_snapshot(bytes: &[u8]) -> bool {
    use protobuf::Message as _;
    use shardkv_raft::raft::eraftpb::{Message, MessageType};
    Message::parse_from_bytes(bytes).is_ok_and(|m| m.get_msg_type() == MessageType::MsgSnapshot)
}

impl Cluster {
    /// A bootstrapped group of `ids`, no leader yet.
    pub fn new(ids: &[NodeId]) -> Self {
        let mut cluster = Cluster {
            nodes: BTreeMap::new(),
            queue: VecDeque::new(),
            isolated: BTreeSet::new(),
            drop_snapshots: 0,
            trace: Vec::new(),
        };
        for &id in ids {
            cluster.start(ReplicaConfig::new(id, ids.to_vec()), MemBackend::new());
        }
        cluster
    }

    /// Starts node `config.id` over `disk` (a new node when the disk is empty).
    pub fn start(&mut self, config: ReplicaConfig, disk: MemBackend) {
        let store = Store::open(disk).expect("open store");
        let replica =
            Replica::open_with_logger(config.clone(), store, &discard_logger()).expect("open");
        let node = Node {
            replica: Some(replica),
            disk: None,
            config,
            applied: Vec::new(),
            commands: Vec::new(),
            pending: Pending::default(),
            lost: Vec::new(),
            reads: Vec::new(),
        };
        let id = node.config.id;
        let previous = self.nodes.insert(id, node);
        if let Some(previous) = previous {
            // Keep history across restarts.
            let node = self.nodes.get_mut(&id).unwrap();
            let mut applied = previous.applied;
            applied.append(&mut node.applied);
            node.applied = applied;
            node.lost = previous.lost;
        }
        self.advance(id);
    }

    pub fn replica(&self, id: NodeId) -> &TestReplica {
        self.nodes[&id].replica.as_ref().expect("node is up")
    }

    pub fn replica_mut(&mut self, id: NodeId) -> &mut TestReplica {
        self.nodes
            .get_mut(&id)
            .unwrap()
            .replica
            .as_mut()
            .expect("node is up")
    }

    /// Runs `advance` on `id`, settles its proposals and records its output.
    pub fn advance(&mut self, id: NodeId) -> Output {
        let node = self.nodes.get_mut(&id).unwrap();
        let output = node
            .replica
            .as_mut()
            .expect("node is up")
            .advance()
            .expect("advance");
        for (to, bytes) in &output.messages {
            self.queue.push_back((id, *to, bytes.clone()));
        }
        for item in &output.applied {
            match item {
                Applied::Command { data, .. } => node.commands.push(data.clone()),
                Applied::Snapshot { data, .. } => node.commands = decode_commands(data),
                Applied::Membership { .. } => {}
            }
        }
        node.applied.extend(output.applied.iter().cloned());
        node.reads.extend(output.reads.iter().copied());
        let settled = node.pending.settle(output.clone());
        for step in settled.applied {
            match step {
                shardkv_raft::Step::Command { fate, .. }
                | shardkv_raft::Step::Membership { fate, .. } => {
                    if let Some(Fate::Displaced(proposal)) = fate {
                        node.lost.push(proposal);
                    }
                }
                shardkv_raft::Step::Snapshot { covered, .. } => node.lost.extend(covered),
            }
        }
        node.lost.extend(settled.failed);
        output
    }

    /// Delivers queued messages (and the messages they cause) until none is left.
    pub fn deliver(&mut self) {
        for _ in 0..100_000 {
            let Some((from, to, bytes)) = self.queue.pop_front() else {
                return;
            };
            let up = self
                .nodes
                .get(&to)
                .is_some_and(|node| node.replica.is_some());
            if !up || self.isolated.contains(&from) || self.isolated.contains(&to) {
                continue;
            }
            if self.drop_snapshots > 0 && is_snapshot(&bytes) {
                self.drop_snapshots -= 1;
                continue;
            }
            self.trace.push((from, to, bytes.clone()));
            let _ = self.replica_mut(to).step(&bytes);
            self.advance(to);
        }
        panic!("messages never quiesced");
    }

    /// Delivers only the queued messages addressed to `to` (once; no follow-ups).
    pub fn deliver_only(&mut self, to: NodeId) {
        let queued: Vec<_> = self.queue.drain(..).collect();
        for (from, dest, bytes) in queued {
            if dest == to {
                let _ = self.replica_mut(to).step(&bytes);
                self.advance(to);
            } else {
                self.queue.push_back((from, dest, bytes));
            }
        }
    }

    /// Ticks node `id` once, then delivers.
    pub fn tick(&mut self, id: NodeId) {
        self.replica_mut(id).tick();
        self.advance(id);
        self.deliver();
    }

    /// Ticks every live node once (in id order), then delivers.
    pub fn tick_all(&mut self) {
        let ids: Vec<NodeId> = self.live();
        for id in ids {
            self.replica_mut(id).tick();
            self.advance(id);
        }
        self.deliver();
    }

    pub fn live(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, node)| node.replica.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Makes `id` leader by ticking. Followers that still believe in a leader ignore
    /// votes until their own election timeout passes (check-quorum lease), and with a
    /// pinned timeout that is the tick they campaign themselves: so they tick first
    /// (and fail, `id` being in its lease), then `id` ticks until it wins.
    pub fn elect(&mut self, id: NodeId) {
        let others: Vec<NodeId> = self
            .live()
            .into_iter()
            .filter(|other| *other != id && !self.isolated.contains(other))
            .filter(|other| {
                self.replica(*other)
                    .leader()
                    .is_some_and(|leader| leader != id)
            })
            .collect();
        for other in others {
            for _ in 0..ELECTION_TICKS {
                self.tick(other);
            }
        }
        for _ in 0..4 * ELECTION_TICKS {
            if self.replica(id).is_leader() {
                break;
            }
            self.tick(id);
        }
        assert!(
            self.replica(id).is_leader(),
            "node {id} did not become leader"
        );
        self.deliver();
    }

    /// Waits on `proposal` (made directly on `id`'s replica): its fate lands in `lost`
    /// unless it commits.
    pub fn track(&mut self, id: NodeId, proposal: Proposal) {
        let node = self.nodes.get_mut(&id).unwrap();
        node.pending.insert(proposal, proposal);
    }

    pub fn propose(&mut self, id: NodeId, data: &[u8]) -> Proposal {
        let proposal = self
            .replica_mut(id)
            .propose(data.to_vec())
            .expect("propose");
        self.track(id, proposal);
        self.advance(id);
        self.deliver();
        proposal
    }

    /// Crashes `id`: the replica is gone, its disk (what the backend holds) remains.
    pub fn crash(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).unwrap();
        let replica = node.replica.take().expect("node is up");
        node.disk = Some(replica.into_store().into_backend());
        node.commands.clear();
    }

    /// Restarts a crashed node from its disk.
    pub fn restart(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).unwrap();
        let disk = node.disk.take().expect("node is crashed");
        let config = node.config.clone();
        self.start(config, disk);
    }

    /// Commands applied by `id` (toy state machine).
    pub fn commands(&self, id: NodeId) -> Vec<Vec<u8>> {
        self.nodes[&id].commands.clone()
    }

    /// `(index, term, data)` of every command `id` applied.
    pub fn applied_commands(&self, id: NodeId) -> Vec<(u64, u64, Vec<u8>)> {
        self.nodes[&id]
            .applied
            .iter()
            .filter_map(|item| match item {
                Applied::Command { index, term, data } => Some((*index, *term, data.clone())),
                _ => None,
            })
            .collect()
    }

    /// Snapshots `id` at its applied index with its toy state machine.
    pub fn snapshot(&mut self, id: NodeId) -> u64 {
        let data = encode_commands(&self.nodes[&id].commands);
        let replica = self.replica_mut(id);
        let index = replica.applied_index();
        replica.snapshot(index, data).expect("snapshot");
        index
    }
}
