//! The grading machinery reports a failing scenario with a replay command that works: the
//! replay reproduces the same failure with the same trace digest and prints its event log.

use shardkv_tests::grade::{GradeArgs, Status, Suite};
use shardkv_tests::raft_lab::{Cluster, ClusterOptions, ReplicaLab};
use shardkv_tests::scenario::{Outcome, Scenario};

/// A real three-peer Raft cluster that elects a leader, then fails when the simulator's
/// dice say so: about one seed in three.
fn flaky_roll(seed: u64) -> Outcome {
    let c = Cluster::<ReplicaLab>::new(seed, 3, ClusterOptions::default());
    c.run(async {
        c.sleep_ms(1_000).await;
        match c.random(3) {
            0 => Err("rolled a zero".to_string()),
            _ => Ok(()),
        }
    })
}

fn suite() -> Suite {
    Suite::new("shardkv grade").scenarios(vec![Scenario {
        name: "flaky_roll",
        part: "demo",
        run: flaky_roll,
    }])
}

/// Grades with `command` (as typed after `shardkv grade`), returning status and output.
fn grade(command: &str) -> (Status, String) {
    let argv = std::iter::once("grade").chain(command.split_whitespace());
    let args = GradeArgs::try_parse_from(argv).expect("valid grade arguments");
    let mut out = Vec::new();
    let status = suite().run(&args, &mut out);
    (status, String::from_utf8(out).expect("utf-8 output"))
}

/// A failure as listed: (seed, digest line, replay arguments).
fn failures(output: &str) -> Vec<(u64, String, String)> {
    let lines: Vec<&str> = output.lines().collect();
    lines
        .windows(2)
        .filter_map(|pair| {
            let listed = pair[0].strip_prefix("  flaky_roll seed ")?;
            let replay = pair[1].trim().strip_prefix("replay: shardkv grade ")?;
            let seed = listed.split_whitespace().next()?.parse().ok()?;
            Some((seed, pair[0].trim().to_string(), replay.to_string()))
        })
        .collect()
}

/// Proves a failing seed is listed with its seed, digest, message and a replay command, and
/// that running the replay gives the same failure and digest, with a readable event log.
#[test]
fn failure_is_reported_with_a_working_replay_command() {
    let (status, output) = grade("--seeds 8 --jobs 1");
    assert_eq!(status, Status::Failed, "{output}");
    assert!(
        output.contains("score total                 0 / 10"),
        "{output}"
    );
    let failed = failures(&output);
    assert!(!failed.is_empty() && failed.len() < 8, "{output}");
    for (seed, listed, replay) in failed {
        assert_eq!(replay, format!("flaky_roll --seed {seed} --trace"));
        assert!(listed.contains("rolled a zero"), "{listed}");
        let (status, replayed) = grade(&replay);
        assert_eq!(status, Status::Failed, "{replayed}");
        assert!(
            replayed.contains(&listed),
            "replay differs:\n{listed}\n{replayed}"
        );
        let digest = listed
            .split("trace digest ")
            .nth(1)
            .and_then(|d| d.get(..16));
        let digest = digest.expect("the failure names its digest");
        assert!(
            replayed.contains(&format!("flaky_roll seed {seed}: trace digest {digest}")),
            "{replayed}"
        );
        assert!(replayed.contains("role: "), "no event log:\n{replayed}");
    }
}

/// Proves the exit statuses: passing seeds pass, an unknown test is a usage error.
#[test]
fn statuses_follow_the_results() {
    let (status, output) = grade("--seeds 8 --jobs 1");
    let passing = (1..=8)
        .find(|seed| !failures(&output).iter().any(|(s, _, _)| s == seed))
        .expect("some seed passes");
    assert_eq!(
        grade(&format!("flaky_roll --seed {passing}")).0,
        Status::Passed
    );
    assert_eq!(status, Status::Failed);
    assert_eq!(grade("no_such_test").0, Status::Usage);
}

/// A course's suite built part by part from the lab traits holds exactly the scenarios
/// `shardkv grade` runs, in the same order, when given our implementations.
#[test]
fn suite_by_parts_matches_the_reference() {
    use shardkv_tests::kv_lab::GroupLab;
    use shardkv_tests::master_lab::ServerLab;
    let names = |suite: &Suite| -> Vec<(&str, &str)> {
        suite.list().iter().map(|s| (s.part, s.name)).collect()
    };
    let by_parts = Suite::new("x")
        .raft::<ReplicaLab>()
        .raft_membership::<ReplicaLab>()
        .master::<ServerLab>()
        .kv::<GroupLab>();
    let reference = Suite::reference();
    assert_eq!(names(&by_parts), names(&reference));
    assert!(names(&by_parts).iter().any(|(part, _)| *part == "kv"));
}
