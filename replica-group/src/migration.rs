//! Shard migration in the state machine: adopting a configuration, installing a pulled
//! shard, deleting a given-away one, and the answers to other groups' requests.
//!
//! Every transition here happens when an entry applies, so every replica makes it at the
//! same log index. A pulled shard arrives in chunks, each through the log, in order: the
//! `Pulling` phase keeps the last key installed. The read-only answers
//! ([`GroupState::pull_answer`],
//! [`GroupState::delete_verdict`]) are what a replica tells another group from its
//! applied state; see the crate docs for the protocol and why they are safe.
//!
//! Entries that do not fit the current state (a configuration that is not the next one,
//! an install for a shard no longer pulling, a repeated ack) are ignored: they are
//! repeats or the work of deposed leaders, and ignoring them is what makes the leader's
//! retries safe.

use std::collections::BTreeMap;

use shardkv_proto::kv::{DupTable, KvError, MigrationReply, MigrationResponse};
use shardkv_proto::{Config, ConfigNum, GroupId, Millis, ShardId, NO_GROUP};

use crate::data::DataError;
use crate::phase::Phase;
use crate::sessions::Sessions;
use crate::state::GroupState;
use crate::store::{ShardClock, ShardStore};

/// One chunk of a pulled shard, as an `Entry::InstallShard` carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// The last key installed before it; `None` for the first chunk.
    pub after: Option<Vec<u8>>,
    /// Its keys and values.
    pub kv: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Its last key when more follow; `None` for the last chunk.
    pub next: Option<Vec<u8>>,
    /// The duplicate table, with the last chunk.
    pub sessions: DupTable,
    /// The shard's clock at the previous owner; the new owner continues it.
    pub clock: Millis,
}

/// What a replica does with another group's `DeleteShard`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteVerdict {
    /// The shard is offered for exactly that configuration: delete it through the log
    /// (leader only) and answer once applied.
    Propose,
    /// Answer now, with this.
    Answer(MigrationResponse),
}

impl GroupState {
    /// Adopts `next` if it is the configuration after the current one and every shard is
    /// stable; otherwise ignores it.
    pub(crate) fn adopt(&mut self, next: Config) -> Result<(), DataError> {
        let current = self.config.num;
        if next.num != current + 1 {
            tracing::debug!(gid = self.gid, current, next = next.num, "config ignored");
            return Ok(());
        }
        if let Err(reason) = self.check_next(&next) {
            tracing::error!(
                gid = self.gid,
                next = next.num,
                reason,
                "bad config ignored"
            );
            return Ok(());
        }
        if !self.is_stable() {
            tracing::warn!(gid = self.gid, current, "config while migrating, ignored");
            return Ok(());
        }
        for shard in 0..self.shards.len() {
            let phase = self.take_phase(shard);
            let next_phase = self.next_phase(shard, phase, &next);
            if matches!(next_phase, Phase::Absent) {
                // Lost to nobody: the data goes (a no-op for a shard never held).
                self.data.delete_shard(shard)?;
            }
            self.set_phase(shard, next_phase);
        }
        tracing::info!(gid = self.gid, config = next.num, "config adopted");
        self.prev = std::mem::replace(&mut self.config, next);
        assert_eq!(
            self.prev.num + 1,
            self.config.num,
            "config {} after {}",
            self.config.num,
            self.prev.num
        );
        Ok(())
    }

    fn check_next(&self, next: &Config) -> Result<(), String> {
        next.check().map_err(|e| e.to_string())?;
        if next.nshards() != self.shards.len() {
            return Err(format!(
                "{} shards, the cluster has {}",
                next.nshards(),
                self.shards.len()
            ));
        }
        Ok(())
    }

    fn next_phase(&self, shard: ShardId, phase: Phase, next: &Config) -> Phase {
        let (gid, before, after) = (self.gid, self.config.shards[shard], next.shards[shard]);
        if matches!(phase, Phase::Held { .. }) {
            return Self::next_held(gid, shard, phase, before, after);
        }
        match (before == gid, after == gid) {
            (true, true) => {
                assert!(
                    matches!(phase, Phase::Serving(_)),
                    "shard {shard} owned in config {} but {}",
                    self.config.num,
                    phase.name()
                );
                phase
            }
            (false, true) if before == NO_GROUP => phase.into_fresh(shard),
            (false, true) => phase.into_pulling(shard, before),
            (true, false) if after == NO_GROUP => {
                tracing::warn!(gid, shard, "shard left unowned: its data is dropped");
                phase.into_absent(shard)
            }
            (true, false) => phase.into_offering(shard, after),
            (false, false) => {
                assert!(
                    matches!(phase, Phase::Absent),
                    "shard {shard} not owned in config {} but {}",
                    self.config.num,
                    phase.name()
                );
                phase
            }
        }
    }

