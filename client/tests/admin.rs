//! Scenario tests of [`Admin`] against a scripted three-replica shard master on a
//! virtual clock: leader search, retries, exactly-once numbering, rejections, deadlines.

mod fake;

use std::collections::BTreeMap;
use std::time::Duration;

use fake::{bad_replies, masters, ms, policy, FakeCluster, Fault, CLIENT};
use shardkv_client::{Admin, AdminError, AttemptFailure, MasterError, TransportError};
use shardkv_proto::master::FIRST_SEQ;
use shardkv_proto::GroupId;

fn group(gid: GroupId) -> BTreeMap<GroupId, Vec<String>> {
    BTreeMap::from([(gid, vec![format!("g{gid}-a"), format!("g{gid}-b")])])
}

/// A fake whose admin gets client id [`CLIENT`] and starts at `m1`.
fn fake() -> FakeCluster {
    FakeCluster::new(&[CLIENT, 0])
}

fn admin(fake: &FakeCluster, deadline: Option<Duration>) -> Admin<&FakeCluster> {
    Admin::with_policy(fake, masters(), policy(deadline))
}

/// A follower's leader hint is followed at once (no backoff), and the admin then
/// remembers the leader for the next operation.
#[test]
fn wrong_leader_hint_is_followed_and_remembered() {
    let fake = fake();
    fake.leader.set(2);
    let admin = admin(&fake, None);
    let config = fake.sim().block_on(admin.join(group(100))).expect("join");
    assert_eq!(config.num, 1);
    assert_eq!(fake.targets(), ["m1", "m3"]);
    assert_eq!(fake.sim().now(), ms(4));

    let latest = fake.sim().block_on(admin.query(None)).expect("query");
    assert_eq!(latest, config);
    assert_eq!(fake.targets(), ["m1", "m3", "m3"]);
}

/// Without hints the admin walks the list, and finding the leader within one round
/// costs no backoff.
#[test]
fn without_hints_walks_the_list() {
    let fake = fake();
    fake.leader.set(2);
    fake.hints.set(false);
    let admin = admin(&fake, None);
    fake.sim().block_on(admin.query(None)).expect("query");
    assert_eq!(fake.targets(), ["m1", "m2", "m3"]);
    assert_eq!(fake.sim().now(), ms(6));
}

/// The client id and the first server come from the transport's random numbers.
#[test]
fn client_id_and_first_server_are_random() {
    let fake = FakeCluster::new(&[12345, 4]);
    fake.leader.set(1);
    let admin = admin(&fake, None);
    assert_eq!(admin.client_id(), 12345);
    fake.sim().block_on(admin.query(None)).expect("query");
    assert_eq!(fake.targets(), ["m2"]);
}

/// Timeouts move the admin to the next replica; after a full failed round it backs
/// off 5-10 ms (10 ms with its jitter), then succeeds at the leader.
#[test]
fn timeouts_then_success() {
    let fake = fake();
    fake.inject([Fault::Timeout, Fault::Timeout]);
    let admin = admin(&fake, None);
    let config = fake.sim().block_on(admin.join(group(100))).expect("join");
    assert_eq!(config.num, 1);
    assert_eq!(fake.targets(), ["m1", "m2", "m3", "m1"]);
    let starts: Vec<_> = fake.calls().iter().map(|c| c.at).collect();
    // 1 s timeout, 1 s timeout, 2 ms WrongLeader, 5-10 ms backoff, then the leader.
    assert_eq!(starts[..3], [ms(0), ms(1000), ms(2000)]);
    assert!(ms(2007) <= starts[3] && starts[3] <= ms(2012), "{starts:?}");
    assert_eq!(fake.sim().now(), starts[3] + ms(2));
}

/// Every retry of one operation carries the same (client, seq), so a request whose
/// reply was lost takes effect once and the retry gets the original answer; the next
/// operation takes the next number.
#[test]
fn retries_keep_client_and_seq() {
    let fake = fake();
    fake.inject([
        Fault::LoseReply,
        Fault::Unreachable,
        Fault::Garbage(vec![0xff; 3]),
        Fault::Timeout,
    ]);
    let admin = admin(&fake, None);
    let config = fake.sim().block_on(admin.join(group(100))).expect("join");
    assert_eq!(config.num, 1);
    assert_eq!(fake.targets(), ["m1", "m2", "m3", "m1", "m2", "m1"]);
    assert_eq!(fake.master_ids(), vec![(CLIENT, FIRST_SEQ); 6]);
    assert_eq!(fake.configs().len(), 2, "the join applied exactly once");

    fake.sim().block_on(admin.query(None)).expect("query");
    assert_eq!(fake.master_ids().last(), Some(&(CLIENT, FIRST_SEQ + 1)));
}

/// A request the master refuses is returned at once as `Rejected`, without a retry and
/// without a new configuration, and its sequence number is not reused.
#[test]
fn rejected_request_returns_at_once() {
    let fake = fake();
    let admin = admin(&fake, None);
    let result = fake.sim().block_on(admin.join(group(0)));
    assert_eq!(
        result,
        Err(AdminError::Rejected(MasterError::ReservedGroup))
    );
    let result = fake.sim().block_on(admin.move_shard(1, 9));
    assert_eq!(
        result,
        Err(AdminError::Rejected(MasterError::UnknownGroup { gid: 9 }))
    );
    assert_eq!(fake.targets(), ["m1", "m1"]);
    assert_eq!(fake.configs().len(), 1);

    let config = fake.sim().block_on(admin.join(group(100))).expect("join");
    assert_eq!(config.num, 1);
    assert_eq!(fake.master_ids()[2], (CLIENT, FIRST_SEQ + 2));
}

