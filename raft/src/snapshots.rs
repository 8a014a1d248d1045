//! Snapshots and the log compaction behind them: taken on request (`snapshot`,
//! `snapshot_now`) or when the log has grown enough (`maybe_snapshot`, whose policy is
//! `should_snapshot`), and finished before a clean stop (`flush`).

use crate::{Error, Index, LogStore, Replica, SnapshotData, StoreError};

impl<S: LogStore> Replica<S> {
    /// Takes a snapshot at `index` (at most the applied index) holding the state
    /// machine's `data` (bytes, or [`SnapshotData::encode_later`]), and compacts the log
    /// through it. Lagging followers then get the snapshot from raft-rs. The store may
    /// encode and write it in the background ([`LogStore::compact`]). A no-op when
    /// `index` is not past the current snapshot.
    pub fn snapshot(&mut self, index: Index, data: impl Into<SnapshotData>) -> Result<(), Error> {
        let applied = self.applied_index();
        if index > applied {
            return Err(StoreError::Unavailable {
                index,
                last_index: applied,
            }
            .into());
        }
        if index < self.raw.store().first_index()? {
            return Ok(());
        }
        let conf_state = self.history.at(index).clone();
        self.raw
            .mut_store()
            .compact(index, data.into(), conf_state)?;
        self.history.compact(index);
        Ok(())
    }

    /// Snapshots at the applied index when the log is large enough
    /// ([`Replica::should_snapshot`]) and that index is past the current snapshot (so a
    /// log that stays above the threshold is not snapshotted twice at one index), and no
    /// earlier snapshot is still being encoded or written
    /// ([`LogStore::compaction_pending`]). `encode(index)` gives the state machine's
    /// data as of `index` (bytes, or [`SnapshotData::encode_later`]); it is only called
    /// when a snapshot is taken. Returns the index snapshotted, if any.
    pub fn maybe_snapshot<D: Into<SnapshotData>>(
        &mut self,
        encode: impl FnOnce(Index) -> D,
    ) -> Result<Option<Index>, Error> {
        self.maybe_snapshot_at(self.applied_index(), encode)
    }

    /// [`Replica::maybe_snapshot`] at `index` (at most the applied index) rather than
    /// the applied index: for a state machine that knows the last index its state holds,
    /// which lags raft's applied index by the empty entries a new leader appends (they
    /// never reach it).
    pub fn maybe_snapshot_at<D: Into<SnapshotData>>(
        &mut self,
        index: Index,
        encode: impl FnOnce(Index) -> D,
    ) -> Result<Option<Index>, Error> {
        if !self.should_snapshot() || self.raw.store().compaction_pending() {
            return Ok(None);
        }
        let taken = self.snapshot_applied(index, encode)?;
        // The offset from the other replicas is set; the period stays the threshold's.
        self.stagger_next &= taken.is_none();
        Ok(taken)
    }

    /// Snapshots at the applied index now, below the size threshold too, when snapshots
    /// are enabled (`snapshot_bytes_threshold` is set) and the index is past the current
    /// snapshot. For state machines that must get data out of their persisted state
    /// promptly: a replica group that deleted a shard it gave away must not keep its bytes
    /// in the old snapshot until the log happens to grow. Waits for a snapshot still
    /// being encoded or written first. Returns the index snapshotted.
    pub fn snapshot_now<D: Into<SnapshotData>>(
        &mut self,
        encode: impl FnOnce(Index) -> D,
    ) -> Result<Option<Index>, Error> {
        self.snapshot_now_at(self.applied_index(), encode)
    }

    /// [`Replica::snapshot_now`] at `index` (see [`Replica::maybe_snapshot_at`]).
    pub fn snapshot_now_at<D: Into<SnapshotData>>(
        &mut self,
        index: Index,
        encode: impl FnOnce(Index) -> D,
    ) -> Result<Option<Index>, Error> {
        if self.config.snapshot_bytes_threshold.is_none() {
            return Ok(None);
        }
        let taken = self.snapshot_applied(index, encode)?;
        // Every replica applies the same entry, so this snapshot lines them up again.
        self.stagger_next |= taken.is_some();
        Ok(taken)
    }

    /// True when [`Replica::snapshot_now`] (with `now`) or else
    /// [`Replica::maybe_snapshot`] would take a snapshot, so a caller whose encoder is
    /// costly to make builds it only then.
    pub fn snapshot_due(&self, now: bool) -> Result<bool, Error> {
        let wanted = match now {
            true => self.config.snapshot_bytes_threshold.is_some(),
            false => self.should_snapshot() && !self.raw.store().compaction_pending(),
        };
        Ok(wanted && self.applied_index() >= self.raw.store().first_index()?)
    }

    fn snapshot_applied<D: Into<SnapshotData>>(
        &mut self,
        index: Index,
        encode: impl FnOnce(Index) -> D,
    ) -> Result<Option<Index>, Error> {
        if index < self.raw.store().first_index()? {
            return Ok(None);
        }
        self.snapshot(index, encode(index))?;
        tracing::debug!(node = self.id(), index, "snapshot taken");
        Ok(Some(index))
    }

    /// True when the persisted raft state reached `snapshot_bytes_threshold` and, when
    /// `snapshot_log_multiple` is set, that multiple of the current snapshot's size (plus
    /// this voter's share with `snapshot_stagger`).
    pub fn should_snapshot(&self) -> bool {
        let Some(threshold) = self.config.snapshot_bytes_threshold else {
            return false;
        };
        let proportional = self
            .store()
            .snapshot_bytes()
            .saturating_mul(self.config.snapshot_log_multiple);
        let due = threshold.max(proportional);
        self.raft_state_bytes() >= due.saturating_add(self.stagger(due))
    }

    /// How much more log than `due` this replica waits for before its next snapshot
    /// (see [`ReplicaConfig::snapshot_stagger`]): `k / (2n)` of it for the voter at
    /// position `k` of `n` when the replicas may be lined up (`stagger_next`); nothing
    /// for the first voter, a non-voter, or without the option.
    fn stagger(&self, due: u64) -> u64 {
        if !self.config.snapshot_stagger || !self.stagger_next {
            return 0;
        }
        let Some(position) = self.voters.iter().position(|&id| id == self.id()) else {
            return 0;
        };
        let share = u128::from(due) * position as u128 / (2 * self.voters.len() as u128);
        u64::try_from(share).unwrap_or(u64::MAX)
    }

    /// Makes every write so far durable, finishing a pending compaction first (it waits
    /// for the snapshot to be stored): for a clean stop, so the next start begins from
    /// that snapshot instead of discarding it and replaying the log it covers.
    pub fn flush(&mut self) -> Result<(), Error> {
        let store = self.raw.mut_store();
        store.finish_compaction()?;
        store.sync()?;
        Ok(())
    }
}
