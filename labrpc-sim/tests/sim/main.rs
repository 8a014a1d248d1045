//! Scenario tests of the simulator through its public API only: determinism, network
//! faults, crash/restart, the executor and the counters. One test binary, several modules.

mod common;
mod crash;
mod determinism;
mod executor;
mod network;
