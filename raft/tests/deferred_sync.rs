//! `Replica::sync_with`: the driver syncs Readies off the replica's thread. What a
//! replica promises (append acknowledgements) waits for its own sync, a quorum of
//! followers commits without the leader's sync, and the leader applies only once its
//! own log is durable.

mod common;

use std::sync::{Arc, Mutex};

use common::Cluster;
use protobuf::Message as _;
use shardkv_raft::raft::eraftpb::{Message, MessageType};
use shardkv_raft::NodeId;

/// Ready numbers each node asked to have synced, newest last.
type Asked = Arc<Mutex<Vec<u64>>>;

/// Gives every node of `cluster` a sync sink that records what it is asked.
fn defer_syncs(cluster: &mut Cluster, ids: &[NodeId]) -> Vec<Asked> {
    ids.iter()
        .map(|&id| {
            let asked: Asked = Arc::default();
            let record = Arc::clone(&asked);
            cluster
                .replica_mut(id)
                .sync_with(Box::new(move |number, _job| {
                    record.lock().unwrap().push(number)
                }));
            asked
        })
        .collect()
}

/// Reports node `id`'s newest asked sync as done, then lets it act on that.
fn report_sync(cluster: &mut Cluster, id: NodeId, asked: &Asked) {
    let newest = *asked.lock().unwrap().last().expect("a sync was asked");
    cluster.replica_mut(id).on_synced(newest);
    cluster.advance(id);
}

/// True when a message queued from `from` acknowledges an append (a promise of
/// persistence).
fn append_ack_queued(cluster: &Cluster, from: NodeId) -> bool {
    cluster.queue.iter().any(|(sender, _, bytes)| {
        *sender == from
            && Message::parse_from_bytes(bytes)
                .is_ok_and(|m| m.get_msg_type() == MessageType::MsgAppendResponse && !m.reject)
    })
}

#[test]
fn acknowledgements_and_applies_wait_for_syncs() {
    let mut cluster = Cluster::new(&[1, 2, 3]);
    cluster.elect(1);
    let asked = defer_syncs(&mut cluster, &[1, 2, 3]);

    let proposal = cluster
        .replica_mut(1)
        .propose(b"a".to_vec())
        .expect("propose");
    cluster.advance(1);
    // Hand the appends to the followers (and nothing they cause: acks are held).
    cluster.deliver_only(2);
    cluster.deliver_only(3);
    for (id, asked) in [1, 2, 3].into_iter().zip(&asked) {
        assert!(
            !asked.lock().unwrap().is_empty(),
            "node {id} asked for no sync"
        );
        assert!(cluster.replica(id).is_syncing(), "node {id}");
    }
    // Any later advance (a tick, a message) still holds the acknowledgements.
    cluster.advance(2);
    cluster.advance(3);
    assert!(!append_ack_queued(&cluster, 2), "ack before node 2's sync");
    assert!(!append_ack_queued(&cluster, 3), "ack before node 3's sync");
    cluster.deliver();
    assert!(cluster.applied_commands(1).is_empty());
    assert!(cluster.replica(1).commit_index() < proposal.index);

    // One follower's sync: with the leader's own log not yet durable, no quorum.
    report_sync(&mut cluster, 2, &asked[1]);
    assert!(
        append_ack_queued(&cluster, 2),
        "node 2's ack after its sync"
    );
    cluster.deliver();
    assert!(cluster.replica(1).commit_index() < proposal.index);

    // Both followers durable: committed, and the followers apply; the leader, whose
    // own copy is not durable yet, does not.
    report_sync(&mut cluster, 3, &asked[2]);
    cluster.deliver();
    assert_eq!(cluster.replica(1).commit_index(), proposal.index);
    assert!(cluster.applied_commands(1).is_empty());
    let expected = vec![(proposal.index, proposal.term, b"a".to_vec())];
    for id in [2, 3] {
        if cluster.replica(id).is_syncing() {
            // The commit index arrived in a Ready of its own (a hard state write).
            let newest = asked[id as usize - 1].lock().unwrap().last().copied();
            cluster.replica_mut(id).on_synced(newest.unwrap_or(0));
            cluster.advance(id);
            cluster.deliver();
        }
        assert_eq!(cluster.applied_commands(id), expected, "node {id}");
    }

    report_sync(&mut cluster, 1, &asked[0]);
    cluster.deliver();
    assert_eq!(cluster.applied_commands(1), expected);
    assert!(!cluster.replica(1).is_syncing());
}

