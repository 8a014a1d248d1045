//! The reference implementation of the lab interface: `shardkv_raft::Replica` over a
//! [`PersisterBackend`], the simulator's persister seen as a `shardkv_raft::Backend`.
//!
//! Peer `i` of the lab is raft id `i + 1` (raft-rs reserves id 0 for "none"). The replica is
//! configured as the suite expects: heartbeat every 2 ticks, election after 10 ticks.
//!
//! Caveats: a message that does not decode is dropped (the replica reports it and the
//! sender will retry); a storage error panics, because the persister cannot fail.

use labrpc_sim::Persister;
use shardkv_raft::{
    Applied, Backend, Error, Membership, Output, Replica, ReplicaConfig, SnapshotMaker, Store,
    StoreError,
};

use super::lab::{ApplyMsg, Effects, Index, Peer, RaftLab, RaftLabMembership, Term};

/// Heartbeat interval of the reference peer, in ticks.
pub const HEARTBEAT_TICKS: usize = 2;
/// Election timeout of the reference peer, in ticks.
pub const ELECTION_TICKS: usize = 10;

/// `snapshot_stored` polls a deferred snapshot takes in the kv and shard master labs
/// ([`PersisterBackend::deferring`]): a few events of the replica, long enough for
/// messages, requests and crashes to arrive while a compaction is pending.
pub const SNAPSHOT_POLLS: u32 = 8;

/// The simulator's [`Persister`] as a raft log backend: the key/value area holds the log and
/// hard state (and counts towards `raft_state_size`), the snapshot blob holds the snapshot.
/// Persister writes are durable on return, so `sync` has nothing to do.
///
/// [`PersisterBackend::deferring`] makes snapshots the way a real node does (its sled
/// backend encodes and writes them on a thread of their own): `start_put_snapshot`
/// keeps the maker, and the snapshot is made and saved only after that many
/// `snapshot_stored` polls (`Store` polls at every `Replica::advance` and sync), or at
/// once when the store waits for it (a second compaction, a conf change, a truncation). Until then the store keeps its old snapshot and whole log, and
/// a crash loses the new snapshot: the persister never saw it. The count keeps runs a
/// pure function of the seed.
pub struct PersisterBackend {
    persister: Persister,
    snapshot_delay: u32,
    pending: Option<(SnapshotMaker, u32)>,
}

impl PersisterBackend {
    /// Wrap `persister`; snapshots are saved at once.
    pub fn new(persister: Persister) -> Self {
        PersisterBackend {
            persister,
            snapshot_delay: 0,
            pending: None,
        }
    }

    /// Wrap `persister`; a started snapshot is saved at the first `snapshot_stored` poll
    /// after `polls` polls that answered "not yet".
    pub fn deferring(persister: Persister, polls: u32) -> Self {
        PersisterBackend {
            snapshot_delay: polls,
            ..PersisterBackend::new(persister)
        }
    }

    /// Makes and saves the pending snapshot, if any.
    fn finish_snapshot(&mut self) -> Result<(), StoreError> {
        if let Some((make, _)) = self.pending.take() {
            self.persister.save_snapshot(&make()?);
        }
        Ok(())
    }
}

