//! Tests of the shard master's pure state machine, through its public API only.
//!
//! - `bad_requests`: every invalid request gets its typed error and creates nothing.
//! - `semantics`: Join, Leave, Move and Query, including historical queries.
//! - `dedup`: retried requests take effect once; the table expires by log index.
//! - `snapshot`: the state survives encode/decode; corrupt bytes are errors.
//! - `properties`: proptests of rebalancing (balance, minimality against brute force,
//!   determinism) over random Join/Leave/Move sequences.

mod bad_requests;
mod dedup;
mod harness;
mod properties;
mod semantics;
mod server;
mod snapshot;
