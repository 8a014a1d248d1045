//! Scenario tests of [`replica_group::Server`]: groups A and B of three replicas each
//! and a scripted shard master; configuration 2 moves shards 0 and 1 from A to B.

use replica_group::Service;
use replica_group::{Effect, KvError, MigrationReply, MigrationRequest, Op, Phase, Reply, Request};
use shardkv_proto::master;
use shardkv_proto::GroupId;
use shardkv_raft::LogStore;

use crate::state::{key_in, NSHARDS};
use crate::world::{World, A, B, MASTER};

/// Configuration 1: shards 0..5 to A, 5..10 to B. Configuration 2: shards 0, 1 to B.
fn owners() -> Vec<[GroupId; NSHARDS]> {
    let one = [A, A, A, A, A, B, B, B, B, B];
    let mut two = one;
    two[0] = B;
    two[1] = B;
    vec![one, two]
}

/// A request of `client` that proves it new to any shard within the world's session
/// timeout (a day): these tests send requests straight to the servers, without a client
/// keeping shards' clocks, and every stamped entry's time is at least 1.
fn kv(client: u64, seq: u64, op: Op) -> Request {
    let seen = 1;
    Request {
        client,
        seq,
        seen,
        op,
    }
}

fn put(key: &[u8], value: &[u8]) -> Op {
    Op::Put {
        key: key.to_vec(),
        value: value.to_vec(),
    }
}

fn append(key: &[u8], value: &[u8]) -> Op {
    Op::Append {
        key: key.to_vec(),
        value: value.to_vec(),
    }
}

fn start(threshold: Option<u64>) -> World {
    let mut world = World::new(&owners(), threshold);
    world.published = 1;
    world.run_until("config 1 everywhere", |w| {
        w.settled_at(A, 1) && w.settled_at(B, 1)
    });
    world
}

/// Shards move from A to B with their data and duplicate table: after the move A answers
/// WrongGroup, B serves the data, and a retried append is not applied twice; while the
/// pulls are blocked, every shard that does not move keeps serving at its owner.
#[test]
fn shards_move_with_data_and_duplicates() {
    let mut w = start(None);
    let (k0, k1) = (key_in(0), key_in(1));
    assert_eq!(
        w.call_group(A, kv(7, 1, append(&k0, b"x"))),
        Ok(Reply::Done)
    );
    assert_eq!(w.call_group(A, kv(7, 2, put(&k1, b"one"))), Ok(Reply::Done));
    assert_eq!(
        w.call_group(B, kv(8, 1, put(&key_in(5), b"five"))),
        Ok(Reply::Done)
    );
    w.drop_pulls = true;
    w.published = 2;
    w.run_until("config 2 adopted", |w| {
        [A, B]
            .iter()
            .all(|&g| w.groups[&g].iter().all(|s| s.state().config().num == 2))
    });
    assert!(w
        .phases(B, 0)
        .iter()
        .all(|p| matches!(p, Phase::Pulling { from: A, .. })));
    assert_eq!(
        w.call_group(A, kv(7, 3, append(&k0, b"y"))),
        Err(KvError::WrongGroup)
    );
    assert_eq!(
        w.call_group(B, kv(7, 3, append(&k0, b"y"))),
        Err(KvError::WrongGroup)
    );
    assert_eq!(w.get(B, &key_in(5)), Some(b"five".to_vec()));
    for shard in 2..NSHARDS {
        let owner = if shard < 5 { A } else { B };
        let request = kv(9, shard as u64, put(&key_in(shard), b"during"));
        assert_eq!(
            w.call_group(owner, request),
            Ok(Reply::Done),
            "shard {shard}"
        );
    }
    w.drop_pulls = false;
    w.run_until("migration done", |w| {
        w.settled_at(A, 2) && w.settled_at(B, 2)
    });
    assert_eq!(
        w.call_group(B, kv(7, 1, append(&k0, b"x"))),
        Ok(Reply::Done)
    );
    assert_eq!(
        w.get(B, &k0),
        Some(b"x".to_vec()),
        "retried append applied twice"
    );
    assert_eq!(w.get(B, &k1), Some(b"one".to_vec()));
    assert_eq!(
        w.call_group(A, kv(7, 4, put(&k1, b"stale"))),
        Err(KvError::WrongGroup)
    );
    assert!(w.phases(A, 0).iter().all(|p| **p == Phase::Absent));
}

