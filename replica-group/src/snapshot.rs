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

/// The group's metadata in its data's meta table: an [`Image`] with no keys.
const META_NAME: &str = "group";

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

    /// Commits the Ready's changes to the data, with the applied index; flushes them
    /// with the group's metadata once the data holds enough.
    fn commit(&mut self) -> Result<(), String> {
        let flush = |state: &mut Self| -> Result<(), DataError> {
            state.data.commit(state.applied_index)?;
            if state.data.wants_flush() {
                state.save_meta()?;
                state.data.flush()?;
            }
            Ok(())
        };
        flush(self).map_err(|error| error.to_string())
    }

    /// Makes the data durable through the applied index, metadata included.
    fn checkpoint(&mut self) -> Result<(), String> {
        let run = |state: &mut Self| -> Result<Index, DataError> {
            state.save_meta()?;
            state.data.checkpoint()?.run()
        };
        run(self).map(drop).map_err(|error| error.to_string())
    }

    /// Reads every shard's data now; encoding runs later.
    fn snapshot(&self) -> Result<SnapshotEncoder, String> {
        let image = self.image().map_err(|error| error.to_string())?;
        Ok(Box::new(move || encode_image(SNAPSHOT_VERSION, &image)))
    }

    /// Only a snapshot of this group; nothing to do when the data already holds the
    /// state through `index` (a restart whose data was checkpointed at or after it).
    fn restore(&mut self, bytes: &[u8], index: Index) -> Result<(), SnapshotError> {
        if self.applied_index >= index {
            tracing::info!(
                gid = self.gid,
                index,
                applied = self.applied_index,
                "the data holds the snapshot's state already"
            );
            return Ok(());
        }
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

    /// Resumes the state `data` holds (as of its applied index: the log replays from
    /// there), or a fresh one, as [`GroupState::with_session_timeout`], when it holds
    /// none.
    pub fn open(
        gid: GroupId,
        nshards: usize,
        timeout_entries: u64,
        data: Data,
    ) -> Result<Self, DataError> {
        let Some(bytes) = data.meta(META_NAME)? else {
            return Self::with_session_timeout(gid, nshards, timeout_entries, data);
        };
        let stored = |reason: String| DataError(format!("the stored group state: {reason}"));
        let image: Image = decode_image(SNAPSHOT_VERSION, MAX_SNAPSHOT_BYTES, &bytes, check_image)
            .map_err(|error| stored(error.to_string()))?;
        let found = (image.gid, image.shards.len(), image.session_timeout_entries);
        if found != (gid, nshards, timeout_entries) {
            return Err(stored(format!(
                "group, shards, session timeout {found:?}; this replica has {:?}",
                (gid, nshards, timeout_entries)
            )));
        }
        if image.applied_index != data.applied_index() {
            return Err(stored(format!(
                "applied index {}, the data's {}",
                image.applied_index,
                data.applied_index()
            )));
        }
        tracing::info!(
            gid,
            applied = image.applied_index,
            "group state resumed from its data"
        );
        Ok(GroupState {
            gid,
            session_timeout_entries: timeout_entries,
            config: image.config,
            prev: image.prev,
            shards: image.shards.into_iter().map(Arc::new).collect(),
            applied_index: image.applied_index,
            data,
        })
    }

    /// Writes the group's metadata (configurations, phases with their duplicate tables,
    /// the applied index) into the data and commits it, so the next flush holds it.
    fn save_meta(&mut self) -> Result<(), DataError> {
        let image = Image {
            gid: self.gid,
            session_timeout_entries: self.session_timeout_entries,
            config: self.config.clone(),
            prev: self.prev.clone(),
            shards: self.shards().cloned().collect(),
            data: self.shards.iter().map(|_| ShardData::default()).collect(),
            applied_index: self.applied_index,
        };
        self.data
            .put_meta(META_NAME, &encode_image(SNAPSHOT_VERSION, &image))?;
        self.data.commit(self.applied_index)
    }

    fn image(&self) -> Result<Image, DataError> {
        let mut data = Vec::with_capacity(self.shards.len());
        for (shard, phase) in self.shards().enumerate() {
            let pairs = match phase.holds_keys() {
                true => self.data.chunk(shard, None, usize::MAX)?.pairs,
                false => Vec::new(),
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
        (!phase.holds_keys() && !data.0.is_empty()).then_some(shard)
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
            Phase::Pulling { from, .. } | Phase::Acking { from, .. } => {
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
