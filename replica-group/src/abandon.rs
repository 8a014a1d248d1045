//! Migrations with a group that died for good: where a stuck shard's data is.
//!
//! A migration needs both groups: the new owner pulls, the old one answers and deletes
//! when told. A group that joined and died before installing the shards it was given
//! leaves their old owners `Offering` for ever (so they never adopt another
//! configuration), and after it leaves, its successors `Pulling` from it for ever. The
//! operator's way out is `shardkv abandon GID` after `leave`: the shard master records
//! the group as abandoned, and answers `Holder { shard, num }` with the latest
//! configuration at or before `num` whose owner of the shard is not abandoned. The groups
//! ask it about shards that stay in a migration for [`ASK_AFTER_POLLS`] polls:
//!
//! ```text
//!   phase (config c)     asks Holder about   answer names         then
//!   Offering { to: G }   c                   this group           log: Reclaim -> Held
//!   Pulling { from: G }  c - 1               group H              pull from H instead
//!   Acking { from: G }   c - 1               group H              acknowledge to H
//!   Pulling / Acking     c - 1               nobody (NO_GROUP)    install empty / acked
//!   any                  ...                 the asked config     nothing: not abandoned
//! ```
//!
//! A `Held` shard is stable: the group moves on, and when a later configuration gives
//! the shard to group H, H's predecessor in the configurations is the abandoned group,
//! so H asks Holder, learns that this group holds the data, and pulls it as from any old
//! owner (the pull and the acknowledgement name H's configuration, which this group then
//! stands at with the shard `Offering { to: H }`). A configuration that gives the shard
//! back to this group serves the held copy.
//!
//! What may be lost: nothing, when the abandoned group never installed the shards (the
//! frozen copy is the last state any client saw acknowledged). When it had installed
//! and served a shard but not yet acknowledged it, the writes it acknowledged since are
//! lost; a shard it was given by nobody comes back empty, so whatever it served there is
//! lost. When it had acknowledged (the old owner deleted its copy), the shard's data
//! is gone with it: the shard stays unavailable (the holder named is this group, or a
//! pull already under way from the abandoned group, and neither is followed).
//! `docs/architecture.md` says so for users.
//!
//! The answers are facts that only grow (configurations never change, and a group once
//! abandoned stays so), so a late or repeated one is as good as a fresh one. A pull
//! redirected to a holder still moves the data by the protocol's own checks
//! (configuration number, shard, chunk order); `Reclaim` applies only to a shard still
//! offered in the configuration asked about; an empty install only to a shard that has
//! received nothing.

use std::collections::BTreeMap;

use bincode::Options;
use shardkv_proto::kv::DupTable;
use shardkv_proto::master::{self, MasterError};
use shardkv_proto::{ConfigNum, GroupId, ShardId, NO_GROUP};
use shardkv_raft::LogStore;

use crate::calls::{Purpose, Target, MAX_HOLDER_CALLS};
use crate::message::{options, Entry};
use crate::phase::Phase;
use crate::server::{Server, Task};

/// A shard in a migration for this many polls asks the shard master where its data is,
/// and again every as many polls while it stays there.
pub const ASK_AFTER_POLLS: u64 = 8;

/// Where a shard's data is, when not at its previous owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Holder {
    /// The group holding it, or `NO_GROUP`: nobody (the shard starts empty).
    pub gid: GroupId,
    /// Its servers.
    pub servers: Vec<String>,
}

/// The leader's bookkeeping of Holder queries, for the current configuration only.
#[derive(Debug, Default)]
pub(crate) struct Holders {
    /// The configuration it is about, and the tick it was first seen.
    config: (ConfigNum, u64),
    /// Shard → the tick it was last asked about.
    asked: BTreeMap<ShardId, u64>,
    /// Shard → where its data is, when the shard master named another group.
    found: BTreeMap<ShardId, Holder>,
}

impl Holders {
    /// A query about `shard` failed: ask again at the next poll.
    pub(crate) fn failed(&mut self, shard: ShardId) {
        self.asked.remove(&shard);
    }

    /// The holder found for `shard` in configuration `config_num`, if any.
    pub(crate) fn found(&self, config_num: ConfigNum, shard: ShardId) -> Option<&Holder> {
        (self.config.0 == config_num)
            .then(|| self.found.get(&shard))
            .flatten()
    }

    /// Starts over when the configuration changed.
    fn observe(&mut self, config_num: ConfigNum, now: u64) {
        if self.config.0 != config_num {
            *self = Holders {
                config: (config_num, now),
                ..Holders::default()
            };
        }
    }
}

