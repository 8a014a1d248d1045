//! Scenario tests of `Replica`: elections, replication, restarts, snapshots, lost
//! proposals, reads and malformed input, on a deterministic in-test cluster.

mod common;

use common::{Cluster, ELECTION_TICKS};
use shardkv_raft::raft::eraftpb::{Message, MessageType};
use shardkv_raft::raft::Storage;
use shardkv_raft::{Applied, Error, LogStore, Proposal};

use protobuf::Message as _;

/// A node that alone ticks for an election timeout becomes leader, and everyone agrees.
#[test]
fn election_after_ticks() {
    let mut cluster = Cluster::new(&[1, 2, 3]);
    for _ in 0..ELECTION_TICKS - 1 {
        cluster.tick(1);
    }
    assert!(cluster
        .live()
        .iter()
        .all(|id| cluster.replica(*id).leader().is_none()));
    cluster.elect(1);
    for id in [1, 2, 3] {
        assert_eq!(cluster.replica(id).leader(), Some(1), "node {id}");
        assert_eq!(cluster.replica(id).term(), cluster.replica(1).term());
    }
    assert!(matches!(
        cluster.replica_mut(2).propose(b"x".to_vec()),
        Err(Error::NotLeader { hint: Some(1) })
    ));
}

/// Proposals commit on every node at the index and term `propose` returned, leader
/// no-ops are not reported, and a follower syncs once per append it acknowledges.
#[test]
fn proposals_commit_everywhere() {
    let mut cluster = Cluster::new(&[1, 2, 3]);
    cluster.elect(1);
    let syncs_before = cluster.replica(2).store().backend().sync_count();
    let proposals: Vec<Proposal> = [b"a", b"b", b"c"]
        .iter()
        .map(|data| cluster.propose(1, *data))
        .collect();
    let syncs_after = cluster.replica(2).store().backend().sync_count();
    assert_eq!(syncs_after - syncs_before, 3, "one sync per appended Ready");
    for id in [1, 2, 3] {
        let applied = cluster.applied_commands(id);
        let expected: Vec<_> = proposals
            .iter()
            .zip([b"a", b"b", b"c"])
            .map(|(p, data)| (p.index, p.term, data.to_vec()))
            .collect();
        assert_eq!(applied, expected, "node {id}");
        assert!(cluster.nodes[&id].lost.is_empty());
        assert_eq!(cluster.replica(id).applied_index(), proposals[2].index);
    }
    // Indices 1..=3 bootstrap the voters, 4 is the new leader's no-op: never reported.
    assert_eq!(proposals[0].index, 5);
    assert!(cluster.nodes[&2]
        .applied
        .iter()
        .all(|item| item.index() != 4));
}

/// `snapshot` refuses indices not yet applied and ignores ones already covered.
#[test]
fn snapshot_bounds() {
    let mut cluster = Cluster::new(&[1, 2, 3]);
    cluster.elect(1);
    cluster.propose(1, b"a");
    let replica = cluster.replica_mut(1);
    let applied = replica.applied_index();
    assert!(replica.snapshot(applied + 1, vec![]).is_err());
    replica.snapshot(applied, b"sm".to_vec()).unwrap();
    let bytes = replica.raft_state_bytes();
    replica.snapshot(applied - 1, b"older".to_vec()).unwrap();
    replica.snapshot(0, vec![]).unwrap();
    assert_eq!(replica.raft_state_bytes(), bytes);
    assert_eq!(&replica.store().latest_snapshot().unwrap().data[..], b"sm");
}

/// With `snapshot_log_multiple`, a log past the byte threshold still waits until it is
/// that multiple of the current snapshot's size.
#[test]
fn snapshot_waits_for_a_multiple_of_the_snapshot() {
    const THRESHOLD: u64 = 200;
    const SNAPSHOT: usize = 2_000;
    let mut cluster = Cluster::new(&[1, 2, 3]);
    cluster.crash(1);
    let config = &mut cluster.nodes.get_mut(&1).unwrap().config;
    config.snapshot_bytes_threshold = Some(THRESHOLD);
    config.snapshot_log_multiple = 2;
    cluster.restart(1);
    cluster.elect(1);
    cluster.propose(1, b"first");
    let replica = cluster.replica_mut(1);
    replica
        .snapshot(replica.applied_index(), vec![7; SNAPSHOT])
        .unwrap();
    assert_eq!(replica.store().snapshot_bytes(), SNAPSHOT as u64);
    assert!(!replica.should_snapshot());
    let mut passed_threshold = false;
    while !cluster.replica(1).should_snapshot() {
        let before = cluster.replica(1).raft_state_bytes();
        passed_threshold |= before >= THRESHOLD;
        assert!(before < 2 * SNAPSHOT as u64, "{before} bytes of log");
        cluster.propose(1, &[1; 50]);
    }
    assert!(passed_threshold, "the threshold alone did not ask");
    assert!(cluster.replica(1).raft_state_bytes() >= 2 * SNAPSHOT as u64);
}

