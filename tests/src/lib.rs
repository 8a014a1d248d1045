//! shardkv's lab suites: seeded simulations of whole clusters, run in the deterministic
//! simulator `labrpc-sim`, each checked by invariant checkers.
//!
//! The suites play the role of MIT 6.824's `test_test.go` files. They reach the servers
//! through small lab interfaces (for Raft: [`raft_lab::RaftLab`]), the way 6.824's tests
//! reach a student's `Make`/`Start`/`GetState`; our own crates are the reference
//! implementations, and a course can point the same scenarios, seeds and checkers at a
//! student's crate.
//!
//! Every scenario is a function of one seed ([`scenario::Scenario`]): the seed drives the
//! simulator's one RNG, which decides message latencies and losses, tick jitter and every
//! random choice the scenario makes, so a seed names one exact run. Scenarios are
//! registered by part (`raft-election`, `raft-agreement`, `raft-persistence`,
//! `raft-snapshot`) in [`raft_lab::raft_scenarios`]; `tests/raft.rs` runs each over a few
//! seeds, and a grading command can run them over many.
//!
//! # Replaying a seed
//!
//! A failing run panics with its seed and the command that replays it:
//!
//! ```text
//! scenario figure8 failed with seed 17: one(4821..) failed to reach agreement (at 41.2s virtual)
//!  replay: SHARDKV_SEED=17 cargo test -p shardkv-tests --test raft figure8
//! ```
//!
//! `SHARDKV_SEED=S` runs one seed, `SHARDKV_SEEDS=N` runs seeds `1..=N` (default 3).
//! `RUST_LOG` opens the servers' tracing output; the simulator's trace lines (and its
//! digest) show what happened in virtual time.
//!
//! # Caveats
//!
//! - Virtual time only: nothing here reads the wall clock (the `sim_bench` example does, to
//!   measure speed).
//! - The scenarios adapt a few 6.824 details to the sans-IO world; [`raft_lab`] lists them.

pub mod grade;
pub mod kv_lab;
pub mod linearizability;
pub mod master_lab;
pub mod raft_lab;
pub mod scenario;
pub mod sim_disk;
pub mod sim_run;
pub mod sim_transport;
