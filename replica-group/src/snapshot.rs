//! The group's state as the log sees it: a checkpoint of the data, and the raft snapshot
//! that stands for it.
//!
//! The keys and values, and the group's metadata (`Image`: both configurations, every
//! shard's phase with its duplicate table and clock, the session timeout, the applied
//! index and the cluster time), live
//! in the group's [`Data`]. Log compaction encodes none of it: the host checkpoints the
//! data (durable through the applied index, [`Replicated::checkpoint`]) and only then
//! compacts the log through that index, with a raft snapshot whose bytes are a
//! `Marker` (the group and the index). Restart opens the data where its last
//! checkpoint left it, at or past the marker, and replays the log from there. A
//! follower whose log is behind the leader's compacted log copies another replica's data
//! instead (`catch_up.rs`), then steps the marker into raft.
//!
//! A deleted shard is removed from the data and, with the next compaction (at once after
//! a deletion, see `Machine::take_must_snapshot`), from the log: its bytes leave the disk
//! (6.824 challenge 1).
//!
//! Decoding checks the invariants of [`GroupState`] and refuses, rather than trusts,
//! bytes that break them.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shardkv_proto::{Config, GroupId, Millis, NO_GROUP};

use crate::data::{Data, DataError, DataView};
use crate::message::{Entry, MAX_ENTRY_BYTES};
use crate::phase::Phase;
use crate::state::GroupState;
use crate::{Index, SnapshotError};
use shardkv_raft::{decode_image, encode_image, Replicated, SnapshotEncoder};

/// The format version of the group's metadata and of its snapshot marker (5: sessions
/// and shards keep cluster time).
pub const SNAPSHOT_VERSION: u32 = 5;

/// An image of version [`SNAPSHOT_VERSION`] in `bytes`, read with at most `max_bytes` of
/// allocation, once `check` finds its invariants hold.
fn decode_group_image<T: serde::de::DeserializeOwned>(
    max_bytes: u64,
    bytes: &[u8],
    check: impl Fn(&T) -> Result<(), String>,
) -> Result<T, SnapshotError> {
    decode_image(SNAPSHOT_VERSION, max_bytes, bytes, &check)
}

/// The largest metadata [`GroupState::open`] and a catch-up accept (bounds allocation on
/// a corrupt length prefix): configurations and duplicate tables, never keys.
pub const MAX_META_BYTES: u64 = 1 << 30;

/// The group's metadata in its data's meta table: an [`Image`].
pub(crate) const META_NAME: &str = "group";

/// The group's metadata; see the module docs.
#[derive(Serialize, Deserialize)]
struct Image {
    gid: GroupId,
    session_timeout_ms: Millis,
    config: Config,
    prev: Config,
    shards: Vec<Phase>,
    applied_index: Index,
    time: Millis,
}

/// A raft snapshot's bytes: which group's data it stands for, through its log index.
#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    gid: GroupId,
}

impl Replicated for GroupState {
    type Command = Entry;
    const MAX_COMMAND_BYTES: u64 = MAX_ENTRY_BYTES;

    fn applied_index(&self) -> Index {
        self.applied_index
    }

    fn time(&self) -> Millis {
        self.time
    }

    /// A membership change or an undecodable entry: no time of its own.
    fn skip(&mut self, index: Index) -> Result<(), String> {
        (self.advance_to(index, self.time)).map_err(|error| error.to_string())
    }

    /// Commits the Ready's changes to the data, with the applied index; flushes them
    /// with the group's metadata once the data holds enough, and starts a checkpoint
    /// asked for while a flush was under way once it has ended.
    fn commit(&mut self) -> Result<(), String> {
        let flush = |state: &mut Self| -> Result<(), DataError> {
            state.data.commit(state.applied_index)?;
            if state.checkpoint_wanted && !state.data.is_busy() {
                state.start_checkpoint(false)?;
            } else if state.data.wants_flush() {
                state.save_meta()?;
                state.data.flush()?;
            }
            Ok(())
        };
        flush(self).map_err(|error| error.to_string())
    }

    /// Starts making the data durable through the applied index, metadata included (on
    /// the data's background, see `data/background.rs`; once the flush under way, if
    /// any, has ended).
    fn checkpoint(&mut self, wait: bool) -> Result<(), String> {
        self.start_checkpoint(wait)
            .map_err(|error| error.to_string())
    }

