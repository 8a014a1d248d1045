//! [`GroupState`]: the replicated state of one replica group, and `apply`.
//!
//! Every replica feeds the committed log entries, in order, to [`GroupState::apply`];
//! since `apply` is deterministic (no clock, no randomness, `BTreeMap` order only), every
//! replica holds the same state and computes the same answer at the same index.
//!
//! ```text
//!   apply(index, entry)
//!     |-- expire sessions of served shards quiet for > timeout entries
//!     |-- Kv(request)        -> shard served? store.apply : WrongGroup     (store.rs)
//!     |-- Config(next)       -> adopt: set each shard's phase             (migration.rs)
//!     |-- InstallShard       -> Pulling -> Acking                          (migration.rs)
//!     |-- DeleteShard        -> Offering -> Absent, answer Deleted         (migration.rs)
//!     |-- ShardAcked         -> Acking -> Serving                          (migration.rs)
//!     '-- Reclaim            -> Offering -> Held (to an abandoned group)   (migration.rs)
//! ```
//!
//! Invariants (asserted or checked on snapshot restore): `prev.num + 1 == config.num`
//! (both 0 at the start); one phase per shard of the configuration; a shard is served
//! only when the current configuration gives it to this group and its data is here;
//! indices passed to `apply` strictly increase.

use std::sync::Arc;

use shardkv_proto::kv::{KvError, MigrationResponse, Reply, Response};
use shardkv_proto::{Config, GroupId, ShardId};

use crate::data::{Data, DataError};
use crate::message::Entry;
use crate::migration::Pulled;
use crate::phase::Phase;
use crate::sessions::DEFAULT_SESSION_TIMEOUT_ENTRIES;
use crate::Index;

/// What an applied entry answers, for the request that proposed it (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The answer to a client's [`Entry::Kv`].
    Kv(Response),
    /// The answer to another group's `DeleteShard` ([`Entry::DeleteShard`]).
    Migration(MigrationResponse),
    /// An internal entry: nobody waits for an answer.
    Internal,
}

/// The replicated state of one replica group; see the module docs.
#[derive(Debug)]
pub struct GroupState {
    pub(crate) gid: GroupId,
    pub(crate) session_timeout_entries: u64,
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
        Self::with_session_timeout(gid, nshards, DEFAULT_SESSION_TIMEOUT_ENTRIES, data)
    }

    /// Like [`GroupState::new`], sessions expiring after `timeout_entries` log entries of
    /// silence. Every replica of the group must use the same value.
    pub fn with_session_timeout(
        gid: GroupId,
        nshards: usize,
        timeout_entries: u64,
        mut data: Data,
    ) -> Result<Self, DataError> {
        data.clear()?;
        data.commit(0)?;
        assert!(gid != shardkv_proto::NO_GROUP, "group id 0 is reserved");
        assert!(timeout_entries > 0, "session timeout of 0 entries");
        let config = Config::initial(nshards);
        Ok(GroupState {
            gid,
            session_timeout_entries: timeout_entries,
            prev: config.clone(),
            config,
            shards: (0..nshards).map(|_| Arc::new(Phase::Absent)).collect(),
            applied_index: 0,
            data,
            checkpoint_wanted: false,
        })
    }

    /// Applies the committed `entry` at log `index`; returns the answer for whoever
    /// proposed it. An error is the data's: fatal for the node.
    ///
    /// # Panics
    /// If `index` is not past the last applied index.
    pub fn apply(&mut self, index: Index, entry: Entry) -> Result<Outcome, DataError> {
        self.advance_to(index)?;
        Ok(match entry {
            Entry::Kv(request) => Outcome::Kv(self.apply_kv(index, &request)?),
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
            } => {
                let chunk = Pulled {
                    after,
                    kv,
                    next,
                    sessions,
                };
                self.install(index, config_num, shard, chunk)?;
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
        })
    }

    pub(crate) fn advance_to(&mut self, index: Index) -> Result<(), DataError> {
        assert!(
            index > self.applied_index,
            "apply at index {index} after index {}",
            self.applied_index
        );
        let previous = std::mem::replace(&mut self.applied_index, index);
        let timeout = self.session_timeout_entries;
        // Scanning every shard's sessions on every entry costs more than the entry
        // itself with hundreds of shards; scan when the index crosses a multiple of
        // 1/16 of the timeout. Expiry stays a function of the log alone (the same on
        // every replica, and after a snapshot restore), at most 1/16 late.
        let stride = (timeout / EXPIRY_SCANS_PER_TIMEOUT).max(1);
        if index / stride == previous / stride {
            return Ok(());
        }
        for shard in 0..self.shards.len() {
            // Checked first so that a scan copies only the shards whose sessions expire.
            let expiring = self.shards[shard]
                .served_store()
                .is_some_and(|store| store.sessions.any_expired(index, timeout));
            if !expiring {
                continue;
            }
            let expired = match self.phase_mut(shard).served_store_mut() {
                Some(store) => store.sessions.expire(index, timeout),
                None => Vec::new(),
            };
            for (client, last_index) in expired {
                tracing::debug!(client, last_index, index, "session expired");
            }
        }
        Ok(())
    }

    fn apply_kv(
        &mut self,
        index: Index,
        request: &shardkv_proto::kv::Request,
    ) -> Result<Response, DataError> {
        let shard = self.config.shard_of_key(request.op.key());
        if !self.shards[shard].serves() {
            return Ok(Err(KvError::WrongGroup));
        }
        let shards = &mut self.shards;
        match Arc::make_mut(&mut shards[shard]).served_store_mut() {
            Some(store) => store.apply(&mut self.data, shard, index, request),
            None => Ok(Err(KvError::WrongGroup)),
        }
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
    /// the value, or `WrongGroup` when the key's shard is not served here now. The
    /// caller makes it linearizable (see `reads.rs`).
    pub fn read(&self, key: &[u8]) -> Result<Response, DataError> {
        let shard = self.config.shard_of_key(key);
        Ok(match self.shards[shard].serves() {
            true => Ok(Reply::Value(self.data.get(shard, key)?)),
            false => Err(KvError::WrongGroup),
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

    /// The session timeout, in log entries.
    pub fn session_timeout_entries(&self) -> u64 {
        self.session_timeout_entries
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
