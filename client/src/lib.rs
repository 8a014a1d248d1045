//! The shardkv client library: talk to a shardkv cluster through any [`Transport`].
//!
//! A shardkv cluster has two kinds of replicated services: the **shard master**, which
//! keeps the numbered configurations (which replica group owns which shard), and the
//! **replica groups**, which store the keys. This crate holds the clients of both, and
//! all their logic: finding leaders, following leader hints, retrying with bounded
//! backoff, keeping retries exactly-once with `(client id, sequence number)`, and
//! honouring a caller's deadline.
//!
//! ```text
//!   your code --> Admin (join/leave/move_shard/query) --+
//!                                                       +--> Transport --> servers
//!   (later)   --> Client (get/put/append/delete) -------+    (simulator | tarpc)
//! ```
//!
//! The crate does no IO of its own. Everything goes through the [`Transport`] trait
//! (call a server, sleep, draw a random number), implemented by the deterministic
//! simulator's adapter in the test suites and by a tarpc adapter in production, so the
//! same client code is exercised by seeded simulations and runs over TCP. It depends
//! only on the shared types crate, serde, bincode, thiserror and tracing: never on
//! raft-rs, sled or the simulator.
//!
//! # Example
//!
//! Given any transport, an operator's session with the shard master:
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! use std::time::Duration;
//! use shardkv_client::{Admin, AdminError, RetryPolicy, Transport};
//!
//! async fn add_group<T: Transport>(transport: T) -> Result<(), AdminError> {
//!     let masters = vec!["10.0.0.1:7000".into(), "10.0.0.2:7000".into(), "10.0.0.3:7000".into()];
//!     let policy = RetryPolicy { deadline: Some(Duration::from_secs(10)), ..RetryPolicy::default() };
//!     let mut admin = Admin::with_policy(transport, masters, policy);
//!
//!     let servers = vec!["10.0.1.1:7100".to_string(), "10.0.1.2:7100".to_string()];
//!     let config = admin.join(BTreeMap::from([(100, servers)])).await?;
//!     println!("configuration {} gives group 100 shards {:?}", config.num, config.shards_of(100));
//!
//!     match admin.move_shard(0, 999).await {
//!         Err(AdminError::Rejected(why)) => println!("refused: {why}"), // unknown group
//!         other => println!("{other:?}"),
//!     }
//!     let first = admin.query(Some(1)).await?;
//!     assert_eq!(first.num, 1);
//!     Ok(())
//! }
//! ```
//!
//! # Modules
//!
//! - [`transport`] — the [`Transport`] trait and [`TransportError`].
//! - [`admin`] — [`Admin`], the shard master's client.
//! - [`retry`] — [`RetryPolicy`], backoff and deadlines.
//! - [`leader`] — leader memory and hints, and how node ids map to addresses.
//! - [`error`] — [`AdminError`].
//!
//! # Caveats
//!
//! - No `Send` futures: see [`transport`]. Run the client on a single thread.
//! - The data `Client` (get/put/append/delete) is not written yet.

#![warn(missing_docs)]

pub mod admin;
pub mod error;
pub mod leader;
pub mod retry;
pub mod transport;

pub use admin::Admin;
pub use error::AdminError;
pub use leader::node_index;
pub use retry::{AttemptFailure, RetryPolicy, DEFAULT_RPC_TIMEOUT};
pub use shardkv_proto::{Config, ConfigNum, GroupId, MasterError, ShardId};
pub use transport::{Transport, TransportError};