/// The old owner keeps a given-away shard (frozen, unserved) until the new owner's
/// acknowledgement arrives, and neither group moves to the next configuration before.
#[test]
fn old_owner_deletes_only_after_ack() {
    let mut w = start(None);
    let k0 = key_in(0);
    assert_eq!(
        w.call_group(A, kv(7, 1, put(&k0, b"kept"))),
        Ok(Reply::Done)
    );
    w.drop_deletes = true;
    w.configs.push(w.configs[2].clone());
    w.configs[3].num = 3;
    w.published = 3;
    w.run_until("B installed", |w| {
        w.phases(B, 0)
            .iter()
            .chain(w.phases(B, 1).iter())
            .all(|p| matches!(p, Phase::Acking { .. }))
    });
    for _ in 0..30 {
        w.tick_all();
    }
    assert_eq!(
        w.get(B, &k0),
        Some(b"kept".to_vec()),
        "B serves while acking"
    );
    assert!(w
        .phases(A, 0)
        .iter()
        .all(|p| matches!(p, Phase::Offering { to: B, .. })));
    assert!(w.groups[&A].iter().all(|s| s.state().config().num == 2));
    assert!(w.groups[&B].iter().all(|s| s.state().config().num == 2));
    w.drop_deletes = false;
    w.run_until("deleted and moved on", |w| {
        w.settled_at(A, 3) && w.settled_at(B, 3)
    });
    assert!(w.phases(A, 0).iter().all(|p| **p == Phase::Absent));
    assert_eq!(w.get(B, &k0), Some(b"kept".to_vec()));
}

/// With a small log threshold, the deletion leaves the old owner's data and its log is
/// compacted past the move, and replicas restarted from their data and log rebuild the
/// same state.
#[test]
fn deletion_reaches_snapshot_and_restart_rebuilds() {
    let mut w = start(Some(4096));
    let big = vec![b'v'; 300];
    for seq in 1..=20u64 {
        let shard = (seq % 2) as usize;
        let key = [key_in(shard), seq.to_be_bytes().to_vec()].concat();
        let key = (0..)
            .map(|i: u32| [key.clone(), i.to_be_bytes().to_vec()].concat())
            .find(|k| shardkv_proto::key_to_shard(k, NSHARDS) == shard)
            .expect("a key in the shard");
        assert_eq!(
            w.call_group(A, kv(3, seq, put(&key, &big))),
            Ok(Reply::Done)
        );
    }
    let bytes_before = w.groups[&A][0].state().data_bytes().expect("reads");
    assert!(bytes_before >= 20 * 300, "A holds {bytes_before} bytes");
    w.published = 2;
    w.run_until("migration done", |w| {
        w.settled_at(A, 2) && w.settled_at(B, 2)
    });
    for seq in 21..=60u64 {
        let op = put(&key_in(2), &seq.to_be_bytes());
        assert_eq!(w.call_group(A, kv(3, seq, op)), Ok(Reply::Done));
    }
    for id in 1..=3 {
        let server = &w.groups[&A][id - 1];
        let store = server.replica().store();
        assert!(
            store.raft_state_bytes() < 4096 + 1000,
            "replica {id}: the log before the move was compacted away"
        );
        assert_eq!(*server.state().shard(0), Phase::Absent, "replica {id}");
        let held = server.state().data_bytes().expect("reads");
        assert!(held < 1000, "replica {id} holds {held} bytes");
        let stored = server.state().stored_bytes().expect("reads");
        assert!(stored < 1000, "replica {id}'s data stores {stored} bytes");
    }
    for (gid, id) in [(A, 1), (B, 2), (B, 3)] {
        assert!(
            w.groups[&gid][id as usize - 1]
                .replica()
                .store()
                .snapshot_index()
                > 0
        );
        w.restart(gid, id);
    }
    for _ in 0..10 {
        w.tick_all();
    }
    for gid in [A, B] {
        let states: Vec<Vec<u8>> = w.groups[&gid]
            .iter()
            .map(|s| s.state().dump().expect("reads"))
            .collect();
        assert_eq!(states[0], states[1], "group {gid} replicas 1 and 2 differ");
        assert_eq!(states[1], states[2], "group {gid} replicas 2 and 3 differ");
    }
    assert_eq!(w.get(A, &key_in(2)), Some(60u64.to_be_bytes().to_vec()));
}

