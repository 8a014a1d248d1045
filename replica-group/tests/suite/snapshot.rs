//! Snapshot tests: a state with shards in every phase survives encode/decode exactly, and
//! corrupt, foreign-version or foreign-group bytes are refused with a typed error.

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
    assert!(matches!(*d.state.shard(9), Phase::Pulling { from: 200 }));
    d.state
}

/// Encode then decode gives back the same state, expiry indexes included.
#[test]
fn round_trip() {
    let state = migrating_state();
    let decoded = GroupState::decode_snapshot(&state.encode_snapshot()).expect("decodes");
    assert_eq!(decoded, state);
}

/// A clone of the state (what a replica encodes on the snapshot thread) shares the
/// shards' data but not their changes: applying more to the state, in a shard the clone
/// holds and in the configuration, leaves the clone's snapshot bytes as they were.
#[test]
fn a_clone_encodes_the_state_as_of_the_clone() {
    let mut d = Driver::new(100, 50);
    d.apply(Entry::Config(config(1, [100; NSHARDS])));
    let put = |value: &[u8]| Op::Put {
        key: key_in(0),
        value: value.to_vec(),
    };
    assert_eq!(d.kv(4, 1, put(b"before")), Ok(replica_group::Reply::Done));
    let image = d.state.clone();
    let bytes = d.state.encode_snapshot();

    assert_eq!(d.kv(4, 2, put(b"after")), Ok(replica_group::Reply::Done));
    let mut owners = [100; NSHARDS];
    owners[0] = 200;
    d.apply(Entry::Config(config(2, owners)));
    assert!(matches!(*d.state.shard(0), Phase::Offering { .. }));
    assert!(matches!(*image.shard(0), Phase::Serving(_)));

    assert_eq!(image.encode_snapshot(), bytes, "the clone kept its state");
    let restored = GroupState::decode_snapshot(&bytes).expect("decodes");
    let value = restored.shard(0).store().and_then(|s| s.kv.get(&key_in(0)));
    assert_eq!(value.map(Vec::as_slice), Some(&b"before"[..]));
    assert_ne!(d.state.encode_snapshot(), bytes, "the state moved on");
}

/// Truncated bytes, another format version and another group's snapshot are refused,
/// and a refused restore leaves the state unchanged.
#[test]
fn bad_bytes_are_refused() {
    let state = migrating_state();
    let bytes = state.encode_snapshot();
    assert!(matches!(
        GroupState::decode_snapshot(&bytes[..bytes.len() / 2]),
        Err(SnapshotError::Decode(_))
    ));
    let mut other_version = bytes.clone();
    other_version[0] = 99;
    assert_eq!(
        GroupState::decode_snapshot(&other_version),
        Err(SnapshotError::Version {
            found: 99,
            expected: 1
        })
    );
    let mut other_group = GroupState::new(200, NSHARDS);
    let before = other_group.clone();
    let index = state.applied_index();
    assert!(matches!(
        other_group.restore(&bytes, index),
        Err(SnapshotError::Invalid(_))
    ));
    assert_eq!(other_group, before);
    // A snapshot "through" an index below what it applied would apply entries twice.
    let mut same_group = GroupState::new(state.gid(), NSHARDS);
    let before = same_group.clone();
    assert!(matches!(
        same_group.restore(&bytes, index - 1),
        Err(SnapshotError::Invalid(_))
    ));
    assert_eq!(same_group, before);
    same_group.restore(&bytes, index).expect("restores");
    assert_eq!(same_group.encode_snapshot(), bytes);
    assert!(!SnapshotError::Decode(String::new()).is_retryable());
}
