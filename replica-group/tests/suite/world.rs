//! A test world: two replica groups of three replicas each, a scripted shard master, and
//! a lossless in-order network that can drop chosen migration calls. Every delivery round
//! checks two invariants: at most one group serves a shard in any configuration, and a
//! shard that was ever served is always held by some replica (no data loss).

use std::collections::{BTreeMap, BTreeSet};

use replica_group::data::Data;
use replica_group::Service;
use replica_group::{
    CallId, Effect, GroupOptions, GroupRequest, GroupResponse, MigrationRequest, Phase, Reply,
    Request, RequestId, Response, Server,
};
use shardkv_proto::master::{self, MasterError};
use shardkv_proto::{Config, GroupId, NodeId, ShardId};
use shardkv_raft::{discard_logger, MemBackend, Replica, ReplicaConfig, Store};

use crate::state::{config, NSHARDS};

pub type TestServer = Server<Store<MemBackend>>;

/// The two groups.
pub const A: GroupId = 100;
pub const B: GroupId = 200;
/// The scripted shard master's address.
pub const MASTER: &str = "master-0";

fn open(
    gid: GroupId,
    id: NodeId,
    store: Store<MemBackend>,
    data: Data,
    threshold: Option<u64>,
) -> TestServer {
    let mut raft = ReplicaConfig::new(id, vec![1, 2, 3]);
    raft.snapshot_bytes_threshold = threshold;
    let replica = Replica::open_with_logger(raft, store, &discard_logger()).expect("opens");
    let mut options = GroupOptions::new(gid, NSHARDS, vec![MASTER.to_string()]);
    options.peers = (1..=3)
        .map(|id| (id, format!("g{gid}-{}", id - 1)))
        .collect();
    options.session_timeout_ms = 24 * 60 * 60 * 1000;
    Server::new(replica, data, options).expect("opens")
}

fn fresh_store() -> Store<MemBackend> {
    Store::open(MemBackend::new()).expect("store")
}

/// The world; see the module docs.
pub struct World {
    pub groups: BTreeMap<GroupId, Vec<TestServer>>,
    /// `configs[i]` is configuration `i`; the master answers up to `published`.
    pub configs: Vec<Config>,
    pub published: u64,
    /// Drop every PullShard call (the caller sees a failed call).
    pub drop_pulls: bool,
    /// Drop every DeleteShard call.
    pub drop_deletes: bool,
    pub replies: Vec<(RequestId, Response)>,
    /// Migration requests being served: request id → (caller group, caller node, call).
    inbound: BTreeMap<RequestId, (GroupId, NodeId, CallId)>,
    next_req: RequestId,
    threshold: Option<u64>,
    /// (shard, config) → the groups seen serving it.
    served: BTreeMap<(ShardId, u64), BTreeSet<GroupId>>,
}

impl World {
    /// Groups A and B, elected, with configurations 1.. given by `owners`.
    pub fn new(owners: &[[GroupId; NSHARDS]], threshold: Option<u64>) -> Self {
        let mut configs = vec![Config::initial(NSHARDS)];
        configs.extend((1..).zip(owners).map(|(num, owners)| config(num, *owners)));
        let groups = [A, B]
            .into_iter()
            .map(|gid| {
                let servers = (1..=3)
                    .map(|id| open(gid, id, fresh_store(), Data::in_memory(), threshold))
                    .collect();
                (gid, servers)
            })
            .collect();
        let mut world = World {
            groups,
            configs,
            published: 0,
            drop_pulls: false,
            drop_deletes: false,
            replies: Vec::new(),
            inbound: BTreeMap::new(),
            next_req: 0,
            threshold,
            served: BTreeMap::new(),
        };
        world.run_until("leaders elected", |w| {
            [A, B].iter().all(|&g| w.leader(g).is_some())
        });
        world
    }

