//! Tests of the replica group through its public API.
//!
//! - `state`: the key/value state machine: semantics, duplicates, session expiry, limits,
//!   ownership, and migration between two state machines (no Raft).
//! - `snapshot`: the state survives encode/decode; corrupt or foreign bytes are errors.
//! - `world` + `scenario`: two groups of three replicas each, over an in-order test
//!   network with a scripted shard master, moving shards from one group to the other.

mod scenario;
mod snapshot;
mod state;
mod world;
