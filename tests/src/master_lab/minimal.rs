//! Minimal transfers (6.824 "Minimal transfers after joins/leaves/multijoins/multileaves"
//! and the 2024 "minimal movement again"). 6.824's checks look at gids `1..=10`, which its
//! own scenario never uses, so they cannot fail; here every step is held to the exact
//! minimum number of moved shards ([`check_minimal`]) and to 6.824's intent with the
//! real gids ([`check_join_transfers`], [`check_leave_transfers`]).

use std::collections::BTreeMap;

use shardkv_proto::{Config, GroupId};

use super::checks::{
    check_groups, check_join_transfers, check_leave_transfers, check_minimal, check_replicas_agree,
};
use super::clerk::{group, Clerk, Groups};
use super::cluster::{Cluster, AGREE_TIMEOUT};
use super::concurrent::{concurrent_flow, concurrent_multi_flow, NPARA};
use super::lab::{MasterLab, LAB_NSHARDS};
use crate::scenario::Outcome;

/// Joins `groups` in one Join and checks the step moved the minimum and kept balance.
pub async fn checked_join(ck: &mut Clerk, groups: Groups) -> Result<Config, String> {
    let before = ck.latest().await?;
    let what = format!("join {:?}", groups.keys().collect::<Vec<_>>());
    let mut members: Vec<GroupId> = before.groups.keys().chain(groups.keys()).copied().collect();
    members.sort_unstable();
    let after = ck.join(groups).await?;
    check_groups(&after, &members)?;
    check_minimal(&before, &after, &what)?;
    check_join_transfers(&before, &after)?;
    Ok(after)
}

/// Leaves `gids` in one Leave and checks the step moved the minimum and kept balance.
pub async fn checked_leave(ck: &mut Clerk, gids: &[GroupId]) -> Result<Config, String> {
    let before = ck.latest().await?;
    let members: Vec<GroupId> = before
        .groups
        .keys()
        .filter(|g| !gids.contains(g))
        .copied()
        .collect();
    let after = ck.leave(gids).await?;
    check_groups(&after, &members)?;
    check_minimal(&before, &after, &format!("leave {gids:?}"))?;
    check_leave_transfers(&before, &after)?;
    Ok(after)
}

/// The five extra groups of 6.824's minimal-transfer tests: `NPARA + 1 ..= NPARA + 5`.
fn extra_gids() -> Vec<GroupId> {
    (0..5).map(|i| (NPARA + 1 + i) as GroupId).collect()
}

fn extra_group(gid: GroupId) -> Groups {
    group(
        gid,
        &[&format!("{gid}a"), &format!("{gid}b"), &format!("{gid}c")],
    )
}

/// After the concurrent flow, five single-group Joins each move the minimum, and no
/// shard moves between the old groups (6.824 "Minimal transfers after joins").
pub fn minimal_transfers_after_joins<L: MasterLab>(seed: u64) -> Outcome {
    let c = Cluster::<L>::new(seed, false);
    c.run(async {
        let mut ck = c.clerk();
        let c1 = concurrent_flow(&c, &mut ck).await?;
        for gid in extra_gids() {
            checked_join(&mut ck, extra_group(gid)).await?;
        }
        let c2 = ck.latest().await?;
        check_join_transfers(&c1, &c2)?;
        check_replicas_agree(&c, &c2, AGREE_TIMEOUT).await
    })
}

/// ...then five single-group Leaves each move the minimum, and no shard of a staying
/// group moves (6.824 "Minimal transfers after leaves").
pub fn minimal_transfers_after_leaves<L: MasterLab>(seed: u64) -> Outcome {
    let c = Cluster::<L>::new(seed, false);
    c.run(async {
        let mut ck = c.clerk();
        concurrent_flow(&c, &mut ck).await?;
        for gid in extra_gids() {
            checked_join(&mut ck, extra_group(gid)).await?;
        }
        let c2 = ck.latest().await?;
        for gid in extra_gids() {
            checked_leave(&mut ck, &[gid]).await?;
        }
        let c3 = ck.latest().await?;
        check_leave_transfers(&c2, &c3)?;
        check_replicas_agree(&c, &c3, AGREE_TIMEOUT).await
    })
}

