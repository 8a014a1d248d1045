//! The shardkv shard master: a Raft-replicated service that keeps the cluster's numbered
//! configurations and rebalances shards over replica groups with as few moves as possible.
//!
//! # What it does
//!
//! A configuration ([`Config`]) says which replica group owns each of the cluster's
//! `nshards` shards and where each group's replicas listen. Configuration 0 assigns
//! every shard to no group. Operators change the membership with **Join** (new groups
//! arrive) and **Leave** (groups depart); each change creates the next configuration,
//! and the shards are rebalanced so that every group owns ⌊n/g⌋ or ⌈n/g⌉ of them while
//! as few shards as possible change owner (each move is a data migration between
//! groups). **Move** pins one shard to one group by hand. **Query** returns any past
//! configuration or the latest. Every configuration is kept. **Abandon** records that a
//! group which has left died for good, and **Holder** tells the replica groups which
//! configuration's owner of a shard holds its data when the owner after it was abandoned
//! (see `docs/architecture.md`, "A group that died for good can be abandoned").
//!
//! # How it is built
//!
//! ```text
//!   client Request ──> Server (leader) ── propose(encode_entry) ──> Raft log
//!                                                                     │ committed, in order
//!   client <── Response ── Server <── apply(index, Request) ── ShardMaster (every replica)
//!                                        │
//!                          ops: join / leave / move_shard ── rebalance
//!                          session table: (client, seq) → outcome, expiring by cluster time
//! ```
//!
//! The pure parts, all deterministic and free of IO:
//! - [`mod@rebalance`]: minimal-move balancing and its tie-break rule.
//! - [`ops`]: validation and the next configuration for Join, Leave and Move; the check
//!   of an Abandon.
//! - [`session`]: the duplicate table that makes retried requests take effect once.
//! - [`state`]: [`ShardMaster`], the state machine `apply(index, request) -> response`.
//! - [`snapshot`]: the whole state as bytes, for log compaction and restart.
//! - [`message`]: the client messages (re-exported from `shardkv-proto`) and the log
//!   entry codec.
//!
//! And the replica that ties them to the replicated log:
//! - [`server`]: [`Server`], a sans-IO shard-master replica over `shardkv_raft::Replica`:
//!   events in (peer messages, client requests, ticks), effects out (messages, replies).
//!
//! # Invariants
//!
//! - Configuration numbers are dense: `configs[i].num == i`.
//! - A request that fails validation creates no configuration and changes nothing but
//!   the duplicate table (which remembers the error, so a retry gets the same error).
//! - After any Join or Leave the assignment is balanced, complete and minimal.
//! - Same sequence of applied entries ⇒ same state, byte for byte.
//!
//! # Caveats
//!
//! - Every configuration is kept forever, as in the lab; a long-lived cluster's history
//!   (and snapshot) grows by one configuration per change.
//! - Sessions expire by cluster time (an hour of silence by default, see [`session`]), and
//!   the master's requests carry no clock reading: a client silent for longer than that
//!   which retries an old request has it applied again, where the configurations refuse
//!   it or it repeats a placement.
//! - Move always creates a configuration, even when it changes nothing.

#![warn(missing_docs)]

pub mod message;
pub mod ops;
pub mod rebalance;
pub mod server;
pub mod session;
pub mod snapshot;
pub mod state;

pub use message::{decode_entry, encode_entry, EntryError};
pub use rebalance::{is_balanced, rebalance, target_counts};
pub use server::{
    open, with_replica, Machine, MasterService, Reply, RequestId, Server, ServerError,
};
pub use session::DEFAULT_SESSION_TIMEOUT_MS;
pub use shardkv_proto::{
    ClientId, Config, ConfigNum, GroupId, MasterError, NodeId, Op, Request, Response, Seq, ShardId,
};
pub use shardkv_raft::SnapshotError;
pub use shardkv_raft::{Replicated, Service};
pub use state::ShardMaster;

/// A Raft log index.
pub use shardkv_proto::Index;
