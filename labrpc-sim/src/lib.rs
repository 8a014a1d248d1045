//! `labrpc-sim`: a deterministic simulator of a cluster, replacing MIT 6.824's `labrpc`.
//!
//! Servers in shardkv are sans-IO state machines. In tests they run here, as [`Host`]s,
//! on a simulated network with a virtual clock, driven by one event queue and one seeded
//! RNG on one thread. Client code runs as ordinary async Rust on the simulator's own
//! executor and talks to hosts through [`ClientEnd`]s. Each host has a [`Persister`]
//! whose key/value area and snapshot blob are durable on return, and a [`SimDisk`], a
//! directory of files with unsynced writes that a power failure may lose, keep or tear.
//! Nothing reads the wall clock, nothing draws from an unseeded RNG and nothing iterates a
//! hash map, so a run is a pure function of its seed: the same seed replays the same run,
//! event for event, and [`Sim::digest`] proves it.
//!
//! ```text
//!   test / client tasks (async)          hosts (sans-IO state machines)
//!     ClientEnd::call, sleep                on_message / on_request / on_response / on_tick
//!            |                              on_wake     |  Context: send, reply, call,
//!            |                                          |           wake_after, trace
//!            v                                          v
//!   +-------------------------------------------------------------------------+
//!   |  event queue ordered by (virtual time, seq)   one RNG (Xoshiro256++)    |
//!   |  network: connect / partition / unreliable / long delays / reordering   |
//!   |  hosts: factory + persister per node, crash / restart, jittered ticks,  |
//!   |         wakes at a random delay from a range                            |
//!   |  disks: one SimDisk per host (in its persister); crash kills handles,   |
//!   |         power_fail loses / keeps / tears unsynced blocks and names      |
//!   |  trace: FNV-1a digest of every event and trace line                     |
//!   +-------------------------------------------------------------------------+
//! ```
//!
//! The protocol, in prose. [`Sim::block_on`] polls every ready task; when none is ready it
//! pops the earliest event, sets the clock to its time and processes it: a tick, a wake or
//! a delivered packet becomes a host callback, a timer or a call outcome wakes a task. A
//! host answers through its [`Context`], whose effects are applied after the callback
//! returns, each send drawing its delay (and its fate, on an unreliable network) and each
//! wake its delay from the RNG at that moment. A host that models slow I/O writes to its
//! disk and asks for a wake to learn when the write "completes".
//!
//! Invariants:
//! - events run in `(time, seq)` order; ties are broken by scheduling order only;
//! - every random choice comes from the one RNG, in event order, power failures included;
//! - a crashed host receives nothing, its ticks and wakes stop, requests it had not
//!   answered are never answered (callers time out), calls it had made are forgotten and
//!   its open disk files are dead handles; a restart builds a new object from the same
//!   [`Persister`], whose disk still holds every byte written (a crash is `kill -9`);
//! - a power failure ([`Sim::power_fail`]) is a crash followed by the loss of a random part
//!   of what the disk had not synced; what `sync_data`/`sync_dir` covered survives;
//! - every call is decided exactly once: reply, unreachable, or timeout at its deadline.
//!
//! Caveats:
//! - one thread drives everything: the simulator's handles are `Rc`-based and not `Send`;
//!   only [`SimDisk`] and [`SimFile`] are `Send + Sync`, for code under test that moves
//!   them to threads of its own (which must not outlive their host object);
//! - no message duplication beyond what retries cause;
//! - the persister's two areas never fail (writes are synced on return); only the disk
//!   has faults: power failures with lost, kept and torn blocks and unsynced names, but no
//!   disk-full or media errors and no I/O latency beyond what a host models with wakes;
//! - `Sim::block_on` is not re-entrant, and tasks holding `Sim` clones form an `Rc` cycle
//!   that `Sim::shutdown` breaks (call it at the end of a run).

#![warn(missing_docs)]

mod client;
mod config;
mod disk;
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
pub use disk::{SimDisk, SimFile};
pub use executor::JoinHandle;
pub use host::{Context, Host};
pub use persister::Persister;
pub use sim::Sim;
pub use time::Sleep;
pub use trace::TraceLine;

/// A simulator node: a host or a client endpoint. They share one number space, assigned
/// 0, 1, 2, ... in creation order (not the raft ids of the servers they run).
pub type SimNode = usize;

/// Id of a request a host must answer with [`Context::reply`].
pub type RequestId = u64;

/// Id of a call a host made with [`Context::call`]; it comes back in [`Host::on_response`].
pub type CallId = u64;
