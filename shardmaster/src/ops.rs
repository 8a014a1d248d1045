//! The three changing operations as pure functions from the latest configuration to the
//! next one.
//!
//! Each function first validates the whole request against the latest configuration and
//! returns the first problem as a [`MasterError`] without building anything, so a bad
//! request can never create a configuration. A valid request yields configuration
//! `latest.num + 1`; Join and Leave then rebalance ([`mod@crate::rebalance`]), Move does not.
//! Validation order (the error a request with several problems gets) is the order of the
//! checks below, and within a request the order of its gids (increasing for Join, as
//! listed for Leave).

use std::collections::{BTreeMap, BTreeSet};

use shardkv_proto::master::{MAX_ADDRESS_BYTES, MAX_GROUPS, MAX_SERVERS_PER_GROUP};
use shardkv_proto::{Config, GroupId, MasterError, ShardId, NO_GROUP};

use crate::rebalance::rebalance;

/// The configuration after `groups` join `latest` (none of them `abandoned`).
pub fn join(
    latest: &Config,
    abandoned: &BTreeSet<GroupId>,
    groups: &BTreeMap<GroupId, Vec<String>>,
) -> Result<Config, MasterError> {
    if groups.is_empty() {
        return Err(MasterError::EmptyJoin);
    }
    for (&gid, servers) in groups {
        validate_new_group(latest, gid, servers)?;
        if abandoned.contains(&gid) {
            return Err(MasterError::Abandoned { gid });
        }
    }
    let count = latest.groups.len() + groups.len();
    if count > MAX_GROUPS {
        return Err(MasterError::TooManyGroups {
            count,
            max: MAX_GROUPS,
        });
    }
    let mut members = latest.groups.clone();
    members.extend(groups.iter().map(|(&gid, servers)| (gid, servers.clone())));
    Ok(rebalanced(latest, members))
}

/// The configuration after `gids` leave `latest`.
pub fn leave(latest: &Config, gids: &[GroupId]) -> Result<Config, MasterError> {
    if gids.is_empty() {
        return Err(MasterError::EmptyLeave);
    }
    let mut seen = BTreeSet::new();
    for &gid in gids {
        if gid == NO_GROUP {
            return Err(MasterError::ReservedGroup);
        }
        if !seen.insert(gid) {
            return Err(MasterError::DuplicateGroup { gid });
        }
        if !latest.groups.contains_key(&gid) {
            return Err(MasterError::UnknownGroup { gid });
        }
    }
    let mut members = latest.groups.clone();
    members.retain(|gid, _| !seen.contains(gid));
    Ok(rebalanced(latest, members))
}

/// Whether group `gid` may be abandoned after `configs`: it was a member of one of them,
/// is not a member of the latest, and is not abandoned already.
pub fn check_abandon(
    configs: &[Config],
    abandoned: &BTreeSet<GroupId>,
    gid: GroupId,
) -> Result<(), MasterError> {
    if gid == NO_GROUP {
        return Err(MasterError::ReservedGroup);
    }
    if abandoned.contains(&gid) {
        return Err(MasterError::Abandoned { gid });
    }
    let latest = configs.last().expect("configuration 0 always exists");
    if latest.groups.contains_key(&gid) {
        return Err(MasterError::StillMember { gid });
    }
    if !configs
        .iter()
        .any(|config| config.groups.contains_key(&gid))
    {
        return Err(MasterError::UnknownGroup { gid });
    }
    Ok(())
}

/// The configuration after shard `shard` moves to group `gid` in `latest`.
pub fn move_shard(latest: &Config, shard: ShardId, gid: GroupId) -> Result<Config, MasterError> {
    if shard >= latest.nshards() {
        return Err(MasterError::ShardOutOfRange {
            shard,
            nshards: latest.nshards(),
        });
    }
    if gid == NO_GROUP {
        return Err(MasterError::ReservedGroup);
    }
    if !latest.groups.contains_key(&gid) {
        return Err(MasterError::UnknownGroup { gid });
    }
    let mut next = latest.clone();
    next.num = latest.num + 1;
    next.shards[shard] = gid;
    assert_eq!(
        next.check(),
        Ok(()),
        "move produced a malformed configuration"
    );
    Ok(next)
}

fn validate_new_group(
    latest: &Config,
    gid: GroupId,
    servers: &[String],
) -> Result<(), MasterError> {
    if gid == NO_GROUP {
        return Err(MasterError::ReservedGroup);
    }
    if latest.groups.contains_key(&gid) {
        return Err(MasterError::AlreadyJoined { gid });
    }
    if servers.is_empty() {
        return Err(MasterError::NoServers { gid });
    }
    if servers.len() > MAX_SERVERS_PER_GROUP {
        return Err(MasterError::TooManyServers {
            gid,
            count: servers.len(),
            max: MAX_SERVERS_PER_GROUP,
        });
    }
    if let Some(index) = servers
        .iter()
        .position(|address| address.is_empty() || address.len() > MAX_ADDRESS_BYTES)
    {
        return Err(MasterError::BadAddress { gid, index });
    }
    Ok(())
}

/// The next configuration with `members` as its groups and shards rebalanced over them.
fn rebalanced(latest: &Config, members: BTreeMap<GroupId, Vec<String>>) -> Config {
    let gids: BTreeSet<GroupId> = members.keys().copied().collect();
    let next = Config {
        num: latest.num + 1,
        shards: rebalance(&latest.shards, &gids),
        groups: members,
    };
    assert_eq!(
        next.check(),
        Ok(()),
        "rebalance produced a malformed configuration"
    );
    next
}
