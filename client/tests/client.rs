//! Scenario tests of the data [`Client`] against a scripted cluster (a three-replica shard
//! master and three-replica groups sharing one deduplicating store) on a virtual clock:
//! routing, configuration changes, leader search, exactly-once retries, deadlines, limits.

mod fake;

use std::time::Duration;

use fake::{bad_replies, masters, ms, policy, FakeCluster, Fault, CLIENT, NSHARDS, REPLY_LATENCY};
use shardkv_client::{AttemptFailure, Client, ClientError, KvError, TransportError};
use shardkv_proto::kv::{Op, MAX_KEY_BYTES, MAX_VALUE_BYTES};
use shardkv_proto::{key_to_shard, GroupId, Seq, ShardId};

/// A key of `shard`.
fn key_in(shard: ShardId) -> Vec<u8> {
    (0..)
        .map(|i| format!("key{i}").into_bytes())
        .find(|key| key_to_shard(key, NSHARDS) == shard)
        .expect("some key lands in every shard")
}

/// A cluster whose client gets id [`CLIENT`] and starts at `m1` and at each group's
/// first replica, in configuration 1 with every shard at `gid`.
fn cluster(gid: GroupId) -> FakeCluster {
    let fake = FakeCluster::new(&[CLIENT, 0]);
    fake.push_config([gid; NSHARDS]);
    fake
}

fn client(fake: &FakeCluster, deadline: Option<Duration>) -> Client<&FakeCluster> {
    Client::with_policy(fake, masters(), policy(deadline))
}

/// Each key goes to the group its shard belongs to, the configuration is fetched once
/// and then served from the cache, and reads see the writes.
#[test]
fn routes_by_shard_to_the_owning_group() {
    let fake = FakeCluster::new(&[CLIENT, 0]);
    fake.push_config([100, 100, 200, 200]);
    let client = client(&fake, None);
    let (a, b) = (key_in(0), key_in(3));
    fake.sim()
        .block_on(client.put(a.clone(), "x"))
        .expect("put a");
    fake.sim()
        .block_on(client.put(b.clone(), "y"))
        .expect("put b");
    assert_eq!(fake.targets(), ["m1", "g100-1", "g200-1"]);
    assert_eq!(fake.sim().block_on(client.get(b)), Ok(Some(b"y".to_vec())));
    assert_eq!(fake.sim().block_on(client.get(a)), Ok(Some(b"x".to_vec())));
    assert_eq!(fake.sim().block_on(client.get("absent")), Ok(None));
    assert_eq!(fake.calls().len(), 1, "one configuration query");
    assert_eq!(client.config().map(|c| c.num), Some(1));
}

/// A group that lost the shard answers `WrongGroup`; the client re-queries the master at
/// once, finds the new owner and applies the write there, with no backoff.
#[test]
fn wrong_group_requeries_after_config_change() {
    let fake = cluster(100);
    let client = client(&fake, None);
    let key = key_in(1);
    fake.sim()
        .block_on(client.put(key.clone(), "a"))
        .expect("put");
    fake.push_config([100, 200, 100, 100]);
    let start = fake.sim().now();
    fake.sim()
        .block_on(client.append(key.clone(), "b"))
        .expect("append");
    assert_eq!(fake.targets()[2..], ["g100-1", "m1", "g200-1"]);
    assert_eq!(fake.sim().now() - start, REPLY_LATENCY * 3);
    assert_eq!(client.config().map(|c| c.num), Some(2));
    assert_eq!(fake.groups().value(&key), Some(b"ab".to_vec()));
}

/// A group still receiving a shard answers `WrongGroup` while the master has nothing
/// newer: the client backs off (5-10 ms, then 10-20 ms) between re-queries instead of
/// spinning.
#[test]
fn wrong_group_without_newer_config_backs_off() {
    let fake = cluster(100);
    fake.groups().with(100, |g| g.installing.set(2));
    let client = client(&fake, None);
    fake.sim().block_on(client.put("k", "v")).expect("put");
    assert_eq!(
        fake.targets(),
        ["m1", "g100-1", "m1", "g100-1", "m1", "g100-1"]
    );
    // Six 2 ms calls and two backoffs.
    let now = fake.sim().now();
    assert!(ms(12 + 5 + 10) <= now && now <= ms(12 + 10 + 20), "{now:?}");
}

