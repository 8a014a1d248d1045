//! Unit tests of [`GroupState`]: key/value semantics, duplicate detection, session expiry
//! and limits, driven entry by entry, and a shard handed between two state machines.

use std::collections::BTreeMap;

use replica_group::data::Data;
use replica_group::{
    Entry, GroupState, KvError, MigrationReply, Op, Outcome, Phase, Replicated, Reply, Request,
    Response,
};
use shardkv_proto::kv::{MAX_KEY_BYTES, MAX_VALUE_BYTES, MIGRATION_CHUNK_BYTES};
use shardkv_proto::{key_to_shard, Config, GroupId, ShardId};

pub const NSHARDS: usize = 10;

/// Drives one state machine with consecutive log indices.
pub struct Driver {
    pub state: GroupState,
    pub next_index: u64,
    /// The cluster time of the entry applied last.
    pub time: u64,
}

impl Driver {
    /// A fresh group `gid` whose sessions expire after `timeout` ms; every entry it
    /// applies is 1 ms after the one before.
    pub fn new(gid: GroupId, timeout: u64) -> Self {
        Driver {
            state: GroupState::with_session_timeout(gid, NSHARDS, timeout, Data::in_memory())
                .expect("a new state"),
            next_index: 1,
            time: 0,
        }
    }

    pub fn apply(&mut self, entry: Entry) -> Outcome {
        let index = self.next_index;
        self.next_index += 1;
        self.time += 1;
        let outcome = (self.state.apply(index, self.time, entry)).expect("the data takes it");
        self.state.commit().expect("the data commits");
        outcome
    }

    /// A new request of `client`, which observed the clock as it is now.
    pub fn kv(&mut self, client: u64, seq: u64, op: Op) -> Response {
        self.kv_seen(client, seq, self.time, op)
    }

    /// A request of `client` that observed the clock at `seen`.
    pub fn kv_seen(&mut self, client: u64, seq: u64, seen: u64, op: Op) -> Response {
        let request = Request {
            client,
            seq,
            seen,
            op,
        };
        match self.apply(Entry::Kv(request)) {
            Outcome::Kv(response, _) => response,
            other => panic!("kv entry answered {other:?}"),
        }
    }

    pub fn get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        match self.kv(0, 0, Op::Get { key: key.to_vec() }) {
            Ok(Reply::Value(value)) => value,
            other => panic!("get answered {other:?}"),
        }
    }
}

/// A configuration `num` giving shard `s` to `owners[s]`, groups 100 and 200 as members.
pub fn config(num: u64, owners: [GroupId; NSHARDS]) -> Config {
    let groups = [100, 200]
        .into_iter()
        .map(|gid| (gid, (0..3).map(|i| format!("g{gid}-{i}")).collect()))
        .collect::<BTreeMap<_, _>>();
    Config {
        num,
        shards: owners.to_vec(),
        groups,
    }
}

