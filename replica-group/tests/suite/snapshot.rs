//! Snapshot tests: a state with shards in every phase survives encode/decode exactly, and
//! corrupt, foreign-version or foreign-group bytes are refused with a typed error.

use replica_group::data::Data;
use replica_group::Replicated;
use replica_group::{Entry, GroupState, Op, Phase, Reply, SnapshotError};

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

fn encode(state: &GroupState) -> Vec<u8> {
    state.encode_snapshot().expect("the data reads")
}

/// Encode then decode gives back the same state, expiry indexes included.
#[test]
fn round_trip() {
    let state = migrating_state();
    let bytes = encode(&state);
    let decoded = GroupState::decode_snapshot(&bytes, Data::in_memory()).expect("decodes");
    assert_eq!(encode(&decoded), bytes);
    assert_eq!(decoded.applied_index(), state.applied_index());
    assert_eq!(decoded.config(), state.config());
    assert!(
        decoded.shards().eq(state.shards()),
        "every phase and duplicate table"
    );
}

/// The encoder a replica runs on the snapshot thread reads the state when it is made:
/// applying more to the state, in a shard it holds and in the configuration, leaves the
/// encoder's bytes as they were.
#[test]
fn an_encoder_encodes_the_state_as_it_was_made() {
    let mut d = Driver::new(100, 50);
    d.apply(Entry::Config(config(1, [100; NSHARDS])));
    let put = |value: &[u8]| Op::Put {
        key: key_in(0),
        value: value.to_vec(),
    };
    assert_eq!(d.kv(4, 1, put(b"before")), Ok(replica_group::Reply::Done));
    let encoder = d.state.snapshot().expect("the data reads");
    let bytes = encode(&d.state);

    assert_eq!(d.kv(4, 2, put(b"after")), Ok(replica_group::Reply::Done));
    let mut owners = [100; NSHARDS];
    owners[0] = 200;
    d.apply(Entry::Config(config(2, owners)));
    assert!(matches!(*d.state.shard(0), Phase::Offering { .. }));

    assert_eq!(encoder(), bytes, "the encoder kept the state as it was");
    let restored = GroupState::decode_snapshot(&bytes, Data::in_memory()).expect("decodes");
    assert!(matches!(*restored.shard(0), Phase::Serving(_)));
    assert_eq!(
        restored.read(&key_in(0)),
        Ok(Ok(Reply::Value(Some(b"before".to_vec()))))
    );
    assert_ne!(encode(&d.state), bytes, "the state moved on");
}

/// Truncated bytes, another format version and another group's snapshot are refused,
/// and a refused restore leaves the state unchanged.
#[test]
fn bad_bytes_are_refused() {
    let state = migrating_state();
    let bytes = encode(&state);
    let decode = |bytes: &[u8]| GroupState::decode_snapshot(bytes, Data::in_memory()).map(drop);
    assert!(matches!(
        decode(&bytes[..bytes.len() / 2]),
        Err(SnapshotError::Decode(_))
    ));
    let mut other_version = bytes.clone();
    other_version[0] = 99;
    assert_eq!(
        decode(&other_version),
        Err(SnapshotError::Version {
            found: 99,
            expected: 2
        })
    );
    let fresh = |gid| GroupState::new(gid, NSHARDS, Data::in_memory()).expect("a new state");
    let mut other_group = fresh(200);
    let before = encode(&other_group);
    let index = state.applied_index();
    assert!(matches!(
        other_group.restore(&bytes, index),
        Err(SnapshotError::Invalid(_))
    ));
    assert_eq!(encode(&other_group), before);
    // A snapshot "through" an index below what it applied would apply entries twice.
    let mut same_group = fresh(state.gid());
    let before = encode(&same_group);
    assert!(matches!(
        same_group.restore(&bytes, index - 1),
        Err(SnapshotError::Invalid(_))
    ));
    assert_eq!(encode(&same_group), before);
    same_group.restore(&bytes, index).expect("restores");
    assert_eq!(encode(&same_group), bytes);
    assert!(!SnapshotError::Decode(String::new()).is_retryable());
}