/// A follower's leader hint is followed at once, and the group's leader is remembered for
/// the next operation; without hints the client walks the group's list.
#[test]
fn follows_group_leader_hints() {
    let fake = cluster(100);
    fake.groups().with(100, |g| g.leader.set(2));
    let client = client(&fake, None);
    fake.sim().block_on(client.put("k", "v")).expect("put");
    fake.sim().block_on(client.get("k")).expect("get");
    assert_eq!(fake.targets(), ["m1", "g100-1", "g100-3", "g100-3"]);

    fake.groups().with(100, |g| {
        g.leader.set(1);
        g.hints.set(false);
    });
    fake.sim().block_on(client.delete("k")).expect("delete");
    assert_eq!(fake.targets()[4..], ["g100-3", "g100-1", "g100-2"]);
    assert_eq!(fake.groups().value(b"k"), None);
}

/// An Append whose reply is lost is retried with identical bytes (same client and seq),
/// and the group answers the retry from its duplicate table: the value is not doubled.
#[test]
fn lost_reply_retry_applies_once() {
    let fake = cluster(100);
    let client = client(&fake, None);
    fake.sim().block_on(client.put("k", "a")).expect("put");
    fake.inject_group([Fault::LoseReply, Fault::Unreachable]);
    fake.sim()
        .block_on(client.append("k", "b"))
        .expect("append");
    assert_eq!(fake.groups().value(b"k"), Some(b"ab".to_vec()));

    let calls = fake.kv_calls();
    let append = &calls[1..];
    assert_eq!(
        append.iter().map(|c| c.to.as_str()).collect::<Vec<_>>(),
        ["g100-1", "g100-2", "g100-3", "g100-1"]
    );
    assert!(append.iter().all(|c| c.bytes == append[0].bytes));
    assert_eq!(
        fake.kv_ids(),
        [
            (CLIENT, 1),
            (CLIENT, 2),
            (CLIENT, 2),
            (CLIENT, 2),
            (CLIENT, 2)
        ]
    );
}

/// Mutations take consecutive numbers, reads carry the latest, and a number abandoned at
/// a deadline is never reused.
#[test]
fn sequence_numbers() {
    let fake = cluster(100);
    let client = client(&fake, Some(Duration::from_secs(3)));
    assert_eq!(client.client_id(), CLIENT);
    fake.sim().block_on(client.get("k")).expect("get");
    fake.sim().block_on(client.put("k", "v")).expect("put");
    fake.sim().block_on(client.get("k")).expect("get");
    *fake.always.borrow_mut() = Some(Fault::Timeout);
    let lost = fake.sim().block_on(client.append("k", "w"));
    assert!(matches!(lost, Err(ClientError::Timeout { .. })), "{lost:?}");
    *fake.always.borrow_mut() = None;
    fake.sim().block_on(client.delete("k")).expect("delete");
    let seqs: Vec<Seq> = fake.kv_ids().iter().map(|&(_, seq)| seq).collect();
    assert_eq!(seqs, [0, 1, 1, 2, 2, 2, 3]);
}

/// Timeouts and unreachable replicas move the client through the group; after a full
/// failed round it asks the master whether the group still owns the shard (it does) and,
/// nothing being newer, backs off 5-10 ms and then reaches the leader.
#[test]
fn timeouts_then_success() {
    let fake = cluster(100);
    let client = client(&fake, None);
    fake.sim().block_on(client.put("k", "v")).expect("put");
    let start = fake.sim().now();
    fake.inject_group([Fault::Timeout, Fault::Timeout, Fault::Unreachable]);
    let value = fake.sim().block_on(client.get("k")).expect("get");
    assert_eq!(value, Some(b"v".to_vec()));
    let starts: Vec<_> = fake.kv_calls()[1..].iter().map(|c| c.at - start).collect();
    // 1 s, 1 s, 5 ms unreachable, a 2 ms master query, 5-10 ms backoff, then the leader.
    assert_eq!(starts[..3], [ms(0), ms(1000), ms(2000)]);
    assert!(ms(2012) <= starts[3] && starts[3] <= ms(2017), "{starts:?}");
}