/// A key living in `shard`.
pub fn key_in(shard: ShardId) -> Vec<u8> {
    (0..)
        .map(|i| format!("key{i}").into_bytes())
        .find(|k| key_to_shard(k, NSHARDS) == shard)
        .expect("some key lands in every shard")
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

/// A group owning every shard from configuration 1 on.
fn owner_of_all(timeout: u64) -> Driver {
    let mut driver = Driver::new(100, timeout);
    driver.apply(Entry::Config(config(1, [100; NSHARDS])));
    assert!(driver
        .state
        .shards()
        .all(|p| matches!(p, Phase::Serving(_))));
    driver
}

/// Put overwrites, Append appends (and creates), Delete removes silently, Get reads.
#[test]
fn put_append_delete_get() {
    let mut d = owner_of_all(100);
    let k = b"k".as_slice();
    assert_eq!(d.get(k), None);
    assert_eq!(d.kv(1, 1, append(k, b"a")), Ok(Reply::Done));
    assert_eq!(d.get(k), Some(b"a".to_vec()));
    assert_eq!(d.kv(1, 2, append(k, b"b")), Ok(Reply::Done));
    assert_eq!(d.get(k), Some(b"ab".to_vec()));
    assert_eq!(d.kv(1, 3, put(k, b"x")), Ok(Reply::Done));
    assert_eq!(d.get(k), Some(b"x".to_vec()));
    let delete = Op::Delete { key: k.to_vec() };
    assert_eq!(d.kv(1, 4, delete.clone()), Ok(Reply::Done));
    assert_eq!(d.get(k), None);
    assert_eq!(
        d.kv(1, 5, delete),
        Ok(Reply::Done),
        "absent delete is silent"
    );
}

/// A retried mutation gets its original answer and takes effect once; an older one is
/// refused as stale; gets are never remembered.
#[test]
fn duplicates_answer_once() {
    let mut d = owner_of_all(100);
    let k = b"k".as_slice();
    assert_eq!(d.kv(7, 1, append(k, b"a")), Ok(Reply::Done));
    assert_eq!(d.kv(7, 1, append(k, b"a")), Ok(Reply::Done));
    assert_eq!(d.get(k), Some(b"a".to_vec()));
    assert_eq!(d.kv(7, 2, append(k, b"b")), Ok(Reply::Done));
    assert_eq!(
        d.kv(7, 1, append(k, b"a")),
        Err(KvError::StaleRequest {
            client: 7,
            seq: 1,
            last: 2
        })
    );
    assert_eq!(d.get(k), Some(b"ab".to_vec()));
    let shard = key_to_shard(k, NSHARDS);
    let sessions = d.state.shard(shard).store().expect("held").sessions.len();
    assert_eq!(sessions, 1, "gets (client 0) are not remembered");
}

/// A session expires after more than `timeout` of silence by the shard's clock; a
/// retry after that is refused, never applied again, while a request that observed the
/// clock since is new; a shard never remembers more than `timeout + 1` clients heard
/// 1 ms apart.
#[test]
fn sessions_expire_by_cluster_time() {
    let timeout = 5;
    let mut d = owner_of_all(timeout);
    let k = b"k".as_slice();
    let seen = d.time;
    assert_eq!(d.kv_seen(1, 1, seen, append(k, b"a")), Ok(Reply::Done));
    for i in 0..timeout - 1 {
        d.get(format!("other{i}").as_bytes());
    }
    assert_eq!(d.kv_seen(1, 1, seen, append(k, b"a")), Ok(Reply::Done));
    assert_eq!(
        d.get(k),
        Some(b"a".to_vec()),
        "still remembered at the bound"
    );
    for i in 0..timeout {
        d.get(format!("other{i}").as_bytes());
    }
    let late = d.kv_seen(1, 1, seen, append(k, b"a"));
    assert!(
        matches!(late, Err(KvError::UnknownSession { .. })),
        "{late:?}"
    );
    assert_eq!(d.get(k), Some(b"a".to_vec()), "a late retry applied again");
    assert_eq!(d.kv(1, 2, append(k, b"b")), Ok(Reply::Done));
    assert_eq!(d.get(k), Some(b"ab".to_vec()));
    let shard = key_to_shard(k, NSHARDS);
    for client in 10..40 {
        assert_eq!(d.kv(client, 1, append(k, b".")), Ok(Reply::Done));
        let held = d.state.shard(shard).store().expect("held").sessions.len();
        assert!(
            held as u64 <= timeout + 1,
            "{held} sessions, timeout {timeout}"
        );
    }
}

/// Oversized keys and values are refused and change nothing; an Append whose result
/// would pass the limit is refused, and a retry gets the same refusal.
#[test]
fn size_limits() {
    let mut d = owner_of_all(100);
    let long_key = vec![b'k'; MAX_KEY_BYTES + 1];
    assert_eq!(
        d.kv(1, 1, put(&long_key, b"v")),
        Err(KvError::KeyTooLarge {
            len: MAX_KEY_BYTES + 1,
            max: MAX_KEY_BYTES
        })
    );
    let k = b"k".as_slice();
    let big = vec![b'v'; MAX_VALUE_BYTES];
    assert_eq!(d.kv(1, 2, put(k, &big)), Ok(Reply::Done));
    let too_large = Err(KvError::ValueTooLarge {
        len: MAX_VALUE_BYTES + 1,
        max: MAX_VALUE_BYTES,
    });
    assert_eq!(d.kv(1, 3, append(k, b"x")), too_large);
    assert_eq!(d.kv(1, 3, append(k, b"x")), too_large);
    assert_eq!(d.get(k).map(|v| v.len()), Some(MAX_VALUE_BYTES));
}

/// Before owning a shard, and after giving it away, a group answers WrongGroup.
#[test]
fn serves_only_owned_shards() {
    let mut d = Driver::new(100, 100);
    assert_eq!(d.kv(1, 1, put(b"k", b"v")), Err(KvError::WrongGroup));
    let mut owners = [100; NSHARDS];
    d.apply(Entry::Config(config(1, owners)));
    let k = key_in(3);
    assert_eq!(d.kv(1, 2, put(&k, b"v")), Ok(Reply::Done));
    owners[3] = 200;
    d.apply(Entry::Config(config(2, owners)));
    assert!(matches!(*d.state.shard(3), Phase::Offering { to: 200, .. }));
    assert_eq!(d.kv(1, 3, put(&k, b"w")), Err(KvError::WrongGroup));
    assert_eq!(d.kv(1, 4, put(&key_in(4), b"w")), Ok(Reply::Done));
}

/// Configurations are adopted one at a time, in order, and not while a shard migrates.
#[test]
fn configs_in_order_and_only_when_stable() {
    let mut a = owner_of_all(100);
    let mut owners = [100; NSHARDS];
    a.apply(Entry::Config(config(3, owners)));
    assert_eq!(
        a.state.config().num,
        1,
        "a skipped configuration is ignored"
    );
    owners[0] = 200;
    a.apply(Entry::Config(config(2, owners)));
    assert_eq!(a.state.config().num, 2);
    a.apply(Entry::Config(config(3, owners)));
    assert_eq!(a.state.config().num, 2, "shard 0 is still offered");
    assert_eq!(
        a.state.delete_verdict(2, 0),
        replica_group::DeleteVerdict::Propose
    );
    a.apply(Entry::DeleteShard {
        config_num: 2,
        shard: 0,
    });
    a.apply(Entry::Config(config(3, owners)));
    assert_eq!(a.state.config().num, 3);
}

/// A shard moves between two state machines with its data and duplicate table: a retried
/// append at the new owner is not applied twice, and the old owner deletes on the ack.
#[test]
fn shard_moves_with_its_duplicate_table() {
    let mut a = owner_of_all(100);
    let mut b = Driver::new(200, 100);
    let mut owners = [100; NSHARDS];
    b.apply(Entry::Config(config(1, owners)));
    let k = key_in(2);
    assert_eq!(a.kv(9, 1, append(&k, b"x")), Ok(Reply::Done));
    owners[2] = 200;
    a.apply(Entry::Config(config(2, owners)));
    b.apply(Entry::Config(config(2, owners)));
    assert_eq!(
        *b.state.shard(2),
        Phase::Pulling {
            from: 100,
            received: None
        }
    );
    assert_eq!(b.kv(9, 1, append(&k, b"x")), Err(KvError::WrongGroup));
    let Ok(MigrationReply::ShardData {
        kv,
        next,
        sessions,
        clock,
        ..
    }) = a
        .state
        .pull_answer(2, 2, None, MIGRATION_CHUNK_BYTES)
        .expect("reads")
    else {
        panic!("old owner does not offer the shard");
    };
    assert_eq!(
        b.state
            .pull_answer(2, 2, None, MIGRATION_CHUNK_BYTES)
            .expect("reads"),
        Ok(MigrationReply::NotReady { current: 2 })
    );
    assert_eq!(next, None, "one chunk");
    b.apply(Entry::InstallShard {
        config_num: 2,
        shard: 2,
        after: None,
        kv,
        next,
        sessions,
        clock,
    });
    assert!(matches!(*b.state.shard(2), Phase::Acking { from: 100, .. }));
    assert_eq!(b.kv(9, 1, append(&k, b"x")), Ok(Reply::Done));
    assert_eq!(b.get(&k), Some(b"x".to_vec()), "retry applied twice");
    let deleted = Ok(MigrationReply::Deleted {
        config_num: 2,
        shard: 2,
    });
    assert_eq!(
        a.apply(Entry::DeleteShard {
            config_num: 2,
            shard: 2
        }),
        Outcome::Migration(deleted.clone())
    );
    assert_eq!(*a.state.shard(2), Phase::Absent);
    assert_eq!(
        a.state.delete_verdict(2, 2),
        replica_group::DeleteVerdict::Answer(deleted)
    );
    b.apply(Entry::ShardAcked {
        config_num: 2,
        shard: 2,
    });
    assert!(matches!(*b.state.shard(2), Phase::Serving(_)));
    assert!(b.state.is_stable() && a.state.is_stable());
}

/// A state resumes from its data at the last checkpoint: configurations, phases,
/// duplicate tables and keys as of the checkpoint's applied index, and nothing applied
/// after it (the log replays that part).
#[test]
fn a_state_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let disk = shardkv_raft::OsDisk::open(dir.path()).expect("the directory opens");
    let open = || {
        let background = shardkv_raft::Background::Threads;
        let data = Data::open(&disk, 1 << 20, background).expect("the data opens");
        GroupState::open(100, NSHARDS, 50, data).expect("the state opens")
    };
    let mut d = Driver {
        state: open(),
        next_index: 1,
        time: 0,
    };
    d.apply(Entry::Config(config(1, [100; NSHARDS])));
    let k = key_in(3);
    for seq in 1..=5 {
        assert_eq!(d.kv(7, seq, append(&k, b"x")), Ok(Reply::Done));
    }
    d.state.checkpoint(true).expect("checkpoints");
    let at_checkpoint = d.state.applied_index();
    assert_eq!(d.kv(7, 6, append(&k, b"y")), Ok(Reply::Done));
    drop(d);

    let mut state = open();
    assert_eq!(state.applied_index(), at_checkpoint);
    assert_eq!(state.config().num, 1);
    assert!(state
        .shards()
        .all(|phase| matches!(phase, Phase::Serving(_))));
    let read = |state: &GroupState| state.read(&k).expect("reads").0;
    assert_eq!(read(&state), Ok(Reply::Value(Some(b"xxxxx".to_vec()))));
    // The duplicate table came back too: a retry of seq 5 is not applied again.
    let retry = Entry::Kv(Request {
        client: 7,
        seq: 5,
        seen: 1,
        op: append(&k, b"x"),
    });
    let time = state.time();
    let outcome = state
        .apply(at_checkpoint + 1, time, retry)
        .expect("applies");
    assert!(matches!(outcome, Outcome::Kv(Ok(Reply::Done), _)));
    assert_eq!(read(&state), Ok(Reply::Value(Some(b"xxxxx".to_vec()))));
}

