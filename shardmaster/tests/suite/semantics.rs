//! Join, Leave, Move and Query do what the lab specifies, with exact placements; Abandon
//! and Holder do what `shardkv_proto::master::Op` says.

use std::collections::BTreeMap;

use shardmaster::{is_balanced, Config, MasterError, Op, Request};

use crate::harness::{join_op, moved, servers, Driver};

fn gids_of(config: &Config) -> Vec<u64> {
    config.groups.keys().copied().collect()
}

/// Joins and leaves produce consecutive configurations with the exact server lists,
/// balanced, and empty again once every group has left.
#[test]
fn basic_join_leave() {
    let mut driver = Driver::new(10);
    let c1 = driver.join(&[1]);
    assert_eq!(c1.num, 1);
    assert_eq!(c1.shards, vec![1; 10]);
    assert_eq!(c1.groups, BTreeMap::from([(1, servers(1))]));
    let c2 = driver.join(&[2]);
    assert_eq!(c2.num, 2);
    assert_eq!(c2.shards, vec![1, 1, 1, 1, 1, 2, 2, 2, 2, 2]);
    assert_eq!(gids_of(&c2), [1, 2]);
    let c3 = driver.leave(&[1]);
    assert_eq!(c3.shards, vec![2; 10]);
    assert_eq!(c3.groups, BTreeMap::from([(2, servers(2))]));
    let c4 = driver.leave(&[2]);
    assert_eq!(c4.shards, vec![0; 10]);
    assert!(c4.groups.is_empty());
    assert_eq!(driver.master.configs().len(), 5);
}

/// Every past configuration stays queryable exactly as created; `None` and numbers past
/// the latest give the latest.
#[test]
fn historical_queries() {
    let mut driver = Driver::new(10);
    let mut created = vec![driver.query(Some(0))];
    for gid in 1..=4 {
        created.push(driver.join(&[gid]));
    }
    created.push(driver.leave(&[2, 3]));
    for (num, config) in created.iter().enumerate() {
        assert_eq!(&driver.query(Some(num as u64)), config, "config {num}");
        assert_eq!(config.num, num as u64);
    }
    let latest = created.last().expect("configs").clone();
    assert_eq!(driver.query(None), latest);
    assert_eq!(driver.query(Some(latest.num + 1)), latest);
    assert_eq!(driver.query(Some(u64::MAX)), latest);
    assert_eq!(driver.query(Some(0)), Config::initial(10));
}

/// Every Move creates a configuration with exactly that shard moved; the next Join
/// rebalances from the moved placement.
#[test]
fn move_then_join() {
    let mut driver = Driver::new(10);
    driver.join(&[1, 2]);
    let before = driver.master.latest().clone();
    let moved_config = driver.op(Op::Move { shard: 0, gid: 2 }).expect("move");
    assert_eq!(moved_config.num, before.num + 1);
    assert_eq!(moved_config.shards, vec![2, 1, 1, 1, 1, 2, 2, 2, 2, 2]);
    // A Move to the current owner still creates a configuration.
    let same = driver.op(Op::Move { shard: 0, gid: 2 }).expect("move");
    assert_eq!(same.num, moved_config.num + 1);
    assert_eq!(same.shards, moved_config.shards);
    // Join 3: group 2 (6 shards) keeps 4, group 1 (4 shards) keeps 3, 3 gets 3.
    let joined = driver.join(&[3]);
    assert_eq!(joined.shards, vec![2, 1, 1, 1, 3, 2, 2, 2, 3, 3]);
    assert_eq!(moved(&same.shards, &joined.shards), 3);
}

/// After a Join, only shards given to the new groups move; after a Leave, only the
/// departed groups' shards move (the lab's minimal-transfer checks).
#[test]
fn minimal_transfers_after_join_and_leave() {
    let mut driver = Driver::new(10);
    driver.join(&[1, 2, 3]);
    let mut before = driver.master.latest().clone();
    for gid in 4..=12 {
        let after = driver.join(&[gid]);
        for shard in 0..10 {
            if before.shards[shard] != after.shards[shard] {
                assert_eq!(
                    after.shards[shard], gid,
                    "shard {shard} moved to an old group"
                );
            }
        }
        assert!(is_balanced(
            &after.shards,
            &after.groups.keys().copied().collect()
        ));
        before = after;
    }
    for gid in 4..=12 {
        let after = driver.leave(&[gid]);
        for shard in 0..10 {
            if before.shards[shard] != after.shards[shard] {
                assert_eq!(
                    before.shards[shard], gid,
                    "shard {shard} moved off a staying group"
                );
            }
        }
        before = after;
    }
}

