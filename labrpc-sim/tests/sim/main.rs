//! Scenario tests of the simulator through its public API only: determinism, network
//! faults, crash/restart, disks and power failures, wakes, the executor and the counters.
//! One test binary, several modules.

mod common;
mod crash;
mod determinism;
mod disk;
mod executor;
mod network;
mod wake;
