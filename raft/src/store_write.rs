//! The write side of [`Store`]: the [`LogStore`] impl.
//!
//! Each write goes to the backend first and to the cache second, so a failed backend
//! write leaves the cache describing what the backend may hold. Writes that replace
//! several records order them so that any prefix a crash leaves is recoverable by
//! `Store::open`: snapshot, then conf state, then hard state, then log trimming.

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};

use std::collections::{BTreeMap, VecDeque};
use std::sync::{mpsc, Arc, Mutex, OnceLock};

use crate::backend::lock;
use crate::codec::{
    self, encode, encode_run, CONF_STATE_KEY, ENTRY_END, ENTRY_START, HARD_STATE_KEY,
};
use crate::store::{entry_record_bytes, PendingCompaction};
use crate::{Backend, Index, LogStore, SnapshotData, Store, StoreError, SyncJob};

/// Compacted runs deleted per [`LogStore::tidy`]. A compaction of an 8 MiB log retires
/// about a thousand runs; deleting them in one go holds the node's driver for tens of
/// milliseconds. A Ready adds at most one run, so any bound above one drains them.
const DEAD_RUNS_PER_TIDY: usize = 8;

impl<B: Backend> Store<B> {
    pub(crate) fn write_hard_state(&mut self, hs: &HardState) -> Result<(), StoreError> {
        let bytes = encode("hard state", hs)?;
        self.backend.put(HARD_STATE_KEY, &bytes)?;
        self.hard_state = hs.clone();
        self.hard_state_bytes = (HARD_STATE_KEY.len() + bytes.len()) as u64;
        Ok(())
    }

    /// Writes the conf state record: `cs` as of `index`. Voters are sorted so the same
    /// configuration always has the same bytes (raft-rs builds them from hash sets).
    fn write_conf_state(&mut self, cs: &ConfState, index: Index) -> Result<(), StoreError> {
        let mut record = SnapshotMetadata::default();
        record.set_conf_state(sorted_conf_state(cs));
        record.index = index;
        let bytes = encode("conf state", &record)?;
        self.backend.put(CONF_STATE_KEY, &bytes)?;
        self.conf_state = record;
        self.conf_state_bytes = (CONF_STATE_KEY.len() + bytes.len()) as u64;
        Ok(())
    }

    /// Deletes every log entry at or after `index` (from backend and cache). Runs that
    /// start at or after it go; the run holding it is rewritten without its tail (same
    /// key, so the backend replaces it in one write), after the later runs are gone, so
    /// any prefix of these writes leaves a contiguous log.
    fn truncate_from(&mut self, index: Index) -> Result<(), StoreError> {
        self.settle_compaction(true)?;
        let first_index = self.first_index_inner();
        assert!(
            index >= first_index,
            "truncate at {index} below first index {first_index}"
        );
        self.backend
            .delete_range(&codec::entry_key(index), ENTRY_END)?;
        self.runs.split_off(&index);
        let keep = (index - first_index) as usize;
        let holding = self
            .runs
            .range(..index)
            .next_back()
            .filter(|(_, &last)| last >= index)
            .map(|(&key, _)| key);
        if let Some(key) = holding {
            let from = (key.max(first_index) - first_index) as usize;
            let kept: Vec<Entry> = self.entries.range(from..keep).cloned().collect();
            match kept.last() {
                Some(last) => {
                    self.backend
                        .put(&codec::entry_key(key), &encode_run(&kept)?)?;
                    self.runs.insert(key, last.index);
                }
                None => {
                    let end = codec::entry_key(key + 1);
                    self.backend.delete_range(&codec::entry_key(key), &end)?;
                    self.runs.remove(&key);
                }
            }
        }
        for entry in self.entries.drain(keep.min(self.entries.len())..) {
            self.entry_bytes -= entry_record_bytes(&entry);
        }
        Ok(())
    }

    /// Retires the runs whose entries are all at or before `index` (a run holding later
    /// entries stays whole: its early entries are skipped when the log is read back).
    /// Retired runs are deleted by [`LogStore::tidy`], a few at a time: their keys are
    /// all at or below `index`, so no later append reuses one before it is gone.
    fn delete_runs_through(&mut self, index: Index) {
        let kept = self
            .runs
            .iter()
            .find(|(_, &last)| last > index)
            .map(|(&key, _)| key);
        let live = match kept {
            Some(key) => self.runs.split_off(&key),
            None => BTreeMap::new(),
        };
        let dead = std::mem::replace(&mut self.runs, live);
        self.dead_runs.extend(dead.into_keys());
    }