/// Joining and leaving several groups in one request makes one configuration.
#[test]
fn multi_join_leave() {
    let mut driver = Driver::new(10);
    let joined = driver.join(&[5, 6, 7]);
    assert_eq!(joined.num, 1);
    assert_eq!(joined.shards, vec![5, 5, 5, 5, 6, 6, 6, 7, 7, 7]);
    let left = driver.leave(&[5, 7]);
    assert_eq!(left.num, 2);
    assert_eq!(left.shards, vec![6; 10]);
}

/// More groups than shards: surplus groups hold nothing and get shards as others leave.
#[test]
fn more_groups_than_shards() {
    let mut driver = Driver::new(3);
    let config = driver.join(&[1, 2, 3, 4, 5]);
    assert_eq!(config.shards, vec![1, 2, 3]);
    let config = driver.leave(&[2]);
    assert_eq!(config.shards, vec![1, 4, 3]);
}

/// Queries never create configurations and ignore the client's sequence numbers.
#[test]
fn queries_change_nothing() {
    let mut driver = Driver::new(10);
    driver.join(&[1]);
    let query = Request {
        client: 9,
        seq: 1,
        op: Op::Query { num: None },
    };
    assert_eq!(driver.apply(&query).expect("query").num, 1);
    driver.join(&[2]);
    // The same (client, seq) again: a fresh read, not the remembered answer.
    assert_eq!(driver.apply(&query).expect("query").num, 2);
    assert_eq!(driver.master.configs().len(), 3);
    assert!(driver.op(join_op(&[3])).is_ok());
}

/// Abandon retires a group that has left and makes no configuration; Holder then skips
/// the configurations where the abandoned group owned a shard, back to the owner that
/// holds the data (or to nobody); the id can never join again.
#[test]
fn abandon_and_holder() {
    let mut driver = Driver::new(4);
    let c1 = driver.join(&[1]);
    let c2 = driver.join(&[2]);
    assert_eq!(c2.shards, vec![1, 1, 2, 2]);
    let c3 = driver.leave(&[2]);
    assert_eq!(c3.shards, vec![1; 4]);
    assert_eq!(
        driver.op(Op::Abandon { gid: 1 }),
        Err(MasterError::StillMember { gid: 1 })
    );
    assert_eq!(driver.op(Op::Abandon { gid: 2 }), Ok(c3.clone()));
    assert_eq!(
        driver.master.configs().len(),
        4,
        "abandon made a configuration"
    );
    assert_eq!(
        driver.op(Op::Abandon { gid: 2 }),
        Err(MasterError::Abandoned { gid: 2 })
    );
    assert_eq!(
        driver.op(join_op(&[2])),
        Err(MasterError::Abandoned { gid: 2 })
    );
    let holder = |driver: &mut Driver, shard, num| driver.op(Op::Holder { shard, num });
    // Shard 2 was group 2's in config 2: its data is where config 1 put it.
    assert_eq!(holder(&mut driver, 2, 2), Ok(c1.clone()));
    // Shard 0 never was: config 2 itself answers, and so do later ones.
    assert_eq!(holder(&mut driver, 0, 2), Ok(c2));
    assert_eq!(holder(&mut driver, 2, 3), Ok(c3.clone()));
    assert_eq!(holder(&mut driver, 2, 99), Ok(c3));
    assert_eq!(
        holder(&mut driver, 4, 2),
        Err(MasterError::ShardOutOfRange {
            shard: 4,
            nshards: 4
        })
    );
}

/// A group abandoned while it owned a shard from the start (given by nobody): Holder
/// answers configuration 0, whose owner is nobody.
#[test]
fn holder_of_a_fresh_shard_is_nobody() {
    let mut driver = Driver::new(2);
    driver.join(&[1, 2]);
    driver.leave(&[2]);
    driver.op(Op::Abandon { gid: 2 }).expect("abandon");
    let holder = driver.op(Op::Holder { shard: 1, num: 1 });
    assert_eq!(holder, Ok(Config::initial(2)));
}
