//! [`Pending`]: the writes a [`super::Data`] holds in memory between flushes, in order,
//! with an index that answers reads over them.
//!
//! Writing every Ready into the engine costs it a write per Ready: with redb a rewrite of
//! each touched B-tree leaf (copy on write), with fjall a journal record and a lock. The
//! writes are held here instead and flushed as one engine write once they pass
//! [`FLUSH_BYTES`] (and before a checkpoint or a view). Nothing is lost by waiting: a
//! flush is not durable either, and the raft log holds every entry since the last
//! checkpoint.
//!
//! Only the latest write of each key is held. A dropped shard (or a clear) removes the
//! held writes it covers, so the flush can write the drops first and then every held key
//! in key order and end where the writes in order would.

use std::collections::{BTreeMap, BTreeSet};

use shardkv_proto::ShardId;

use super::engine::{Table, Writer};
use super::{shard_range, DataError};

/// Past this many held bytes, [`super::Data::wants_flush`]. A node checkpoints (a flush
/// that is durable) at about the same amount of raft log, so on a node most flushes are
/// checkpoints.
pub const FLUSH_BYTES: usize = 32 << 20;

/// The held writes; see the module docs.
#[derive(Debug, Default)]
pub(super) struct Pending {
    /// The latest held value of each key written (`None`: deleted).
    latest: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Held values of `meta`.
    meta: BTreeMap<String, Vec<u8>>,
    /// Shards dropped since the flush: what the engine holds of them is gone.
    dropped: BTreeSet<ShardId>,
    /// Everything was cleared since the flush: the engine holds nothing visible.
    cleared: bool,
    bytes: usize,
}

/// What the held writes say of one key.
pub(super) enum Held<'p> {
    /// This value (`None`: deleted).
    Value(Option<&'p Vec<u8>>),
    /// Nothing held: the engine's value stands, unless `hidden`.
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

    /// True when the engine's keys of `shard` are gone (dropped or cleared).
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

    /// Writes everything held into `writer`: the clear and the drops first, then every
    /// held key in key order (see the module docs).
    pub(super) fn flush_into(&self, writer: &mut dyn Writer) -> Result<(), DataError> {
        if self.cleared {
            writer.delete_range(Table::Kv, &[], None)?;
            writer.delete_range(Table::Meta, &[], None)?;
        }
        for &shard in &self.dropped {
            let (start, end) = shard_range(shard);
            writer.delete_range(Table::Kv, &start, end.as_deref())?;
        }
        for (name, bytes) in &self.meta {
            writer.put(Table::Meta, name.as_bytes(), bytes)?;
        }
        for (key, value) in &self.latest {
            match value {
                Some(value) => writer.put(Table::Kv, key, value)?,
                None => writer.delete(Table::Kv, key)?,
            }
        }
        Ok(())
    }
}
