//! Snapshot tests: the raft snapshot is a marker of the group's checkpointed data. A
//! marker restores only over data that holds its index, of its own group; a state
//! resumes from its data's metadata exactly.

use replica_group::data::Data;
use replica_group::Replicated;
use replica_group::{Entry, GroupState, Op, Phase, SnapshotError};

use crate::state::{config, key_in, Driver, NSHARDS};

fn migrating_state() -> GroupState {
    let mut d = Driver::new(100, 50);
    let mut owners = [100; NSHARDS];
    owners[9] = 200;
    d.apply(Entry::Config(config(1, owners)));
    let done = d.kv(
        4,
        1,
        Op::Append {
            key: key_in(1),
            value: b"v".to_vec(),
        },
    );
    assert_eq!(done, Ok(replica_group::Reply::Done));
    owners[1] = 200;
    owners[9] = 100;
    d.apply(Entry::Config(config(2, owners)));
    assert!(matches!(*d.state.shard(1), Phase::Offering { .. }));
    assert!(matches!(
        *d.state.shard(9),
        Phase::Pulling { from: 200, .. }
    ));
    d.state
}

fn marker(state: &GroupState) -> Vec<u8> {
    state.snapshot().expect("a marker")()
}

/// A checkpointed state reopens from its data with every phase, duplicate table and
/// key, and the marker of its applied index restores over it (nothing to load).
#[test]
fn a_checkpointed_state_reopens_and_takes_its_marker() {
    let mut state = migrating_state();
    state.checkpoint(true).expect("checkpoints");
    let (dump, index, bytes) = (
        state.dump().expect("reads"),
        state.applied_index(),
        marker(&state),
    );
    let (gid, timeout) = (state.gid(), state.session_timeout_ms());
    let mut reopened = GroupState::open(gid, NSHARDS, timeout, state.into_data()).expect("reopens");
    assert_eq!(reopened.dump().expect("reads"), dump);
    reopened.restore(&bytes, index).expect("restores");
    reopened
        .restore(&bytes, index - 1)
        .expect("an older marker too");
    assert_eq!(reopened.dump().expect("reads"), dump);
}

/// Truncated bytes, another format version, another group's marker and a marker past
/// what the data holds (its checkpoint was lost) are refused, the state unchanged.
#[test]
fn bad_markers_are_refused() {
    let state = migrating_state();
    let bytes = marker(&state);
    let index = state.applied_index();
    let fresh = |gid| GroupState::new(gid, NSHARDS, Data::in_memory()).expect("a new state");
    let mut same_group = fresh(state.gid());
    let before = same_group.dump().expect("reads");
    assert!(matches!(
        same_group.restore(&bytes[..bytes.len() / 2], 0),
        Err(SnapshotError::Decode(_))
    ));
    let mut other_version = bytes.clone();
    other_version[0] = 99;
    assert_eq!(
        same_group.restore(&other_version, 0),
        Err(SnapshotError::Version {
            found: 99,
            expected: replica_group::snapshot::SNAPSHOT_VERSION
        })
    );
    assert!(matches!(
        fresh(200).restore(&bytes, 0),
        Err(SnapshotError::Invalid(_))
    ));
    assert!(matches!(
        same_group.restore(&bytes, index),
        Err(SnapshotError::Storage(_))
    ));
    assert_eq!(same_group.dump().expect("reads"), before);
    assert!(!SnapshotError::Decode(String::new()).is_retryable());
}