/// Requests that cannot succeed are answered at once without touching the log: a
/// follower redirects to the leader, oversized keys get their limit, the leader refuses
/// a shard it does not own and a write of a client its shard does not know that proves
/// nothing, and a malformed or premature migration request is refused.
#[test]
fn refusals_before_the_log() {
    let mut w = start(None);
    let leader = w.leader(A).expect("leader");
    let follower = (1..=3).find(|&id| id != leader).expect("follower");
    let before = w.server(A, leader).replica().commit_index();
    let long = vec![0; shardkv_proto::kv::MAX_KEY_BYTES + 1];
    let cases = [
        (
            follower,
            put(b"k", b"v"),
            Err(KvError::NotLeader { hint: Some(leader) }),
        ),
        (
            leader,
            put(&long, b"v"),
            Err(KvError::KeyTooLarge {
                len: long.len(),
                max: long.len() - 1,
            }),
        ),
        (leader, put(&key_in(7), b"v"), Err(KvError::WrongGroup)),
    ];
    let answer = |w: &mut World, to, req_id, request| {
        w.server(A, to)
            .on_request(req_id, request)
            .expect("request");
        let effects = w.server(A, to).take_effects();
        let replies: Vec<_> = effects
            .into_iter()
            .filter_map(|e| match e {
                Effect::Reply {
                    req_id, response, ..
                } => Some((req_id, response)),
                _ => None,
            })
            .collect();
        replies
    };
    for (req_id, (to, op, expected)) in (1..).zip(cases) {
        let replies = answer(&mut w, to, req_id, kv(1, req_id, op));
        assert_eq!(replies, vec![(req_id, expected)]);
    }
    // A write of a client the shard does not know, without a reading of the shard's
    // clock: refused with the clock to send it again with.
    let state = w.server(A, leader).state();
    let clock = state.shard_clock(2);
    let (clock, timeout) = (clock.expect("served"), state.session_timeout_ms());
    let unproven = Request {
        seen: 0,
        ..kv(2, 1, put(&key_in(2), b"v"))
    };
    let replies = answer(&mut w, leader, 9, unproven);
    let refused = Err(KvError::UnknownSession { clock, timeout });
    assert_eq!(replies, vec![(9, refused)]);
    let out_of_range = MigrationRequest::PullShard {
        config_num: 1,
        shard: NSHARDS,
        after: None,
    };
    let premature = MigrationRequest::PullShard {
        config_num: 2,
        shard: 0,
        after: None,
    };
    w.server(A, follower)
        .on_migration_request(10, out_of_range)
        .expect("request");
    w.server(A, follower)
        .on_migration_request(11, premature)
        .expect("request");
    let effects = w.server(A, follower).take_effects();
    assert!(matches!(
        effects[..],
        [
            Effect::MigrationReply {
                req_id: 10,
                response: Err(KvError::Malformed { .. })
            },
            Effect::MigrationReply {
                req_id: 11,
                response: Ok(MigrationReply::NotReady { current: 1 })
            },
        ]
    ));
    assert_eq!(w.server(A, leader).replica().commit_index(), before);
}

/// Only the leader polls the shard master, for exactly the next configuration, every
/// `poll_ticks` ticks, one call at a time.
#[test]
fn leader_polls_for_the_next_config() {
    let mut w = start(None);
    let leader = w.leader(B).expect("leader");
    let mut calls = Vec::new();
    for _ in 0..10 {
        for id in 1..=3 {
            w.server(B, id).on_tick().expect("tick");
            for effect in w.server(B, id).take_effects() {
                if let Effect::Call { to, bytes, .. } = effect {
                    calls.push((id, to, bytes));
                }
            }
        }
    }
    assert!(!calls.is_empty(), "no poll in 10 ticks");
    assert!(
        calls.len() <= 2,
        "{} polls in 10 ticks (one at a time)",
        calls.len()
    );
    for (id, to, bytes) in calls {
        assert_eq!((id, to.as_str()), (leader, MASTER));
        let request: master::Request = bincode::deserialize(&bytes).expect("a master request");
        assert_eq!(request.op, master::Op::Query { num: Some(2) });
    }
}

/// Every replica of the new owner crashes while it is pulling; restarted from their
/// stores they resume the migration and finish it with the data intact.
#[test]
fn whole_group_restarts_mid_migration() {
    let mut w = start(Some(4096));
    let k1 = key_in(1);
    assert_eq!(
        w.call_group(A, kv(5, 1, append(&k1, b"a"))),
        Ok(Reply::Done)
    );
    w.drop_pulls = true;
    w.published = 2;
    w.run_until("B pulling", |w| {
        w.phases(B, 1)
            .iter()
            .all(|p| matches!(p, Phase::Pulling { .. }))
    });
    for id in 1..=3 {
        w.restart(B, id);
    }
    w.drop_pulls = false;
    w.run_until("migration done", |w| {
        w.settled_at(A, 2) && w.settled_at(B, 2)
    });
    assert_eq!(
        w.call_group(B, kv(5, 1, append(&k1, b"a"))),
        Ok(Reply::Done)
    );
    assert_eq!(
        w.call_group(B, kv(5, 2, append(&k1, b"b"))),
        Ok(Reply::Done)
    );
    assert_eq!(w.get(B, &k1), Some(b"ab".to_vec()));
}

