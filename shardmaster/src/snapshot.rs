//! Snapshot encoding of the whole [`ShardMaster`] state.
//!
//! The Raft layer compacts its log by asking the state machine for its bytes at an
//! applied index, and hands those bytes back on restart or when a lagging follower
//! installs the leader's snapshot. The bytes hold everything `apply` depends on: every
//! configuration, the duplicate table with its timeout, and the applied index.
//!
//! Format: `shardkv_raft::encode_image` of [`SNAPSHOT_VERSION`] and
//! `(configs, abandoned groups, session timeout, sessions, applied index, time)`. The
//! expiry index of the duplicate table is derived, so it is rebuilt rather than stored.
//! Decoding is bounded by [`MAX_SNAPSHOT_BYTES`] and checks every invariant of the state
//! before returning it: a corrupt snapshot is an error, never a panic.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use shardkv_proto::{Config, GroupId, Millis, NO_GROUP};

use crate::message::{Request, MAX_ENTRY_BYTES};
use crate::session::Sessions;
use crate::{Index, ShardMaster, SnapshotError};
use shardkv_raft::{check_restored, decode_image, encode_image, Replicated, SnapshotEncoder};

/// The snapshot format's version; bump on any change to the encoded layout.
pub const SNAPSHOT_VERSION: u32 = 3;

/// The largest snapshot [`ShardMaster::decode_snapshot`] accepts (bounds allocation on
/// corrupt length prefixes).
pub const MAX_SNAPSHOT_BYTES: u64 = 1 << 30;

#[derive(Serialize, Deserialize)]
struct Image {
    configs: Vec<Config>,
    abandoned: BTreeSet<GroupId>,
    session_timeout_ms: Millis,
    sessions: Sessions,
    applied_index: Index,
    time: Millis,
}

/// [`Image`] borrowed from a live state, so encoding copies nothing first; serde writes
/// the same bytes for a reference and for its owner.
#[derive(Serialize)]
struct ImageRef<'a> {
    configs: &'a [Config],
    abandoned: &'a BTreeSet<GroupId>,
    session_timeout_ms: Millis,
    sessions: &'a Sessions,
    applied_index: Index,
    time: Millis,
}

impl Replicated for ShardMaster {
    type Command = Request;
    const MAX_COMMAND_BYTES: u64 = MAX_ENTRY_BYTES;

    fn applied_index(&self) -> Index {
        self.applied_index
    }

    fn time(&self) -> Millis {
        self.time
    }

    /// A membership change or an undecodable command: no time of its own.
    fn skip(&mut self, index: Index) -> Result<(), String> {
        assert!(
            index > self.applied_index,
            "skip at index {index} after index {}",
            self.applied_index
        );
        self.advance_to(index, self.time);
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
            abandoned: &self.abandoned,
            session_timeout_ms: self.session_timeout_ms,
            sessions: &self.sessions,
            applied_index: self.applied_index,
            time: self.time,
        };
        // No size limit on encoding: a state that exists must be snapshotted.
        encode_image(SNAPSHOT_VERSION, &image)
    }

    /// The state encoded in `bytes` by `Replicated::encode_snapshot`.
    pub fn decode_snapshot(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let image: Image = decode_image(SNAPSHOT_VERSION, MAX_SNAPSHOT_BYTES, bytes, check_image)?;
        Ok(ShardMaster {
            configs: image.configs,
            abandoned: image.abandoned,
            session_timeout_ms: image.session_timeout_ms,
            sessions: image.sessions,
            applied_index: image.applied_index,
            time: image.time,
        })
    }
}

fn check_image(image: &Image) -> Result<(), String> {
    if image.abandoned.contains(&NO_GROUP) {
        return Err("group 0 abandoned".into());
    }
    if let Some(latest) = image.configs.last() {
        if let Some(gid) = image
            .abandoned
            .iter()
            .find(|gid| latest.groups.contains_key(gid))
        {
            return Err(format!("abandoned group {gid} is a member"));
        }
    }
    let first = image.configs.first().ok_or("no configurations")?;
    if first.shards.iter().any(|&gid| gid != NO_GROUP) || !first.groups.is_empty() {
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
    if image.session_timeout_ms == 0 {
        return Err("session timeout of 0 ms".into());
    }
    for (client, session) in image.sessions.sessions() {
        if session.heard > image.time {
            return Err(format!("client {client} heard after the state's time"));
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
    use std::collections::BTreeMap;

    use shardkv_proto::session::Table;

    use super::*;
    use crate::session::{Outcome, Session};

    fn encode(image: &Image) -> Vec<u8> {
        encode_image(SNAPSHOT_VERSION, image)
    }

    fn image() -> Image {
        Image {
            configs: vec![Config::initial(4)],
            abandoned: BTreeSet::new(),
            session_timeout_ms: 10,
            sessions: Sessions::new(),
            applied_index: 3,
            time: 3,
        }
    }

    fn with_session(response: Outcome, heard: Millis) -> Image {
        let mut image = image();
        image.sessions = Sessions::from_table(Table {
            sessions: BTreeMap::from([(
                1,
                Session {
                    seq: 1,
                    response,
                    heard,
                },
            )]),
            forgotten: 0,
        });
        image
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
        zero_timeout.session_timeout_ms = 0;
        let future_session = with_session(Ok(0), 4);
        let missing_outcome = with_session(Ok(1), 2);
        let mut abandoned_member = image();
        abandoned_member.configs.push(Config {
            num: 1,
            shards: vec![7; 4],
            groups: BTreeMap::from([(7, vec!["a".to_string()])]),
        });
        abandoned_member.abandoned.insert(7);
        let mut abandoned_zero = image();
        abandoned_zero.abandoned.insert(NO_GROUP);
        for (name, bad) in [
            ("abandoned member", abandoned_member),
            ("abandoned group 0", abandoned_zero),
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
