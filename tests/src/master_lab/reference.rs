//! The reference implementation of the master lab interface: `shardmaster::Server` over
//! the write-ahead log real nodes run, on the host's simulated disk ([`crate::sim_disk`]).
//!
//! Peer `i` of the lab is raft id `i + 1` (raft-rs reserves 0), which is also the client's
//! convention for leader hints. The replica runs as a real node does (as the kv lab's
//! reference: `ReplicaConfig::production`, early sends, simulated sync completions) and
//! snapshots its state once the persisted
//! log passes [`SNAPSHOT_BYTES_THRESHOLD`], so restarts exercise restore-from-snapshot.
//!
//! Caveats: a fatal server error (storage failure, undecodable snapshot) panics, which the
//! scenario runner reports as a failure with its seed; the simulated disk cannot fail.

use labrpc_sim::Persister;
use shardkv_proto::{Config, ConfigNum, Request};
use shardkv_raft::{ReplicaConfig, Service};
use shardmaster::{MasterService, Reply, Server, ServerError};

use super::lab::{MasterEffect, MasterLab, Peer, ReqId, LAB_NSHARDS};
use crate::raft_lab::reference::raft_id;
use crate::sim_disk::{open_store, NodeIo, SimStore};

/// Persisted raft state, in bytes, past which the reference replica snapshots.
pub const SNAPSHOT_BYTES_THRESHOLD: u64 = 2 * 1024;

/// `shardmaster::Server` behind the lab interface.
pub struct ServerLab {
    me: Peer,
    server: Server<SimStore>,
    io: NodeIo,
}

impl ServerLab {
    fn check(&self, result: Result<(), ServerError>, event: &str) {
        if let Err(error) = result {
            panic!("master replica {} failed on {event}: {error}", self.me);
        }
    }
}

impl MasterLab for ServerLab {
    fn make(me: Peer, peers: &[Peer], persister: Persister) -> Self {
        let voters = peers.iter().map(|&p| raft_id(p)).collect();
        let mut config = ReplicaConfig::production(raft_id(me), voters, persister.entropy());
        config.snapshot_bytes_threshold = Some(SNAPSHOT_BYTES_THRESHOLD);
        let store = open_store(&persister, &format!("master replica {me}"));
        let mut server = shardmaster::open(config, store, LAB_NSHARDS)
            .unwrap_or_else(|e| panic!("master replica {me}: open server: {e}"));
        let io = NodeIo::default();
        server.send_early_with(io.early_sink());
        server.sync_with(io.sync_sink());
        ServerLab { me, server, io }
    }

    fn on_peer_message(&mut self, from: Peer, bytes: Vec<u8>) {
        let result = self.server.on_peer_message(raft_id(from), &bytes);
        self.check(result, "peer message");
    }

    fn on_request(&mut self, req_id: ReqId, request: Request) {
        let result = self.server.on_request(req_id, request);
        self.check(result, "request");
    }

    fn on_tick(&mut self) {
        let result = self.server.on_tick();
        self.check(result, "tick");
    }

    fn on_wake(&mut self, token: u64) {
        if let Some(number) = self.io.complete(token) {
            let result = self.server.on_synced(number);
            self.check(result, "sync");
        }
    }

    fn take_effects(&mut self) -> Vec<MasterEffect> {
        let messages = self.io.peer_messages(self.server.take_messages());
        let sends = messages
            .into_iter()
            .map(|(to, bytes)| MasterEffect::Send { to, bytes });
        let replies = self.server.take_replies().into_iter();
        let wakes = self.io.take_wakes().into_iter();
        sends
            .chain(
                replies.map(|Reply { req_id, response }| MasterEffect::Reply { req_id, response }),
            )
            .chain(wakes.map(|token| MasterEffect::Wake { token }))
            .collect()
    }

    fn is_leader(&self) -> bool {
        self.server.replica().is_leader()
    }

    fn applied_config(&self, num: Option<ConfigNum>) -> Config {
        self.server.master().query(num).clone()
    }
}
