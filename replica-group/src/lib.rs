//! A shardkv replica group: a Raft-replicated, sharded key/value state machine that
//! follows the shard master's configurations and hands shards to other groups.
//!
//! # What it does
//!
//! Each replica runs a [`Server`] over a `shardkv_raft::Replica`. Clients send
//! Get/Put/Append/Delete ([`shardkv_proto::kv::Request`]) to the leader, which puts the
//! mutations through the log and answers Gets by ReadIndex ([`reads`]: a quorum round,
//! no log entry); every replica applies the mutations to the shard the key belongs to. Each
//! shard has its own data and its own duplicate table (client → latest mutation and its
//! answer), so a retried request takes effect once, and the table moves with the shard.
//!
//! # Configurations, one at a time
//!
//! The leader polls the shard master for configuration `current + 1`, and only when
//! every shard is *stable* (no migration in progress). It proposes the configuration;
//! when it applies, each shard gets its phase ([`phase`]):
//!
//! ```text
//!   owned before | owned after | phase
//!   -------------+-------------+-----------------------------------------------
//!   yes          | yes         | Serving (unchanged: keeps serving, challenge 2)
//!   no (unowned) | yes         | Serving, empty
//!   no (by G)    | yes         | Pulling { from: G }   not served yet
//!   yes          | no (by H)   | Offering { to: H }    frozen, not served
//!   no           | no          | Absent
//! ```
//!
//! A shard is served only in `Serving` or `Acking`, i.e. when the current configuration
//! gives it to this group and its data is here; every other request gets `WrongGroup`.
//! The check is made again when a request's entry applies, so a request proposed before
//! a configuration change and applied after it cannot touch a shard that has left.
//!
//! # Migration: pull, install, acknowledge, delete
//!
//! ```text
//!   new owner B (config n)                         old owner A (config n)
//!   Pulling ── PullShard{n, s, after} ───────────► Offering: answer from applied state
//!           ◄─────── ShardData{n, s, after, kv chunk, next, sessions with the last}
//!   log: InstallShard (one per chunk; after the last) ─► Acking (served)
//!           ── DeleteShard{n, s} ────────────────► log: DeleteShard ─► Absent
//!           ◄──────────────────────── Deleted{n, s}
//!   log: ShardAcked ─► Serving
//! ```
//!
//! **Why pull rather than push.** The group that needs the data is the one that knows
//! when it needs it and can tell when it has it: it drives the retries, installs through
//! its own log, and then sends the acknowledgement that lets the old owner delete, so the
//! whole exchange is driven from one side. With push, the old owner would have to find
//! out whether the new owner has reached configuration `n` yet (a push that arrives
//! early must be refused and retried) and would still need an acknowledgement back
//! before deleting: the same messages plus a readiness handshake. Pull also keeps the old
//! owner passive: answering a pull needs no leader and no log entry.
//!
//! **Why any replica may answer a pull.** Once configuration `n` has applied, an
//! `Offering` shard is frozen: no request may change it (they get `WrongGroup`) and its
//! sessions do not expire. Every replica that applied `n` therefore holds the same bytes,
//! until the deletion, which only happens after the new owner installed them. A replica
//! not yet at `n` answers `NotReady`.
//!
//! **Deletion is safe and durable** (6.824 challenge 1). The old owner deletes only on
//! the new owner's `DeleteShard`, sent after the install entry *applied* (so a quorum of
//! the new owner has it), and deletes through its own log, so every replica deletes the
//! shard from its data, and the log holding it is compacted away at once after. The new owner keeps acknowledging
//! (phase `Acking`) until the old owner answers `Deleted`, and neither group adopts
//! another configuration before its shards are stable; so the old owner cannot move past
//! `n` with a frozen shard left behind, and "I am past `n`" implies "deleted".
//!
//! **A group that died for good** before installing what it was given would hold the
//! old owners `Offering` for ever. Once the operator abandons it (`shardkv abandon`), the
//! old owners keep their frozen copies as `Held` (stable: they move on) and hand them to
//! the shards' next owners, who ask the shard master where the data is ([`abandon`]).
//! `Held` is the one way to move past `n` without deleting; a `Held` shard answers
//! `DeleteShard` with `NotReady`.
//!
//! **Unaffected shards keep serving** (6.824 challenge 2): phases are per shard, and a
//! configuration change touches only the shards that change owner.
//!
//! # Modules
//!
//! - [`message`]: the log entry ([`Entry`]) and its codec; client and migration messages
//!   are in `shardkv_proto::kv`.
//! - [`sessions`], [`store`]: the per-shard duplicate table (a
//!   `shardkv_proto::session::Sessions`, as the shard master's) and key/value semantics.
//! - [`data`]: every shard's keys, values and sessions on disk (redb over a
//!   `shardkv_raft::Disk` file), committed once per Ready with the applied index.
//! - [`phase`]: the per-shard migration phases and their asserted transitions.
//! - [`state`], [`migration`], [`snapshot`]: the replicated state, `apply`, checkpoints
//!   and the marker snapshot; `catch_up.rs`: a follower copying another replica's data.
//! - [`reads`]: linearizable Gets without a log entry.
//! - [`server`], [`poll`](crate::Server::on_response), [`calls`], [`effect`],
//!   [`options`]: the sans-IO replica around the log. The shell (proposal waiters,
//!   applying, snapshot timing, peer messages, syncs, batches, the fatal error) is
//!   `shardkv_raft::Host` / `Service`, shared with the shard master.
//!
//! # Invariants
//!
//! - Configurations are adopted in order, one at a time, only when every shard is stable.
//! - A shard is served only when owned in the current configuration and its data is held.
//! - An old owner deletes a shard only after the new owner applied its install entry.
//! - Same sequence of applied entries ⇒ same state, byte for byte.
//!
//! # Caveats
//!
//! - Gets are answered by the leader only (ReadIndex, no leases); a Get from a fresh
//!   leader that has not yet committed in its term goes through the log.
//! - A shard travels in chunks of at most `MIGRATION_CHUNK_BYTES` (1 MiB, plus one pair),
//!   one call and one log entry each, the next asked for at the next poll after the last
//!   applied: a large shard moves at one chunk per poll interval.
//! - A shard that becomes unowned (every group left) is dropped by its last owner; the
//!   next owner starts it empty.
//! - Sessions expire by each shard's clock (cluster time, an hour by default); a request
//!   of a client a shard forgot applies only when its `seen` proves it never applied
//!   (see [`sessions`]), so nothing applies twice, and a client cut off for about the
//!   timeout may learn only that its write's outcome is unknown.
//! - A group polls and migrates only for its current configuration; a group far behind
//!   catches up one configuration (and one migration) at a time.
//! - Outgoing calls are retried every `poll_ticks`; there is no backoff beyond that.

#![warn(missing_docs)]

pub mod abandon;
pub mod calls;
mod catch_up;
pub mod data;
pub mod effect;
pub mod message;
pub mod migration;
pub mod options;
pub mod phase;
mod poll;
pub mod reads;
pub mod server;
pub mod sessions;
pub mod snapshot;
pub mod state;
pub mod store;

pub use effect::{CallId, Effect, RequestId};
pub use message::{decode_entry, encode_entry, Entry, EntryError};
pub use migration::DeleteVerdict;
pub use options::{GroupOptions, ServerError};
pub use phase::Phase;
pub use server::{Machine, Server};
pub use sessions::DEFAULT_SESSION_TIMEOUT_MS;
pub use shardkv_proto::kv::{
    DupEntry, DupTable, GroupRequest, GroupResponse, KvError, MigrationReply, MigrationRequest,
    MigrationResponse, Op, Reply, Request, Response,
};
pub use shardkv_raft::SnapshotError;
pub use shardkv_raft::{Replicated, Service};
pub use state::{GroupState, Outcome};
pub use store::{ShardClock, ShardStore};

/// A Raft log index.
pub use shardkv_proto::Index;
