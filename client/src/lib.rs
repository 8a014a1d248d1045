//! The shardkv client library: talk to a shardkv cluster through any [`Transport`].
//!
//! A shardkv cluster has two kinds of replicated services: the **shard master**, which
//! keeps the numbered configurations (which replica group owns which shard), and the
//! **replica groups**, which store the keys. This crate holds the clients of both, and
//! all their logic: routing keys to groups through a cached configuration, finding
//! leaders, following leader hints, retrying with bounded backoff, keeping retries
//! exactly-once with `(client id, sequence number)`, and honouring a caller's deadline.
//!
//! ```text
//!   your code --> Client (get/put/append/delete) --> Router (config + group leaders)
//!                    |                                  | query latest config
//!                    |                                  v
//!   your code --> Admin (join/leave/move_shard/query) --> MasterSession
//!                                                          |
//!          service retry loop (leader cursor, backoff) <---+---> Transport --> servers
//!                                                                (simulator | tarpc)
//! ```
//!
//! The crate does no IO of its own. Everything goes through the [`Transport`] trait
//! (call a server, sleep, read the clock, draw a random number), implemented by the deterministic
//! simulator's adapter in the test suites and by a tarpc adapter in production, so the
//! same client code is exercised by seeded simulations and runs over TCP. It depends
//! only on the shared types crate, serde, bincode, thiserror and tracing: never on
//! raft-rs, the log store or the simulator.
//!
//! Both clients answer with a definitive result or, only once the caller's
//! [`RetryPolicy::deadline`] has passed, a timeout error that says the operation may
//! have taken effect. A data client cut off long enough for the key's shard to forget its
//! session (an hour by default) gets [`ClientError::OutcomeUnknown`] instead: the
//! operation applied at most once, however late its retries arrived. Requests the servers
//! would refuse come back as typed errors ([`ClientError::Rejected`],
//! [`AdminError::Rejected`]); oversized keys and values are refused before anything is
//! sent.
//!
//! # Example
//!
//! Given any transport, an application's session with the data, and an operator's with
//! the shard master:
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! use std::time::Duration;
//! use shardkv_client::{Admin, AdminError, Client, ClientError, KvError, RetryPolicy, Transport};
//!
//! async fn count_visit<T: Transport>(transport: T) -> Result<(), ClientError> {
//!     let masters = vec!["10.0.0.1:7000".into(), "10.0.0.2:7000".into(), "10.0.0.3:7000".into()];
//!     let policy = RetryPolicy { deadline: Some(Duration::from_secs(5)), ..RetryPolicy::default() };
//!     let client = Client::with_policy(transport, masters, policy);
//!
//!     client.put("greeting", "hello").await?;
//!     client.append("visits", "x").await?; // applied once, however often it is retried
//!     assert_eq!(client.get("greeting").await?, Some(b"hello".to_vec()));
//!     client.delete("greeting").await?;
//!
//!     match client.put(vec![0; 5000], "v").await {
//!         Err(ClientError::Rejected(KvError::KeyTooLarge { len, max })) => {
//!             println!("key of {len} bytes refused (limit {max}); nothing was sent")
//!         }
//!         Err(error @ (ClientError::Timeout { .. } | ClientError::OutcomeUnknown { .. })) => {
//!             println!("unknown outcome: {error}")
//!         }
//!         other => println!("{other:?}"),
//!     }
//!     Ok(())
//! }
//!
//! async fn add_group<T: Transport>(transport: T) -> Result<(), AdminError> {
//!     let masters = vec!["10.0.0.1:7000".into(), "10.0.0.2:7000".into(), "10.0.0.3:7000".into()];
//!     let policy = RetryPolicy { deadline: Some(Duration::from_secs(10)), ..RetryPolicy::default() };
//!     let admin = Admin::with_policy(transport, masters, policy);
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
//! Concurrent users share one handle: clone the [`Client`] into each task. Its clones
//! share the transport, the cached configuration and the leader memory, and each
//! operation runs under a session of its own, so the duplicate tables' rule of one
//! outstanding request per client id holds (see [`client`]).
//!
//! # Modules
//!
//! - [`transport`] — the [`Transport`] trait and [`TransportError`];
//!   [`tarpc_transport`] — the production transport, tarpc over TCP.
//! - [`client`] — [`Client`], the data client; [`route`] — its configuration cache
//!   and routing.
//! - [`admin`] — [`Admin`], the shard master's client; [`master`] — the shard-master
//!   session both clients use.
//! - [`service`] — the retry loop shared by every request to a replicated service.
//! - [`retry`] — [`RetryPolicy`], backoff and deadlines.
//! - [`leader`] — leader memory and hints, and how node ids map to addresses.
//! - [`error`] — [`AdminError`] and [`ClientError`].
//!
//! # Caveats
//!
//! - A [`Client`] or an [`Admin`] is a cheap handle: clone it into every task of a
//!   service; clones share the transport's connections and run operations at once, each
//!   under a session of its own. Over [`TarpcTransport`] the handles are `Send + Sync`
//!   and their futures `Send` (see [`transport`]), so any tokio runtime runs them.
//! - A client's configuration is refreshed only when the cluster says it is stale
//!   (see [`route`]); there is no background polling.

#![warn(missing_docs)]

pub mod admin;
pub mod builder;
pub mod client;
pub mod error;
pub mod leader;
pub mod master;
mod pool;
pub mod retry;
pub mod route;
pub mod service;
pub mod tarpc_transport;
pub mod tls;
pub mod transport;

pub use admin::Admin;
pub use builder::ClientBuilder;
pub use client::Client;
pub use error::{AdminError, ClientError};
pub use leader::node_index;
pub use retry::{AttemptFailure, RetryPolicy, DEFAULT_DEADLINE, DEFAULT_RPC_TIMEOUT};
pub use shardkv_proto::{Config, ConfigNum, GroupId, KvError, MasterError, ShardId};
pub use tarpc_transport::TarpcTransport;
pub use transport::{Transport, TransportError};
