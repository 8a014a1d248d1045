//! The key layout of a [`crate::Store`] in its [`crate::Backend`], and protobuf helpers.
//!
//! ```text
//!   b"hs"                  HardState            (term, vote, commit)
//!   b"cs"                  SnapshotMetadata     (conf state + the index it holds at)
//!   b"e/" ++ index (BE u64) Entry               one per log entry, in index order
//!   snapshot blob           Snapshot             (metadata + state machine bytes)
//! ```
//!
//! Big-endian indices make byte order equal log order, so a range scan returns the log
//! in order and truncating a suffix is one `delete_range`. Every value is the raft-rs
//! protobuf encoding (protobuf 2), so the same bytes decode in any raft-rs process.

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

/// The key of the entry at `index`.
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

/// Encodes a protobuf message.
pub(crate) fn encode<M: protobuf::Message>(what: &str, message: &M) -> Result<Vec<u8>, StoreError> {
    message
        .write_to_bytes()
        .map_err(|error| StoreError::Corrupt {
            what: what.into(),
            reason: format!("encode: {error}"),
        })
}

/// Decodes a protobuf message read from the backend.
pub(crate) fn decode<M: protobuf::Message>(what: &str, bytes: &[u8]) -> Result<M, StoreError> {
    M::parse_from_bytes(bytes).map_err(|error| StoreError::Corrupt {
        what: what.into(),
        reason: format!("decode: {error}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