    /// Drops every log entry at or before `index` from the cache (the backend's records
    /// go with [`Store::drop_runs_through`]).
    ///
    /// Costs as much as the entries kept, not the (many more) dropped: the driver's
    /// thread does this while requests wait. The cache keeps room for as many entries
    /// as it drops, so it does not copy itself as it grows back.
    fn trim_cache_through(&mut self, index: Index) {
        let count = self.entries.partition_point(|entry| entry.index <= index);
        let mut kept = self.entries.split_off(count);
        kept.reserve(count);
        // `entry_bytes` counts exactly the cached entries.
        self.entry_bytes = kept.iter().map(entry_record_bytes).sum();
        let gone = std::mem::replace(&mut self.entries, kept);
        if self.background_drop {
            drop_in_background(gone);
        }
    }

    /// Removes entries at or before `index` from the backend: whole runs are retired
    /// (deleted by the next few `tidy` calls), and a run straddling `index` is rewritten
    /// under its key with only its later entries (from the cache, which must already be
    /// trimmed), so once the retired runs are gone the backend holds exactly what
    /// `raft_state_bytes` counts. A crash before the rewrite leaves the old run, whose
    /// early entries `Store::open` skips.
    pub(crate) fn drop_runs_through(&mut self, index: Index) -> Result<(), StoreError> {
        self.delete_runs_through(index);
        let Some((&key, &last)) = self.runs.iter().next() else {
            return Ok(());
        };
        if key > index {
            return Ok(());
        }
        let live: Vec<Entry> = self
            .entries
            .iter()
            .take_while(|entry| entry.index <= last)
            .cloned()
            .collect();
        if live.is_empty() {
            let end = codec::entry_key(key + 1);
            self.backend.delete_range(&codec::entry_key(key), &end)?;
            self.runs.remove(&key);
            return Ok(());
        }
        self.backend
            .put(&codec::entry_key(key), &encode_run(&live)?)
    }

    /// Writes `snapshot` as the latest snapshot (the backend keeps the data, the store
    /// its metadata).
    fn write_snapshot(&mut self, mut snapshot: Snapshot) -> Result<(), StoreError> {
        self.settle_compaction(true)?;
        let bytes = encode("snapshot", &snapshot)?;
        self.backend.put_snapshot(&bytes)?;
        self.snapshot_data_bytes = snapshot.data.len() as u64;
        self.snapshot = snapshot.take_metadata();
        self.opened = None;
        Ok(())
    }

    /// Finishes the pending compaction once the backend has made and stored its
    /// snapshot (with `wait`, waits for that): the snapshot into the cache and the log
    /// out of it, then the conf state record as of its index, then the log records
    /// through it. Writes that must not precede those records call this with `wait`
    /// first.
    fn settle_compaction(&mut self, wait: bool) -> Result<(), StoreError> {
        if let Some(error) = &self.failed_snapshot {
            return Err(StoreError::Backend(format!(
                "an earlier snapshot could not be stored: {error}"
            )));
        }
        let Some(pending) = &self.pending_compaction else {
            return Ok(());
        };
        let (index, conf_state) = (pending.index, pending.conf_state.clone());
        let made = match self.backend.snapshot_stored(wait) {
            Ok(false) => return Ok(()),
            Ok(true) => Ok(lock(&pending.made).take()),
            Err(error) => Err(error),
        };
        let installed = made.and_then(|made| match made {
            Some((meta, data_bytes)) => {
                self.snapshot = meta;
                self.snapshot_data_bytes = data_bytes;
                self.opened = None;
                self.trim_cache_through(index);
                Ok(())
            }
            // Installed by an earlier call whose record writes failed.
            None if self.snapshot_index() == index => Ok(()),
            None => Err(StoreError::Backend(
                "the backend stored a snapshot without making it".into(),
            )),
        });
        if let Err(error) = installed {
            // The compaction can never finish: its records must not be written.
            self.failed_snapshot = Some(error.to_string());
            return Err(error);
        }
        self.write_conf_state(&conf_state, index)?;
        self.drop_runs_through(index)?;
        self.pending_compaction = None;
        Ok(())
    }
}

/// Hands `garbage` to a process-wide thread that frees it (started on first use); frees
/// it here if that thread cannot be started or has gone.
fn drop_in_background(garbage: VecDeque<Entry>) {
    static DROPPER: OnceLock<Option<mpsc::Sender<VecDeque<Entry>>>> = OnceLock::new();
    let dropper = DROPPER.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<VecDeque<Entry>>();
        std::thread::Builder::new()
            .name("shardkv-drop".into())
            .spawn(move || receiver.into_iter().for_each(drop))
            .ok()
            .map(|_| sender)
    });
    if let Some(sender) = dropper {
        // On failure the garbage comes back in the error and is dropped here.
        let _ = sender.send(garbage);
    }
}

/// `cs` with voters, outgoing voters and learners sorted.
pub(crate) fn sorted_conf_state(cs: &ConfState) -> ConfState {
    let mut cs = cs.clone();
    cs.voters.sort_unstable();
    cs.voters_outgoing.sort_unstable();
    cs.learners.sort_unstable();
    cs.learners_next.sort_unstable();
    cs
}

