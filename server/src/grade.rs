//! `shardkv grade`: the lab suites against the reference implementations, over many seeds.
//!
//! A thin wrapper: the runner, score table, failure replay commands and `--trace` event log
//! live in [`shardkv_tests::grade`] so that a course can grade a student's crate with the
//! same machinery (see the README, "Grading"). Each run runs in a worker process, this
//! program again (see [`shardkv_tests::grade::worker`]). Scale: every test is worth
//! [`shardkv_tests::grade::POINTS_PER_TEST`] points and earns them only when all of its
//! seeds pass. Exit codes: 0 when everything passed, 1 when any run failed, 2 on an unknown
//! part or test.

use std::process::ExitCode;

pub use shardkv_tests::grade::GradeArgs;
use shardkv_tests::grade::Suite;

/// Entry point of `shardkv grade`; the exit code is 0 only when every run passed.
/// `RUST_LOG` opens the servers' and clients' tracing output (best with `--seed`).
pub fn run(args: GradeArgs) -> ExitCode {
    crate::cli::logging::init("off");
    Suite::reference()
        .in_this_process_again()
        .run(&args, &mut std::io::stdout())
        .into()
}