/// A shard larger than a chunk moves in chunks of at most `MIGRATION_CHUNK_BYTES` (plus
/// one pair), each installed after the last key the new owner holds; a repeated chunk is
/// ignored, the shard is served only after the last one, and every key arrives.
#[test]
fn a_large_shard_moves_in_chunks() {
    let mut a = owner_of_all(10_000);
    let mut b = Driver::new(200, 10_000);
    let mut owners = [100; NSHARDS];
    b.apply(Entry::Config(config(1, owners)));
    let keys: Vec<Vec<u8>> = (0..20_000u32)
        .map(|i| i.to_be_bytes().to_vec())
        .filter(|key| key_to_shard(key, NSHARDS) == 2)
        .take(300)
        .collect();
    let value = vec![b'v'; 8 << 10];
    for (seq, key) in (1..).zip(&keys) {
        assert_eq!(a.kv(5, seq, put(key, &value)), Ok(Reply::Done));
    }
    owners[2] = 200;
    a.apply(Entry::Config(config(2, owners)));
    b.apply(Entry::Config(config(2, owners)));

    let mut after = None;
    let mut chunks = 0;
    loop {
        let answer = a
            .state
            .pull_answer(2, 2, after.clone(), MIGRATION_CHUNK_BYTES)
            .expect("reads");
        let Ok(MigrationReply::ShardData {
            kv,
            next,
            sessions,
            clock,
            ..
        }) = answer
        else {
            panic!("old owner does not offer the shard: {answer:?}");
        };
        let bytes: usize = kv.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(
            bytes <= MIGRATION_CHUNK_BYTES + (8 << 10) + 4,
            "a chunk of {bytes} bytes"
        );
        assert_eq!(
            sessions.sessions.is_empty(),
            next.is_some(),
            "sessions with the last chunk"
        );
        let entry = Entry::InstallShard {
            config_num: 2,
            shard: 2,
            after: after.clone(),
            kv,
            next: next.clone(),
            clock,
            sessions,
        };
        b.apply(entry.clone());
        chunks += 1;
        if next.is_none() {
            break;
        }
        assert!(
            matches!(*b.state.shard(2), Phase::Pulling { .. }),
            "not served yet"
        );
        assert_eq!(b.kv(5, 1, append(&keys[0], b"x")), Err(KvError::WrongGroup));
        b.apply(entry);
        after = next;
    }
    assert!(chunks >= 3, "{chunks} chunks");
    assert!(matches!(*b.state.shard(2), Phase::Acking { from: 100, .. }));
    for key in &keys {
        assert_eq!(b.get(key).as_deref(), Some(&value[..]), "key {key:?}");
    }
    assert_eq!(
        b.kv(5, 300, put(&keys[0], b"y")),
        Ok(Reply::Done),
        "a retry, not applied"
    );
    assert_eq!(b.get(&keys[0]).as_deref(), Some(&value[..]));
}