/// With every call timing out, a 10 s deadline ends the operation at exactly 10 s of
/// virtual time after the 10 attempts that fit (3 rounds of 1 s calls with backoffs of
/// 5-10, 10-20 and 20-40 ms, then a 10th call cut short), and the next operation still
/// works.
#[test]
fn deadline_exhaustion_returns_timeout() {
    let fake = fake();
    *fake.always.borrow_mut() = Some(Fault::Timeout);
    let admin = admin(&fake, Some(Duration::from_secs(10)));
    let result = fake.sim().block_on(admin.leave(vec![100]));
    assert_eq!(
        result,
        Err(AdminError::Timeout {
            deadline: Duration::from_secs(10),
            attempts: 10,
            last_failure: Some(AttemptFailure::Transport(TransportError::Timeout)),
        })
    );
    assert_eq!(fake.sim().now(), Duration::from_secs(10));
    assert_eq!(fake.calls().len(), 10);
    let tenth = fake.calls()[9].at;
    assert!(ms(9035) <= tenth && tenth <= ms(9070), "{tenth:?}");

    *fake.always.borrow_mut() = None;
    fake.sim()
        .block_on(admin.query(None))
        .expect("query after recovery");
    assert_eq!(fake.master_ids().last(), Some(&(CLIENT, FIRST_SEQ + 1)));
}

/// Instant failures cannot make the loop spin: with every replica unreachable (5 ms
/// each), a 5 s deadline allows 45 attempts with the longest backoffs (3 calls, then
/// 10, 20, ... 320 ms and then 500 ms) and 72 with the shortest (half of each).
#[test]
fn deadline_with_fast_failures_backs_off() {
    let fake = fake();
    *fake.always.borrow_mut() = Some(Fault::Unreachable);
    let admin = admin(&fake, Some(Duration::from_secs(5)));
    let result = fake.sim().block_on(admin.query(None));
    let Err(AdminError::Timeout {
        attempts,
        last_failure,
        ..
    }) = result
    else {
        panic!("expected a timeout, got {result:?}");
    };
    assert!((45..=72).contains(&attempts), "{attempts} attempts");
    assert_eq!(
        last_failure,
        Some(AttemptFailure::Transport(TransportError::Unreachable))
    );
    assert_eq!(fake.sim().now(), Duration::from_secs(5));
}

/// A reply that does not decode, or decodes to a malformed configuration, is treated as
/// a lost reply: the admin moves on and gets a good answer, without panicking.
#[test]
fn bad_replies_are_retried() {
    for fault in bad_replies() {
        let fake = fake();
        fake.inject([fault.clone()]);
        let admin = admin(&fake, None);
        let config = fake.sim().block_on(admin.query(None));
        assert_eq!(config.map(|c| c.num), Ok(0), "fault {fault:?}");
        assert_eq!(fake.targets(), ["m1", "m2", "m1"], "fault {fault:?}");
    }
}

/// Queries reach historical configurations, and numbers past the latest give the latest.
#[test]
fn query_returns_requested_configuration() {
    let fake = fake();
    let admin = admin(&fake, None);
    fake.sim()
        .block_on(admin.join(group(100)))
        .expect("join 100");
    fake.sim()
        .block_on(admin.join(group(200)))
        .expect("join 200");
    let first = fake.sim().block_on(admin.query(Some(1))).expect("query 1");
    assert_eq!(first.num, 1);
    assert_eq!(first.groups.keys().copied().collect::<Vec<_>>(), [100]);
    let latest = fake
        .sim()
        .block_on(admin.query(Some(99)))
        .expect("query 99");
    assert_eq!(latest.num, 2);
    let left = fake.sim().block_on(admin.leave(vec![100])).expect("leave");
    assert_eq!(left.shards, vec![200; fake::NSHARDS]);
}

/// An admin with no shard-master address fails every operation with `NoMasters` and
/// sends nothing.
#[test]
fn no_masters_is_an_error() {
    let fake = fake();
    let admin = Admin::new(&fake, Vec::new());
    let result = fake.sim().block_on(admin.query(None));
    assert_eq!(result, Err(AdminError::NoMasters));
    assert!(fake.calls().is_empty());
}

/// Eight joins through clones of one handle run together: all reach the leader at the
/// same instant, each under a session of its own, and each applies once (eight new
/// configurations).
#[test]
fn one_handle_runs_requests_together() {
    let ids: Vec<u64> = [CLIENT, 0].into_iter().chain(500..600).collect();
    let fake = FakeCluster::new(&ids);
    let admin = admin(&fake, None);
    let requests = (0..8).map(|i| {
        let admin = admin.clone();
        async move { admin.join(group(100 + i)).await }
    });
    let answers = fake.sim().block_on(futures::future::join_all(requests));
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    let calls = fake.calls();
    let clients: std::collections::BTreeSet<_> = calls.iter().map(|c| c.request.client).collect();
    assert_eq!(clients.len(), 8, "one session per request in flight");
    assert!(calls.iter().all(|call| call.at == calls[0].at), "{calls:?}");
    let latest = fake.sim().block_on(admin.query(None)).expect("query");
    assert_eq!(latest.num, 8, "each join applied once");
}
