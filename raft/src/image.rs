//! Snapshot images and commands: how a [`crate::Replicated`] state and the commands its
//! log carries turn into bytes and back, the same way for every service.
//!
//! A log entry is its cluster time (a `u64`, little-endian: the leader's stamp, see
//! [`crate::Host`]) followed by its command: the bincode encoding of `(time, command)`.
//!
//! Format: bincode 1.3 with fixed-width little-endian integers of `(version, image)`,
//! where `version` is the service's format version (a `u32`) and `image` its own
//! serde type. Decoding reads the version first, so bytes of another version fail as
//! [`SnapshotError::Version`] rather than as whatever the other layout decodes to; it is
//! bounded by the caller's byte limit (a corrupt length prefix cannot allocate more) and
//! refuses trailing bytes, and the caller's check of the decoded state's invariants is
//! part of decoding.

use bincode::Options;
use serde::de::DeserializeOwned;
use serde::Serialize;

use shardkv_proto::Millis;

use crate::{Replicated, SnapshotError};

fn options() -> impl Options {
    bincode::DefaultOptions::new().with_fixint_encoding()
}

/// `command` as command bytes, to propose ([`crate::Host::propose`] stamps them into a
/// log entry); `None` when it encodes to more than `R::MAX_COMMAND_BYTES` (the caller
/// refuses the request).
pub fn encode_command<R: Replicated>(command: &R::Command) -> Option<Vec<u8>> {
    options()
        .with_limit(R::MAX_COMMAND_BYTES)
        .serialize(command)
        .ok()
}

/// Log entry bytes: cluster time `time`, then the command bytes `command`.
pub fn stamp_command(time: Millis, command: Vec<u8>) -> Vec<u8> {
    let mut entry = Vec::with_capacity(8 + command.len());
    entry.extend_from_slice(&time.to_le_bytes());
    entry.extend_from_slice(&command);
    entry
}

/// The command in command `bytes` ([`encode_command`]), read with at most
/// `R::MAX_COMMAND_BYTES` of allocation; trailing bytes are refused.
pub fn decode_command<R: Replicated>(bytes: &[u8]) -> Result<R::Command, String> {
    options()
        .with_limit(R::MAX_COMMAND_BYTES)
        .deserialize(bytes)
        .map_err(|error| error.to_string())
}

/// The cluster time and the command in log entry `bytes` ([`stamp_command`]).
pub fn decode_entry<R: Replicated>(bytes: &[u8]) -> Result<(Millis, R::Command), String> {
    let Some((time, command)) = bytes.split_first_chunk::<8>() else {
        return Err(format!("a log entry of {} bytes has no time", bytes.len()));
    };
    Ok((Millis::from_le_bytes(*time), decode_command::<R>(command)?))
}

/// `image` as snapshot bytes of format `version`.
pub fn encode_image<T: Serialize>(version: u32, image: &T) -> Vec<u8> {
    options()
        .serialize(&(version, image))
        .expect("an in-memory state always encodes")
}

/// The image of format `version` that [`encode_image`] wrote into `bytes`, read with at
/// most `max_bytes` of allocation, once `check` finds its invariants hold.
pub fn decode_image<T: DeserializeOwned>(
    version: u32,
    max_bytes: u64,
    bytes: &[u8],
    check: impl FnOnce(&T) -> Result<(), String>,
) -> Result<T, SnapshotError> {
    let decode = |error: bincode::Error| SnapshotError::Decode(error.to_string());
    let found: u32 = options()
        .allow_trailing_bytes()
        .deserialize(bytes)
        .map_err(decode)?;
    if found != version {
        return Err(SnapshotError::Version {
            found,
            expected: version,
        });
    }
    let (_, image): (u32, T) = options()
        .with_limit(max_bytes)
        .deserialize(bytes)
        .map_err(decode)?;
    check(&image).map_err(SnapshotError::Invalid)?;
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image comes back as written; another version, a broken invariant, a
    /// truncation, trailing bytes and a length prefix far past the bytes are refused
    /// with the right error.
    #[test]
    fn round_trip_and_refusals() {
        let image = (7u64, vec![1u8, 2, 3], "x".to_string());
        let bytes = encode_image(3, &image);
        assert_eq!(
            decode_image(3, 1 << 20, &bytes, |_| Ok(())),
            Ok(image.clone())
        );
        let odd = |image: &(u64, Vec<u8>, String)| match image.0 % 2 {
            1 => Err(format!("{} is odd", image.0)),
            _ => Ok(()),
        };
        assert_eq!(
            decode_image(3, 1 << 20, &bytes, odd),
            Err(SnapshotError::Invalid("7 is odd".into()))
        );
        assert_eq!(
            decode_image::<(u64, Vec<u8>, String)>(4, 1 << 20, &bytes, |_| Ok(())),
            Err(SnapshotError::Version {
                found: 3,
                expected: 4
            })
        );
        let short = &bytes[..bytes.len() - 1];
        assert!(matches!(
            decode_image::<(u64, Vec<u8>, String)>(3, 1 << 20, short, |_| Ok(())),
            Err(SnapshotError::Decode(_))
        ));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(
            decode_image::<(u64, Vec<u8>, String)>(3, 1 << 20, &trailing, |_| Ok(())),
            Err(SnapshotError::Decode(_))
        ));
        let mut huge = bytes.clone();
        huge[12..20].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
        assert!(matches!(
            decode_image::<(u64, Vec<u8>, String)>(3, 1 << 20, &huge, |_| Ok(())),
            Err(SnapshotError::Decode(_))
        ));
    }
}