impl<B: Backend> LogStore for Store<B> {
    fn append(&mut self, entries: &[Entry]) -> Result<(), StoreError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let (first_index, last_index) = (self.first_index_inner(), self.last_index_inner());
        assert!(
            first.index >= first_index,
            "append at {} overwrites compacted log (first index {first_index})",
            first.index
        );
        assert!(
            first.index <= last_index + 1,
            "append at {} leaves a gap after last index {last_index}",
            first.index
        );
        for pair in entries.windows(2) {
            assert!(
                pair[1].index == pair[0].index + 1,
                "append of non-consecutive entries {} then {}",
                pair[0].index,
                pair[1].index
            );
        }
        if first.index <= last_index {
            self.truncate_from(first.index)?;
        }
        let last = entries[entries.len() - 1].index;
        self.backend
            .put(&codec::entry_key(first.index), &encode_run(entries)?)?;
        self.runs.insert(first.index, last);
        for entry in entries {
            self.entry_bytes += entry_record_bytes(entry);
            self.entries.push_back(entry.clone());
        }
        Ok(())
    }

    fn set_hard_state(&mut self, hs: &HardState) -> Result<(), StoreError> {
        self.write_hard_state(hs)
    }

    fn set_conf_state(&mut self, cs: &ConfState) -> Result<(), StoreError> {
        // The record names the snapshot index: not one whose snapshot may not be stored.
        self.settle_compaction(true)?;
        self.write_conf_state(cs, self.snapshot_index())
    }

    fn apply_snapshot(&mut self, snapshot: Snapshot) -> Result<(), StoreError> {
        let meta = snapshot.get_metadata().clone();
        let installed = self.snapshot_index();
        if meta.index <= installed {
            return Err(StoreError::SnapshotOutOfDate {
                index: meta.index,
                installed,
            });
        }
        self.write_snapshot(snapshot)?;
        self.write_conf_state(meta.get_conf_state(), meta.index)?;
        let mut hs = self.hard_state.clone();
        hs.commit = hs.commit.max(meta.index);
        hs.term = hs.term.max(meta.term);
        self.write_hard_state(&hs)?;
        // The whole log goes: raft-rs installs a snapshot only when its log does not
        // already hold the snapshot's last entry.
        self.backend.delete_range(ENTRY_START, ENTRY_END)?;
        self.runs.clear();
        self.dead_runs.clear();
        self.entries.clear();
        self.entry_bytes = 0;
        Ok(())
    }

    fn compact(
        &mut self,
        index: Index,
        data: SnapshotData,
        conf_state: ConfState,
    ) -> Result<(), StoreError> {
        self.settle_compaction(true)?;
        if index <= self.snapshot_index() {
            return Ok(());
        }
        let limit = self.hard_state.commit.min(self.last_index_inner());
        if index > limit {
            return Err(StoreError::Unavailable {
                index,
                last_index: limit,
            });
        }
        let mut meta = SnapshotMetadata {
            index,
            term: self.term_inner(index)?,
            ..SnapshotMetadata::default()
        };
        meta.set_conf_state(sorted_conf_state(&conf_state));
        let made = Arc::new(Mutex::new(None));
        let keep = Arc::clone(&made);
        self.backend.start_put_snapshot(Box::new(move || {
            let data = data.into_bytes();
            let data_bytes = data.len() as u64;
            let parts = codec::snapshot_parts(&meta, data)?;
            *lock(&keep) = Some((meta, data_bytes));
            Ok(parts)
        }))?;
        self.pending_compaction = Some(PendingCompaction {
            index,
            conf_state,
            made,
        });
        self.settle_compaction(false)
    }

    fn compaction_pending(&self) -> bool {
        self.pending_compaction.is_some()
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.backend.sync()?;
        // Settled after the backend's sync, so a snapshot stored meanwhile is installed;
        // one poll per sync, for backends that count them.
        self.settle_compaction(false)
    }

    fn sync_job(&mut self) -> Result<SyncJob, StoreError> {
        self.backend.sync_job()
    }

    fn finish_compaction(&mut self) -> Result<(), StoreError> {
        self.settle_compaction(true)
    }

    fn tidy(&mut self) -> Result<(), StoreError> {
        self.settle_compaction(false)?;
        for _ in 0..DEAD_RUNS_PER_TIDY {
            let Some(&key) = self.dead_runs.front() else {
                break;
            };
            self.backend.delete(&codec::entry_key(key))?;
            self.dead_runs.pop_front();
        }
        Ok(())
    }

    fn restore_snapshot(&mut self) -> Result<Snapshot, StoreError> {
        match self.opened.take() {
            Some(snapshot) if *snapshot.get_metadata() == self.snapshot => Ok(snapshot),
            _ => self.latest_snapshot(),
        }
    }

    fn raft_state_bytes(&self) -> u64 {
        self.entry_bytes + self.hard_state_bytes + self.conf_state_bytes
    }

    fn snapshot_bytes(&self) -> u64 {
        self.snapshot_data_bytes
    }
}