/// With every call timing out, a 2.5 s deadline ends the operation at exactly 2.5 s after
/// three attempts, with a timeout error that says the write may have happened.
#[test]
fn deadline_exhaustion_returns_timeout() {
    let fake = cluster(100);
    let client = client(&fake, Some(ms(2500)));
    fake.sim().block_on(client.get("warm")).expect("get");
    let start = fake.sim().now();
    *fake.always.borrow_mut() = Some(Fault::Timeout);
    let result = fake.sim().block_on(client.put("k", "v"));
    let expected = ClientError::Timeout {
        deadline: ms(2500),
        attempts: 3,
        last_failure: Some(AttemptFailure::Transport(TransportError::Timeout)),
    };
    assert_eq!(result, Err(expected.clone()));
    assert!(expected.to_string().contains("may have taken effect"));
    assert_eq!(fake.sim().now() - start, ms(2500));
}

/// The deadline covers configuration trouble too: a shard no group owns, or a group
/// that never finishes receiving its shard, ends in a timeout naming that failure.
#[test]
fn deadline_names_routing_failures() {
    let fake = FakeCluster::new(&[CLIENT, 0]);
    let client = client(&fake, Some(ms(200)));
    let key = key_in(2);
    let result = fake.sim().block_on(client.put(key.clone(), "v"));
    let Err(ClientError::Timeout { last_failure, .. }) = result else {
        panic!("expected a timeout, got {result:?}");
    };
    let no_owner = AttemptFailure::NoOwner {
        shard: 2,
        config: 0,
    };
    assert_eq!(last_failure, Some(no_owner));

    fake.push_config([100; NSHARDS]);
    fake.groups().with(100, |g| g.installing.set(u32::MAX));
    let result = fake.sim().block_on(client.put(key, "v"));
    let Err(ClientError::Timeout { last_failure, .. }) = result else {
        panic!("expected a timeout, got {result:?}");
    };
    assert_eq!(last_failure, Some(AttemptFailure::WrongGroup { gid: 100 }));
}

/// Oversized keys and values are refused before anything is sent, with the same typed
/// errors a group would give.
#[test]
fn oversized_requests_rejected_without_calls() {
    let fake = cluster(100);
    let client = client(&fake, None);
    let long_key = vec![b'k'; MAX_KEY_BYTES + 1];
    let long_value = vec![b'v'; MAX_VALUE_BYTES + 1];
    let key_error = ClientError::Rejected(KvError::KeyTooLarge {
        len: MAX_KEY_BYTES + 1,
        max: MAX_KEY_BYTES,
    });
    let value_error = ClientError::Rejected(KvError::ValueTooLarge {
        len: MAX_VALUE_BYTES + 1,
        max: MAX_VALUE_BYTES,
    });
    assert_eq!(
        fake.sim().block_on(client.get(long_key.clone())),
        Err(key_error.clone())
    );
    assert_eq!(fake.sim().block_on(client.delete(long_key)), Err(key_error));
    let put = client.put("k", long_value.clone());
    assert_eq!(fake.sim().block_on(put), Err(value_error.clone()));
    let append = client.append("k", long_value);
    assert_eq!(fake.sim().block_on(append), Err(value_error));
    assert!(fake.targets().is_empty(), "sent {:?}", fake.targets());
    assert!(!Op::Get { key: vec![] }.is_mutation());
}

/// Refusals only the group can make come back at once as typed errors, without retries:
/// an Append past the value limit, and a stale request from a reused client id.
#[test]
fn group_refusals_are_final() {
    let fake = FakeCluster::new(&[CLIENT, 0, CLIENT, 0]);
    fake.push_config([100; NSHARDS]);
    let first = client(&fake, None);
    let second = client(&fake, None);
    fake.sim()
        .block_on(first.put("k", vec![0; MAX_VALUE_BYTES]))
        .expect("put");
    let result = fake.sim().block_on(first.append("k", "x"));
    let too_large = KvError::ValueTooLarge {
        len: MAX_VALUE_BYTES + 1,
        max: MAX_VALUE_BYTES,
    };
    assert_eq!(result, Err(ClientError::Rejected(too_large)));
    assert_eq!(fake.kv_calls().len(), 2);

    let result = fake.sim().block_on(second.put("k", "v"));
    let stale = KvError::StaleRequest {
        client: CLIENT,
        seq: 1,
        last: 2,
    };
    assert_eq!(result, Err(ClientError::Rejected(stale)));
    assert_eq!(fake.kv_calls().len(), 3);
}