    /// The next phase of a shard held for an abandoned group (owned by `before`, which
    /// is not this group): served again when it comes back here, offered to a new owner
    /// (who asks the shard master where the data is, `abandon.rs`), dropped when nobody
    /// owns it, held while the owner stays.
    fn next_held(
        gid: GroupId,
        shard: ShardId,
        phase: Phase,
        before: GroupId,
        after: GroupId,
    ) -> Phase {
        match after {
            _ if after == gid => {
                tracing::info!(gid, shard, "held shard given back: served again");
                phase.into_reclaimed(shard)
            }
            NO_GROUP => {
                tracing::warn!(gid, shard, "held shard left unowned: its data is dropped");
                phase.into_absent(shard)
            }
            _ if after == before => phase,
            to => phase.into_offering(shard, to),
        }
    }

    /// Marks `shard` held if it is offered in `config_num` (to a group the shard master
    /// says is abandoned, `abandon.rs`); otherwise ignores it.
    pub(crate) fn reclaim(&mut self, config_num: ConfigNum, shard: ShardId) {
        let to = match self.phase(shard) {
            Some(Phase::Offering { to, .. }) if config_num == self.config.num => *to,
            _ => {
                tracing::debug!(gid = self.gid, shard, config_num, "reclaim ignored");
                return;
            }
        };
        let phase = self.take_phase(shard);
        self.set_phase(shard, phase.into_held(shard));
        tracing::warn!(
            gid = self.gid,
            shard,
            config = config_num,
            abandoned = to,
            "shard offered to an abandoned group: held for its next owner"
        );
    }

    /// Installs a pulled chunk of `shard`, if the shard is still pulling in `config_num`
    /// and has received exactly the keys before the chunk; the last chunk makes it
    /// served, its clock continuing from the previous owner's.
    pub(crate) fn install(
        &mut self,
        config_num: ConfigNum,
        shard: ShardId,
        chunk: Pulled,
    ) -> Result<(), DataError> {
        let received = match self.phase(shard) {
            Some(Phase::Pulling { received, .. }) => received,
            _ => {
                tracing::debug!(gid = self.gid, shard, config_num, "install ignored");
                return Ok(());
            }
        };
        if config_num != self.config.num || *received != chunk.after {
            tracing::debug!(gid = self.gid, shard, config_num, "stale chunk ignored");
            return Ok(());
        }
        if let Err(reason) = self.check_chunk(shard, &chunk) {
            tracing::error!(
                gid = self.gid,
                shard,
                config_num,
                reason,
                "bad chunk ignored"
            );
            return Ok(());
        }
        if chunk.after.is_none() {
            self.data.delete_shard(shard)?;
        }
        for (key, value) in &chunk.kv {
            self.data.put(shard, key, value)?;
        }
        match chunk.next {
            Some(next) => {
                if let Phase::Pulling { received, .. } = self.phase_mut(shard) {
                    *received = Some(next);
                }
            }
            None => {
                let store = ShardStore {
                    sessions: Sessions::from_table(chunk.sessions),
                    clock: ShardClock::anchored(chunk.clock, self.time),
                };
                let phase = self.take_phase(shard);
                self.set_phase(shard, phase.into_acking(shard, store));
                tracing::info!(
                    gid = self.gid,
                    shard,
                    config = config_num,
                    "shard installed"
                );
            }
        }
        Ok(())
    }

    /// A chunk's keys are the shard's, in order after `after`, and `next` is its last;
    /// its duplicate table heard no one after the shard's clock (as the metadata's check
    /// demands of every stored table).
    fn check_chunk(&self, shard: ShardId, chunk: &Pulled) -> Result<(), String> {
        let table = &chunk.sessions;
        let late = table.sessions.values().any(|s| s.heard > chunk.clock);
        if late || table.forgotten > chunk.clock {
            return Err("a session heard after the shard's clock".into());
        }
        let first = chunk.kv.keys().next();
        if let (Some(after), Some(first)) = (&chunk.after, first) {
            if first <= after {
                return Err("a key at or before the chunk's start".into());
            }
        }
        if chunk.next.is_some() && chunk.next.as_ref() != chunk.kv.keys().next_back() {
            return Err("more follow, but not after this chunk's last key".into());
        }
        match chunk
            .kv
            .keys()
            .find(|key| self.config.shard_of_key(key) != shard)
        {
            Some(_) => Err("a key of another shard".into()),
            None => Ok(()),
        }
    }

