//! [`PersisterBackend`]: the simulator's persister seen as a `shardkv_raft::Backend`, for
//! the reference implementations of every lab.

use labrpc_sim::Persister;
use shardkv_raft::{Backend, SnapshotMaker, StoreError};

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
/// once when the store waits for it (a second compaction, a conf change, a truncation).
/// Until then the store keeps its old snapshot and whole log, and a crash loses the new
/// snapshot: the persister never saw it. The count keeps runs a pure function of the
/// seed.
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
            self.persister.save_snapshot(&make()?.concat());
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
            self.persister.save_snapshot(&make()?.concat());
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

#[cfg(test)]
mod tests {
    use shardkv_raft::raft::eraftpb::{ConfState, Entry, HardState};
    use shardkv_raft::raft::Storage;
    use shardkv_raft::{LogStore, Store};

    use super::*;

    /// A fresh persister and a store over it, deferring by `polls`, with entries 1..=5
    /// committed and compacted through 3: the snapshot is pending.
    fn compacted(polls: u32) -> (Persister, Store<PersisterBackend>) {
        let persister = Persister::new();
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
        (persister, store)
    }

    /// Asserts whether `store`'s compaction is still pending, and that `persister` holds
    /// the new snapshot exactly when it is not.
    fn assert_pending(store: &Store<PersisterBackend>, persister: &Persister, pending: bool) {
        assert_eq!(store.compaction_pending(), pending);
        assert_eq!(persister.snapshot().is_empty(), pending);
    }

    /// The snapshot reaches the persister only after its polls (the compaction's own
    /// counts as one); until then the store keeps its whole log, and a crash leaves the
    /// old state to restart from.
    #[test]
    fn a_deferred_snapshot_is_saved_after_its_polls() {
        let (persister, mut store) = compacted(2);
        store.tidy().expect("tidy");
        assert_pending(&store, &persister, true);
        let crashed = Store::open(PersisterBackend::new(persister.deep_copy())).expect("reopen");
        assert_eq!(crashed.snapshot_index(), 0);
        assert_eq!(crashed.last_index().expect("last index"), 5);
        store.tidy().expect("tidy");
        assert_pending(&store, &persister, false);
        let restarted = Store::open(PersisterBackend::new(persister.deep_copy())).expect("reopen");
        assert_eq!(restarted.snapshot_index(), 3);
        assert_eq!(&restarted.latest_snapshot().unwrap().data[..], b"state");
    }

    /// A sync leaves the snapshot pending (as a real node's sync thread does); a store
    /// that must wait for it (`finish_compaction`) gets it saved at once.
    #[test]
    fn finishing_the_compaction_saves_a_deferred_snapshot_at_once() {
        let (persister, mut store) = compacted(100);
        store.sync().expect("sync");
        assert_pending(&store, &persister, true);
        store.finish_compaction().expect("finish");
        assert_pending(&store, &persister, false);
        assert_eq!(store.snapshot_index(), 3);
    }
}
