//! A course's grading crate for the Raft lab. The course owns it, not the student: it
//! depends on the student's crate (`raft-skeleton` here; a course points the dependency at
//! each hand-in), builds one [`Suite`] over the student's [`RaftLab`] with the course's
//! weights ([`WEIGHTS`], `weights.toml`), and its binaries run it:
//!
//! - `grader` grades the student's peer: `cargo run -p grader -- --seeds 20`;
//! - `grader-reference` grades the reference peer with the same suite and weights, which
//!   is what full marks look like.
//!
//! Each run runs in a worker process that is the grading binary again, with a wall-clock
//! limit (`--run-timeout`, 60 s) and a memory limit (`--run-memory`), so a peer that loops,
//! aborts or allocates without bound fails the runs it does that in, and every other test
//! is graded as usual. `--gradescope results.json` and `--junit report.xml` write the
//! scores for an autograder or CI, `--save-traces DIR` keeps every failed run's event log.

use std::process::ExitCode;

use shardkv_tests::grade::{Suite, Weights};
use shardkv_tests::raft_lab::RaftLab;

/// This course's points per part and test.
pub const WEIGHTS: &str = include_str!("../weights.toml");

/// The Raft lab's suite over peer `L`, weighted as [`WEIGHTS`] says; failures print
/// `command TEST --seed S --trace` as their replay.
pub fn suite<L: RaftLab>(command: &str) -> Suite {
    let weights = match Weights::from_toml(WEIGHTS) {
        Ok(weights) => weights,
        Err(message) => panic!("the course's weights.toml is invalid: {message}"),
    };
    Suite::new(command).raft::<L>().weights(&weights)
}

/// The whole `main` of a grading binary over peer `L`.
pub fn main<L: RaftLab>(command: &str) -> ExitCode {
    suite::<L>(command).main()
}