/// For each replica, after which of 300 proposals of 50 bytes it took a snapshot
/// (`maybe_snapshot` after each), with the byte threshold 1,200 and `snapshot_stagger`
/// as given.
fn snapshots_taken(stagger: bool) -> Vec<Vec<usize>> {
    let ids = [1, 2, 3];
    let mut cluster = Cluster::new(&ids);
    for id in ids {
        cluster.crash(id);
        let config = &mut cluster.nodes.get_mut(&id).unwrap().config;
        config.snapshot_bytes_threshold = Some(1_200);
        config.snapshot_stagger = stagger;
        cluster.restart(id);
    }
    cluster.elect(1);
    let mut taken = vec![Vec::new(); ids.len()];
    for proposal in 1..=300 {
        cluster.propose(1, &[1; 50]);
        cluster.tick_all();
        for (times, id) in taken.iter_mut().zip(ids) {
            let replica = cluster.replica_mut(id);
            if replica
                .maybe_snapshot(|_| b"sm".to_vec())
                .unwrap()
                .is_some()
            {
                times.push(proposal);
            }
        }
    }
    taken
}

/// Replicas apply the same log, so with one threshold they all snapshot at the same
/// entries; with `snapshot_stagger` the voters' first snapshots come one after another
/// (the last after about 4/3 of the log the first one needed) and later ones keep
/// those offsets: no two replicas ever snapshot at the same proposal.
#[test]
fn staggered_snapshots_come_one_replica_at_a_time() {
    let together = snapshots_taken(false);
    assert!(together[0].len() >= 10, "{together:?}");
    assert!(
        together.iter().all(|times| *times == together[0]),
        "without stagger: {together:?}"
    );
    let staggered = snapshots_taken(true);
    assert_eq!(
        staggered[0], together[0],
        "the first voter keeps the threshold"
    );
    let first: Vec<usize> = staggered.iter().map(|times| times[0]).collect();
    assert!(
        first.windows(2).all(|pair| pair[0] < pair[1]),
        "{staggered:?}"
    );
    let last = first[2] as f64 / first[0] as f64;
    assert!((1.2..=1.45).contains(&last), "{staggered:?}");
    let mut all: Vec<usize> = staggered.iter().flatten().copied().collect();
    let count = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(
        all.len(),
        count,
        "two replicas at one proposal: {staggered:?}"
    );
    for times in &staggered {
        assert!(times.len() + 1 >= together[0].len(), "{staggered:?}");
    }
}

/// A crashed follower restarts from its store: the snapshot comes first, nothing at or
/// below the snapshot index is re-applied, and it catches up with what it missed.
#[test]
fn follower_restart_snapshot_first() {
    let mut cluster = Cluster::new(&[1, 2, 3]);
    cluster.elect(1);
    for data in [b"a", b"b", b"c"] {
        cluster.propose(1, data);
    }
    let snap_index = cluster.snapshot(3);
    cluster.propose(1, b"d");
    cluster.crash(3);
    cluster.propose(1, b"e");
    let seen_before = cluster.nodes[&3].applied.len();
    cluster.restart(3);
    let after: Vec<Applied> = cluster.nodes[&3].applied[seen_before..].to_vec();
    assert!(
        matches!(after[0], Applied::Snapshot { index, .. } if index == snap_index),
        "first applied after restart is the snapshot: {after:?}"
    );
    assert!(after[1..].iter().all(|item| item.index() > snap_index));
    cluster.tick_all();
    cluster.tick_all();
    let expected: Vec<Vec<u8>> = [b"a", b"b", b"c", b"d", b"e"]
        .iter()
        .map(|d| d.to_vec())
        .collect();
    assert_eq!(cluster.commands(3), expected);
}