/// Replies that do not decode, or answer another kind of request, are retried at the
/// next replica like lost replies, and the operation still succeeds once.
#[test]
fn garbage_replies_are_retried() {
    for fault in bad_replies() {
        let fake = cluster(100);
        fake.inject_group([fault.clone()]);
        fake.inject([fault.clone()]);
        let client = client(&fake, None);
        fake.sim()
            .block_on(client.append("k", "a"))
            .expect("append");
        let targets = ["m1", "m2", "m1", "g100-1", "g100-2", "g100-1"];
        assert_eq!(fake.targets(), targets, "fault {fault:?}");
        assert_eq!(fake.groups().value(b"k"), Some(b"a".to_vec()), "{fault:?}");
    }
}

/// A client with no shard-master address fails every operation with `NoMasters` and
/// sends nothing.
#[test]
fn no_masters_is_an_error() {
    let fake = cluster(100);
    let client = Client::new(&fake, Vec::new());
    assert_eq!(
        fake.sim().block_on(client.get("k")),
        Err(ClientError::NoMasters)
    );
    assert!(fake.targets().is_empty());
}

/// 64 operations through clones of one handle run together: all 64 reach the group at
/// the same virtual instant, each under a session (client id) of its own, and each
/// append applies once. A later operation reuses an idle session instead of drawing a
/// new id.
#[test]
fn one_handle_runs_operations_together() {
    let ids: Vec<u64> = std::iter::once(CLIENT)
        .chain(std::iter::once(0))
        .chain(1000..1100)
        .collect();
    let fake = FakeCluster::new(&ids);
    fake.push_config([100; NSHARDS]);
    let client = client(&fake, None);
    let key = key_in(0);
    let operations = (0..64).map(|i| {
        let (handle, key) = (client.clone(), key.clone());
        async move { handle.append(key, format!("<{i}>")).await }
    });
    let answers = fake.sim().block_on(futures::future::join_all(operations));
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    // Each operation's first call to the group (some start at a follower and go on to
    // the leader, as a client does).
    let mut first = std::collections::BTreeMap::new();
    for call in fake.kv_calls() {
        first.entry(call.request.client).or_insert(call.at);
    }
    assert_eq!(first.len(), 64, "one session per operation in flight");
    let started: std::collections::BTreeSet<_> = first.values().collect();
    assert_eq!(
        started.len(),
        1,
        "the operations waited for one another: {started:?}"
    );
    let queries = fake.master_ids();
    let numbered: std::collections::BTreeSet<_> = queries.iter().collect();
    assert_eq!(
        numbered.len(),
        queries.len(),
        "configuration queries share a number"
    );
    let sessions: std::collections::BTreeSet<_> = fake.kv_ids().into_iter().collect();
    let value = String::from_utf8(fake.groups().value(&key).expect("written")).expect("utf-8");
    for i in 0..64 {
        assert_eq!(value.matches(&format!("<{i}>")).count(), 1, "{value}");
    }
    fake.sim().block_on(client.put("later", "x")).expect("put");
    let (later, _) = *fake.kv_ids().last().expect("a call");
    assert!(
        sessions.iter().any(|&(id, _)| id == later),
        "new id {later}"
    );
}

/// An operation whose future the caller drops gives its session back: the next
/// operation runs under the same id with the next number, never a number reused.
#[test]
fn a_dropped_operation_gives_its_session_back() {
    let fake = cluster(100);
    let client = client(&fake, None);
    fake.inject_group([Fault::Timeout]);
    fake.sim().block_on(async {
        let put = std::pin::pin!(client.put("k", "v"));
        let pause = std::pin::pin!(fake.sim().sleep(ms(50)));
        futures::future::select(put, pause).await;
    });
    fake.sim().block_on(client.put("k", "w")).expect("put");
    assert_eq!(fake.kv_ids(), [(CLIENT, 1), (CLIENT, 2)]);
}
