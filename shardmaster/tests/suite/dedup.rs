//! Retried requests take effect once and get their original answer; the duplicate table
//! is bounded by expiry in log entries.

use shardmaster::Replicated;
use shardmaster::{MasterError, Op, Request, ShardMaster};

use crate::harness::{join_op, Driver};

fn request(client: u64, seq: u64, op: Op) -> Request {
    Request { client, seq, op }
}

/// A retried Join, even after other clients made newer configurations, returns the
/// configuration it originally created and creates nothing.
#[test]
fn retried_join_returns_original_answer() {
    let mut driver = Driver::new(10);
    let join = request(7, 1, join_op(&[1]));
    let first = driver.apply(&join).expect("join");
    driver.apply(&request(8, 1, join_op(&[2]))).expect("join");
    let count = driver.master.configs().len();
    assert_eq!(driver.apply(&join), Ok(first.clone()));
    assert_eq!(driver.apply(&join), Ok(first));
    assert_eq!(driver.master.configs().len(), count);
}

/// A retried Move does not create a second configuration.
#[test]
fn retried_move_applies_once() {
    let mut driver = Driver::new(10);
    driver.join(&[1, 2]);
    let mv = request(7, 1, Op::Move { shard: 9, gid: 1 });
    let first = driver.apply(&mv).expect("move");
    assert_eq!(driver.apply(&mv), Ok(first.clone()));
    assert_eq!(driver.master.latest(), &first);
}

/// A request older than the client's latest is refused as stale and changes nothing.
#[test]
fn stale_request_is_refused() {
    let mut driver = Driver::new(10);
    driver.apply(&request(7, 1, join_op(&[1]))).expect("join");
    driver.apply(&request(7, 2, join_op(&[2]))).expect("join");
    let count = driver.master.configs().len();
    let stale = driver.apply(&request(7, 1, Op::Leave { gids: vec![1] }));
    assert_eq!(
        stale,
        Err(MasterError::StaleRequest {
            client: 7,
            seq: 1,
            last: 2
        })
    );
    assert_eq!(driver.master.configs().len(), count);
}

/// Sessions quiet for more than the timeout expire at exactly the same cluster time on
/// every replica, so the table stays bounded; an expired client's retry is applied
/// afresh (the master's requests carry no observation of its clock).
#[test]
fn sessions_expire_by_cluster_time() {
    let mut master = ShardMaster::with_session_timeout(10, 5);
    let join = request(7, 1, join_op(&[1]));
    master.apply(1, 1, &join).expect("join");
    master.apply(6, 6, &join).expect("retry within the timeout");
    assert_eq!(master.configs().len(), 2);
    master
        .apply(12, 12, &request(8, 1, join_op(&[2])))
        .expect("join");
    assert_eq!(master.sessions().sessions().len(), 1, "client 7 expired");
    // Caveat documented in session.rs: the retry is applied again and fails.
    assert_eq!(
        master.apply(13, 13, &join),
        Err(MasterError::AlreadyJoined { gid: 1 })
    );
}

/// Many clients, one request each: the table never holds more than the timeout's worth.
#[test]
fn session_table_is_bounded() {
    let timeout = 50;
    let mut master = ShardMaster::with_session_timeout(10, timeout);
    master
        .apply(1, 1, &request(0, 1, join_op(&[1])))
        .expect("join");
    for index in 2..1000u64 {
        let op = Op::Move {
            shard: (index % 10) as usize,
            gid: 1,
        };
        master
            .apply(index, index, &request(index, 1, op))
            .expect("move");
        assert!(master.sessions().sessions().len() as u64 <= timeout + 1);
    }
}

/// Skipped entries (no request, no time) do not move the clock; an entry stamped
/// earlier than the clock does not move it back.
#[test]
fn time_moves_only_forward_with_stamped_entries() {
    let mut master = ShardMaster::with_session_timeout(10, 3);
    master
        .apply(1, 10, &request(7, 1, join_op(&[1])))
        .expect("join");
    master.skip(4).expect("skips");
    master.skip(5).expect("skips");
    assert_eq!((master.applied_index(), master.time()), (5, 10));
    let query = request(8, 1, Op::Query { num: None });
    master.apply(6, 2, &query).expect("query");
    assert_eq!(master.time(), 10, "an earlier stamp moved the clock back");
    assert_eq!(master.sessions().sessions().len(), 1);
    master.apply(7, 14, &query).expect("query");
    assert!(master.sessions().sessions().is_empty());
}
