//! The master suite's checkers, as plain functions of configurations (6.824 shardctrler's
//! `check` and `check_same_config`), plus what 6.824 only meant to check: that a Join or
//! Leave moves exactly the minimum number of shards, computed here independently of the
//! implementation's rebalancer.
//!
//! The minimum, for shards `before` and the member set after the change (`g` groups,
//! `n` shards): a shard must move when its owner is gone, and a member holding `c` shards
//! with target `t` must give up `c - t`; every other shard can stay. Targets are ⌊n/g⌋,
//! with `n mod g` groups allowed one more; giving those to the groups holding the most
//! shards saves the most moves. So `minimum = orphans + Σ max(0, c_i - t_i)` with the
//! larger targets on the largest `c_i`.

use std::collections::BTreeSet;
use std::time::Duration;

use shardkv_proto::{Config, GroupId, NO_GROUP};

use super::cluster::{Cluster, REPLICAS};
use super::lab::MasterLab;

/// `config` has exactly the members `gids`, every shard owned by a member (all unowned
/// when there are none), and every member owns ⌊n/g⌋ or ⌈n/g⌉ shards (6.824 `check`).
pub fn check_groups(config: &Config, gids: &[GroupId]) -> Result<(), String> {
    config
        .check()
        .map_err(|e| format!("malformed configuration: {e}"))?;
    let want: BTreeSet<GroupId> = gids.iter().copied().collect();
    let have: BTreeSet<GroupId> = config.groups.keys().copied().collect();
    if want != have {
        return Err(format!(
            "config {}: groups {have:?}, wanted {want:?}",
            config.num
        ));
    }
    for (shard, &gid) in config.shards.iter().enumerate() {
        // Every shard owned by a member (checked above) when there are members; none
        // owned when there are none.
        let owned = gid != NO_GROUP;
        if owned == want.is_empty() {
            return Err(format!(
                "config {}: shard {shard} -> invalid group {gid}: {:?}",
                config.num, config.shards
            ));
        }
    }
    let counts = config.shard_counts();
    let (min, max) = (counts.values().min(), counts.values().max());
    if let (Some(min), Some(max)) = (min, max) {
        if max > &(min + 1) {
            return Err(format!(
                "config {}: max {max} too much larger than min {min}: {:?}",
                config.num, config.shards
            ));
        }
    }
    Ok(())
}

/// Group `gid` of `config` lists exactly `servers`, in order.
pub fn check_servers(config: &Config, gid: GroupId, servers: &[&str]) -> Result<(), String> {
    let have = config.servers(gid).unwrap_or_default();
    if have != servers {
        return Err(format!(
            "config {}: wrong servers for gid {gid}: {have:?}, wanted {servers:?}",
            config.num
        ));
    }
    Ok(())
}

/// `got` equals `want` in number, shards and groups (6.824 `check_same_config`).
pub fn check_same_config(got: &Config, want: &Config) -> Result<(), String> {
    if got != want {
        return Err(format!(
            "configuration differs:\n  got  {got:?}\n  want {want:?}"
        ));
    }
    Ok(())
}

/// How many shards changed owner from `before` to `after`.
pub fn moved(before: &Config, after: &Config) -> usize {
    before
        .shards
        .iter()
        .zip(&after.shards)
        .filter(|(a, b)| a != b)
        .count()
}

/// The fewest owner changes that take shards `before` to a balanced, complete assignment
/// over `members` (see the module docs). With no members, every owned shard changes
/// (to unowned).
pub fn minimum_moves(before: &[GroupId], members: &BTreeSet<GroupId>) -> usize {
    if members.is_empty() {
        return before.iter().filter(|&&gid| gid != NO_GROUP).count();
    }
    let (n, g) = (before.len(), members.len());
    let orphans = before.iter().filter(|gid| !members.contains(gid)).count();
    let mut counts: Vec<usize> = members
        .iter()
        .map(|gid| before.iter().filter(|&owner| owner == gid).count())
        .collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let surplus: usize = counts
        .iter()
        .enumerate()
        .map(|(i, &c)| c.saturating_sub(n / g + usize::from(i < n % g)))
        .sum();
    orphans + surplus
}