/// The same with one five-group Join and one five-group Leave, after the concurrent
/// multi flow (6.824 "Minimal transfers after multijoins/multileaves").
pub fn minimal_transfers_multi<L: MasterLab>(seed: u64) -> Outcome {
    let c = Cluster::<L>::new(seed, false);
    c.run(async {
        let mut ck = c.clerk();
        concurrent_multi_flow(&c, &mut ck).await?;
        let joins: Groups = extra_gids().into_iter().flat_map(extra_group).collect();
        checked_join(&mut ck, joins).await?;
        let c3 = checked_leave(&mut ck, &extra_gids()).await?;
        check_replicas_agree(&c, &c3, AGREE_TIMEOUT).await
    })
}

/// Joins 1 and 2, then 3: only shards moving to 3 move, at most n/3 + 1 of them; then 1
/// leaves: only 1's shards move, at most n/3 + 1 (6.824 2024 "minimal movement again").
pub fn minimal_movement_again<L: MasterLab>(seed: u64) -> Outcome {
    let c = Cluster::<L>::new(seed, false);
    c.run(async {
        let mut ck = c.clerk();
        ck.join(group(1, &["x", "y", "z"])).await?;
        let c1 = checked_join(&mut ck, group(2, &["a", "b", "c"])).await?;
        let c2 = checked_join(&mut ck, group(3, &["d", "e", "f"])).await?;
        let bound = LAB_NSHARDS / 3 + 1;
        for (shard, (&old, &new)) in c1.shards.iter().zip(&c2.shards).enumerate() {
            if new != 3 && old != new {
                return Err(format!(
                    "shard {shard} moved from gid {old} to gid {new}, but shouldn't have"
                ));
            }
        }
        at_most(bound, &c1, &c2, "join")?;
        let c3 = checked_leave(&mut ck, &[1]).await?;
        for (shard, (&old, &new)) in c2.shards.iter().zip(&c3.shards).enumerate() {
            if old != 1 && old != new {
                return Err(format!(
                    "shard {shard} moved from gid {old} to gid {new}, but shouldn't have"
                ));
            }
        }
        at_most(bound, &c2, &c3, "leave")?;
        check_replicas_agree(&c, &c3, AGREE_TIMEOUT).await
    })
}

fn at_most(bound: usize, before: &Config, after: &Config, what: &str) -> Result<(), String> {
    let changed = super::checks::moved(before, after);
    if changed > bound {
        return Err(format!("too many shards ({changed}) moved after {what}"));
    }
    Ok(())
}

/// Ours: a seeded random walk of 30 Joins (1..=3 groups) and Leaves (1..=2 groups) over
/// up to 14 groups, every step checked for balance and an exactly minimal transfer.
pub fn minimal_transfers_random<L: MasterLab>(seed: u64) -> Outcome {
    let c = Cluster::<L>::new(seed, false);
    c.run(async {
        let mut ck = c.clerk();
        let mut next_gid: GroupId = 1;
        let mut members: Vec<GroupId> = Vec::new();
        for _ in 0..30 {
            let leave =
                !members.is_empty() && (members.len() >= 14 || c.sim.random_range(0..2) == 0);
            if leave {
                let count = (1 + c.sim.random_range(0..2) as usize).min(members.len());
                let mut gids = Vec::with_capacity(count);
                for _ in 0..count {
                    gids.push(members.remove(c.sim.random_range(0..members.len() as u64) as usize));
                }
                checked_leave(&mut ck, &gids).await?;
            } else {
                let count = 1 + c.sim.random_range(0..3);
                let groups: BTreeMap<GroupId, Vec<String>> = (next_gid..next_gid + count)
                    .map(|gid| (gid, vec![format!("r{gid}")]))
                    .collect();
                members.extend(groups.keys());
                next_gid += count;
                checked_join(&mut ck, groups).await?;
            }
        }
        let latest = ck.latest().await?;
        check_replicas_agree(&c, &latest, AGREE_TIMEOUT).await
    })
}