    fn durable_index(&self) -> Index {
        self.data.durable_index()
    }

    /// The marker: the data, checkpointed through the applied index, is the state.
    fn snapshot(&self) -> Result<SnapshotEncoder, String> {
        let marker = Marker { gid: self.gid };
        Ok(Box::new(move || encode_image(SNAPSHOT_VERSION, &marker)))
    }

    /// Checks that the data holds the state through `index` (it was checkpointed there
    /// before the log was compacted, or copied from another replica before the marker
    /// was stepped into raft); there is nothing to load.
    fn restore(&mut self, bytes: &[u8], index: Index) -> Result<(), SnapshotError> {
        let marker: Marker = decode_group_image(1 << 10, bytes, |_| Ok(()))?;
        if marker.gid != self.gid {
            return Err(SnapshotError::Invalid(format!(
                "snapshot of group {}, this is group {}",
                marker.gid, self.gid
            )));
        }
        if self.applied_index < index {
            return Err(SnapshotError::Storage(format!(
                "the log is compacted through index {index} but the data holds only \
                 through {}: its checkpoint was lost",
                self.applied_index
            )));
        }
        Ok(())
    }
}

impl GroupState {
    /// The whole state, metadata and every key, as bytes: for comparing replicas in
    /// tests and tools. It reads every key into memory: not for large data.
    pub fn dump(&self) -> Result<Vec<u8>, DataError> {
        let mut keys = BTreeMap::new();
        for (shard, phase) in self.shards().enumerate() {
            if phase.holds_keys() {
                let chunk = self.data.chunk(shard, None, usize::MAX)?;
                keys.insert(shard, chunk.pairs);
            }
        }
        Ok(encode_image(SNAPSHOT_VERSION, &(self.image(), keys)))
    }

    /// Resumes the state `data` holds (as of its applied index: the log replays from
    /// there), or a fresh one, as [`GroupState::with_session_timeout`], when it holds
    /// none.
    pub fn open(
        gid: GroupId,
        nshards: usize,
        timeout_ms: Millis,
        data: Data,
    ) -> Result<Self, DataError> {
        let Some(bytes) = data.meta(META_NAME)? else {
            return Self::with_session_timeout(gid, nshards, timeout_ms, data);
        };
        let stored = |reason: String| DataError(format!("the stored group state: {reason}"));
        let image =
            check_meta(&bytes, (gid, nshards, timeout_ms), data.applied_index()).map_err(stored)?;
        tracing::info!(
            gid,
            applied = image.applied_index,
            "group state resumed from its data"
        );
        Ok(GroupState {
            gid,
            session_timeout_ms: timeout_ms,
            config: image.config,
            prev: image.prev,
            shards: image.shards.into_iter().map(Arc::new).collect(),
            applied_index: image.applied_index,
            time: image.time,
            data,
            checkpoint_wanted: false,
        })
    }

    /// The data, the state dropped (to open it again, [`GroupState::open`]).
    pub fn into_data(self) -> Data {
        self.data
    }

    /// One consistent point of the state, for another replica's catch-up: a view of
    /// the data and the metadata there.
    pub fn view(&mut self) -> Result<(DataView, Vec<u8>), DataError> {
        self.save_meta()?;
        let view = self.data.view()?;
        let meta = view
            .meta(META_NAME)?
            .ok_or_else(|| DataError("a view without the group's metadata".into()))?;
        Ok((view, meta))
    }

    /// The data, to stage another replica's state in ([`Data::stage_begin`],
    /// [`Data::stage`]; [`GroupState::switch_to_staged`] ends it).
    pub(crate) fn data_mut(&mut self) -> &mut Data {
        &mut self.data
    }

    /// Switches to the staged data, at `applied` with the metadata `meta` (from another
    /// replica's [`GroupState::view`]), durably; refuses metadata that does not decode,
    /// breaks an invariant or is another group's, leaving everything as it was.
    pub(crate) fn switch_to_staged(&mut self, meta: &[u8], applied: Index) -> Result<(), String> {
        let expected = (self.gid, self.shards.len(), self.session_timeout_ms);
        let image = check_meta(meta, expected, applied)?;
        self.data
            .stage_finish(&[(META_NAME, meta)], applied)
            .map_err(|error| error.to_string())?;
        self.load(image);
        Ok(())
    }

