//! The reference implementation of the kv lab interface: `replica_group::Server` over
//! the write-ahead log real nodes run, on the host's simulated disk ([`crate::sim_disk`]).
//!
//! Peer `i` of a group is raft id `i + 1` (raft-rs reserves 0), which is also the
//! client's convention for leader hints, so the server's hints pass through unchanged.
//! The replica runs as a real node does: `ReplicaConfig::production` (seeded from the
//! simulated machine's entropy), leader messages sent before its own sync, and syncs
//! that complete after a simulated latency ([`crate::sim_disk::NodeIo`]); only the
//! snapshot threshold is the lab's (`maxraftstate`). The group uses `GroupOptions`'
//! defaults.
//!
//! Caveats: a fatal server error (storage failure, undecodable snapshot) panics, which
//! the scenario runner reports as a failure with its seed.

use replica_group::{Effect, GroupOptions, Phase, Server, ServerError};
use shardkv_proto::kv::{MigrationRequest, Request};
use shardkv_proto::{ConfigNum, ShardId};
use shardkv_raft::{Disk, LogStore, ReplicaConfig, Replicated, Service};

use super::cluster::server_address;
use super::lab::{CallId, KvEffect, KvLab, KvStart, Peer, ReqId, LAB_NSHARDS};

/// The lab's chunk size for shard moves and catch-ups: small, so the lab's few
/// kilobytes per shard travel in several chunks and every path of a chunked copy runs.
pub const LAB_CHUNK_BYTES: usize = 1 << 10;
use crate::raft_lab::reference::raft_id;
use crate::sim_disk::{open_data, open_store, LabDisk, NodeIo, SimStore};

/// `replica_group::Server` behind the lab interface.
pub struct GroupLab {
    name: String,
    server: Server<SimStore>,
    io: NodeIo,
}

impl GroupLab {
    fn check(&self, result: Result<(), ServerError>, event: &str) {
        if let Err(error) = result {
            panic!("{} failed on {event}: {error}", self.name);
        }
    }

    /// The server, for scenarios that look inside the reference implementation.
    pub fn server(&self) -> &Server<SimStore> {
        &self.server
    }

    /// The server, for mutants that change what the reference does.
    pub fn server_mut(&mut self) -> &mut Server<SimStore> {
        &mut self.server
    }

    /// Makes a replica as [`KvLab::make`] does, its data on `wrap` of the simulated
    /// disk (for mutants whose disk drops a duty).
    pub fn make_with_data_disk<D: Disk>(start: KvStart, wrap: impl FnOnce(LabDisk) -> D) -> Self {
        let name = format!("group {} replica {}", start.gid, start.me);
        let voters = start.peers.iter().map(|&p| raft_id(p)).collect();
        let entropy = start.persister.entropy();
        let mut config = ReplicaConfig::production(raft_id(start.me), voters, entropy);
        config.snapshot_bytes_threshold = start.maxraftstate;
        let store = open_store(&start.persister, &name);
        let disk = wrap(LabDisk(start.persister.disk()));
        // Derived from the entropy already drawn: the engine takes nothing from the
        // world's random stream, so a seed's schedule does not depend on it.
        let data = open_data(&disk, &name, entropy ^ 0x5eed_da7a);
        let mut options = GroupOptions::new(start.gid, LAB_NSHARDS, start.masters);
        options.peers = (start.peers.iter())
            .map(|&peer| (raft_id(peer), server_address(start.gid, peer)))
            .collect();
        options.chunk_bytes = LAB_CHUNK_BYTES;
        if let Some(timeout) = start.session_timeout_ms {
            options.session_timeout_ms = timeout;
        }
        let mut server = Server::open(config, store, data, options)
            .unwrap_or_else(|e| panic!("{name}: open server: {e}"));
        let io = NodeIo::default();
        server.send_early_with(io.early_sink());
        server.sync_with(io.sync_sink());
        GroupLab { name, server, io }
    }
}

impl KvLab for GroupLab {
    fn make(start: KvStart) -> Self {
        Self::make_with_data_disk(start, |disk| disk)
    }

    fn on_peer_message(&mut self, from: Peer, bytes: Vec<u8>) {
        let result = self.server.on_peer_message(raft_id(from), &bytes);
        self.check(result, "peer message");
    }

    fn on_request(&mut self, req_id: ReqId, request: Request) {
        let result = self.server.on_request(req_id, request);
        self.check(result, "request");
    }

    fn on_migration_request(&mut self, req_id: ReqId, request: MigrationRequest) {
        let result = self.server.on_migration_request(req_id, request);
        self.check(result, "migration request");
    }

    fn on_response(&mut self, call_id: CallId, reply: Option<Vec<u8>>) {
        let result = self.server.on_response(call_id, reply);
        self.check(result, "response");
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

    fn take_effects(&mut self) -> Vec<KvEffect> {
        let messages = self.io.peer_messages(self.server.take_messages());
        let sends = messages
            .into_iter()
            .map(|(to, bytes)| KvEffect::Send { to, bytes });
        let wakes = self.io.take_wakes().into_iter();
        sends
            .chain(
                self.server
                    .take_effects()
                    .into_iter()
                    .map(|effect| match effect {
                        Effect::Reply {
                            req_id,
                            response,
                            clock,
                        } => KvEffect::Reply {
                            req_id,
                            response,
                            clock,
                        },
                        Effect::MigrationReply { req_id, response } => {
                            KvEffect::MigrationReply { req_id, response }
                        }
                        Effect::Call { call_id, to, bytes } => {
                            KvEffect::Call { call_id, to, bytes }
                        }
                    }),
            )
            .chain(wakes.map(|token| KvEffect::Wake { token }))
            .collect()
    }

    fn is_leader(&self) -> bool {
        self.server.replica().is_leader()
    }

    /// The log store's own count (the log lives in a write-ahead log on the simulated
    /// disk, whose files also hold superseded records until a segment is cleaned) plus
    /// the bytes of keys and values the group's data stores.
    fn persisted_bytes(&self, _persister: &labrpc_sim::Persister) -> usize {
        let store = self.server.replica().store();
        let data = self.server.state().stored_bytes();
        let data = data.unwrap_or_else(|error| panic!("{}: {error}", self.name));
        (store.raft_state_bytes() + store.snapshot_bytes() + data) as usize
    }

    fn state_digest(&self) -> Option<(u64, u64)> {
        use std::hash::{Hash, Hasher};
        let state = self.server.state();
        let dump = state.dump();
        let dump = dump.unwrap_or_else(|error| panic!("{}: {error}", self.name));
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        dump.hash(&mut hasher);
        Some((state.applied_index(), hasher.finish()))
    }

    fn serving(&self) -> (ConfigNum, Vec<ShardId>) {
        let state = self.server.state();
        let serving = (state.shards().enumerate())
            .filter(|(_, phase)| Phase::serves(phase))
            .map(|(shard, _)| shard)
            .collect();
        (state.config().num, serving)
    }
}
