//! The production runtime: one replica (of the shard master or of a replica group) as a
//! process, over tokio, tarpc and a write-ahead log on disk.
//!
//! ```text
//!   TCP ──► service (tarpc Node) ──Event──► driver ──► Hosted server (sans-IO)
//!                                              │
//!            peers (raft streams) ◄────────────┤ Send
//!            caller's oneshot     ◄────────────┤ Reply
//!            TarpcTransport call  ◄────────────┘ Call ──► Event::Response
//! ```
//!
//! - [`hosted`]: the two servers (each a `shardkv_raft::Service`) behind one trait,
//!   bytes in and actions out.
//! - [`driver`]: the single task that owns the server: ticks, events, actions.
//! - [`peers`]: raft messages batched per peer, in order, one sender task per peer.
//! - [`raft_stream`]: the one-way streams that carry them, beside tarpc on one port.
//! - [`service`]: the listener (tarpc and raft streams), with its [`Limits`]
//!   (connections, handshake and idle timeouts) and bad-frame handling.
//! - [`frame`]: the length-delimited frames of every connection, memory taken as their
//!   bytes arrive.
//! - [`node`]: [`NodeSpec`] and [`run_node`], from data directory to shutdown.
//! - [`timeline`]: the steps of requests, recorded for `shardkv bench --timeline`.
//!
//! # Caveats
//!
//! - Membership is fixed at first boot (`--peers`); adding a replica to a running group
//!   is not exposed.
//! - Mutual TLS unless a node runs `--insecure`; certificates are not reloaded while a
//!   node runs, and there is no revocation.

pub mod driver;
pub mod frame;
pub mod hosted;
pub mod node;
pub mod peers;
pub mod raft_stream;
pub mod service;
pub mod timeline;

pub use node::{run_node, NodeSpec, Role};
pub use service::Limits;
