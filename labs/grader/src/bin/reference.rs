//! Grades the reference Raft peer with the course's suite and weights: full marks, the
//! yardstick for the student's `grader`.

fn main() -> std::process::ExitCode {
    grader::main::<shardkv_tests::raft_lab::ReplicaLab>(
        "cargo run -p grader --bin grader-reference --",
    )
}
