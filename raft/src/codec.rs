//! The key layout of a [`crate::Store`] in its [`crate::Backend`], and protobuf helpers.
//!
//! ```text
//!   b"hs"                  HardState            (term, vote, commit)
//!   b"cs"                  SnapshotMetadata     (conf state + the index it holds at)
//!   b"e/" ++ index (BE u64) run of entries       one per append: 0xFF, count (u32 LE),
//!                                                then per entry its length (u32 LE) and
//!                                                its protobuf bytes; the key is at or
//!                                                below the run's first index
//!   snapshot blob           Snapshot             (metadata + state machine bytes)
//! ```
//!
//! Big-endian indices make byte order equal log order, so a range scan returns the log
//! in order and truncating a suffix is one `delete_range`. A run holds everything one
//! `append` wrote (one Ready's worth of entries), so the backend does one write per
//! append and one delete per run at compaction, however many entries they hold; a
//! value that does not start with the run marker is corrupt. Entries are the raft-rs
//! protobuf encoding (protobuf 2), so the same bytes decode in any raft-rs process.

use protobuf::wire_format::WireType;
use protobuf::{CodedOutputStream, Message as _, ProtobufError, ProtobufResult};
use raft::eraftpb::{Entry, Snapshot, SnapshotMetadata};

use crate::{Index, StoreError};

/// Key of the persisted `HardState`.
pub(crate) const HARD_STATE_KEY: &[u8] = b"hs";
/// Key of the persisted conf state record.
pub(crate) const CONF_STATE_KEY: &[u8] = b"cs";
/// First key of the entry range (`b"e/"`, no index): every entry key sorts after it.
pub(crate) const ENTRY_START: &[u8] = b"e/";
/// One past the last possible entry key (`'0'` follows `'/'`).
pub(crate) const ENTRY_END: &[u8] = b"e0";
/// Length of one entry key.
pub(crate) const ENTRY_KEY_BYTES: u64 = 10;

/// First byte of a run record (never the first byte of an encoded `Entry`, whose first
/// field tags are small).
const RUN_MARKER: u8 = 0xFF;

/// Encodes `entries` as one run record.
pub(crate) fn encode_run(entries: &[Entry]) -> Result<Vec<u8>, StoreError> {
    let count = u32::try_from(entries.len()).map_err(|_| too_long("run", entries.len()))?;
    let mut out = Vec::with_capacity(
        5 + entries
            .iter()
            .map(|e| 4 + e.compute_size() as usize)
            .sum::<usize>(),
    );
    out.push(RUN_MARKER);
    out.extend_from_slice(&count.to_le_bytes());
    for entry in entries {
        let bytes = encode("log entry", entry)?;
        let len = u32::try_from(bytes.len()).map_err(|_| too_long("entry", bytes.len()))?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&bytes);
    }
    Ok(out)
}

/// Decodes a run record of the entry range.
pub(crate) fn decode_run(bytes: &[u8]) -> Result<Vec<Entry>, StoreError> {
    let Some((&RUN_MARKER, mut rest)) = bytes.split_first() else {
        return Err(StoreError::Corrupt {
            what: "log run".into(),
            reason: "no run marker".into(),
        });
    };
    let count = take_u32(&mut rest)?;
    let mut entries = Vec::with_capacity(count.min(1 << 16) as usize);
    for _ in 0..count {
        let len = take_u32(&mut rest)? as usize;
        if rest.len() < len {
            return Err(truncated_run());
        }
        let (entry, tail) = rest.split_at(len);
        entries.push(decode("log entry", entry)?);
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(StoreError::Corrupt {
            what: "log run".into(),
            reason: format!("{} bytes after its last entry", rest.len()),
        });
    }
    Ok(entries)
}

fn take_u32(rest: &mut &[u8]) -> Result<u32, StoreError> {
    let Some((head, tail)) = rest.split_first_chunk::<4>() else {
        return Err(truncated_run());
    };
    *rest = tail;
    Ok(u32::from_le_bytes(*head))
}

fn truncated_run() -> StoreError {
    StoreError::Corrupt {
        what: "log run".into(),
        reason: "truncated".into(),
    }
}

fn too_long(what: &str, len: usize) -> StoreError {
    StoreError::Corrupt {
        what: format!("log {what}"),
        reason: format!("{len} is too long to encode"),
    }
}

/// The key of the run record starting at (or holding) `index`.
pub(crate) fn entry_key(index: Index) -> [u8; 10] {
    let mut key = [0u8; 10];
    key[..2].copy_from_slice(ENTRY_START);
    key[2..].copy_from_slice(&index.to_be_bytes());
    key
}

/// The index an entry key names, or `Corrupt` when it is not an entry key.
pub(crate) fn entry_key_index(key: &[u8]) -> Result<Index, StoreError> {
    match key.strip_prefix(ENTRY_START).map(<[u8; 8]>::try_from) {
        Some(Ok(bytes)) => Ok(Index::from_be_bytes(bytes)),
        _ => Err(StoreError::Corrupt {
            what: format!("key {key:?}"),
            reason: "not an entry key".into(),
        }),
    }
}

