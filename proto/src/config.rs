//! [`Config`]: one numbered assignment of shards to replica groups.
//!
//! A configuration is immutable once the shard master has created it. Its invariants
//! (checked by [`Config::check`], which a client should run on any configuration it
//! receives from the network):
//!
//! - `shards` has one entry per shard, at least one;
//! - every entry of `shards` is [`NO_GROUP`] or a key of `groups`;
//! - `groups` never contains [`NO_GROUP`], and every group lists at least one server.
//!
//! A group may hold no shard (more groups than shards, or right after a `Move`); that is
//! legal. A shard owned by [`NO_GROUP`] is served by nobody: requests for its keys wait
//! for a later configuration.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{ConfigNum, GroupId, ShardId, NO_GROUP};
use crate::shard::key_to_shard;

/// One numbered configuration: which group owns each shard, and where each group's
/// replicas listen.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Config {
    /// This configuration's number; 0 for the initial configuration.
    pub num: ConfigNum,
    /// `shards[s]` is the group that owns shard `s`, or [`NO_GROUP`]. Its length is the
    /// cluster's shard count.
    pub shards: Vec<GroupId>,
    /// Every member group and its replicas' addresses, in the order the group gave them.
    pub groups: BTreeMap<GroupId, Vec<String>>,
}

/// Why a [`Config`] received from elsewhere is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The configuration has no shards.
    #[error("configuration {num} has no shards")]
    NoShards {
        /// The configuration's number.
        num: ConfigNum,
    },
    /// A shard is owned by a group that is not a member.
    #[error("configuration {num}: shard {shard} owned by group {gid}, which is not a member")]
    UnknownOwner {
        /// The configuration's number.
        num: ConfigNum,
        /// The shard.
        shard: ShardId,
        /// Its owner.
        gid: GroupId,
    },
    /// The reserved id 0 appears as a member group.
    #[error("configuration {num} lists group 0 as a member")]
    ReservedGroup {
        /// The configuration's number.
        num: ConfigNum,
    },
    /// A member group lists no server.
    #[error("configuration {num}: group {gid} has no servers")]
    NoServers {
        /// The configuration's number.
        num: ConfigNum,
        /// The group.
        gid: GroupId,
    },
}

impl Config {
    /// Configuration 0 of a cluster with `nshards` shards: every shard unowned, no groups.
    ///
    /// # Panics
    /// If `nshards` is 0 (a cluster's shard count is set by its operator at creation and
    /// validated there; zero here is a programming error).
    pub fn initial(nshards: usize) -> Self {
        assert!(nshards > 0, "a configuration needs at least one shard");
        Config {
            num: 0,
            shards: vec![NO_GROUP; nshards],
            groups: BTreeMap::new(),
        }
    }

    /// The cluster's shard count.
    pub fn nshards(&self) -> usize {
        self.shards.len()
    }

    /// The group owning `shard`, or `None` when the shard is unowned or out of range.
    pub fn owner(&self, shard: ShardId) -> Option<GroupId> {
        self.shards
            .get(shard)
            .copied()
            .filter(|&gid| gid != NO_GROUP)
    }

    /// The shard holding `key` (see [`key_to_shard`]).
    pub fn shard_of_key(&self, key: impl AsRef<[u8]>) -> ShardId {
        key_to_shard(key, self.nshards())
    }

    /// The group serving `key`, or `None` when its shard is unowned.
    pub fn group_of_key(&self, key: impl AsRef<[u8]>) -> Option<GroupId> {
        self.owner(self.shard_of_key(key))
    }

    /// The servers of group `gid`, or `None` when it is not a member.
    pub fn servers(&self, gid: GroupId) -> Option<&[String]> {
        self.groups.get(&gid).map(Vec::as_slice)
    }

    /// The shards `gid` owns, in increasing order.
    pub fn shards_of(&self, gid: GroupId) -> Vec<ShardId> {
        (0..self.nshards())
            .filter(|&shard| self.shards[shard] == gid)
            .collect()
    }

    /// How many shards each member group owns; members owning none appear with 0.
    /// Unowned shards are not counted.
    pub fn shard_counts(&self) -> BTreeMap<GroupId, usize> {
        let mut counts: BTreeMap<GroupId, usize> =
            self.groups.keys().map(|&gid| (gid, 0)).collect();
        for gid in &self.shards {
            if let Some(count) = counts.get_mut(gid) {
                *count += 1;
            }
        }
        counts
    }

    /// Checks the invariants listed in the module docs.
    pub fn check(&self) -> Result<(), ConfigError> {
        let num = self.num;
        if self.shards.is_empty() {
            return Err(ConfigError::NoShards { num });
        }
        if self.groups.contains_key(&NO_GROUP) {
            return Err(ConfigError::ReservedGroup { num });
        }
        if let Some((&gid, _)) = self.groups.iter().find(|(_, servers)| servers.is_empty()) {
            return Err(ConfigError::NoServers { num, gid });
        }
        for (shard, &gid) in self.shards.iter().enumerate() {
            if gid != NO_GROUP && !self.groups.contains_key(&gid) {
                return Err(ConfigError::UnknownOwner { num, shard, gid });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_groups() -> Config {
        Config {
            num: 3,
            shards: vec![1, 1, 2, 0],
            groups: BTreeMap::from([
                (1, vec!["a".to_string()]),
                (2, vec!["b".to_string()]),
                (7, vec!["c".to_string()]),
            ]),
        }
    }

    /// Configuration 0 owns nothing and passes its own invariant check.
    #[test]
    fn initial_is_empty_and_valid() {
        let config = Config::initial(10);
        assert_eq!(config.num, 0);
        assert_eq!(config.nshards(), 10);
        assert_eq!(config.owner(0), None);
        assert!(config.shard_counts().is_empty());
        assert_eq!(config.check(), Ok(()));
    }

    /// The lookup helpers agree with the raw fields, including unowned and out-of-range shards.
    #[test]
    fn lookups() {
        let config = two_groups();
        assert_eq!(config.owner(0), Some(1));
        assert_eq!(config.owner(3), None);
        assert_eq!(config.owner(4), None);
        assert_eq!(config.shards_of(1), vec![0, 1]);
        assert_eq!(config.servers(2), Some(&["b".to_string()][..]));
        assert_eq!(config.servers(9), None);
        assert_eq!(
            config.shard_counts(),
            BTreeMap::from([(1, 2), (2, 1), (7, 0)])
        );
        assert_eq!(config.group_of_key("x"), config.owner(key_to_shard("x", 4)));
    }

    /// Each malformed configuration is reported with the invariant it breaks.
    #[test]
    fn check_reports_each_broken_invariant() {
        let mut no_shards = two_groups();
        no_shards.shards.clear();
        let mut unknown = two_groups();
        unknown.shards[3] = 5;
        let mut reserved = two_groups();
        reserved.groups.insert(0, vec!["z".into()]);
        let mut no_servers = two_groups();
        no_servers.groups.insert(9, vec![]);
        let cases = [
            (no_shards, ConfigError::NoShards { num: 3 }),
            (
                unknown,
                ConfigError::UnknownOwner {
                    num: 3,
                    shard: 3,
                    gid: 5,
                },
            ),
            (reserved, ConfigError::ReservedGroup { num: 3 }),
            (no_servers, ConfigError::NoServers { num: 3, gid: 9 }),
        ];
        for (config, expected) in cases {
            assert_eq!(config.check(), Err(expected));
        }
    }
}
