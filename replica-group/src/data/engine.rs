//! [`Engine`]: the ordered key/value store under a [`super::Data`], behind a trait so
//! that real nodes and the simulator each run the engine that suits them (see
//! `docs/storage.md`): fjall ([`super::FjallEngine`]) in a node's data directory, redb
//! ([`super::RedbEngine`]) over the simulator's disk. Both keep the same three tables and give
//! the same guarantees, which `tests/tests/data_contract.rs` checks of each:
//!
//! - a [`Engine::write`] is atomic: after a crash the tables hold all of it or none;
//! - a durable write makes it and every write before it survive a crash; a non-durable
//!   one may be lost, but never without the writes after it (a crash keeps a prefix);
//! - a [`Snapshot`] is one point, unchanged by later writes.

use super::DataError;

/// The tables of a group's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// Keys and values: shard (u32, big-endian) ++ key ─► value.
    Kv,
    /// A follower's catch-up in progress, the same layout as [`Table::Kv`].
    Staged,
    /// Metadata: a name (UTF-8) ─► the caller's bytes.
    Meta,
}

/// `(key, value)` pairs in key order.
pub type Pairs<'a> = Box<dyn Iterator<Item = Result<(Vec<u8>, Vec<u8>), DataError>> + 'a>;

/// One consistent point of an engine's tables.
pub trait Snapshot: Send {
    /// The value of `key` in `table`.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, DataError>;

    /// The pairs of `table` from `start` (after it, when `exclusive`) to `end` (excluded;
    /// `None`: to the end).
    fn range<'a>(
        &'a self,
        table: Table,
        start: &[u8],
        exclusive: bool,
        end: Option<&[u8]>,
    ) -> Result<Pairs<'a>, DataError>;
}

/// The writes of one [`Engine::write`].
pub trait Writer {
    /// Sets `key` in `table` to `value`.
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), DataError>;
    /// Removes `key` from `table`.
    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), DataError>;
    /// Removes the keys of `table` from `start` to `end` (excluded; `None`: to the end).
    fn delete_range(
        &mut self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Result<(), DataError>;
    /// Makes the staged table the key table: the key table's pairs are gone. What the
    /// staged table holds afterwards is unspecified: empty it before staging again.
    fn promote_staged(&mut self) -> Result<(), DataError>;
}

/// The writes of one [`Engine::write`], given a [`Writer`].
pub type Fill<'f> = &'f mut dyn FnMut(&mut dyn Writer) -> Result<(), DataError>;

/// An ordered key/value store; see the module docs.
pub trait Engine: Send + Sync {
    /// A consistent point of the tables as of the last write that returned.
    fn snapshot(&self) -> Result<Box<dyn Snapshot>, DataError>;

    /// Applies what `fill` writes, atomically; durably (with every write before it) when
    /// `durable`.
    fn write(&self, durable: bool, fill: Fill<'_>) -> Result<(), DataError>;

    /// The bytes of keys and values in the key table (its live data, not the files'
    /// size), as of the last write. It may scan the table.
    fn stored_bytes(&self) -> Result<u64, DataError>;
}