/// Runs the lagging-follower scenario: node 3 misses 20 entries that the others then
/// compact away; the network loses the first `lost_snapshots` snapshot messages.
fn lagging_follower(lost_snapshots: usize) -> Cluster {
    let mut cluster = Cluster::new(&[1, 2, 3]);
    cluster.elect(1);
    cluster.propose(1, b"a");
    cluster.isolated.insert(3);
    for i in 0..20u8 {
        cluster.propose(1, &[b'x', i]);
    }
    let snap_index = cluster.snapshot(1);
    cluster.snapshot(2);
    assert_eq!(cluster.replica(1).store().snapshot_index(), snap_index);
    cluster.propose(1, b"after");
    cluster.isolated.clear();
    cluster.drop_snapshots = lost_snapshots;
    for _ in 0..3 * ELECTION_TICKS {
        cluster.tick(1);
    }
    let got_snapshot = cluster.nodes[&3]
        .applied
        .iter()
        .any(|item| matches!(item, Applied::Snapshot { index, .. } if *index == snap_index));
    assert!(
        got_snapshot,
        "node 3 applied: {:?}",
        cluster.nodes[&3].applied
    );
    assert_eq!(cluster.commands(3), cluster.commands(1));
    assert_eq!(
        cluster.replica(3).applied_index(),
        cluster.replica(1).applied_index()
    );
    cluster
}

/// A follower that missed entries the leader compacted away receives the snapshot
/// (`Applied::Snapshot`), then the entries after it, ending with the same state.
#[test]
fn lagging_follower_gets_snapshot() {
    lagging_follower(0);
}

/// A snapshot message lost by the network is sent again (the leader does not wait for
/// it forever).
#[test]
fn lost_snapshot_is_resent() {
    let cluster = lagging_follower(2);
    assert_eq!(cluster.drop_snapshots, 0, "both losses happened");
}

/// Same events, same trace: two runs deliver byte-identical messages in the same order.
#[test]
fn same_events_same_trace() {
    let first = lagging_follower(1);
    let second = lagging_follower(1);
    assert_eq!(first.trace, second.trace);
    assert!(first.trace.len() > 50);
}

/// A proposal accepted by a leader that is then cut off and replaced is reported lost,
/// never applied, and the entry at its index is the new leader's.
#[test]
fn isolated_leader_proposal_is_lost() {
    let mut cluster = Cluster::new(&[1, 2, 3]);
    cluster.elect(1);
    cluster.isolated.insert(1);
    let doomed = cluster.replica_mut(1).propose(b"doomed".to_vec()).unwrap();
    cluster.track(1, doomed);
    cluster.advance(1);
    cluster.elect(2);
    let winner = cluster.propose(2, b"winner");
    assert!(winner.term > doomed.term);
    cluster.isolated.clear();
    for _ in 0..2 * ELECTION_TICKS {
        cluster.tick_all();
    }
    assert!(
        cluster.nodes[&1].lost.contains(&doomed),
        "lost: {:?}",
        cluster.nodes[&1].lost
    );
    let term_now = cluster.replica(1).store().term(doomed.index).unwrap();
    assert!(
        term_now > doomed.term,
        "node 1's entry at {} was overwritten",
        doomed.index
    );
    for id in [1, 2, 3] {
        assert!(
            !cluster.commands(id).contains(&b"doomed".to_vec()),
            "node {id}"
        );
        assert!(
            cluster.commands(id).contains(&b"winner".to_vec()),
            "node {id}"
        );
    }
}

/// `read_index` on the leader completes once a quorum answers, at an index covering every
/// committed write; on a follower it does nothing.
#[test]
fn read_index_after_quorum() {
    let mut cluster = Cluster::new(&[1, 2, 3]);
    cluster.elect(1);
    let write = cluster.propose(1, b"w");
    cluster.replica_mut(1).read_index(7);
    cluster.advance(1);
    assert!(cluster.nodes[&1].reads.is_empty(), "no quorum answered yet");
    cluster.deliver();
    assert_eq!(cluster.nodes[&1].reads, vec![(7, write.index)]);
    // A follower does not forward reads (its leader would refuse them from the network).
    cluster.replica_mut(2).read_index(8);
    cluster.advance(2);
    cluster.deliver();
    assert!(cluster.nodes[&2].reads.is_empty());
    assert_eq!(cluster.replica(1).refused_messages(), 0);
}

