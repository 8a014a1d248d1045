//! [`GroupState`]: the replicated state of one replica group, and `apply`.
//!
//! Every replica feeds the committed log entries, in order, to [`GroupState::apply`];
//! since `apply` is deterministic (no clock read, no randomness, `BTreeMap` order only;
//! time is the cluster time the entries carry), every replica holds the same state and
//! computes the same answer at the same index.
//!
//! ```text
//!   apply(index, time, entry)
//!     |-- expire sessions of served shards quiet for > timeout (by each shard's clock)
//!     |-- Kv(request)        -> shard served? store.apply : WrongGroup     (store.rs)
//!     |-- Config(next)       -> adopt: set each shard's phase             (migration.rs)
//!     |-- InstallShard       -> Pulling -> Acking                          (migration.rs)
//!     |-- DeleteShard        -> Offering -> Absent, answer Deleted         (migration.rs)
//!     |-- ShardAcked         -> Acking -> Serving                          (migration.rs)
//!     |-- Reclaim            -> Offering -> Held (to an abandoned group)   (migration.rs)
//!     '-- Time               -> nothing but the clock
//! ```
//!
//! Invariants (asserted or checked on snapshot restore): `prev.num + 1 == config.num`
//! (both 0 at the start); one phase per shard of the configuration; a shard is served
//! only when the current configuration gives it to this group and its data is here;
//! indices passed to `apply` strictly increase.

use std::sync::Arc;

use shardkv_proto::kv::{KvError, MigrationResponse, Reply, Response};
use shardkv_proto::{Config, GroupId, Millis, ShardId};

use crate::data::{Data, DataError};
use crate::message::Entry;
use crate::migration::Pulled;
use crate::phase::Phase;
use crate::sessions::DEFAULT_SESSION_TIMEOUT_MS;
use crate::Index;

/// What an applied entry answers, for the request that proposed it (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The answer to a client's [`Entry::Kv`], with the clock of the key's shard then
    /// (0 when the shard is not served here).
    Kv(Response, Millis),
    /// The answer to another group's `DeleteShard` ([`Entry::DeleteShard`]).
    Migration(MigrationResponse),
    /// An internal entry: nobody waits for an answer.
    Internal,
}

/// The replicated state of one replica group; see the module docs.
#[derive(Debug)]
pub struct GroupState {
    pub(crate) gid: GroupId,
    /// Sessions expire after this much cluster time of silence.
    pub(crate) session_timeout_ms: Millis,
    /// The configuration the group is in.
    pub(crate) config: Config,
    /// The configuration before it (for the addresses of groups shards come from).
    pub(crate) prev: Config,
    /// One phase per shard, each shared with any clone of the state taken since it last
    /// changed: [`GroupState::phase_mut`] copies a shared phase before changing it, so a
    /// clone can be encoded as a snapshot on another thread while this state goes on
    /// applying.
    pub(crate) shards: Vec<Arc<Phase>>,
    pub(crate) applied_index: Index,
    /// The group's cluster time as applied (the latest an entry carried).
    pub(crate) time: Millis,
    /// Every shard's keys and values and its sessions, on disk.
    pub(crate) data: Data,
    /// A checkpoint was asked for while the data was busy with a flush: it starts, with
    /// fresh metadata, once that flush ends.
    pub(crate) checkpoint_wanted: bool,
}

/// How many times per session timeout the sessions are scanned for expiry.
const EXPIRY_SCANS_PER_TIMEOUT: u64 = 16;

impl GroupState {
    /// A fresh state for group `gid` in a cluster of `nshards` shards, in configuration 0
    /// (owning nothing), with the default session timeout, over `data` (emptied; to
    /// resume what a data holds, [`GroupState::open`]).
    ///
    /// # Panics
    /// If `gid` is `NO_GROUP` or `nshards` is 0.
    pub fn new(gid: GroupId, nshards: usize, data: Data) -> Result<Self, DataError> {
        Self::with_session_timeout(gid, nshards, DEFAULT_SESSION_TIMEOUT_MS, data)
    }

    /// Like [`GroupState::new`], sessions expiring after `timeout_ms` of cluster time in
    /// silence. Every replica of the group must use the same value.
    pub fn with_session_timeout(
        gid: GroupId,
        nshards: usize,
        timeout_ms: Millis,
        mut data: Data,
    ) -> Result<Self, DataError> {
        data.clear()?;
        data.commit(0)?;
        assert!(gid != shardkv_proto::NO_GROUP, "group id 0 is reserved");
        assert!(timeout_ms > 0, "session timeout of 0 ms");
        let config = Config::initial(nshards);
        Ok(GroupState {
            gid,
            session_timeout_ms: timeout_ms,
            prev: config.clone(),
            config,
            shards: (0..nshards).map(|_| Arc::new(Phase::Absent)).collect(),
            applied_index: 0,
            time: 0,
            data,
            checkpoint_wanted: false,
        })
    }

