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

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shardkv_proto::{Config, GroupId};

use crate::data::{Data, DataError};
use crate::message::{Entry, MAX_ENTRY_BYTES};
use crate::phase::Phase;
use crate::state::GroupState;
use crate::{Index, SnapshotError};
use shardkv_raft::{check_restored, decode_image, encode_image, Replicated, SnapshotEncoder};

/// The snapshot format version this code writes and reads.
pub const SNAPSHOT_VERSION: u32 = 2;

/// The largest snapshot [`GroupState::decode_snapshot`] accepts (bounds allocation on a
/// corrupt length prefix).
pub const MAX_SNAPSHOT_BYTES: u64 = 1 << 34;

/// A shard's keys and values in an [`Image`] (empty for a shard without data).
#[derive(Serialize, Deserialize, Default)]
struct ShardData(#[serde(with = "shardkv_proto::bytes_map")] BTreeMap<Vec<u8>, Vec<u8>>);

#[derive(Serialize, Deserialize)]
struct Image {
    gid: GroupId,
    session_timeout_entries: u64,
    config: Config,
    prev: Config,
    shards: Vec<Phase>,
    data: Vec<ShardData>,
    applied_index: Index,
}

impl Replicated for GroupState {
    type Command = Entry;
    const MAX_COMMAND_BYTES: u64 = MAX_ENTRY_BYTES;

    fn applied_index(&self) -> Index {
        self.applied_index
    }

    /// A membership change or an undecodable entry.
    fn skip(&mut self, index: Index) -> Result<(), String> {
        self.advance_to(index).map_err(|error| error.to_string())
    }

    /// Commits the Ready's changes to the data, with the applied index.
    fn commit(&mut self) -> Result<(), String> {
        self.data
            .commit(self.applied_index)
            .map_err(|error| error.to_string())
    }

    /// Reads every shard's data now; encoding runs later.
    fn snapshot(&self) -> Result<SnapshotEncoder, String> {
        let image = self.image().map_err(|error| error.to_string())?;
        Ok(Box::new(move || encode_image(SNAPSHOT_VERSION, &image)))
    }

    /// Only a snapshot of this group.
    fn restore(&mut self, bytes: &[u8], index: Index) -> Result<(), SnapshotError> {
        let image: Image = decode_image(SNAPSHOT_VERSION, MAX_SNAPSHOT_BYTES, bytes, check_image)?;
        if image.gid != self.gid {
            return Err(SnapshotError::Invalid(format!(
                "snapshot of group {}, this is group {}",
                image.gid, self.gid
            )));
        }
        check_restored(image.applied_index, index)?;
        self.replace(image)
            .map_err(|error| SnapshotError::Storage(error.to_string()))
    }
}

impl GroupState {
    /// The state as snapshot bytes.
    pub fn encode_snapshot(&self) -> Result<Vec<u8>, DataError> {
        Ok(encode_image(SNAPSHOT_VERSION, &self.image()?))
    }

    /// The state encoded in `bytes` by [`GroupState::encode_snapshot`], over `data`
    /// (emptied first).
    pub fn decode_snapshot(bytes: &[u8], data: Data) -> Result<Self, SnapshotError> {
        let image: Image = decode_image(SNAPSHOT_VERSION, MAX_SNAPSHOT_BYTES, bytes, check_image)?;
        let storage = |error: DataError| SnapshotError::Storage(error.to_string());
        let nshards = image.shards.len();
        let mut state = GroupState::with_session_timeout(
            image.gid,
            nshards,
            image.session_timeout_entries,
            data,
        )
        .map_err(storage)?;
        state.replace(image).map_err(storage)?;
        state.data.commit(state.applied_index).map_err(storage)?;
        Ok(state)
    }

    fn image(&self) -> Result<Image, DataError> {
        let mut data = Vec::with_capacity(self.shards.len());
        for (shard, phase) in self.shards().enumerate() {
            let pairs = match phase.store() {
                Some(_) => self.data.chunk(shard, None, usize::MAX)?.pairs,
                None => Vec::new(),
            };
            data.push(ShardData(pairs.into_iter().collect()));
        }
        Ok(Image {
            gid: self.gid,
            session_timeout_entries: self.session_timeout_entries,
            config: self.config.clone(),
            prev: self.prev.clone(),
            shards: self.shards().cloned().collect(),
            data,
            applied_index: self.applied_index,
        })
    }

    /// Takes `image` in: its data replaces everything in the data.
    fn replace(&mut self, image: Image) -> Result<(), DataError> {
        self.data.clear()?;
        for (shard, data) in image.data.iter().enumerate() {
            for (key, value) in &data.0 {
                self.data.put(shard, key, value)?;
            }
        }
        self.session_timeout_entries = image.session_timeout_entries;
        self.config = image.config;
        self.prev = image.prev;
        self.shards = image.shards.into_iter().map(Arc::new).collect();
        self.applied_index = image.applied_index;
        Ok(())
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
    if image.data.len() != n {
        return Err(format!("data of {} shards for {n}", image.data.len()));
    }
    let stray = image.shards.iter().zip(&image.data);
    if let Some(shard) = stray.enumerate().find_map(|(shard, (phase, data))| {
        (phase.store().is_none() && !data.0.is_empty()).then_some(shard)
    }) {
        return Err(format!("shard {shard} has data but no phase holding it"));
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