impl Backend for PersisterBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.persister.get(key))
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.persister.put(key, value);
        Ok(())
    }

    fn delete_range(&mut self, start: &[u8], end: &[u8]) -> Result<(), StoreError> {
        self.persister.delete_range(start, end);
        Ok(())
    }

    fn scan(&self, start: &[u8], end: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        Ok(self.persister.scan(start, end))
    }

    fn put_snapshot(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.finish_snapshot()?;
        self.persister.save_snapshot(bytes);
        Ok(())
    }

    fn start_put_snapshot(&mut self, make: SnapshotMaker) -> Result<(), StoreError> {
        self.finish_snapshot()?;
        if self.snapshot_delay == 0 {
            self.persister.save_snapshot(&make()?);
        } else {
            self.pending = Some((make, self.snapshot_delay));
        }
        Ok(())
    }

    fn snapshot_stored(&mut self, wait: bool) -> Result<bool, StoreError> {
        match &mut self.pending {
            None => return Ok(true),
            Some((_, polls)) if !wait && *polls > 0 => {
                *polls -= 1;
                return Ok(false);
            }
            Some(_) => {}
        }
        self.finish_snapshot()?;
        Ok(true)
    }

    fn get_snapshot(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let bytes = self.persister.snapshot();
        Ok(if bytes.is_empty() { None } else { Some(bytes) })
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// `shardkv_raft::Replica` behind the lab interface.
pub struct ReplicaLab {
    replica: Replica<Store<PersisterBackend>>,
    effects: Effects,
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
        let mut config =
            ReplicaConfig::new(raft_id(me), voters.iter().map(|&p| raft_id(p)).collect());
        config.heartbeat_ticks = HEARTBEAT_TICKS;
        config.election_ticks = ELECTION_TICKS;
        let store = Store::open(PersisterBackend::new(persister))
            .unwrap_or_else(|e| panic!("peer {me}: open store: {e:?}"));
        let replica = Replica::open(config, store)
            .unwrap_or_else(|e| panic!("peer {me}: open replica: {e:?}"));
        let mut lab = ReplicaLab {
            replica,
            effects: Effects::default(),
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
        for (to, message) in output.messages {
            self.effects.messages.push((peer_of(to), message));
        }
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

    fn step(&mut self, _from: Peer, message: Vec<u8>) {
        if let Err(e) = self.replica.step(&message) {
            tracing::debug!(error = ?e, "message dropped");
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

#[cfg(test)]
mod tests {
    use shardkv_raft::raft::eraftpb::{ConfState, Entry, HardState};
    use shardkv_raft::raft::Storage;
    use shardkv_raft::LogStore;

    use super::*;

    /// A store over a deferring persister with entries 1..=5 committed, compacted through
    /// 3: the snapshot is pending.
    fn compacted(persister: &Persister, polls: u32) -> Store<PersisterBackend> {
        let mut store =
            Store::open(PersisterBackend::deferring(persister.clone(), polls)).expect("open");
        let entries: Vec<Entry> = (1..=5)
            .map(|index| Entry {
                index,
                term: 1,
                ..Entry::default()
            })
            .collect();
        store.append(&entries).expect("append");
        let hard_state = HardState {
            term: 1,
            commit: 5,
            ..HardState::default()
        };
        store.set_hard_state(&hard_state).expect("hard state");
        let conf_state = ConfState {
            voters: vec![1],
            ..ConfState::default()
        };
        store
            .compact(3, b"state".to_vec().into(), conf_state)
            .expect("compact");
        store
    }

    /// The snapshot reaches the persister only after its polls (the compaction's own
    /// counts as one); until then the store keeps its whole log, and a crash leaves the
    /// old state to restart from.
    #[test]
    fn a_deferred_snapshot_is_saved_after_its_polls() {
        let persister = Persister::new();
        let mut store = compacted(&persister, 2);
        store.tidy().expect("tidy");
        assert!(store.compaction_pending());
        assert!(persister.snapshot().is_empty());
        let crashed = Store::open(PersisterBackend::new(persister.deep_copy())).expect("reopen");
        assert_eq!(crashed.snapshot_index(), 0);
        assert_eq!(crashed.last_index().expect("last index"), 5);
        store.tidy().expect("tidy");
        assert!(!store.compaction_pending());
        assert!(!persister.snapshot().is_empty());
        let restarted = Store::open(PersisterBackend::new(persister.deep_copy())).expect("reopen");
        assert_eq!(restarted.snapshot_index(), 3);
        assert_eq!(&restarted.latest_snapshot().data[..], b"state");
    }

    /// A sync leaves the snapshot pending (as a real node's sync thread does); a store
    /// that must wait for it (`finish_compaction`) gets it saved at once.
    #[test]
    fn finishing_the_compaction_saves_a_deferred_snapshot_at_once() {
        let persister = Persister::new();
        let mut store = compacted(&persister, 100);
        store.sync().expect("sync");
        assert!(store.compaction_pending());
        assert!(persister.snapshot().is_empty());
        store.finish_compaction().expect("finish");
        assert!(!store.compaction_pending());
        assert_eq!(store.snapshot_index(), 3);
        assert!(!persister.snapshot().is_empty());
    }
}