/// Garbage, truncated or misaddressed bytes are refused with an error, not a panic.
#[test]
fn malformed_messages_are_refused() {
    let mut cluster = Cluster::new(&[1, 2, 3]);
    cluster.elect(1);
    let replica = cluster.replica_mut(2);
    assert!(matches!(
        replica.step(&[0xff, 0xff, 0xff]),
        Err(Error::Decode(_))
    ));
    let mut message = Message::default();
    message.set_msg_type(MessageType::MsgHeartbeat);
    message.from = 1;
    message.to = 3;
    let bytes = message.write_to_bytes().unwrap();
    assert!(
        matches!(replica.step(&bytes), Err(Error::Decode(_))),
        "wrong recipient"
    );
    assert!(
        replica.step(&bytes[..bytes.len() - 1]).is_err(),
        "truncated"
    );
    message.to = 2;
    message.set_msg_type(MessageType::MsgHup);
    assert!(matches!(
        replica.step(&message.write_to_bytes().unwrap()),
        Err(Error::Decode(_))
    ));
    message.set_msg_type(MessageType::MsgPropose);
    message.mut_entries().push(Default::default());
    assert!(
        matches!(
            cluster
                .replica_mut(1)
                .step(&message.write_to_bytes().unwrap()),
            Err(Error::Decode(_))
        ),
        "a proposal from the network"
    );
    let replica = cluster.replica_mut(2);
    message.clear_entries();
    message.set_msg_type(MessageType::MsgHeartbeat);
    message.term = replica.term();
    message.commit = 1_000_000;
    assert!(
        matches!(
            replica.step(&message.write_to_bytes().unwrap()),
            Err(Error::Decode(_))
        ),
        "a heartbeat committing past the log"
    );
    assert_eq!(
        replica.refused_messages(),
        5,
        "garbage, misaddressed, truncated, local kind, commit"
    );
    assert!(
        replica.step(&[]).is_err(),
        "empty bytes decode to a message for node 0"
    );
    assert!(cluster.replica(2).store().backend().sync_count() > 0);
    cluster.propose(1, b"still works");
    assert_eq!(cluster.commands(2), vec![b"still works".to_vec()]);
}

/// Every node restarting at once recovers its state and the group keeps committing.
#[test]
fn whole_cluster_restart() {
    let mut cluster = Cluster::new(&[1, 2, 3]);
    cluster.elect(1);
    cluster.propose(1, b"a");
    cluster.snapshot(2);
    cluster.propose(1, b"b");
    for id in [1, 2, 3] {
        cluster.crash(id);
    }
    for id in [1, 2, 3] {
        cluster.restart(id);
        assert_eq!(
            cluster.commands(id),
            vec![b"a".to_vec(), b"b".to_vec()],
            "node {id}"
        );
    }
    cluster.elect(3);
    cluster.propose(3, b"c");
    for id in [1, 2, 3] {
        assert_eq!(cluster.commands(id).len(), 3, "node {id}");
    }
}

/// A single-node group on the write-ahead log elects itself, commits, and after a clean
/// stop and a restart from the same directory hands back its snapshot and log.
#[test]
fn single_node_on_the_wal_survives_restart() {
    use shardkv_raft::{
        discard_logger, Background, OsDisk, Replica, ReplicaConfig, Store, WalBackend,
    };
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        let disk = OsDisk::open(dir.path()).unwrap();
        let store = Store::open(WalBackend::open(disk, Background::Threads).unwrap()).unwrap();
        Replica::open_with_logger(ReplicaConfig::new(1, vec![1]), store, &discard_logger()).unwrap()
    };
    let mut replica = open();
    replica.advance().unwrap();
    for _ in 0..ELECTION_TICKS {
        replica.tick();
        replica.advance().unwrap();
    }
    assert!(replica.is_leader());
    let first = replica.propose(b"one".to_vec()).unwrap();
    replica.advance().unwrap();
    replica
        .snapshot(first.index, b"state:one".to_vec())
        .unwrap();
    let second = replica.propose(b"two".to_vec()).unwrap();
    let output = replica.advance().unwrap();
    assert_eq!(
        output.applied.last().map(Applied::index),
        Some(second.index)
    );
    // A clean stop: the snapshot record and the commit index, written after the last
    // sync, are made durable (dropping without this is a crash, which may lose them).
    replica.flush().unwrap();
    drop(replica);
    let mut replica = open();
    let output = replica.advance().unwrap();
    assert_eq!(
        output.applied,
        vec![
            Applied::Snapshot {
                index: first.index,
                term: first.term,
                data: b"state:one".to_vec()
            },
            Applied::Command {
                index: second.index,
                term: second.term,
                data: b"two".to_vec()
            },
        ]
    );
}
