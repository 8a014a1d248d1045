//! Deterministic, minimal-move rebalancing of shards over groups.
//!
//! Given the current owner of every shard and the set of member groups, [`rebalance`]
//! returns new owners such that:
//!
//! 1. **Balanced.** With `n` shards and `g > 0` groups, every group owns ⌊n/g⌋ or ⌈n/g⌉
//!    shards (when `g > n`, `n` groups own one shard and the rest own none). With no
//!    group, every shard is unowned ([`NO_GROUP`]).
//! 2. **Complete.** No shard is left unowned or with a departed owner while a group exists.
//! 3. **Minimal.** No assignment satisfying 1 and 2 changes the owner of fewer shards.
//! 4. **Deterministic.** The result depends only on the inputs' values, never on map
//!    iteration order, addresses or randomness; only `BTreeMap`/`BTreeSet` order is used.
//!
//! # The algorithm
//!
//! ```text
//!   targets:  base = n / g, extra = n % g
//!             sort groups by (current count desc, gid asc); the first `extra` get base+1
//!   release:  scan shards 0..n; a shard stays if its owner is a member still under its
//!             target, otherwise it joins the pool (orphans and surplus alike)
//!   assign:   for each group in increasing gid order, take shards from the front of the
//!             pool (increasing shard number) until it reaches its target
//! ```
//!
//! **Why it is minimal.** A shard whose owner is not a member must move, and a member
//! with `c` shards and target `t` must give up `max(0, c - t)`: every other shard can
//! stay, and this algorithm keeps all of them. So the moves equal
//! `orphans + Σ max(0, c - t)`, and the only choice left is which groups get the `extra`
//! larger targets. Giving `base+1` to a group with `c > base` saves one move; giving it
//! to a group with `c <= base` saves none. Picking the groups with the most shards
//! therefore minimises the total.
//!
//! # Tie-break rule
//!
//! - Among groups with equal current counts, **lower gids get the larger target** (keep
//!   the extra shard).
//! - A group above its target **keeps its lowest-numbered shards** and releases the
//!   highest.
//! - Freed shards go to groups below target **lowest gid first**, each receiver taking
//!   the lowest-numbered freed shards.
//!
//! These choices do not affect the number of moves, only which shards move where; they
//! are part of the contract so that independent implementations agree exactly.

use std::collections::{BTreeMap, BTreeSet};

use shardkv_proto::{GroupId, NO_GROUP};

/// The number of shards each member group should own after rebalancing `shards` over
/// `groups`: ⌊n/g⌋ or ⌈n/g⌉, the larger targets going to the groups that currently own
/// the most shards, lower gid first on ties. Empty when `groups` is empty.
pub fn target_counts(shards: &[GroupId], groups: &BTreeSet<GroupId>) -> BTreeMap<GroupId, usize> {
    if groups.is_empty() {
        return BTreeMap::new();
    }
    let counts = member_counts(shards, groups);
    let base = shards.len() / groups.len();
    let extra = shards.len() % groups.len();
    let mut by_load: Vec<(usize, GroupId)> = counts.iter().map(|(&gid, &c)| (c, gid)).collect();
    // Most shards first; among equals, lowest gid first.
    by_load.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut targets: BTreeMap<GroupId, usize> = groups.iter().map(|&gid| (gid, base)).collect();
    for &(_, gid) in by_load.iter().take(extra) {
        *targets.entry(gid).or_default() += 1;
    }
    assert_eq!(
        targets.values().sum::<usize>(),
        shards.len(),
        "targets {targets:?} do not cover {} shards",
        shards.len()
    );
    targets
}

/// How many shards each member of `groups` owns in `shards` (members owning none: 0).
pub fn member_counts(shards: &[GroupId], groups: &BTreeSet<GroupId>) -> BTreeMap<GroupId, usize> {
    let mut counts: BTreeMap<GroupId, usize> = groups.iter().map(|&gid| (gid, 0)).collect();
    for gid in shards {
        if let Some(count) = counts.get_mut(gid) {
            *count += 1;
        }
    }
    counts
}