/// `error` from protobuf while doing `action` ("encode", "decode") to `what`.
fn codec_error(what: &str, action: &str, error: ProtobufError) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        reason: format!("{action}: {error}"),
    }
}

/// Encodes a protobuf message.
pub(crate) fn encode<M: protobuf::Message>(what: &str, message: &M) -> Result<Vec<u8>, StoreError> {
    message
        .write_to_bytes()
        .map_err(|error| codec_error(what, "encode", error))
}

/// The bytes `write` puts on a protobuf output stream.
fn written(
    write: impl FnOnce(&mut CodedOutputStream) -> ProtobufResult<()>,
) -> ProtobufResult<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut os = CodedOutputStream::vec(&mut bytes);
    write(&mut os)?;
    os.flush()?;
    drop(os);
    Ok(bytes)
}

/// The protobuf encoding of `Snapshot { data, metadata }` as three pieces whose
/// concatenation it is (what `write_to_bytes` gives for non-empty data): the data
/// field's tag and length, the data itself, not copied, and the metadata field.
pub(crate) fn snapshot_parts(
    meta: &SnapshotMetadata,
    data: Vec<u8>,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let encoding = |error| codec_error("snapshot", "encode", error);
    let head = written(|os| {
        os.write_tag(1, WireType::WireTypeLengthDelimited)?;
        os.write_raw_varint64(data.len() as u64)
    })
    .map_err(encoding)?;
    let tail = written(|os| os.write_message(2, meta)).map_err(encoding)?;
    Ok(vec![head, data, tail])
}

/// Decodes a snapshot read from the backend without copying its data: the snapshot's
/// `data` shares `bytes`' buffer (protobuf's `bytes` feature, which raft-rs turns on).
pub(crate) fn decode_snapshot(bytes: Vec<u8>) -> Result<Snapshot, StoreError> {
    Snapshot::parse_from_carllerche_bytes(&bytes::Bytes::from(bytes))
        .map_err(|error| codec_error("snapshot", "decode", error))
}

/// Decodes a protobuf message read from the backend.
pub(crate) fn decode<M: protobuf::Message>(what: &str, bytes: &[u8]) -> Result<M, StoreError> {
    M::parse_from_bytes(bytes).map_err(|error| codec_error(what, "decode", error))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The snapshot's pieces concatenate to exactly what protobuf writes for it, and
    /// decode (without copying the data) back to it.
    #[test]
    fn snapshot_parts_are_the_protobuf_encoding() {
        let mut meta = SnapshotMetadata {
            index: 300,
            term: 7,
            ..SnapshotMetadata::default()
        };
        meta.mut_conf_state().voters = vec![1, 2, 3];
        for len in [1, 127, 128, 300_000] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut snapshot = Snapshot {
                data: data.clone().into(),
                ..Snapshot::default()
            };
            snapshot.set_metadata(meta.clone());
            let parts = snapshot_parts(&meta, data).unwrap();
            let blob = parts.concat();
            assert_eq!(
                blob,
                snapshot.write_to_bytes().unwrap(),
                "{len} bytes of data"
            );
            assert_eq!(decode_snapshot(blob).unwrap(), snapshot);
        }
    }

    /// Proves entry keys sort in index order, stay inside the entry range and round-trip.
    #[test]
    fn entry_keys_sort_by_index() {
        let indices = [0u64, 1, 255, 256, u64::MAX];
        for pair in indices.windows(2) {
            assert!(entry_key(pair[0]) < entry_key(pair[1]));
        }
        for index in indices {
            let key = entry_key(index);
            assert!(ENTRY_START < &key[..] && &key[..] < ENTRY_END);
            assert_eq!(entry_key_index(&key).unwrap(), index);
        }
        assert!(entry_key_index(b"hs").is_err());
    }

    fn entry(index: Index, data: &[u8]) -> Entry {
        Entry {
            index,
            term: 2,
            data: data.to_vec().into(),
            ..Entry::default()
        }
    }

    /// Runs round-trip; damaged runs and a bare protobuf entry (no run marker) are
    /// refused.
    #[test]
    fn runs_round_trip_and_refuse_damage() {
        let entries = vec![entry(5, b"a"), entry(6, b""), entry(7, &[7; 300])];
        let bytes = encode_run(&entries).unwrap();
        assert_eq!(decode_run(&bytes).unwrap(), entries);
        assert_eq!(decode_run(&encode_run(&[]).unwrap()).unwrap(), vec![]);
        let single = encode("log entry", &entries[0]).unwrap();
        assert!(decode_run(&single).is_err());
        assert!(decode_run(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_run(&longer).is_err());
    }
}