    /// Applies the committed `entry` at log `index`, stamped with cluster time `time`;
    /// returns the answer for whoever proposed it. An error is the data's: fatal for the
    /// node.
    ///
    /// # Panics
    /// If `index` is not past the last applied index.
    pub fn apply(
        &mut self,
        index: Index,
        time: Millis,
        entry: Entry,
    ) -> Result<Outcome, DataError> {
        self.advance_to(index, time)?;
        Ok(match entry {
            Entry::Kv(request) => {
                let (response, clock) = self.apply_kv(&request)?;
                Outcome::Kv(response, clock)
            }
            Entry::Config(next) => {
                self.adopt(next)?;
                Outcome::Internal
            }
            Entry::InstallShard {
                config_num,
                shard,
                after,
                kv,
                next,
                sessions,
                clock,
            } => {
                let chunk = Pulled {
                    after,
                    kv,
                    next,
                    sessions,
                    clock,
                };
                self.install(config_num, shard, chunk)?;
                Outcome::Internal
            }
            Entry::DeleteShard { config_num, shard } => {
                Outcome::Migration(self.delete(config_num, shard)?)
            }
            Entry::ShardAcked { config_num, shard } => {
                self.acked(config_num, shard);
                Outcome::Internal
            }
            Entry::Reclaim { config_num, shard } => {
                self.reclaim(config_num, shard);
                Outcome::Internal
            }
            Entry::Time => Outcome::Internal,
        })
    }

    /// Moves the applied index to `index` and the time to `time` (if later), and expires
    /// the sessions quiet by then.
    pub(crate) fn advance_to(&mut self, index: Index, time: Millis) -> Result<(), DataError> {
        assert!(
            index > self.applied_index,
            "apply at index {index} after index {}",
            self.applied_index
        );
        self.applied_index = index;
        let previous = self.time;
        self.time = self.time.max(time);
        let timeout = self.session_timeout_ms;
        // Scanning every shard's sessions on every entry costs more than the entry
        // itself with hundreds of shards; scan when the time crosses a multiple of 1/16
        // of the timeout. Expiry stays a function of the log alone (the same on every
        // replica, and after a restart), at most 1/16 late.
        let stride = self.expiry_stride();
        if self.time / stride == previous / stride {
            return Ok(());
        }
        let now = self.time;
        for shard in 0..self.shards.len() {
            // Checked first so that a scan copies only the shards whose sessions expire.
            let expiring = self.shards[shard].served_store().is_some_and(|store| {
                store
                    .sessions
                    .any_expired(store.session_clock(now, timeout))
            });
            if !expiring {
                continue;
            }
            let expired = match self.phase_mut(shard).served_store_mut() {
                Some(store) => {
                    let clock = store.session_clock(now, timeout);
                    store.sessions.expire(clock)
                }
                None => Vec::new(),
            };
            for (client, heard) in expired {
                tracing::debug!(client, heard, shard, "session expired");
            }
        }
        Ok(())
    }

    /// A client's request, applied: its answer and the clock of its key's shard.
    fn apply_kv(
        &mut self,
        request: &shardkv_proto::kv::Request,
    ) -> Result<(Response, Millis), DataError> {
        let shard = self.config.shard_of_key(request.op.key());
        let (now, timeout) = (self.time, self.session_timeout_ms);
        let shards = &mut self.shards;
        match Arc::make_mut(&mut shards[shard]).served_store_mut() {
            Some(store) => {
                let clock = store.session_clock(now, timeout);
                let response = store.apply(&mut self.data, shard, clock, request)?;
                Ok((response, clock.now))
            }
            None => Ok((Err(KvError::WrongGroup), 0)),
        }
    }

    /// The clock of `shard` now, when it is served here.
    pub fn shard_clock(&self, shard: ShardId) -> Option<Millis> {
        let store = self.shards.get(shard)?.served_store()?;
        Some(store.clock.at(self.time))
    }

