//! Snapshot encoding of the whole [`ShardMaster`] state.
//!
//! The Raft layer compacts its log by asking the state machine for its bytes at an
//! applied index, and hands those bytes back on restart or when a lagging follower
//! installs the leader's snapshot. The bytes hold everything `apply` depends on: every
//! configuration, the duplicate table with its timeout, and the applied index.
//!
//! Format: `shardkv_raft::encode_image` of [`SNAPSHOT_VERSION`] and
//! `(configs, session timeout, sessions, applied index)`. The expiry
//! index of the duplicate table is derived, so it is rebuilt rather than stored.
//! Decoding is bounded by [`MAX_SNAPSHOT_BYTES`] and checks every invariant of the state
//! before returning it: a corrupt snapshot is an error, never a panic.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shardkv_proto::{ClientId, Config};

use crate::message::{Request, MAX_ENTRY_BYTES};
use crate::session::{Session, Sessions};
use crate::{Index, ShardMaster, SnapshotError};
use shardkv_raft::{check_restored, decode_image, encode_image, Replicated, SnapshotEncoder};

/// The snapshot format's version; bump on any change to the encoded layout.
pub const SNAPSHOT_VERSION: u32 = 1;

/// The largest snapshot [`ShardMaster::decode_snapshot`] accepts (bounds allocation on
/// corrupt length prefixes).
pub const MAX_SNAPSHOT_BYTES: u64 = 1 << 30;

#[derive(Serialize, Deserialize)]
struct Image {
    configs: Vec<Config>,
    session_timeout_entries: u64,
    sessions: BTreeMap<ClientId, Session>,
    applied_index: Index,
}

/// [`Image`] borrowed from a live state, so encoding copies nothing first; serde writes
/// the same bytes for a reference and for its owner.
#[derive(Serialize)]
struct ImageRef<'a> {
    configs: &'a [Config],
    session_timeout_entries: u64,
    sessions: &'a BTreeMap<ClientId, Session>,
    applied_index: Index,
}

impl Replicated for ShardMaster {
    type Command = Request;
    const MAX_COMMAND_BYTES: u64 = MAX_ENTRY_BYTES;

    fn applied_index(&self) -> Index {
        self.applied_index
    }

    /// A membership change or an undecodable command.
    fn skip(&mut self, index: Index) -> Result<(), String> {
        assert!(
            index > self.applied_index,
            "skip at index {index} after index {}",
            self.applied_index
        );
        self.advance_to(index);
        Ok(())
    }

    /// Encodes a copy of the state (configurations are small next to the log).
    fn snapshot(&self) -> Result<SnapshotEncoder, String> {
        let image = self.clone();
        Ok(Box::new(move || image.encode_snapshot()))
    }

    fn restore(&mut self, bytes: &[u8], index: Index) -> Result<(), SnapshotError> {
        let restored = Self::decode_snapshot(bytes)?;
        check_restored(restored.applied_index, index)?;
        *self = restored;
        Ok(())
    }
}

impl ShardMaster {
    /// The state as snapshot bytes.
    pub fn encode_snapshot(&self) -> Vec<u8> {
        let image = ImageRef {
            configs: &self.configs,
            session_timeout_entries: self.session_timeout_entries,
            sessions: self.sessions.sessions(),
            applied_index: self.applied_index,
        };
        // No size limit on encoding: a state that exists must be snapshotted.
        encode_image(SNAPSHOT_VERSION, &image)
    }

    /// The state encoded in `bytes` by `Replicated::encode_snapshot`.
    pub fn decode_snapshot(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let image: Image = decode_image(SNAPSHOT_VERSION, MAX_SNAPSHOT_BYTES, bytes, check_image)?;
        Ok(ShardMaster {
            configs: image.configs,
            session_timeout_entries: image.session_timeout_entries,
            sessions: Sessions::from_sessions(image.sessions),
            applied_index: image.applied_index,
        })
    }
}

fn check_image(image: &Image) -> Result<(), String> {
    let first = image.configs.first().ok_or("no configurations")?;
    if first
        .shards
        .iter()
        .any(|&gid| gid != shardkv_proto::NO_GROUP)
        || !first.groups.is_empty()
    {
        return Err("configuration 0 is not empty".into());
    }
    for (i, config) in image.configs.iter().enumerate() {
        if config.num != i as u64 {
            return Err(format!("configuration {} at position {i}", config.num));
        }
        if config.nshards() != first.nshards() {
            return Err(format!("configuration {i} has {} shards", config.nshards()));
        }
        config.check().map_err(|e| e.to_string())?;
    }
    if image.session_timeout_entries == 0 {
        return Err("session timeout of 0 entries".into());
    }
    for (client, session) in &image.sessions {
        if session.last_index > image.applied_index {
            return Err(format!("client {client} heard after the applied index"));
        }
        if let Ok(num) = session.response {
            if num as usize >= image.configs.len() {
                return Err(format!("client {client} remembers missing config {num}"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(image: &Image) -> Vec<u8> {
        encode_image(SNAPSHOT_VERSION, image)
    }

    fn image() -> Image {
        Image {
            configs: vec![Config::initial(4)],
            session_timeout_entries: 10,
            sessions: BTreeMap::new(),
            applied_index: 3,
        }
    }

    /// Snapshots that decode but break a state invariant are refused as invalid.
    #[test]
    fn invalid_states_are_refused() {
        let mut gap = image();
        gap.configs.push(Config {
            num: 2,
            ..Config::initial(4)
        });
        let mut no_configs = image();
        no_configs.configs.clear();
        let mut owned_zero = image();
        owned_zero.configs[0].shards[0] = 1;
        let mut resized = image();
        resized.configs.push(Config {
            num: 1,
            ..Config::initial(5)
        });
        let mut zero_timeout = image();
        zero_timeout.session_timeout_entries = 0;
        let mut future_session = image();
        future_session.sessions.insert(
            1,
            Session {
                seq: 1,
                response: Ok(0),
                last_index: 4,
            },
        );
        let mut missing_outcome = image();
        missing_outcome.sessions.insert(
            1,
            Session {
                seq: 1,
                response: Ok(1),
                last_index: 2,
            },
        );
        for (name, bad) in [
            ("gap", gap),
            ("no configs", no_configs),
            ("config 0 owns", owned_zero),
            ("resized", resized),
            ("zero timeout", zero_timeout),
            ("future session", future_session),
            ("missing outcome", missing_outcome),
        ] {
            let result = ShardMaster::decode_snapshot(&encode(&bad));
            assert!(
                matches!(result, Err(SnapshotError::Invalid(_))),
                "{name}: {result:?}"
            );
        }
        assert!(ShardMaster::decode_snapshot(&encode(&image())).is_ok());
    }
}
