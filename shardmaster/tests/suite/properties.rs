//! Property tests of rebalancing over random Join/Leave/Move/Abandon sequences: balance,
//! minimality against two brute-force minimums, Holder's answers, determinism, snapshot
//! round trip.

use std::collections::BTreeSet;

use proptest::prelude::*;
use shardmaster::{is_balanced, rebalance, Config, GroupId, Op, Request, ShardMaster};

use crate::harness::{moved, servers};

/// Largest group id the generators use; ids 0 and unknown ones test the error paths.
const MAX_GID: GroupId = 6;

fn gid() -> impl Strategy<Value = GroupId> {
    // Mostly real ids, sometimes the reserved 0.
    prop_oneof![1 => Just(0), 12 => 1..=MAX_GID]
}

fn op(nshards: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::btree_set(gid(), 0..=3).prop_map(|gids| Op::Join {
            groups: gids.into_iter().map(|gid| (gid, servers(gid))).collect()
        }),
        3 => prop::collection::vec(gid(), 0..=3).prop_map(|gids| Op::Leave { gids }),
        2 => (0..nshards + 2, gid()).prop_map(|(shard, gid)| Op::Move { shard, gid }),
        1 => prop::option::of(0u64..20).prop_map(|num| Op::Query { num }),
        1 => gid().prop_map(|gid| Op::Abandon { gid }),
        1 => (0..nshards + 1, 0u64..20).prop_map(|(shard, num)| Op::Holder { shard, num }),
    ]
}

fn scenario() -> impl Strategy<Value = (usize, Vec<Op>)> {
    (1usize..=10)
        .prop_flat_map(|nshards| (Just(nshards), prop::collection::vec(op(nshards), 1..25)))
}

/// The fewest owner changes of any balanced assignment, choosing which groups get the
/// larger targets by trying every subset (independent of the greedy choice).
fn min_moves_by_targets(shards: &[GroupId], groups: &BTreeSet<GroupId>) -> usize {
    let n = shards.len();
    if groups.is_empty() {
        return shards.iter().filter(|&&gid| gid != 0).count();
    }
    let gids: Vec<GroupId> = groups.iter().copied().collect();
    let (base, extra) = (n / gids.len(), n % gids.len());
    let mut best = usize::MAX;
    for mask in 0u32..(1 << gids.len()) {
        if mask.count_ones() as usize != extra {
            continue;
        }
        let kept: usize = gids
            .iter()
            .enumerate()
            .map(|(i, gid)| {
                let target = base + usize::from(mask & (1 << i) != 0);
                shards.iter().filter(|&s| s == gid).count().min(target)
            })
            .sum();
        best = best.min(n - kept);
    }
    best
}

/// The fewest owner changes of any balanced assignment, by enumerating every assignment
/// of shards to groups (tiny cases only).
fn min_moves_by_enumeration(shards: &[GroupId], groups: &BTreeSet<GroupId>) -> usize {
    let gids: Vec<GroupId> = groups.iter().copied().collect();
    let mut best = usize::MAX;
    let mut candidate = vec![0; shards.len()];
    let total = gids.len().pow(shards.len() as u32);
    for code in 0..total {
        let mut rest = code;
        for slot in candidate.iter_mut() {
            *slot = gids[rest % gids.len()];
            rest /= gids.len();
        }
        if is_balanced(&candidate, groups) {
            best = best.min(moved(shards, &candidate));
        }
    }
    best
}