    /// The clock of the request's shard when the request is a write that observed no
    /// clock (`seen` 0), which its shard refuses whatever applies before it
    /// ([`shardkv_proto::KvError::UnknownSession`]); `None` otherwise. The leader answers
    /// such a request at once with the clock, without a log entry. Every other verdict
    /// is the entry's when applied: this replica's applied state may lag the log, and a
    /// request it would refuse now may apply by then (its client's previous write yet to
    /// apply here, or a reading from a replica that applied more).
    pub fn refuses_unknown(&self, request: &shardkv_proto::kv::Request) -> Option<Millis> {
        if !request.op.is_mutation() || request.seen != 0 {
            return None;
        }
        self.shard_clock(self.config.shard_of_key(request.op.key()))
    }

    /// `shard`'s phase to change, copied first if a snapshot image shares it.
    pub(crate) fn phase_mut(&mut self, shard: ShardId) -> &mut Phase {
        Arc::make_mut(&mut self.shards[shard])
    }

    /// Takes `shard`'s phase out (copied if a snapshot image shares it), leaving it
    /// `Absent` until the caller puts the next one back with [`GroupState::set_phase`].
    pub(crate) fn take_phase(&mut self, shard: ShardId) -> Phase {
        let shared = std::mem::replace(&mut self.shards[shard], Arc::new(Phase::Absent));
        Arc::unwrap_or_clone(shared)
    }

    /// Sets `shard`'s phase.
    pub(crate) fn set_phase(&mut self, shard: ShardId, phase: Phase) {
        self.shards[shard] = Arc::new(phase);
    }

    /// Answers a Get for `key` from the state as applied so far, without a log entry:
    /// the value, or `WrongGroup` when the key's shard is not served here now, with the
    /// shard's clock (0 when not served). The caller makes it linearizable (see
    /// `reads.rs`).
    pub fn read(&self, key: &[u8]) -> Result<(Response, Millis), DataError> {
        let shard = self.config.shard_of_key(key);
        Ok(match self.shard_clock(shard) {
            Some(clock) => (Ok(Reply::Value(self.data.get(shard, key)?)), clock),
            None => (Err(KvError::WrongGroup), 0),
        })
    }

    /// This group's id.
    pub fn gid(&self) -> GroupId {
        self.gid
    }

    /// The current configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The configuration before the current one (configuration 0 before 1, and itself).
    pub fn prev_config(&self) -> &Config {
        &self.prev
    }

    /// Every shard's phase, by shard.
    pub fn shards(&self) -> impl ExactSizeIterator<Item = &Phase> + '_ {
        self.shards.iter().map(|phase| &**phase)
    }

    /// The phase of `shard`.
    ///
    /// # Panics
    /// If `shard` is out of range (see [`GroupState::phase`]).
    pub fn shard(&self, shard: ShardId) -> &Phase {
        &self.shards[shard]
    }

    /// The phase of `shard`, or `None` when out of range.
    pub fn phase(&self, shard: ShardId) -> Option<&Phase> {
        self.shards.get(shard).map(|phase| &**phase)
    }

    /// True when no migration is in progress, so the next configuration may be adopted.
    pub fn is_stable(&self) -> bool {
        self.shards().all(Phase::is_stable)
    }

    /// True when requests for `key` are served here now.
    pub fn serves_key(&self, key: &[u8]) -> bool {
        self.shards[self.config.shard_of_key(key)].serves()
    }

    /// The session timeout, in cluster time.
    pub fn session_timeout_ms(&self) -> Millis {
        self.session_timeout_ms
    }

    /// The group's cluster time as applied.
    pub fn time(&self) -> Millis {
        self.time
    }

    /// How often, in cluster time, the sessions are scanned for expiry: 1/16 of the
    /// timeout.
    pub fn expiry_stride(&self) -> Millis {
        (self.session_timeout_ms / EXPIRY_SCANS_PER_TIMEOUT).max(1)
    }

    /// The cluster's shard count.
    pub fn nshards(&self) -> usize {
        self.shards.len()
    }

    /// Bytes of keys and values the data's database holds (see [`Data::stored_bytes`]):
    /// what the disk keeps of the state besides the log.
    pub fn stored_bytes(&self) -> Result<u64, DataError> {
        self.data.stored_bytes()
    }

    /// Bytes of keys and values held, frozen shards included (what challenge 1 bounds).
    pub fn data_bytes(&self) -> Result<usize, DataError> {
        let mut bytes = 0;
        for shard in 0..self.shards.len() {
            let mut after = None;
            loop {
                let chunk = self.data.chunk(shard, after.as_deref(), usize::MAX)?;
                bytes += chunk
                    .pairs
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>();
                match chunk.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
        Ok(bytes)
    }
}
