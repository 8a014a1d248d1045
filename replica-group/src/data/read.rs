//! Reading a [`super::Data`]: from a snapshot of its engine, merged with the writes held
//! since the last flush, and at one consistent point ([`DataView`]).

use std::iter::Peekable;

use shardkv_proto::ShardId;

use super::engine::{Snapshot, Table};
use super::pending::Pending;
use super::{kv_key, shard_range, DataError};
use crate::Index;

/// Up to a byte budget of one shard's `(key, value)` pairs, in key order, and where the
/// next chunk starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chunk {
    /// The pairs.
    pub pairs: Vec<(Vec<u8>, Vec<u8>)>,
    /// The last key of this chunk when more follow (pass it as `after`); `None` at the
    /// shard's end.
    pub next: Option<Vec<u8>>,
}

/// One consistent point of a [`super::Data`]; see the module docs.
pub struct DataView {
    pub(super) snapshot: Box<dyn Snapshot>,
    pub(super) applied: Index,
}

impl DataView {
    /// The applied index of the data this view shows.
    pub fn applied_index(&self) -> Index {
        self.applied
    }

    /// As [`super::Data::chunk`], at this view's point.
    pub fn chunk(
        &self,
        shard: ShardId,
        after: Option<&[u8]>,
        max_bytes: usize,
    ) -> Result<Chunk, DataError> {
        chunk(&*self.snapshot, None, shard, after, max_bytes)
    }

    /// Up to `max_bytes` of every stored pair after stored key `after` (from the first
    /// when `None`), keys as stored (shard prefix included): what a follower's catch-up
    /// copies ([`super::Data::stage`]). At least one pair when any is left; `next` is
    /// the last key when more follow.
    pub fn stored_chunk(&self, after: Option<&[u8]>, max_bytes: usize) -> Result<Chunk, DataError> {
        let start = after.map_or_else(Vec::new, <[u8]>::to_vec);
        take_chunk(
            &*self.snapshot,
            None,
            (start, after.is_some(), None),
            max_bytes,
            |key| key.to_vec(),
        )
    }

    /// As [`super::Data::meta`], at this view's point.
    pub fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, DataError> {
        self.snapshot.get(Table::Meta, name.as_bytes())
    }
}

/// The held writes over a read of one shard, newest first (the flushing ones only when
/// the newest do not hide the shard), and whether they hide what the engine holds of
/// it.
pub(super) struct Layers<'p> {
    pub(super) held: [Option<&'p Pending>; 2],
    pub(super) db_hidden: bool,
}

/// Held writes over a read (`None`: the database alone, as a view reads).
pub(super) type Over<'p> = Option<&'p Layers<'p>>;

/// A key range: from the first key (after it when `exclusive`) to the last (excluded;
/// `None`: to the end).
type Range = (Vec<u8>, bool, Option<Vec<u8>>);

/// Every `(full key, value)` of the key table from `start` (after it when `exclusive`)
/// to `end`, the database's merged with the held writes, in key order, until `visit`
/// says stop.
fn scan<'p>(
    snapshot: &dyn Snapshot,
    over: Over<'p>,
    (start, exclusive, end): Range,
    mut visit: impl FnMut(&[u8], &[u8]) -> bool,
) -> Result<(), DataError> {
    let hidden = over.is_some_and(|layers| layers.db_hidden);
    let stored = match hidden {
        true => None,
        false => Some(snapshot.range(Table::Kv, &start, exclusive, end.as_deref())?),
    };
    let mut stored = stored.into_iter().flatten().peekable();
    let [newest, flushing] = over.map_or([None, None], |layers| layers.held);
    let range = |layer: Option<&'p Pending>| {
        let range = layer.map(|pending| pending.range(start.clone(), exclusive, end.clone()));
        range.into_iter().flatten().peekable()
    };
    let mut held = Newest {
        newest: range(newest),
        older: range(flushing),
    }
    .peekable();
    loop {
        let stored_key = peek_stored(&mut stored)?;
        let next = match (stored_key, held.peek()) {
            (None, None) => return Ok(()),
            (Some(key), Some((held_key, _))) if *held_key <= key.as_slice() => {
                if *held_key == key.as_slice() {
                    stored.next();
                }
                Merged::Held(held.next().expect("peeked"))
            }
            (Some(_), _) => Merged::Stored(stored.next().expect("peeked")?),
            (None, Some(_)) => Merged::Held(held.next().expect("peeked")),
        };
        let go_on = match next {
            Merged::Held((key, Some(value))) => visit(key, value),
            Merged::Held((_, None)) => true,
            Merged::Stored((key, value)) => visit(&key, &value),
        };
        if !go_on {
            return Ok(());
        }
    }
}

/// Two layers of held writes merged in key order, the newer's write of a key winning.
struct Newest<I: Iterator> {
    newest: Peekable<I>,
    older: Peekable<I>,
}

impl<'p, I> Iterator for Newest<I>
where
    I: Iterator<Item = (&'p [u8], Option<&'p Vec<u8>>)>,
{
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        match (self.newest.peek(), self.older.peek()) {
            (Some((new, _)), Some((old, _))) if new == old => {
                self.older.next();
                self.newest.next()
            }
            (Some((new, _)), Some((old, _))) if old < new => self.older.next(),
            (Some(_), _) => self.newest.next(),
            (None, _) => self.older.next(),
        }
    }
}

type StoredPair = (Vec<u8>, Vec<u8>);

enum Merged<'p> {
    Held((&'p [u8], Option<&'p Vec<u8>>)),
    Stored(StoredPair),
}

/// The key of the next stored pair, if any (an error is the scan's).
fn peek_stored<I>(stored: &mut Peekable<I>) -> Result<Option<Vec<u8>>, DataError>
where
    I: Iterator<Item = Result<StoredPair, DataError>>,
{
    match stored.peek() {
        None => Ok(None),
        Some(Ok((key, _))) => Ok(Some(key.clone())),
        Some(Err(_)) => match stored.next() {
            Some(Err(error)) => Err(error),
            _ => unreachable!("peeked an error"),
        },
    }
}

/// As [`super::Data::chunk`], over `over`.
pub(super) fn chunk(
    snapshot: &dyn Snapshot,
    over: Over<'_>,
    shard: ShardId,
    after: Option<&[u8]>,
    max_bytes: usize,
) -> Result<Chunk, DataError> {
    let (first, end) = shard_range(shard);
    let start = after.map_or(first, |key| kv_key(shard, key));
    take_chunk(
        snapshot,
        over,
        (start, after.is_some(), end),
        max_bytes,
        |key| key[4..].to_vec(),
    )
}

/// Up to `max_bytes` of the pairs in `range` (at least one when any), their keys as
/// `name` gives them.
fn take_chunk(
    snapshot: &dyn Snapshot,
    over: Over<'_>,
    range: Range,
    max_bytes: usize,
    name: impl Fn(&[u8]) -> Vec<u8>,
) -> Result<Chunk, DataError> {
    let mut chunk = Chunk::default();
    let mut bytes: usize = 0;
    scan(snapshot, over, range, |key, value| {
        let size = key.len() + value.len();
        if !chunk.pairs.is_empty() && bytes.saturating_add(size) > max_bytes {
            chunk.next = chunk.pairs.last().map(|(key, _)| key.clone());
            return false;
        }
        bytes += size;
        chunk.pairs.push((name(key), value.to_vec()));
        true
    })?;
    Ok(chunk)
}
