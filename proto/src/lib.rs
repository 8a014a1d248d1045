//! Types shared by every shardkv client and server: ids, configurations, key routing,
//! and the shard master's request/response messages.
//!
//! A shardkv cluster splits the key space into a fixed number of **shards**
//! (`nshards`, chosen when the cluster is created and never changed). A numbered
//! **configuration** ([`Config`]) says which **replica group** ([`GroupId`]) serves each
//! shard and where that group's replicas listen. The shard master keeps every
//! configuration ever made; clients and groups route with the latest one.
//!
//! ```text
//!   key bytes --FNV-1a 64--> hash --mod nshards--> ShardId --config.shards--> GroupId
//!                                                                               |
//!                                        config.groups[gid] = replica addresses <+
//! ```
//!
//! Everything here is plain data with serde derives; the crate depends on nothing that
//! does IO, so the client library can use it without pulling in raft-rs or the store.
//!
//! Modules:
//! - [`ids`]: type aliases for every identifier.
//! - [`bytes_map`]: serde for key/value maps, byte strings copied whole.
//! - [`shard`]: the stable key→shard function and the shard-count constants.
//! - [`leader`]: which server of a replicated service to ask after a failed attempt
//!   (leader hints), for clients and servers alike.
//! - [`config`]: [`Config`] and its lookup helpers.
//! - [`master`]: requests, responses and typed errors of the shard master service.
//! - [`kv`]: client requests to replica groups and the group-to-group shard migration
//!   messages.
//! - [`session`]: the duplicate table (client → latest sequence number and its answer,
//!   expiring by cluster time) that both kinds of server keep, and that travels with a
//!   shard.
//!
//! Caveats:
//! - Ids are type aliases, not newtypes: they cross serde and arithmetic boundaries
//!   constantly, and the aliases already document intent at every signature.
//! - The wire encoding is whatever serde format the transport picks (bincode 1.3 in
//!   practice); this crate fixes the data model, not the bytes.

#![warn(missing_docs)]

pub mod bytes_map;
pub mod config;
pub mod ids;
pub mod kv;
pub mod leader;
pub mod master;
#[cfg(feature = "mutants")]
pub mod mutants;
pub mod session;
pub mod shard;

pub use config::{Config, ConfigError};
pub use ids::{ClientId, ConfigNum, GroupId, Index, Millis, NodeId, Seq, ShardId, NO_GROUP};
pub use kv::{
    DupEntry, DupTable, GroupRequest, GroupResponse, KvError, MigrationReply, MigrationRequest,
    MigrationResponse, Reply,
};
pub use master::{MasterError, Op, Request, Response};
pub use shard::{key_to_shard, DEFAULT_NSHARDS, LAB_NSHARDS};
