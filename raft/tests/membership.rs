//! Scenario tests of membership changes: joint add/remove, the pending-change trap and
//! removing the leader.

mod common;

use common::{Cluster, ELECTION_TICKS};
use shardkv_raft::{Applied, Error, MemBackend, Membership, ReplicaConfig};

fn memberships(cluster: &Cluster, id: u64) -> Vec<Vec<u64>> {
    cluster.nodes[&id]
        .applied
        .iter()
        .filter_map(|item| match item {
            Applied::Membership { voters, .. } => Some(voters.clone()),
            _ => None,
        })
        .collect()
}

/// Adding a fresh 4th node and removing node 3 in one change goes through a joint
/// configuration and leaves it; node 4 catches up and votes, node 3 stays quiet.
#[test]
fn add_fourth_remove_third() {
    let mut cluster = Cluster::new(&[1, 2, 3]);
    cluster.elect(1);
    cluster.propose(1, b"before");
    cluster.start(ReplicaConfig::new(4, vec![]), MemBackend::new());
    let change = Membership {
        add: vec![4],
        remove: vec![3],
    };
    let proposal = cluster
        .replica_mut(1)
        .change_membership(change.clone())
        .unwrap();
    assert!(matches!(
        cluster.replica_mut(1).change_membership(change),
        Err(Error::Busy)
    ));
    cluster.advance(1);
    cluster.deliver();
    cluster.tick_all();
    for id in [1, 2, 4] {
        assert_eq!(cluster.replica(id).voters(), vec![1, 2, 4], "node {id}");
        let changes = memberships(&cluster, id);
        assert_eq!(
            changes.last(),
            Some(&vec![1, 2, 4]),
            "node {id}: {changes:?}"
        );
        let expected = vec![
            vec![1],
            vec![1, 2],
            vec![1, 2, 3],
            vec![1, 2, 4],
            vec![1, 2, 4],
        ];
        assert_eq!(
            changes, expected,
            "bootstrap x3, enter joint, leave joint: node {id}"
        );
    }
    let applied_at = cluster.nodes[&1].applied.iter().any(|item| {
        matches!(item, Applied::Membership { index, term, .. }
            if *index == proposal.index && *term == proposal.term)
    });
    assert!(applied_at, "the proposal applied at its index and term");
    cluster.propose(1, b"after");
    assert_eq!(cluster.commands(4), cluster.commands(1));
    // Node 4 now counts: with 2 down, 1 and 4 still form a quorum of {1, 2, 4}.
    cluster.crash(2);
    cluster.propose(1, b"quorum with 4");
    assert_eq!(cluster.commands(4).last().unwrap(), b"quorum with 4");
    for _ in 0..3 * ELECTION_TICKS {
        cluster.tick(3);
        cluster.tick(1);
    }
    assert!(
        cluster.replica(1).is_leader(),
        "removed node 3 did not depose the leader"
    );
    assert!(cluster.replica_mut(3).propose(b"x".to_vec()).is_err());
}

/// Asked to remove itself, the leader hands leadership to an up-to-date voter and says
/// so; the new leader then removes it, and the group goes on without it.
#[test]
fn removing_the_leader_transfers_first() {
    let mut cluster = Cluster::new(&[1, 2, 3]);
    cluster.elect(1);
    cluster.propose(1, b"a");
    let answer = cluster.replica_mut(1).change_membership(Membership {
        add: vec![],
        remove: vec![1],
    });
    let Err(Error::NotLeader { hint: Some(target) }) = answer else {
        panic!("expected a leadership hand-off, got {answer:?}");
    };
    assert!(answer.as_ref().unwrap_err().is_retryable());
    cluster.advance(1);
    cluster.deliver();
    assert!(
        cluster.replica(target).is_leader(),
        "node {target} took over"
    );
    cluster
        .replica_mut(target)
        .change_membership(Membership {
            add: vec![],
            remove: vec![1],
        })
        .unwrap();
    cluster.advance(target);
    cluster.deliver();
    cluster.tick_all();
    let others: Vec<u64> = [2, 3].into_iter().collect();
    for id in &others {
        assert_eq!(cluster.replica(*id).voters(), vec![2, 3], "node {id}");
    }
    cluster.propose(target, b"b");
    for id in others {
        assert_eq!(cluster.commands(id), vec![b"a".to_vec(), b"b".to_vec()]);
    }
}

/// A leader that applies its own removal (proposed under the previous leader) hands
/// leadership to a remaining voter instead of leading a group it is not in.
#[test]
fn removed_leader_hands_off() {
    let mut cluster = Cluster::new(&[1, 2, 3]);
    cluster.elect(1);
    let removal = Membership {
        add: vec![],
        remove: vec![2],
    };
    cluster.replica_mut(1).change_membership(removal).unwrap();
    cluster.advance(1);
    cluster.deliver_only(2);
    cluster.isolated.insert(1);
    cluster.deliver();
    assert_eq!(
        cluster.replica(2).voters(),
        vec![1, 2, 3],
        "removal not applied yet"
    );
    cluster.elect(2);
    assert_eq!(
        cluster.replica(2).voters(),
        vec![1, 3],
        "node 2 applied its removal"
    );
    // Without the hand-off node 3 would keep following node 2; on node 2's TimeoutNow
    // it campaigns instead (and needs node 1, isolated, to win).
    assert_ne!(
        cluster.replica(3).leader(),
        Some(2),
        "node 2 handed leadership off"
    );
    cluster.isolated.clear();
    for _ in 0..2 * ELECTION_TICKS {
        cluster.tick_all();
    }
    assert_eq!(cluster.replica(3).voters(), vec![1, 3]);
    assert!(
        !cluster.replica(2).is_leader(),
        "removed node 2 handed leadership off"
    );
    let leader = cluster.replica(3).leader().expect("a leader");
    assert!(leader == 1 || leader == 3, "leader {leader}");
    cluster.propose(leader, b"after");
    assert_eq!(cluster.commands(1), cluster.commands(3));
    assert_eq!(cluster.commands(3).last().unwrap(), b"after");
}

/// Changes that cannot work are refused up front, and only the leader accepts any.
#[test]
fn bad_changes_are_refused() {
    let mut cluster = Cluster::new(&[1, 2, 3]);
    cluster.elect(1);
    let follower = cluster.replica_mut(2).change_membership(Membership {
        add: vec![4],
        remove: vec![],
    });
    assert!(matches!(follower, Err(Error::NotLeader { hint: Some(1) })));
    let leader = cluster.replica_mut(1);
    assert!(leader.change_membership(Membership::default()).is_err());
    assert!(leader
        .change_membership(Membership {
            add: vec![5],
            remove: vec![5]
        })
        .is_err());
    assert!(leader
        .change_membership(Membership {
            add: vec![],
            remove: vec![2, 3, 1]
        })
        .is_err());
}
