//! Grades the student's Raft peer (`raft_skeleton::Raft`); takes the arguments of
//! `shardkv grade` (`--seeds`, `--jobs`, `--seed S --trace`, `--gradescope FILE`, ...).

fn main() -> std::process::ExitCode {
    grader::main::<raft_skeleton::Raft>("cargo run -p grader --")
}
