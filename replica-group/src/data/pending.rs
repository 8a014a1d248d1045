//! [`Pending`]: the writes a [`super::Data`] holds in memory between flushes, in order,
//! with an index that answers reads over them.
//!
//! Committing every Ready as its own redb transaction rewrites each touched B-tree leaf
//! (copy on write) per Ready, and with dozens of random keys per Ready that is most of the
//! cost of a write. The writes are held here instead and flushed as one transaction once
//! they pass [`FLUSH_BYTES`] (and before a checkpoint or a view): a leaf then takes many
//! Readies' writes at once. Nothing is lost by waiting: a flush is not durable either,
//! and the raft log holds every entry since the last checkpoint.
//!
//! Only the latest write of each key is held. A dropped shard (or a clear) removes the
//! held writes it covers, so the flush can write the drops first and then every held key
//! in key order (sequential in the B-tree) and end where the writes in order would.

use std::collections::{BTreeMap, BTreeSet};

use redb::{StorageError, Table, WriteTransaction};
use shardkv_proto::ShardId;

use super::{bounds, failed, shard_range, DataError, KV, META};

/// Past this many held bytes, [`super::Data::wants_flush`]. A node checkpoints (a flush
/// that is durable) at about the same amount of raft log, so on a node most flushes are
/// checkpoints; a non-durable flush also grows redb's file, which cannot reuse the pages
/// it frees before the next durable commit.
pub const FLUSH_BYTES: usize = 32 << 20;

/// The held writes; see the module docs.
#[derive(Debug, Default)]
pub(super) struct Pending {
    /// The latest held value of each key written (`None`: deleted).
    latest: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Held values of `meta`.
    meta: BTreeMap<String, Vec<u8>>,
    /// Shards dropped since the flush: what the database holds of them is gone.
    dropped: BTreeSet<ShardId>,
    /// Everything was cleared since the flush: the database holds nothing visible.
    cleared: bool,
    bytes: usize,
}

/// What the held writes say of one key.
pub(super) enum Held<'p> {
    /// This value (`None`: deleted).
    Value(Option<&'p Vec<u8>>),
    /// Nothing held: the database's value stands, unless `hidden`.
    Unknown { hidden: bool },
}

impl Pending {
    /// True when nothing is held.
    pub(super) fn is_empty(&self) -> bool {
        self.latest.is_empty() && self.meta.is_empty() && self.dropped.is_empty() && !self.cleared
    }

    /// True once the held writes should be flushed.
    pub(super) fn is_full(&self) -> bool {
        self.bytes >= FLUSH_BYTES
    }

    /// True once twice as much is held: a flush must wait for the one under way.
    pub(super) fn is_over_full(&self) -> bool {
        self.bytes >= 2 * FLUSH_BYTES
    }

    pub(super) fn put(&mut self, key: Vec<u8>, value: &[u8]) {
        self.bytes += key.len() + value.len() + 48;
        self.latest.insert(key, Some(value.to_vec()));
    }

    pub(super) fn delete(&mut self, key: Vec<u8>) {
        self.bytes += key.len() + 48;
        self.latest.insert(key, None);
    }

    pub(super) fn drop_shard(&mut self, shard: ShardId) {
        let (start, end) = shard_range(shard);
        self.latest.retain(|key, _| {
            key.as_slice() < start.as_slice() || end.as_ref().is_some_and(|end| key >= end)
        });
        self.dropped.insert(shard);
        self.bytes += 48;
    }

    pub(super) fn put_meta(&mut self, name: &str, bytes: &[u8]) {
        self.bytes += name.len() + bytes.len() + 48;
        self.meta.insert(name.to_string(), bytes.to_vec());
    }

    pub(super) fn clear(&mut self) {
        *self = Pending {
            cleared: true,
            ..Pending::default()
        };
    }

    /// What is held of full key `key` (in `shard`).
    pub(super) fn get(&self, shard: ShardId, key: &[u8]) -> Held<'_> {
        match self.latest.get(key) {
            Some(value) => Held::Value(value.as_ref()),
            None => Held::Unknown {
                hidden: self.hides(shard),
            },
        }
    }

    /// What is held of meta `name`: `Some(value)`, or `None` with whether the database's
    /// value is hidden (cleared).
    pub(super) fn meta(&self, name: &str) -> Result<&Vec<u8>, bool> {
        self.meta.get(name).ok_or(self.cleared)
    }

    /// True when the database's keys of `shard` are gone (dropped or cleared).
    pub(super) fn hides(&self, shard: ShardId) -> bool {
        self.cleared || self.dropped.contains(&shard)
    }

    /// The held values from `start` (after it, when `exclusive`) to `end`, in key order.
    pub(super) fn range(
        &self,
        start: Vec<u8>,
        exclusive: bool,
        end: Option<Vec<u8>>,
    ) -> impl Iterator<Item = (&[u8], Option<&Vec<u8>>)> + '_ {
        self.latest
            .range(start.clone()..)
            .skip_while(move |(key, _)| exclusive && **key == start)
            .take_while(move |(key, _)| end.as_ref().is_none_or(|end| *key < end))
            .map(|(key, value)| (key.as_slice(), value.as_ref()))
    }

    /// Writes everything held into `txn`: the clear and the drops first, then every
    /// held key in key order (see the module docs).
    pub(super) fn flush_into(&self, txn: &WriteTransaction) -> Result<(), DataError> {
        let mut kv = txn.open_table(KV).map_err(failed("open kv"))?;
        let mut meta = txn.open_table(META).map_err(failed("open meta"))?;
        let flush = failed("flush");
        if self.cleared {
            kv.retain(|_, _| false).map_err(&flush)?;
            meta.retain(|_, _| false).map_err(&flush)?;
        }
        for &shard in &self.dropped {
            let (start, end) = shard_range(shard);
            drop_range(&mut kv, &start, end.as_deref()).map_err(&flush)?;
        }
        for (name, bytes) in &self.meta {
            meta.insert(name.as_str(), bytes.as_slice())
                .map_err(&flush)?;
        }
        for (key, value) in &self.latest {
            match value {
                Some(value) => kv.insert(key.as_slice(), value.as_slice()).map(drop),
                None => kv.remove(key.as_slice()).map(drop),
            }
            .map_err(&flush)?;
        }
        Ok(())
    }
}

type BytesTable<'t> = Table<'t, &'static [u8], &'static [u8]>;

fn drop_range(
    table: &mut BytesTable<'_>,
    start: &[u8],
    end: Option<&[u8]>,
) -> Result<(), StorageError> {
    table.retain_in(bounds(start, false, end), |_, _| false)
}
