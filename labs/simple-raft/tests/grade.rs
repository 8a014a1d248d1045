//! The forgetful peer is graded visibly: it passes the scenarios without restarts and fails
//! the ones that restart a peer and expect it to remember.

use shardkv_tests::grade::{GradeArgs, Status, Suite};
use simple_raft::{ForgetfulRaft, REPLAY_COMMAND};

fn grade(command: &str) -> (Status, String) {
    let argv = std::iter::once("grade").chain(command.split_whitespace());
    let args = GradeArgs::try_parse_from(argv).expect("valid grade arguments");
    let mut out = Vec::new();
    let suite = Suite::new(REPLAY_COMMAND).raft::<ForgetfulRaft>();
    let status = suite.run(&args, &mut out);
    (status, String::from_utf8(out).expect("utf-8 output"))
}

/// Proves elections and agreement pass while persistence fails, with a replay command.
#[test]
fn passes_elections_and_fails_persistence() {
    let (status, output) = grade("raft-election basic_agree --seeds 2 --jobs 1");
    assert_eq!(status, Status::Passed, "{output}");
    let (status, output) = grade("persist1 --seeds 2 --jobs 1");
    assert_eq!(status, Status::Failed, "{output}");
    assert!(
        output.contains("score total                 0 / 10"),
        "{output}"
    );
    assert!(
        output.contains("replay: cargo run -p simple-raft -- persist1 --seed 1 --trace"),
        "{output}"
    );
}