impl<S: LogStore> Server<S> {
    /// On the leader, at a poll: asks the shard master about the shards that have been
    /// in a migration for [`ASK_AFTER_POLLS`] polls and were not asked about as long.
    pub(crate) fn ask_holders(&mut self) {
        let current = self.state().config().num;
        self.holders.observe(current, self.ticks);
        let wait = ASK_AFTER_POLLS * self.options.poll_ticks;
        if self.ticks < self.holders.config.1 + wait {
            return;
        }
        for shard in 0..self.state().nshards() {
            let num = match self.state().phase(shard) {
                Some(Phase::Pulling { .. } | Phase::Acking { .. }) => current - 1,
                Some(Phase::Offering { .. }) => current,
                _ => continue,
            };
            let in_flight = self
                .calls
                .count(|purpose| matches!(purpose, Purpose::Holder { .. }));
            if in_flight >= MAX_HOLDER_CALLS {
                return;
            }
            let recently =
                (self.holders.asked.get(&shard)).is_some_and(|&asked| self.ticks < asked + wait);
            if recently || self.calls.busy(Target::Holder(shard)) {
                continue;
            }
            self.holders.asked.insert(shard, self.ticks);
            let request = master::Request {
                client: self.options.gid,
                seq: 0,
                op: master::Op::Holder { shard, num },
            };
            let at = (self.calls).cursor(Target::Holder(shard), self.options.masters.len());
            let to = self.options.masters[at].clone();
            let bytes = options().serialize(&request).expect("a query encodes");
            let purpose = Purpose::Holder {
                config_num: current,
                shard,
                num,
            };
            self.start_call(purpose, to, bytes);
        }
    }

    /// Handles the shard master's answer to a Holder query; true when it was a useful
    /// one.
    pub(crate) fn on_holder_reply(
        &mut self,
        config_num: ConfigNum,
        shard: ShardId,
        num: ConfigNum,
        bytes: &[u8],
    ) -> bool {
        let Some(response) = self.decode_master_reply(bytes) else {
            return false;
        };
        let holder = match response {
            Ok(config) if config.nshards() == self.state().nshards() => config,
            Ok(_) => {
                tracing::error!(gid = self.options.gid, "holder of another shard count");
                return false;
            }
            Err(MasterError::WrongLeader { hint }) => {
                let len = self.options.masters.len();
                self.calls.failed(Target::Holder(shard), len, hint);
                self.holders.failed(shard);
                return true;
            }
            Err(error) => {
                tracing::warn!(gid = self.options.gid, %error, "master refused holder query");
                return false;
            }
        };
        if config_num != self.state().config().num || holder.num == num {
            return true; // Moved on, or nobody on the way was abandoned.
        }
        let gid = holder.shards[shard];
        match self.state().phase(shard) {
            Some(Phase::Offering { to, .. }) if gid == self.options.gid => {
                tracing::warn!(gid, shard, to, "offered to an abandoned group: reclaiming");
                let entry = Entry::Reclaim { config_num, shard };
                self.propose_task(Task::Reclaim(config_num, shard), entry);
            }
            Some(_) if gid == self.options.gid => tracing::error!(
                gid,
                shard,
                "the shard master names this group as the holder of a shard it lacks: the \
                 abandoned group had installed it, and its data is lost"
            ),
            Some(Phase::Pulling {
                received: Some(_), ..
            }) => tracing::error!(
                gid = self.options.gid,
                shard,
                holder = gid,
                "part of the shard came from the abandoned group, which had installed it: \
                 not mixed with the holder's older copy"
            ),
            Some(Phase::Pulling { .. } | Phase::Acking { .. }) => {
                let servers = holder
                    .servers(gid)
                    .map_or_else(Vec::new, <[String]>::to_vec);
                tracing::warn!(
                    gid = self.options.gid,
                    shard,
                    holder = gid,
                    "previous owner abandoned: its data is taken from the holder"
                );
                (self.holders.found).insert(shard, Holder { gid, servers });
                if gid == NO_GROUP {
                    self.settle_without_holder(shard);
                }
            }
            phase => tracing::error!(
                gid = self.options.gid,
                shard,
                holder = gid,
                phase = phase.map(Phase::name),
                "holder answer that fits no migration"
            ),
        }
        true
    }

    /// A pulling or acknowledging shard whose data nobody holds (it was first given to a
    /// group since abandoned): installed empty, or acknowledged, through the log.
    pub(crate) fn settle_without_holder(&mut self, shard: ShardId) {
        let config_num = self.state().config().num;
        match self.state().phase(shard) {
            Some(Phase::Pulling { received: None, .. }) => {
                let entry = Entry::InstallShard {
                    config_num,
                    shard,
                    after: None,
                    kv: BTreeMap::new(),
                    next: None,
                    sessions: DupTable::default(),
                    clock: self.state().time(),
                };
                self.propose_task(Task::Install(config_num, shard), entry);
            }
            Some(Phase::Acking { .. }) => {
                let entry = Entry::ShardAcked { config_num, shard };
                self.propose_task(Task::Acked(config_num, shard), entry);
            }
            _ => {}
        }
    }
}
