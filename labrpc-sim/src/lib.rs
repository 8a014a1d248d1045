//! `labrpc-sim`: a deterministic simulator of a cluster, replacing MIT 6.824's `labrpc`.
//!
//! Servers in shardkv are sans-IO state machines. In tests they run here, as [`Host`]s,
//! on a simulated network with a virtual clock, driven by one event queue and one seeded
//! RNG on one thread. Client code runs as ordinary async Rust on the simulator's own
//! executor and talks to hosts through [`ClientEnd`]s. Nothing reads the wall clock,
//! nothing draws from an unseeded RNG and nothing iterates a hash map, so a run is a pure
//! function of its seed: the same seed replays the same run, event for event, and
//! [`Sim::digest`] proves it.
//!
//! ```text
//!   test / client tasks (async)          hosts (sans-IO state machines)
//!     ClientEnd::call, sleep                on_message / on_request / on_response / on_tick
//!            |                                        |  Context: send, reply, call, trace
//!            v                                        v
//!   +-------------------------------------------------------------------------+
//!   |  event queue ordered by (virtual time, seq)   one RNG (Xoshiro256++)    |
//!   |  network: connect / partition / unreliable / long delays / reordering   |
//!   |  hosts: factory + persister per node, crash / restart, jittered ticks   |
//!   |  trace: FNV-1a digest of every event and trace line                     |
//!   +-------------------------------------------------------------------------+
//! ```
//!
//! The protocol, in prose. [`Sim::block_on`] polls every ready task; when none is ready it
//! pops the earliest event, sets the clock to its time and processes it: a tick or a
//! delivered packet becomes a host callback, a timer or a call outcome wakes a task. A
//! host answers through its [`Context`], whose effects are applied after the callback
//! returns, each send drawing its delay (and its fate, on an unreliable network) from the
//! RNG at that moment.
//!
//! Invariants:
//! - events run in `(time, seq)` order; ties are broken by scheduling order only;
//! - every random choice comes from the one RNG, in event order;
//! - a crashed host receives nothing, its ticks stop, requests it had not answered are
//!   never answered (callers time out) and calls it had made are forgotten; a restart
//!   builds a new object from the same [`Persister`];
//! - every call is decided exactly once: reply, unreachable, or timeout at its deadline.
//!
//! Caveats:
//! - one thread only: every handle is `Rc`-based and nothing is `Send`;
//! - no message duplication beyond what retries cause; no disk faults (writes are synced);
//! - `Sim::block_on` is not re-entrant, and tasks holding `Sim` clones form an `Rc` cycle
//!   that `Sim::shutdown` breaks (call it at the end of a run).

#![warn(missing_docs)]

mod client;
mod config;
mod driver;
mod event;
mod executor;
mod host;
mod network;
mod persister;
mod route;
mod sim;
mod time;
mod trace;
mod world;

pub use client::{ClientEnd, RpcError};
pub use config::SimConfig;
pub use executor::JoinHandle;
pub use host::{Context, Host};
pub use persister::Persister;
pub use sim::Sim;
pub use time::Sleep;
pub use trace::TraceLine;

/// Id of a node. Hosts and client endpoints share one id space, assigned 0, 1, 2, ... in
/// creation order.
pub type NodeId = usize;

/// Id of a request a host must answer with [`Context::reply`].
pub type RequestId = u64;

/// Id of a call a host made with [`Context::call`]; it comes back in [`Host::on_response`].
pub type CallId = u64;
