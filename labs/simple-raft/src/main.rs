//! Grades [`simple_raft::ForgetfulRaft`] with the Raft lab suite; takes the arguments of
//! `shardkv grade` (`--seeds`, `--jobs`, `--seed S --trace`, `--list`, `--json`, ...).

use shardkv_tests::grade::Suite;
use simple_raft::{ForgetfulRaft, REPLAY_COMMAND};

fn main() -> std::process::ExitCode {
    Suite::new(REPLAY_COMMAND).raft::<ForgetfulRaft>().main()
}