/// The same events give the same result: two runs of a migration end with identical
/// states and logs on every replica (the servers draw no randomness and read no clock).
#[test]
fn same_events_same_states() {
    let run = || {
        let mut w = start(Some(4096));
        for seq in 1..=10u64 {
            let op = append(&key_in(seq as usize % NSHARDS), b"x");
            let owner = if (seq as usize % NSHARDS) < 5 { A } else { B };
            assert_eq!(w.call_group(owner, kv(1, seq, op)), Ok(Reply::Done));
        }
        w.published = 2;
        w.run_until("migration done", |w| {
            w.settled_at(A, 2) && w.settled_at(B, 2)
        });
        w.groups
            .values()
            .flatten()
            .map(|s| {
                (
                    s.state().dump().expect("reads"),
                    s.replica().commit_index(),
                    s.replica().term(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

/// A Get on a settled leader is answered by ReadIndex: the right value, and no entry
/// added to the log for it.
#[test]
fn gets_read_without_the_log() {
    let mut w = start(None);
    let k0 = key_in(0);
    assert_eq!(w.call_group(A, kv(7, 1, put(&k0, b"v"))), Ok(Reply::Done));
    let leader = w.leader(A).expect("leader");
    let last = w.server(A, leader).replica().commit_index();
    for _ in 0..5 {
        assert_eq!(w.get(A, &k0), Some(b"v".to_vec()));
    }
    assert_eq!(w.get(A, &key_in(2)), None);
    assert_eq!(w.server(A, leader).replica().commit_index(), last);
    // A shard the group does not serve is refused before any read.
    let response = w.call_group(A, kv(0, 0, Op::Get { key: key_in(7) }));
    assert_eq!(response, Err(KvError::WrongGroup));
}

/// Requests handed over in one `batch` share one Ready: the leader syncs once for all
/// of them, and each still gets its own answer.
#[test]
fn a_batch_shares_one_sync() {
    let mut w = start(None);
    let leader = w.leader(A).expect("leader");
    let syncs = |w: &mut World| w.server(A, leader).replica().store().backend().sync_count();
    let before = syncs(&mut w);
    w.server(A, leader)
        .batch(|server| {
            for i in 0..20u64 {
                let key = key_in((i % 5) as usize);
                server.on_request(1000 + i, kv(9, i + 1, append(&key, b"x")))?;
            }
            server.on_request(2000, kv(9, 0, Op::Get { key: key_in(0) }))
        })
        .expect("batch");
    assert_eq!(syncs(&mut w), before + 1, "one sync for the whole batch");
    w.pump();
    let mut answered: Vec<_> = w.replies.drain(..).collect();
    answered.sort_by_key(|(req_id, _)| *req_id);
    let done: Vec<_> = answered.iter().filter(|(id, _)| *id < 2000).collect();
    assert_eq!(done.len(), 20, "{answered:?}");
    assert!(
        done.iter().all(|(_, r)| *r == Ok(Reply::Done)),
        "{answered:?}"
    );
    // The Get was read in the same batch, before the appends applied or after: either
    // way a prefix of them, never more than all four for its key.
    let (_, read) = answered.last().expect("the get's answer");
    match read {
        Ok(Reply::Value(value)) => {
            assert!(value.as_deref().map_or(0, <[u8]>::len) <= 4, "{read:?}")
        }
        other => panic!("get answered {other:?}"),
    }
    assert_eq!(w.get(A, &key_in(0)), Some(b"xxxx".to_vec()));
}

/// A shard of 4 MiB moves from A to B in chunks, each asked for as soon as the one
/// before it applied: the move takes fewer ticks than one poll interval per chunk, and
/// every value arrives.
#[test]
fn a_large_shard_moves_chunk_after_chunk() {
    let mut w = start(None);
    let keys: Vec<Vec<u8>> = (0..100_000u32)
        .map(|i| [key_in(0), i.to_be_bytes().to_vec()].concat())
        .filter(|key| shardkv_proto::key_to_shard(key, NSHARDS) == 0)
        .take(128)
        .collect();
    let value = vec![b'v'; 32 << 10];
    for (seq, key) in (1..).zip(&keys) {
        assert_eq!(
            w.call_group(A, kv(3, seq, put(key, &value))),
            Ok(Reply::Done)
        );
    }
    w.published = 2;
    let mut ticks = 0;
    while !(w.settled_at(A, 2) && w.settled_at(B, 2)) {
        w.tick_all();
        ticks += 1;
        assert!(ticks < 2_000, "the move never ends");
    }
    let chunks = keys.len() * value.len() / shardkv_proto::kv::MIGRATION_CHUNK_BYTES;
    let poll_ticks = replica_group::GroupOptions::new(B, NSHARDS, vec![]).poll_ticks;
    assert!(
        ticks < chunks as u64 * poll_ticks,
        "{ticks} ticks for {chunks} chunks at one poll of {poll_ticks} ticks each"
    );
    for key in &keys {
        assert_eq!(w.get(B, key).as_deref(), Some(&value[..]));
    }
}