    /// A checkpoint through the applied index, metadata included, now if the data is
    /// not busy with a flush (or, with `wait`, after it), else once it is not.
    fn start_checkpoint(&mut self, wait: bool) -> Result<(), DataError> {
        self.save_meta()?;
        self.checkpoint_wanted = !self.data.checkpoint(wait)?;
        Ok(())
    }

    /// Writes the group's metadata (configurations, phases with their duplicate tables,
    /// the applied index) into the data and commits it, so the next flush holds it.
    fn save_meta(&mut self) -> Result<(), DataError> {
        let meta = encode_image(SNAPSHOT_VERSION, &self.image());
        self.data.put_meta(META_NAME, &meta)?;
        self.data.commit(self.applied_index)
    }

    fn image(&self) -> Image {
        Image {
            gid: self.gid,
            session_timeout_ms: self.session_timeout_ms,
            config: self.config.clone(),
            prev: self.prev.clone(),
            shards: self.shards().cloned().collect(),
            applied_index: self.applied_index,
            time: self.time,
        }
    }

    /// Takes the metadata of `image` (checked) in; the data already holds its keys.
    fn load(&mut self, image: Image) {
        // Every field named, so that a new one cannot be left behind. The group and the
        // timeout were checked to be this replica's.
        let Image {
            gid: _,
            session_timeout_ms: _,
            config,
            prev,
            shards,
            applied_index,
            time,
        } = image;
        self.config = config;
        self.prev = prev;
        self.shards = shards.into_iter().map(Arc::new).collect();
        self.applied_index = applied_index;
        self.time = time;
    }
}

/// The metadata in `bytes`, checked: it decodes, keeps the invariants, is of this group
/// (`(gid, nshards, session timeout)` as `expected`) and stands at `applied`.
fn check_meta(
    bytes: &[u8],
    expected: (GroupId, usize, Millis),
    applied: Index,
) -> Result<Image, String> {
    let image: Image = decode_group_image(MAX_META_BYTES, bytes, check_image)
        .map_err(|error| error.to_string())?;
    let found = (image.gid, image.shards.len(), image.session_timeout_ms);
    if found != expected {
        return Err(format!(
            "group, shards, session timeout {found:?}; this replica has {expected:?}"
        ));
    }
    if image.applied_index != applied {
        return Err(format!(
            "applied index {}, the data's {applied}",
            image.applied_index
        ));
    }
    Ok(image)
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
    if image.session_timeout_ms == 0 {
        return Err("session timeout of 0 ms".into());
    }
    for (shard, phase) in image.shards.iter().enumerate() {
        let owned = config.shards[shard] == gid;
        let ok = match phase {
            Phase::Absent => !owned,
            Phase::Serving(_) => owned,
            Phase::Pulling { from, .. } | Phase::Acking { from, .. } => {
                owned && prev.shards[shard] == *from
            }
            // Given away by this group, or held for an abandoned group before (whose
            // owner was then that group, never nobody).
            Phase::Offering { to, .. } => {
                let owner = config.shards[shard];
                owner == *to && owner != gid && owner != NO_GROUP && prev.shards[shard] != NO_GROUP
            }
            Phase::Held { .. } => !owned,
        };
        if !ok {
            return Err(format!(
                "shard {shard} is {} in config {}",
                phase.name(),
                config.num
            ));
        }
        // A shard's sessions are heard by its clock, which never runs ahead of now.
        if let Some(store) = phase.store() {
            let now = store.clock.at(image.time);
            let late = store.sessions.sessions().values().any(|s| s.heard > now);
            if late || store.sessions.forgotten() > now {
                return Err(format!("shard {shard}: a session heard after its clock"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Images of the current version read; any other version is refused as such.
    #[test]
    fn only_the_current_version_reads() {
        let marker = Marker { gid: 7 };
        let bytes = encode_image(SNAPSHOT_VERSION, &marker);
        let read: Marker = decode_group_image(1 << 10, &bytes, |_| Ok(())).expect("reads");
        assert_eq!(read.gid, 7);
        let old = encode_image(4, &marker);
        let refused = decode_group_image::<Marker>(1 << 10, &old, |_| Ok(()));
        assert!(
            matches!(refused, Err(SnapshotError::Version { found: 4, .. })),
            "{refused:?}"
        );
    }
}