    /// Deletes `shard` if offered in `config_num`; answers the `DeleteShard` either way.
    pub(crate) fn delete(
        &mut self,
        config_num: ConfigNum,
        shard: ShardId,
    ) -> Result<MigrationResponse, DataError> {
        Ok(match self.delete_verdict(config_num, shard) {
            DeleteVerdict::Answer(answer) => answer,
            DeleteVerdict::Propose => {
                let phase = self.take_phase(shard);
                self.set_phase(shard, phase.into_absent(shard));
                self.data.delete_shard(shard)?;
                tracing::info!(gid = self.gid, shard, config = config_num, "shard deleted");
                Ok(MigrationReply::Deleted { config_num, shard })
            }
        })
    }

    /// Marks `shard` acknowledged if it is acking in `config_num`.
    pub(crate) fn acked(&mut self, config_num: ConfigNum, shard: ShardId) {
        let acking = matches!(self.phase(shard), Some(Phase::Acking { .. }));
        if config_num != self.config.num || !acking {
            tracing::debug!(gid = self.gid, shard, config_num, "ack ignored");
            return;
        }
        let phase = self.take_phase(shard);
        self.set_phase(shard, phase.into_serving(shard));
    }

    /// The answer to `PullShard { config_num, shard }` from the applied state: the next
    /// chunk (at most `chunk_bytes`, one pair more alone) when the shard is offered for
    /// exactly that configuration, `NotReady` otherwise.
    pub fn pull_answer(
        &self,
        config_num: ConfigNum,
        shard: ShardId,
        after: Option<Vec<u8>>,
        chunk_bytes: usize,
    ) -> Result<MigrationResponse, DataError> {
        let current = self.config.num;
        Ok(match self.phase(shard) {
            None => Err(self.out_of_range(shard)),
            Some(Phase::Offering { store, .. }) if current == config_num => {
                let chunk = self.data.chunk(shard, after.as_deref(), chunk_bytes)?;
                let sessions = match chunk.next {
                    None => store.sessions.to_table(),
                    Some(_) => DupTable::default(),
                };
                Ok(MigrationReply::ShardData {
                    config_num,
                    shard,
                    after,
                    kv: chunk.pairs.into_iter().collect(),
                    next: chunk.next,
                    sessions,
                    clock: store.clock.at(self.time),
                })
            }
            Some(_) => Ok(MigrationReply::NotReady { current }),
        })
    }

    /// What to do with `DeleteShard { config_num, shard }` from the applied state.
    ///
    /// `Deleted` at once when this group is past `config_num` (it could not have moved
    /// on before deleting, unless it holds the shard for an abandoned group) or holds
    /// nothing for the shard in `config_num`; `NotReady` when it has not reached
    /// `config_num`, the shard is its own there, or it is `Held` (never deleted on
    /// another group's word).
    pub fn delete_verdict(&self, config_num: ConfigNum, shard: ShardId) -> DeleteVerdict {
        let current = self.config.num;
        let deleted = Ok(MigrationReply::Deleted { config_num, shard });
        let answer = match self.phase(shard) {
            None => Err(self.out_of_range(shard)),
            // Held for an abandoned group: never deleted on another group's word.
            Some(Phase::Held { .. }) => Ok(MigrationReply::NotReady { current }),
            Some(_) if current > config_num => deleted,
            Some(_) if current < config_num => Ok(MigrationReply::NotReady { current }),
            Some(Phase::Offering { .. }) => return DeleteVerdict::Propose,
            Some(Phase::Absent) => deleted,
            Some(_) => Ok(MigrationReply::NotReady { current }),
        };
        DeleteVerdict::Answer(answer)
    }

    fn out_of_range(&self, shard: ShardId) -> KvError {
        KvError::Malformed {
            reason: format!("shard {shard} out of range 0..{}", self.shards.len()),
        }
    }
}