/// The change from `before` to `after` (a Join or Leave) moved exactly the minimum.
pub fn check_minimal(before: &Config, after: &Config, what: &str) -> Result<(), String> {
    let members: BTreeSet<GroupId> = after.groups.keys().copied().collect();
    let (moved, minimum) = (
        moved(before, after),
        minimum_moves(&before.shards, &members),
    );
    if moved != minimum {
        return Err(format!(
            "non-minimal transfer after {what}: {moved} shards moved, minimum {minimum}\n  before {:?}\n  after  {:?}",
            before.shards, after.shards
        ));
    }
    Ok(())
}

/// After Joins from a balanced `before`, every shard an old member owns in `after` was
/// already its own (6.824's "minimal transfers after joins", with the real gids).
pub fn check_join_transfers(before: &Config, after: &Config) -> Result<(), String> {
    for (shard, (&old, &new)) in before.shards.iter().zip(&after.shards).enumerate() {
        if before.groups.contains_key(&new) && old != new {
            return Err(format!("non-minimal transfer after joins: shard {shard} moved from old group {old} to old group {new}"));
        }
    }
    Ok(())
}

/// After Leaves, every shard of a group that stayed is still its own (6.824's "minimal
/// transfers after leaves").
pub fn check_leave_transfers(before: &Config, after: &Config) -> Result<(), String> {
    for (shard, (&old, &new)) in before.shards.iter().zip(&after.shards).enumerate() {
        if after.groups.contains_key(&old) && old != new {
            return Err(format!("non-minimal transfer after leaves: shard {shard} moved from staying group {old} to {new}"));
        }
    }
    Ok(())
}

/// Every running replica applies `latest` within `timeout` and holds the same history
/// up to it, configuration by configuration.
pub async fn check_replicas_agree<L: MasterLab>(
    c: &Cluster<L>,
    latest: &Config,
    timeout: Duration,
) -> Result<(), String> {
    let step_ms = 50;
    let mut waited = Duration::ZERO;
    let up: Vec<usize> = (0..REPLICAS).filter(|&p| c.is_up(p)).collect();
    while up.iter().any(|&p| {
        c.applied_config(p, None)
            .is_none_or(|cfg| cfg.num < latest.num)
    }) {
        if waited >= timeout {
            return Err(format!(
                "replicas did not all apply config {} within {timeout:?}",
                latest.num
            ));
        }
        c.sleep_ms(step_ms).await;
        waited += Duration::from_millis(step_ms);
    }
    let Some((&first, others)) = up.split_first() else {
        return Err("no replica is up".to_string());
    };
    for num in 0..=latest.num {
        let reference = c
            .applied_config(first, Some(num))
            .ok_or(format!("replica {first} went down"))?;
        if num == latest.num {
            check_same_config(&reference, latest)
                .map_err(|e| format!("replica {first}, config {num}: {e}"))?;
        }
        for &p in others {
            let mine = c
                .applied_config(p, Some(num))
                .ok_or(format!("replica {p} went down"))?;
            check_same_config(&mine, &reference)
                .map_err(|e| format!("replica {p} vs {first}, config {num}: {e}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The independent minimum agrees with hand-computed cases.
    #[test]
    fn minimum_moves_cases() {
        let set = |gids: &[GroupId]| gids.iter().copied().collect::<BTreeSet<_>>();
        let cases: [(&[GroupId], &[GroupId], usize); 6] = [
            (&[0; 10], &[1], 10),
            (&[1; 10], &[1, 2], 5),
            (&[1, 1, 1, 1, 2, 2, 2, 3, 3, 3], &[1, 2, 3, 4], 2),
            (&[1, 1, 1, 1, 2, 2, 2, 3, 3, 3], &[2, 3], 4),
            (&[1, 1, 1, 1, 1, 1, 1, 1, 2, 2], &[1, 2], 3),
            (&[1; 10], &[], 10),
        ];
        for (before, members, want) in cases {
            assert_eq!(
                minimum_moves(before, &set(members)),
                want,
                "{before:?} over {members:?}"
            );
        }
    }
}
