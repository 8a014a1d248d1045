//! The whole state survives a snapshot round trip; corrupt bytes are errors, never panics.

use shardmaster::snapshot::SNAPSHOT_VERSION;
use shardmaster::Replicated;
use shardmaster::{
    decode_entry, encode_entry, EntryError, Op, Request, ShardMaster, SnapshotError,
};

use crate::harness::{join_op, Driver};

fn busy_master() -> ShardMaster {
    let mut driver = Driver::new(10);
    driver.join(&[1, 2, 3]);
    driver.op(Op::Move { shard: 0, gid: 3 }).expect("move");
    driver.leave(&[2]);
    let _ = driver.op(Op::Leave { gids: vec![9] });
    driver.master
}

/// Decoding an encoded state gives the same state, which then behaves identically:
/// duplicates are still recognised and the next change gets the same number.
#[test]
fn round_trip_preserves_behaviour() {
    let master = busy_master();
    let bytes = master.encode_snapshot();
    let mut restored = ShardMaster::decode_snapshot(&bytes).expect("decodes");
    assert_eq!(restored, master);
    assert_eq!(restored.encode_snapshot(), bytes);
    let mut original = master;
    let index = original.applied_index() + 1;
    let retry = Request {
        client: 1,
        seq: 4,
        op: Op::Leave { gids: vec![9] },
    };
    assert_eq!(
        original.apply(index, index, &retry),
        restored.apply(index, index, &retry)
    );
    let next = Request {
        client: 1,
        seq: 5,
        op: join_op(&[4]),
    };
    assert_eq!(
        original.apply(index + 1, index + 1, &next),
        restored.apply(index + 1, index + 1, &next)
    );
    assert_eq!(original, restored);
}

/// Garbage, truncated and foreign-version bytes are rejected, and a failed restore
/// leaves the state as it was.
#[test]
fn corrupt_snapshots_are_errors() {
    let master = busy_master();
    let bytes = master.encode_snapshot();
    assert!(matches!(
        ShardMaster::decode_snapshot(&bytes[..bytes.len() / 2]),
        Err(SnapshotError::Decode(_))
    ));
    assert!(matches!(
        ShardMaster::decode_snapshot(&[0xff; 64]),
        Err(SnapshotError::Decode(_)) | Err(SnapshotError::Version { .. })
    ));
    let mut foreign = bytes.clone();
    foreign[..4].copy_from_slice(&(SNAPSHOT_VERSION + 1).to_le_bytes());
    assert_eq!(
        ShardMaster::decode_snapshot(&foreign),
        Err(SnapshotError::Version {
            found: SNAPSHOT_VERSION + 1,
            expected: SNAPSHOT_VERSION
        })
    );
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(ShardMaster::decode_snapshot(&trailing).is_err());
    let mut target = ShardMaster::new(10);
    let index = master.applied_index();
    assert!(target.restore(&foreign, index).is_err());
    assert_eq!(target, ShardMaster::new(10));
    // A snapshot "through" an index below what it applied would apply entries twice.
    assert!(matches!(
        target.restore(&bytes, index - 1),
        Err(SnapshotError::Invalid(_))
    ));
    assert_eq!(target, ShardMaster::new(10));
    target.restore(&bytes, index).expect("restores");
    assert_eq!(target, master);
}

/// Log entries round-trip; garbage is a decode error and an oversized request is refused
/// before it reaches the log.
#[test]
fn entry_codec() {
    let request = Request {
        client: 3,
        seq: 9,
        op: join_op(&[1, 2]),
    };
    let bytes = encode_entry(&request).expect("encodes");
    assert_eq!(decode_entry(&bytes), Ok(request));
    assert!(matches!(
        decode_entry(&[7, 7, 7]),
        Err(EntryError::Decode(_))
    ));
    let huge = Request {
        client: 1,
        seq: 1,
        op: Op::Join {
            groups: (1..=5000).map(|gid| (gid, vec!["x".repeat(250)])).collect(),
        },
    };
    assert_eq!(encode_entry(&huge), Err(EntryError::TooLarge));
}