/// New owners for `shards` over the member `groups`: balanced, complete, minimal and
/// deterministic (see the module docs). `groups` must not contain [`NO_GROUP`].
pub fn rebalance(shards: &[GroupId], groups: &BTreeSet<GroupId>) -> Vec<GroupId> {
    assert!(
        !groups.contains(&NO_GROUP),
        "group 0 among members {groups:?}"
    );
    if groups.is_empty() {
        return vec![NO_GROUP; shards.len()];
    }
    let targets = target_counts(shards, groups);
    let mut kept: BTreeMap<GroupId, usize> = groups.iter().map(|&gid| (gid, 0)).collect();
    let mut next = shards.to_vec();
    let mut pool = Vec::new();
    for (shard, owner) in next.iter_mut().enumerate() {
        match kept.get_mut(owner) {
            Some(count) if *count < targets[owner] => *count += 1,
            _ => {
                pool.push(shard);
                *owner = NO_GROUP;
            }
        }
    }
    let mut pool = pool.into_iter();
    for (&gid, &target) in &targets {
        for _ in kept[&gid]..target {
            let shard = pool.next().expect("pool holds exactly the missing shards");
            next[shard] = gid;
        }
    }
    assert!(pool.next().is_none(), "shards left unassigned: {next:?}");
    assert!(is_balanced(&next, groups), "unbalanced result {next:?}");
    next
}

/// Whether `shards` is a balanced, complete assignment over `groups` (properties 1 and
/// 2 of the module docs).
pub fn is_balanced(shards: &[GroupId], groups: &BTreeSet<GroupId>) -> bool {
    if groups.is_empty() {
        return shards.iter().all(|&gid| gid == NO_GROUP);
    }
    if shards.iter().any(|gid| !groups.contains(gid)) {
        return false;
    }
    let counts = member_counts(shards, groups);
    let min = shards.len() / groups.len();
    let max = min + usize::from(!shards.len().is_multiple_of(groups.len()));
    counts.values().all(|&c| (min..=max).contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(gids: &[GroupId]) -> BTreeSet<GroupId> {
        gids.iter().copied().collect()
    }

    /// Exact placements for hand-worked cases pin the tie-break rule.
    #[test]
    fn exact_placements() {
        let cases: &[(&[GroupId], &[GroupId], &[GroupId])] = &[
            // First join: everything from nothing, lowest gid takes the lowest shards.
            (&[0; 10], &[1], &[1; 10]),
            (&[0; 10], &[1, 2, 3], &[1, 1, 1, 1, 2, 2, 2, 3, 3, 3]),
            // Join of 2: group 1 keeps its lowest five shards.
            (&[1; 10], &[1, 2], &[1, 1, 1, 1, 1, 2, 2, 2, 2, 2]),
            // Leave of 2: only 2's shards move, lowest gid first.
            (
                &[1, 1, 1, 1, 2, 2, 2, 3, 3, 3],
                &[1, 3],
                &[1, 1, 1, 1, 1, 3, 3, 3, 3, 3],
            ),
            // Equal counts: lower gid keeps the extra shard (4 = 2 + 1 + 1).
            (&[1, 1, 2, 2], &[1, 2, 3], &[1, 1, 2, 3]),
            // More groups than shards: surplus groups get none.
            (&[0, 0], &[5, 6, 7], &[5, 6]),
            // Last group leaves: everything unowned.
            (&[4, 4, 4], &[], &[0, 0, 0]),
        ];
        for &(shards, groups, expected) in cases {
            assert_eq!(
                rebalance(shards, &set(groups)),
                expected,
                "rebalance({shards:?}, {groups:?})"
            );
        }
    }

    /// A group that holds more after a Move keeps the larger target, so fewer shards move.
    #[test]
    fn heaviest_group_keeps_the_extra_shard() {
        // After a Move: 1 has 4, 2 and 3 have 3. Join 4: the two larger targets (3) go to
        // group 1 (most shards) and group 2 (lower gid of the tied 3-holders), so 1 and 3
        // each give one shard to 4: two moves, the minimum.
        let shards = [1, 1, 1, 1, 2, 2, 2, 3, 3, 3];
        let next = rebalance(&shards, &set(&[1, 2, 3, 4]));
        assert_eq!(next, [1, 1, 1, 4, 2, 2, 2, 3, 3, 4]);
        let moved = shards.iter().zip(&next).filter(|(a, b)| a != b).count();
        assert_eq!(moved, 2);
    }

    /// Balance checking accepts exactly the floor/ceil assignments.
    #[test]
    fn is_balanced_cases() {
        assert!(is_balanced(&[1, 1, 2], &set(&[1, 2])));
        assert!(!is_balanced(&[1, 1, 1], &set(&[1, 2])));
        assert!(!is_balanced(&[1, 0, 2], &set(&[1, 2])));
        assert!(!is_balanced(&[1, 9], &set(&[1, 2])));
        assert!(is_balanced(&[0, 0], &set(&[])));
        assert!(!is_balanced(&[1, 0], &set(&[])));
    }
}