    pub fn server(&mut self, gid: GroupId, id: NodeId) -> &mut TestServer {
        &mut self.groups.get_mut(&gid).expect("group")[id as usize - 1]
    }

    pub fn leader(&self, gid: GroupId) -> Option<NodeId> {
        self.groups[&gid]
            .iter()
            .find(|s| s.replica().is_leader())
            .map(|s| s.id())
    }

    /// The phase of `shard` on every replica of `gid`.
    pub fn phases(&self, gid: GroupId, shard: ShardId) -> Vec<&Phase> {
        self.groups[&gid]
            .iter()
            .map(|s| s.state().shard(shard))
            .collect()
    }

    /// True when every replica of `gid` is in configuration `num` with no migration left.
    pub fn settled_at(&self, gid: GroupId, num: u64) -> bool {
        self.groups[&gid]
            .iter()
            .all(|s| s.state().config().num == num && s.state().is_stable())
    }

    /// Delivers every effect until none is left (bounded).
    pub fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut messages = Vec::new();
            let mut effects = Vec::new();
            for (&gid, servers) in &mut self.groups {
                for server in servers.iter_mut() {
                    let id = server.id();
                    let sent = server.take_messages().into_iter();
                    messages.extend(sent.map(|(to, bytes)| (gid, id, to, bytes)));
                    effects.extend(server.take_effects().into_iter().map(|e| (gid, id, e)));
                }
            }
            if messages.is_empty() && effects.is_empty() {
                return;
            }
            for (gid, from, to, bytes) in messages {
                self.server(gid, to)
                    .on_peer_message(from, &bytes)
                    .expect("step");
            }
            for (gid, id, effect) in effects {
                self.deliver(gid, id, effect);
            }
            self.check_invariants();
        }
        panic!("network never went quiet");
    }

    fn deliver(&mut self, gid: GroupId, from: NodeId, effect: Effect) {
        match effect {
            Effect::Reply {
                req_id, response, ..
            } => self.replies.push((req_id, response)),
            Effect::MigrationReply { req_id, response } => {
                if let Some((caller, node, call_id)) = self.inbound.remove(&req_id) {
                    let bytes =
                        bincode::serialize(&GroupResponse::Migration(response)).expect("encodes");
                    self.server(caller, node)
                        .on_response(call_id, Some(bytes))
                        .expect("response");
                }
            }
            Effect::Call { call_id, to, bytes } => self.call(gid, from, call_id, &to, &bytes),
        }
    }

    fn call(&mut self, gid: GroupId, from: NodeId, call_id: CallId, to: &str, bytes: &[u8]) {
        if to == MASTER {
            let request: master::Request = bincode::deserialize(bytes).expect("master request");
            let master::Op::Query { num } = request.op else {
                panic!("a group sent the master {request:?}");
            };
            let num = num.unwrap_or(u64::MAX).min(self.published) as usize;
            let response: master::Response = Ok::<Config, MasterError>(self.configs[num].clone());
            let reply = bincode::serialize(&response).expect("encodes");
            self.server(gid, from)
                .on_response(call_id, Some(reply))
                .expect("response");
            return;
        }
        let (target, node) = parse_address(to);
        let GroupRequest::Migration(request) = bincode::deserialize(bytes).expect("group request")
        else {
            panic!("a group sent a client request");
        };
        let dropped = match request {
            MigrationRequest::PullShard { .. } => self.drop_pulls,
            MigrationRequest::DeleteShard { .. } => self.drop_deletes,
            MigrationRequest::PullState { .. } => false,
        };
        if dropped {
            self.server(gid, from)
                .on_response(call_id, None)
                .expect("response");
            return;
        }
        self.next_req += 1;
        let req_id = self.next_req;
        self.inbound.insert(req_id, (gid, from, call_id));
        self.server(target, node)
            .on_migration_request(req_id, request)
            .expect("request");
    }

    fn check_invariants(&mut self) {
        for (&gid, servers) in &self.groups {
            for server in servers {
                let num = server.state().config().num;
                for (shard, phase) in server.state().shards().enumerate() {
                    if phase.serves() {
                        self.served.entry((shard, num)).or_default().insert(gid);
                    }
                }
            }
        }
        for ((shard, num), gids) in &self.served {
            assert!(
                gids.len() <= 1,
                "shard {shard} served by {gids:?} in config {num}"
            );
        }
        let ever: BTreeSet<ShardId> = self.served.keys().map(|&(shard, _)| shard).collect();
        for shard in ever {
            let held = self
                .groups
                .values()
                .flatten()
                .any(|s| s.state().shard(shard).store().is_some());
            assert!(held, "shard {shard} was served and is now held by nobody");
        }
    }

    pub fn tick_all(&mut self) {
        let ids: Vec<(GroupId, NodeId)> = self
            .groups
            .iter()
            .flat_map(|(&gid, servers)| servers.iter().map(move |s| (gid, s.id())))
            .collect();
        for (gid, id) in ids {
            self.server(gid, id).on_tick().expect("tick");
            self.pump();
        }
    }

    /// Ticks until `done` holds (bounded).
    pub fn run_until(&mut self, what: &str, done: impl Fn(&World) -> bool) {
        for _ in 0..2_000 {
            if done(self) {
                return;
            }
            self.tick_all();
        }
        panic!("never reached: {what}");
    }

    /// Sends `request` to `gid`'s leader until it answers something but WrongLeader.
    pub fn call_group(&mut self, gid: GroupId, request: Request) -> Response {
        for _ in 0..20 {
            self.run_until("a leader", |w| w.leader(gid).is_some());
            let leader = self.leader(gid).expect("leader");
            self.next_req += 1;
            let req_id = self.next_req;
            self.server(gid, leader)
                .on_request(req_id, request.clone())
                .expect("request");
            let response = self.await_reply(req_id);
            if !matches!(response, Err(replica_group::KvError::WrongLeader { .. })) {
                return response;
            }
        }
        panic!("{request:?} never reached a leader of group {gid}");
    }

    fn await_reply(&mut self, req_id: RequestId) -> Response {
        for _ in 0..200 {
            self.pump();
            if let Some(pos) = self.replies.iter().position(|r| r.0 == req_id) {
                return self.replies.remove(pos).1;
            }
            self.tick_all();
        }
        panic!("request {req_id} never answered");
    }

    /// Get through `gid`; panics on anything but a value.
    pub fn get(&mut self, gid: GroupId, key: &[u8]) -> Option<Vec<u8>> {
        let op = replica_group::Op::Get { key: key.to_vec() };
        match self.call_group(
            gid,
            Request {
                client: 0,
                seq: 0,
                seen: 0,
                op,
            },
        ) {
            Ok(Reply::Value(value)) => value,
            other => panic!("get at group {gid} answered {other:?}"),
        }
    }

    /// Stops replica `id` of `gid` cleanly (its data checkpointed) and reopens it over
    /// the same store and data. (The data lives in memory here; crashes and power
    /// failures, which lose what was not checkpointed, are the kv lab's, on the
    /// simulator's disk.)
    pub fn restart(&mut self, gid: GroupId, id: NodeId) {
        let threshold = self.threshold;
        let fresh = open(gid, id, fresh_store(), Data::in_memory(), threshold);
        let mut old = std::mem::replace(self.server(gid, id), fresh);
        old.flush().expect("a clean stop");
        let (store, state) = old.into_host().into_parts();
        *self.server(gid, id) = open(gid, id, store, state.into_data(), threshold);
    }
}

fn parse_address(address: &str) -> (GroupId, NodeId) {
    let (gid, index) = address
        .strip_prefix('g')
        .and_then(|rest| rest.split_once('-'))
        .expect("a group address");
    let gid = gid.parse().expect("gid");
    let index: NodeId = index.parse().expect("index");
    (gid, index + 1)
}
