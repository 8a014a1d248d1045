//! The reference implementation of the lab interface: `shardkv_raft::Replica` over the
//! write-ahead log real nodes run, on the host's simulated disk ([`crate::sim_disk`]).
//!
//! Peer `i` of the lab is raft id `i + 1` (raft-rs reserves id 0 for "none"). The replica is
//! configured as a real node is (`ReplicaConfig::production`: heartbeat every 2 ticks,
//! election after 10 to 20, seeded from the simulated machine's entropy), sends a leader's
//! messages before its own sync and learns of each sync when it completes, after a
//! simulated latency ([`crate::sim_disk::NodeIo`]).
//!
//! Caveats: a message that does not decode is dropped (the replica reports it and the
//! sender will retry); a storage error panics, because the simulated disk cannot fail.

use labrpc_sim::Persister;
use shardkv_raft::{Applied, Error, LogStore, Membership, Output, Replica, ReplicaConfig};

use super::lab::{ApplyMsg, Effects, Index, Peer, RaftLab, RaftLabMembership, Term};
use crate::sim_disk::{open_store, NodeIo, SimStore};

/// `shardkv_raft::Replica` behind the lab interface.
pub struct ReplicaLab {
    replica: Replica<SimStore>,
    effects: Effects,
    io: NodeIo,
}

/// The raft id of lab peer `peer` (every lab reference numbers its replicas this way).
pub(crate) fn raft_id(peer: Peer) -> u64 {
    peer as u64 + 1
}

fn peer_of(id: u64) -> Peer {
    assert!(id >= 1, "raft id 0 is not a peer");
    (id - 1) as usize
}

impl ReplicaLab {
    fn open(me: Peer, voters: Vec<Peer>, persister: Persister) -> Self {
        let voters = voters.iter().map(|&p| raft_id(p)).collect();
        let config = ReplicaConfig::production(raft_id(me), voters, persister.entropy());
        let store = open_store(&persister, &format!("peer {me}"));
        let mut replica = Replica::open(config, store)
            .unwrap_or_else(|e| panic!("peer {me}: open replica: {e:?}"));
        let io = NodeIo::default();
        replica.send_early_with(io.early_sink());
        replica.sync_with(io.sync_sink());
        let mut lab = ReplicaLab {
            replica,
            effects: Effects::default(),
            io,
        };
        lab.advance();
        lab
    }

    /// Run the replica's Ready protocol and queue what it asks for.
    fn advance(&mut self) {
        let me = self.replica.id();
        let output: Output = self
            .replica
            .advance()
            .unwrap_or_else(|e| panic!("raft id {me}: advance: {e:?}"));
        let early = self.io.take_early();
        for (to, message) in early.into_iter().chain(output.messages) {
            self.effects.messages.push((peer_of(to), message));
        }
        self.effects.wakes.extend(self.io.take_wakes());
        for applied in output.applied {
            match applied {
                Applied::Command { index, data, .. } => {
                    self.effects.applied.push(ApplyMsg::Command {
                        index,
                        command: data,
                    })
                }
                Applied::Snapshot { index, term, data } => self
                    .effects
                    .applied
                    .push(ApplyMsg::Snapshot { index, term, data }),
                // The voter set is read from the replica when asked (`members`).
                Applied::Membership { .. } => {}
            }
        }
    }
}

impl ReplicaLab {
    /// Runs `f` on the replica and its simulated driver, then the Ready protocol: how the
    /// durability mutants of the suite reach inside the reference.
    pub fn with_replica(&mut self, f: impl FnOnce(&mut Replica<SimStore>, &NodeIo)) {
        f(&mut self.replica, &self.io);
        self.advance();
    }

    /// The simulated driver, to look at without running the Ready protocol (a crashed
    /// peer's mutant reads what syncs it left pending).
    pub fn io(&self) -> &NodeIo {
        &self.io
    }
}

impl RaftLab for ReplicaLab {
    fn make(me: Peer, n: usize, persister: Persister) -> Self {
        ReplicaLab::open(me, (0..n).collect(), persister)
    }

    fn start(&mut self, command: Vec<u8>) -> Option<(Index, Term)> {
        let result = self.replica.propose(command);
        self.advance();
        match result {
            Ok(proposal) => Some((proposal.index, proposal.term)),
            Err(Error::NotLeader { .. }) => None,
            Err(e) => {
                tracing::debug!(error = ?e, "propose refused");
                None
            }
        }
    }

    fn get_state(&self) -> (Term, bool) {
        (self.replica.term(), self.replica.is_leader())
    }

    fn snapshot(&mut self, index: Index, snapshot: Vec<u8>) {
        if let Err(e) = self.replica.snapshot(index, snapshot) {
            tracing::debug!(index, error = ?e, "snapshot refused");
        }
        self.advance();
    }

    /// Every peer here is an honest replica, so a message the replica refuses before
    /// raft-rs (`shardkv_raft`'s input check) means a peer broke raft's rules: most
    /// likely it lost entries it had acknowledged. That fails the run, loudly.
    fn step(&mut self, from: Peer, message: Vec<u8>) {
        match self.replica.step_from(raft_id(from), &message) {
            Err(shardkv_raft::Error::Decode(refused)) => {
                panic!("refused a peer's message no honest peer sends: {refused}")
            }
            Err(e) => tracing::debug!(error = ?e, "message dropped"),
            Ok(()) => {}
        }
        self.advance();
    }

    fn tick(&mut self) {
        self.replica.tick();
        self.advance();
    }

    fn take_effects(&mut self) -> Effects {
        std::mem::take(&mut self.effects)
    }

    /// The store's own count: the log lives in a write-ahead log on the simulated disk,
    /// whose files also hold superseded records until a segment is cleaned.
    fn raft_state_size(&self, _persister: &Persister) -> usize {
        self.replica.store().raft_state_bytes() as usize
    }

    fn wake(&mut self, token: u64) {
        if let Some(number) = self.io.complete(token) {
            self.replica.on_synced(number);
        }
        self.advance();
    }
}

impl RaftLabMembership for ReplicaLab {
    fn make_joiner(me: Peer, persister: Persister) -> Self {
        ReplicaLab::open(me, Vec::new(), persister)
    }

    fn change_membership(&mut self, add: &[Peer], remove: &[Peer]) -> Option<(Index, Term)> {
        let change = Membership {
            add: add.iter().map(|&p| raft_id(p)).collect(),
            remove: remove.iter().map(|&p| raft_id(p)).collect(),
        };
        let result = self.replica.change_membership(change);
        self.advance();
        match result {
            Ok(proposal) => Some((proposal.index, proposal.term)),
            Err(e) => {
                tracing::debug!(error = ?e, "membership change refused");
                None
            }
        }
    }

    fn members(&self) -> Vec<Peer> {
        self.replica.voters().into_iter().map(peer_of).collect()
    }
}
