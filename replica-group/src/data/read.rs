//! Reading a [`super::Data`]: from its open write transaction or a read transaction
//! ([`Tables`]), and at one consistent point ([`DataView`]).

use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use shardkv_proto::{ClientId, ShardId};

use super::{bounds, failed, kv_key, shard_range, DataError, KV, META, SESSIONS};
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

/// One consistent point of a [`Data`]; see the module docs.
pub struct DataView {
    pub(super) txn: ReadTransaction,
    pub(super) applied: Index,
}

impl DataView {
    /// The applied index of the data this view shows.
    pub fn applied_index(&self) -> Index {
        self.applied
    }

    /// As [`Data::chunk`], at this view's point.
    pub fn chunk(
        &self,
        shard: ShardId,
        after: Option<&[u8]>,
        max_bytes: usize,
    ) -> Result<Chunk, DataError> {
        Tables::Read(&self.txn).chunk(shard, after, max_bytes)
    }

    /// As [`Data::sessions`], at this view's point.
    pub fn sessions(&self, shard: ShardId) -> Result<Vec<(ClientId, Vec<u8>)>, DataError> {
        Tables::Read(&self.txn).sessions(shard)
    }
}

/// The transaction reads go through.
pub(super) enum Tables<'t> {
    Write(&'t WriteTransaction),
    Read(&'t ReadTransaction),
}

/// Runs `$body` with `$table` bound to `$definition` opened in `$tables` (a write
/// transaction's table and a read transaction's are different types); a table never
/// written reads as empty.
macro_rules! with_table {
    ($tables:expr, $definition:expr, $empty:expr, |$table:ident| $body:expr) => {
        match $tables {
            Tables::Write(txn) => {
                let $table = txn.open_table($definition).map_err(failed("open table"))?;
                $body
            }
            Tables::Read(txn) => match txn.open_table($definition) {
                Ok($table) => $body,
                Err(redb::TableError::TableDoesNotExist(_)) => Ok($empty),
                Err(error) => Err(failed("open table")(error)),
            },
        }
    };
}

impl Tables<'_> {
    pub(super) fn get(
        &self,
        definition: TableDefinition<&[u8], &[u8]>,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, DataError> {
        with_table!(self, definition, None, |table| {
            let value = table.get(key).map_err(failed("get"))?;
            Ok(value.map(|value| value.value().to_vec()))
        })
    }

    pub(super) fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, DataError> {
        with_table!(self, META, None, |table| {
            let value = table.get(name).map_err(failed("get meta"))?;
            Ok(value.map(|value| value.value().to_vec()))
        })
    }

    pub(super) fn chunk(
        &self,
        shard: ShardId,
        after: Option<&[u8]>,
        max_bytes: usize,
    ) -> Result<Chunk, DataError> {
        let (first, end) = shard_range(shard);
        let start = after.map_or(first, |key| kv_key(shard, key));
        let range = bounds(&start, after.is_some(), end.as_deref());
        with_table!(self, KV, Chunk::default(), |table| {
            let pairs = table.range(range).map_err(failed("scan"))?;
            let mut chunk = Chunk::default();
            let mut bytes: usize = 0;
            for pair in pairs {
                let (key, value) = pair.map_err(failed("scan"))?;
                let (key, value) = (key.value(), value.value());
                let size = key.len() + value.len();
                if !chunk.pairs.is_empty() && bytes.saturating_add(size) > max_bytes {
                    chunk.next = chunk.pairs.last().map(|(key, _)| key.clone());
                    break;
                }
                bytes += size;
                chunk.pairs.push((key[4..].to_vec(), value.to_vec()));
            }
            Ok(chunk)
        })
    }

    pub(super) fn sessions(&self, shard: ShardId) -> Result<Vec<(ClientId, Vec<u8>)>, DataError> {
        let (start, end) = shard_range(shard);
        let range = bounds(&start, false, end.as_deref());
        with_table!(self, SESSIONS, Vec::new(), |table| {
            let pairs = table.range(range).map_err(failed("scan sessions"))?;
            let mut sessions = Vec::new();
            for pair in pairs {
                let (key, value) = pair.map_err(failed("scan sessions"))?;
                let client: [u8; 8] = key.value()[4..]
                    .try_into()
                    .map_err(|_| DataError("a session key of the wrong length".into()))?;
                sessions.push((ClientId::from_be_bytes(client), value.value().to_vec()));
            }
            Ok(sessions)
        })
    }
}
