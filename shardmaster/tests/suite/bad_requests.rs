//! Every bad request gets its typed error and creates no configuration.

use std::collections::BTreeMap;

use shardkv_proto::master::{MAX_ADDRESS_BYTES, MAX_GROUPS, MAX_SERVERS_PER_GROUP};
use shardmaster::{MasterError, Op};

use crate::harness::{join_op, Driver};

fn join_with(gid: u64, servers: Vec<String>) -> Op {
    Op::Join {
        groups: BTreeMap::from([(gid, servers)]),
    }
}

fn bad_cases() -> Vec<(&'static str, Op, MasterError)> {
    use MasterError::*;
    let many_groups = Op::Join {
        groups: (100..100 + MAX_GROUPS as u64 - 1)
            .map(|gid| (gid, vec!["a".to_string()]))
            .collect(),
    };
    vec![
        ("join present gid", join_op(&[1]), AlreadyJoined { gid: 1 }),
        (
            "join new + present",
            join_op(&[2, 3]),
            AlreadyJoined { gid: 2 },
        ),
        ("join gid 0", join_op(&[0]), ReservedGroup),
        (
            "join no servers",
            join_with(3, vec![]),
            NoServers { gid: 3 },
        ),
        (
            "join nothing",
            Op::Join {
                groups: BTreeMap::new(),
            },
            EmptyJoin,
        ),
        (
            "join too many servers",
            join_with(3, vec!["s".into(); MAX_SERVERS_PER_GROUP + 1]),
            TooManyServers {
                gid: 3,
                count: MAX_SERVERS_PER_GROUP + 1,
                max: MAX_SERVERS_PER_GROUP,
            },
        ),
        (
            "join empty address",
            join_with(3, vec!["a".into(), String::new()]),
            BadAddress { gid: 3, index: 1 },
        ),
        (
            "join long address",
            join_with(3, vec!["x".repeat(MAX_ADDRESS_BYTES + 1)]),
            BadAddress { gid: 3, index: 0 },
        ),
        (
            "join too many groups",
            many_groups,
            TooManyGroups {
                count: MAX_GROUPS + 1,
                max: MAX_GROUPS,
            },
        ),
        (
            "leave unknown",
            Op::Leave { gids: vec![9] },
            UnknownGroup { gid: 9 },
        ),
        (
            "leave known + unknown",
            Op::Leave { gids: vec![1, 9] },
            UnknownGroup { gid: 9 },
        ),
        ("leave nothing", Op::Leave { gids: vec![] }, EmptyLeave),
        ("leave gid 0", Op::Leave { gids: vec![0] }, ReservedGroup),
        (
            "leave twice",
            Op::Leave { gids: vec![1, 1] },
            DuplicateGroup { gid: 1 },
        ),
        (
            "move to unknown",
            Op::Move { shard: 0, gid: 9 },
            UnknownGroup { gid: 9 },
        ),
        (
            "move to gid 0",
            Op::Move { shard: 0, gid: 0 },
            ReservedGroup,
        ),
        (
            "move shard out of range",
            Op::Move { shard: 10, gid: 1 },
            ShardOutOfRange {
                shard: 10,
                nshards: 10,
            },
        ),
    ]
}

/// Each bad request is answered with its exact error, creates no configuration and
/// leaves the latest one untouched, also when retried.
#[test]
fn bad_requests_change_nothing() {
    for (name, op, expected) in bad_cases() {
        let mut driver = Driver::new(10);
        driver.join(&[1, 2]);
        let before = driver.master.configs().to_vec();
        let response = driver.op(op.clone());
        assert_eq!(response, Err(expected.clone()), "case {name}");
        assert!(!expected.is_retryable(), "case {name}");
        assert_eq!(
            driver.master.configs(),
            &before[..],
            "case {name} created a configuration"
        );
        // The retry (same client, same seq) gets the same error and still creates nothing.
        let retry = shardmaster::Request {
            client: 1,
            seq: 2,
            op,
        };
        assert_eq!(driver.apply(&retry), Err(expected), "retry of case {name}");
        assert_eq!(driver.master.configs(), &before[..], "retry of case {name}");
    }
}

/// Bad requests are rejected the same way before any group has joined.
#[test]
fn bad_requests_on_empty_cluster() {
    let cases = [
        (
            Op::Leave { gids: vec![1] },
            MasterError::UnknownGroup { gid: 1 },
        ),
        (
            Op::Move { shard: 0, gid: 1 },
            MasterError::UnknownGroup { gid: 1 },
        ),
        (join_with(1, vec![]), MasterError::NoServers { gid: 1 }),
    ];
    for (op, expected) in cases {
        let mut driver = Driver::new(10);
        assert_eq!(driver.op(op), Err(expected));
        assert_eq!(driver.master.configs().len(), 1);
    }
}