/// Checks one applied step: errors create nothing; Join/Leave results are balanced and
/// minimal; Move changes exactly one shard's owner.
fn check_step(before: &Config, op: &Op, after: &Config, ok: bool) -> Result<(), TestCaseError> {
    let groups: BTreeSet<GroupId> = after.groups.keys().copied().collect();
    match op {
        Op::Query { .. } | Op::Abandon { .. } | Op::Holder { .. } => {
            prop_assert_eq!(before, after)
        }
        _ if !ok => prop_assert_eq!(before, after),
        Op::Move { shard, gid } => {
            prop_assert_eq!(after.num, before.num + 1);
            prop_assert_eq!(after.shards[*shard], *gid);
            prop_assert!(moved(&before.shards, &after.shards) <= 1);
        }
        Op::Join { .. } | Op::Leave { .. } => {
            prop_assert_eq!(after.num, before.num + 1);
            prop_assert!(
                is_balanced(&after.shards, &groups),
                "unbalanced {:?}",
                after
            );
            let actual = moved(&before.shards, &after.shards);
            prop_assert_eq!(actual, min_moves_by_targets(&before.shards, &groups));
            if !groups.is_empty() && groups.len().pow(after.shards.len() as u32) <= 1024 {
                prop_assert_eq!(actual, min_moves_by_enumeration(&before.shards, &groups));
            }
        }
    }
    Ok(())
}

/// A Holder answer is the latest configuration at or before `num` (or the latest)
/// whose owner of `shard` is not abandoned: every later one up to `num` has an abandoned
/// owner.
fn check_holder(
    master: &ShardMaster,
    shard: usize,
    num: u64,
    holder: &Config,
) -> Result<(), TestCaseError> {
    let abandoned = master.abandoned();
    let upto = num.min(master.latest().num);
    prop_assert!(holder.num <= upto);
    prop_assert!(!abandoned.contains(&holder.shards[shard]));
    for later in &master.configs()[holder.num as usize + 1..=upto as usize] {
        prop_assert!(abandoned.contains(&later.shards[shard]));
    }
    Ok(())
}

fn run(nshards: usize, ops: &[Op]) -> Result<ShardMaster, TestCaseError> {
    let mut master = ShardMaster::new(nshards);
    for (i, op) in ops.iter().enumerate() {
        let before = master.latest().clone();
        let request = Request {
            client: 1,
            seq: i as u64 + 1,
            op: op.clone(),
        };
        let response = master.apply(i as u64 + 1, i as u64 + 1, &request);
        if let Ok(config) = &response {
            prop_assert_eq!(config, master.query(Some(config.num)));
        }
        if let (Op::Holder { shard, num }, Ok(holder)) = (op, &response) {
            check_holder(&master, *shard, *num, holder)?;
        }
        check_step(&before, op, master.latest(), response.is_ok())?;
    }
    Ok(master)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// Random sequences keep every Join/Leave balanced and minimal, are deterministic,
    /// and survive a snapshot round trip.
    #[test]
    fn random_sequences((nshards, ops) in scenario()) {
        let first = run(nshards, &ops)?;
        let second = run(nshards, &ops)?;
        prop_assert_eq!(&first, &second);
        let bytes = first.encode_snapshot();
        prop_assert_eq!(&bytes, &second.encode_snapshot());
        let restored = ShardMaster::decode_snapshot(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&restored, &first);
    }

    /// From any starting placement (departed owners, unowned shards, imbalance),
    /// rebalance is balanced, minimal and independent of how the group set was built.
    #[test]
    fn rebalance_from_any_start(
        shards in prop::collection::vec(0..=8u64, 1..=10),
        groups in prop::collection::vec(1..=8u64, 0..=5),
    ) {
        let set: BTreeSet<GroupId> = groups.iter().copied().collect();
        let reversed: BTreeSet<GroupId> = groups.iter().rev().copied().collect();
        let next = rebalance(&shards, &set);
        prop_assert_eq!(&next, &rebalance(&shards, &reversed));
        prop_assert!(is_balanced(&next, &set));
        prop_assert_eq!(moved(&shards, &next), min_moves_by_targets(&shards, &set));
        if !set.is_empty() && set.len().pow(shards.len() as u32) <= 4096 {
            prop_assert_eq!(moved(&shards, &next), min_moves_by_enumeration(&shards, &set));
        }
    }
}