/// Nodes 1-3 with node 1 leading, every node syncing through a recording sink, and
/// "a" proposed on the leader (its Ready written, its sync asked).
fn leader_proposed_a() -> (Cluster, Vec<Asked>) {
    let mut cluster = Cluster::new(&[1, 2, 3]);
    cluster.elect(1);
    let asked = defer_syncs(&mut cluster, &[1, 2, 3]);
    cluster
        .replica_mut(1)
        .propose(b"a".to_vec())
        .expect("propose");
    cluster.advance(1);
    (cluster, asked)
}

/// Stale and repeated reports change nothing; a report never runs ahead of what was
/// asked.
#[test]
fn stale_reports_are_ignored() {
    let (mut cluster, asked) = leader_proposed_a();
    assert!(cluster.replica(1).is_syncing());
    // A report of a Ready far beyond what was asked covers only what was asked.
    cluster.replica_mut(1).on_synced(u64::MAX);
    assert!(!cluster.replica(1).is_syncing());
    cluster.replica_mut(1).on_synced(0);
    cluster.advance(1);
    cluster
        .replica_mut(1)
        .propose(b"b".to_vec())
        .expect("propose");
    cluster.advance(1);
    assert!(cluster.replica(1).is_syncing(), "a new Ready asks again");
    let newest = *asked[0].lock().unwrap().last().unwrap();
    cluster.replica_mut(1).on_synced(newest - 1);
    assert!(
        cluster.replica(1).is_syncing(),
        "an older report does not cover it"
    );
}

/// A follower waiting for its sync lets ticks pass (no campaign before its log is
/// durable), and campaigns once the sync is reported.
#[test]
fn no_campaign_while_syncing() {
    let (mut cluster, asked) = leader_proposed_a();
    cluster.deliver_only(2);
    assert!(cluster.replica(2).is_syncing());
    cluster.isolated.insert(1);
    for _ in 0..3 * common::ELECTION_TICKS {
        cluster.replica_mut(2).tick();
        cluster.advance(2);
    }
    // Campaigning (even a pre-vote) forgets the leader; its requests would be held.
    assert_eq!(
        cluster.replica(2).leader(),
        Some(1),
        "campaigned while syncing"
    );
    report_sync(&mut cluster, 2, &asked[1]);
    for _ in 0..3 * common::ELECTION_TICKS {
        cluster.replica_mut(2).tick();
        cluster.advance(2);
    }
    assert_eq!(
        cluster.replica(2).leader(),
        None,
        "no campaign after the sync"
    );
}

/// While a sync is outstanding, a follower's answers that need no sync of their own (to
/// a read's heartbeat) are held too, and leave after the acknowledgement the sync
/// releases, in order: nothing overtakes a held promise.
#[test]
fn answers_wait_for_the_outstanding_sync() {
    let (mut cluster, asked) = leader_proposed_a();
    cluster.deliver_only(2);
    let syncs = asked[1].lock().unwrap().len();
    cluster.replica_mut(1).read_index(7);
    cluster.advance(1);
    cluster.deliver_only(2);
    assert_eq!(asked[1].lock().unwrap().len(), syncs, "no sync of its own");
    assert!(
        !cluster.queue.iter().any(|(from, ..)| *from == 2),
        "node 2 answered before its sync"
    );
    report_sync(&mut cluster, 2, &asked[1]);
    let sent: Vec<MessageType> = cluster
        .queue
        .iter()
        .filter(|(from, ..)| *from == 2)
        .filter_map(|(.., bytes)| Message::parse_from_bytes(bytes).ok())
        .map(|message| message.get_msg_type())
        .collect();
    assert_eq!(
        sent,
        [
            MessageType::MsgAppendResponse,
            MessageType::MsgHeartbeatResponse
        ]
    );
}
