//! The group's whole replicated state as bytes, for log compaction and restart.
//!
//! A snapshot holds both configurations, every shard's phase with its data and duplicate
//! table, the session timeout and the applied index; session expiry indexes are rebuilt
//! on decode (by the duplicate table's own deserialization). A deleted shard is simply absent from the image, so once a snapshot follows
//! a deletion (and compaction drops the log before it) the shard's bytes are gone from the
//! disk too (6.824 challenge 1).
//!
//! Decoding checks the invariants of [`GroupState`] and refuses, rather than trusts,
//! bytes that break them.

use std::sync::Arc;

use serde::{Deserialize, Serialize, Serializer};
use shardkv_proto::{Config, GroupId};

use crate::message::{Entry, MAX_ENTRY_BYTES};
use crate::phase::Phase;
use crate::state::GroupState;
use crate::{Index, SnapshotError};
use shardkv_raft::{decode_image, encode_image, Replicated};

/// The snapshot format version this code writes and reads.
pub const SNAPSHOT_VERSION: u32 = 1;

/// The largest snapshot [`GroupState::decode_snapshot`] accepts (bounds allocation on a
/// corrupt length prefix).
pub const MAX_SNAPSHOT_BYTES: u64 = 1 << 34;

/// [`Image`] borrowed from a live state, so encoding copies nothing first; serde writes
/// the same bytes for a reference and for its owner.
#[derive(Serialize)]
struct ImageRef<'a> {
    gid: GroupId,
    session_timeout_entries: u64,
    config: &'a Config,
    prev: &'a Config,
    #[serde(serialize_with = "phases")]
    shards: &'a [Arc<Phase>],
    applied_index: Index,
}

/// Writes shared phases as a sequence of phases (what `Image` reads back).
fn phases<S: Serializer>(shards: &&[Arc<Phase>], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(shards.iter().map(|phase| &**phase))
}

#[derive(Serialize, Deserialize)]
struct Image {
    gid: GroupId,
    session_timeout_entries: u64,
    config: Config,
    prev: Config,
    shards: Vec<Phase>,
    applied_index: Index,
}

impl Replicated for GroupState {
    type Command = Entry;
    const MAX_COMMAND_BYTES: u64 = MAX_ENTRY_BYTES;

    fn applied_index(&self) -> Index {
        self.applied_index
    }

    /// A membership change or an undecodable entry.
    fn skip(&mut self, index: Index) {
        self.advance_to(index);
    }

    /// A clone is cheap: it shares every shard's data until either side changes that
    /// shard.
    fn encode_snapshot(&self) -> Vec<u8> {
        let image = ImageRef {
            gid: self.gid,
            session_timeout_entries: self.session_timeout_entries,
            config: &self.config,
            prev: &self.prev,
            shards: &self.shards,
            applied_index: self.applied_index,
        };
        encode_image(SNAPSHOT_VERSION, &image)
    }

    /// Only a snapshot of this group.
    fn decode_replacement(&self, bytes: &[u8]) -> Result<Self, SnapshotError> {
        let restored = Self::decode_snapshot(bytes)?;
        if restored.gid != self.gid {
            return Err(SnapshotError::Invalid(format!(
                "snapshot of group {}, this is group {}",
                restored.gid, self.gid
            )));
        }
        Ok(restored)
    }
}

impl GroupState {
    /// The state encoded in `bytes` by `Replicated::encode_snapshot`.
    pub fn decode_snapshot(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let image: Image = decode_image(SNAPSHOT_VERSION, MAX_SNAPSHOT_BYTES, bytes, check_image)?;
        Ok(GroupState {
            gid: image.gid,
            session_timeout_entries: image.session_timeout_entries,
            config: image.config,
            prev: image.prev,
            shards: image.shards.into_iter().map(Arc::new).collect(),
            applied_index: image.applied_index,
        })
    }
}

fn check_image(image: &Image) -> Result<(), String> {
    let (config, prev, gid) = (&image.config, &image.prev, image.gid);
    config.check().map_err(|e| e.to_string())?;
    prev.check().map_err(|e| e.to_string())?;
    if prev.num.checked_add(1) != Some(config.num) && !(config.num == 0 && prev.num == 0) {
        return Err(format!("config {} after {}", config.num, prev.num));
    }
    let n = image.shards.len();
    if config.nshards() != n || prev.nshards() != n {
        return Err(format!("{n} phases for {} shards", config.nshards()));
    }
    if image.session_timeout_entries == 0 {
        return Err("session timeout of 0 entries".into());
    }
    for (shard, phase) in image.shards.iter().enumerate() {
        let owned = config.shards[shard] == gid;
        let ok = match phase {
            Phase::Absent => !owned,
            Phase::Serving(_) => owned,
            Phase::Pulling { from } | Phase::Acking { from, .. } => {
                owned && prev.shards[shard] == *from
            }
            Phase::Offering { to, .. } => prev.shards[shard] == gid && config.shards[shard] == *to,
        };
        if !ok {
            return Err(format!(
                "shard {shard} is {} in config {}",
                phase.name(),
                config.num
            ));
        }
        let late = phase
            .store()
            .into_iter()
            .flat_map(|s| s.sessions.sessions().values());
        if late.into_iter().any(|s| s.last_index > image.applied_index) {
            return Err(format!(
                "shard {shard}: a session heard after the applied index"
            ));
        }
    }
    Ok(())
}
