//! What a grading run prints and writes: the list of parts and tests, the score table, the
//! failures with their replay commands, JSON for scripts, and the files autograders and CI
//! read (Gradescope's `results.json`, JUnit XML).

use std::collections::BTreeMap;
use std::io::{self, Write};

use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use serde::Serialize;

use super::runner::Run;
use super::score::{points, TestScore};
use crate::scenario::Scenario;

/// Failed seeds listed in one test's output (Gradescope, JUnit); the count says the rest.
const LISTED_FAILURES: usize = 5;

/// Parts, each followed by its tests, in registry order within a part.
pub(super) fn print_list(out: &mut dyn Write, all: &[Scenario]) -> io::Result<()> {
    let mut by_part: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in all {
        by_part.entry(s.part).or_default().push(s.name);
    }
    for (part, tests) in by_part {
        writeln!(out, "{part}")?;
        for test in tests {
            writeln!(out, "  {test}")?;
        }
    }
    Ok(())
}

/// The runs as a pretty-printed JSON array.
pub(super) fn print_json(out: &mut dyn Write, runs: &[Run]) -> io::Result<()> {
    let text = serde_json::to_string_pretty(runs).map_err(io::Error::other)?;
    writeln!(out, "{text}")
}

/// One row per test (passed/total, simulated and wall time, traffic, points), then the
/// score of every part and the total.
pub(super) fn print_table(out: &mut dyn Write, scores: &[TestScore<'_>]) -> io::Result<()> {
    writeln!(
        out,
        "{:<18} {:<34} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11} {:>6}",
        "part", "test", "passed", "sim mean", "sim max", "wall mean", "rpcs", "bytes", "score"
    )?;
    let mut part_scores: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for test in scores {
        let mine = &test.runs;
        let n = mine.len().max(1) as f64;
        let entry = part_scores.entry(test.scenario.part).or_default();
        entry.0 += test.score;
        entry.1 += test.max;
        let sim_mean = mine.iter().map(|r| r.sim_secs).sum::<f64>() / n;
        let sim_max = mine.iter().map(|r| r.sim_secs).fold(0.0, f64::max);
        let wall_mean = test.wall_secs() / n;
        let rpcs = mine.iter().map(|r| r.rpcs).sum::<u64>() / mine.len().max(1) as u64;
        let bytes = mine.iter().map(|r| r.bytes).sum::<u64>() / mine.len().max(1) as u64;
        writeln!(
            out,
            "{:<18} {:<34} {:>9} {:>8.1}s {:>8.1}s {:>8.3}s {:>9} {:>11} {:>6}",
            test.scenario.part,
            test.scenario.name,
            format!("{}/{}", test.passed, mine.len()),
            sim_mean,
            sim_max,
            wall_mean,
            rpcs,
            bytes,
            points(test.score)
        )?;
    }
    writeln!(out)?;
    let (mut total, mut max) = (0.0, 0.0);
    for (part, (score, out_of)) in &part_scores {
        writeln!(
            out,
            "score {part:<18} {:>4} / {}",
            points(*score),
            points(*out_of)
        )?;
        total += score;
        max += out_of;
    }
    writeln!(
        out,
        "score {:<18} {:>4} / {}",
        "total",
        points(total),
        points(max)
    )
}

/// Every failed run with its seed, digest, message and replay command.
pub(super) fn print_failures(out: &mut dyn Write, command: &str, runs: &[Run]) -> io::Result<()> {
    let failed: Vec<&Run> = runs.iter().filter(|r| r.error.is_some()).collect();
    if failed.is_empty() {
        return Ok(());
    }
    writeln!(out, "\nfailures:")?;
    for run in failed {
        writeln!(
            out,
            "  {} seed {} (trace digest {:016x}): {}",
            run.test,
            run.seed,
            run.digest,
            run.error.as_deref().unwrap_or("")
        )?;
        writeln!(out, "    replay: {}", replay_command(command, run))?;
    }
    Ok(())
}

/// The command that replays `run` with its event log.
pub(super) fn replay_command(command: &str, run: &Run) -> String {
    format!("{command} {} --seed {} --trace", run.test, run.seed)
}

/// What a test's report says: how many seeds passed, then the first failures, each with
/// its message and replay command.
fn test_output(command: &str, test: &TestScore<'_>) -> String {
    let mut text = format!("{} of {} seeds passed", test.passed, test.runs.len());
    let failed: Vec<&Run> = test.failures().collect();
    for run in failed.iter().take(LISTED_FAILURES) {
        text.push_str(&format!(
            "\nseed {}: {}\n  replay: {}",
            run.seed,
            run.error.as_deref().unwrap_or(""),
            replay_command(command, run)
        ));
    }
    if failed.len() > LISTED_FAILURES {
        text.push_str(&format!(
            "\n({} more failed seeds)",
            failed.len() - LISTED_FAILURES
        ));
    }
    text
}

/// Gradescope's `results.json`.
#[derive(Serialize)]
struct Gradescope<'a> {
    score: f64,
    execution_time: f64,
    output: String,
    tests: Vec<GradescopeTest<'a>>,
}

/// One test of [`Gradescope`].
#[derive(Serialize)]
struct GradescopeTest<'a> {
    name: String,
    number: String,
    score: f64,
    max_score: f64,
    status: &'a str,
    output: String,
}

/// Writes the scores as Gradescope's `results.json` (top-level `score` and `tests`, each
/// test with `name`, `score`, `max_score`, `status` and `output`).
pub(super) fn write_gradescope(
    out: &mut dyn Write,
    command: &str,
    scores: &[TestScore<'_>],
    wall_secs: f64,
) -> io::Result<()> {
    let tests: Vec<GradescopeTest<'_>> = scores
        .iter()
        .enumerate()
        .map(|(i, test)| GradescopeTest {
            name: format!("{} / {}", test.scenario.part, test.scenario.name),
            number: format!("{}", i + 1),
            score: test.score,
            max_score: test.max,
            status: if test.score == test.max && test.passed == test.runs.len() {
                "passed"
            } else {
                "failed"
            },
            output: test_output(command, test),
        })
        .collect();
    let score = scores.iter().map(|t| t.score).sum::<f64>();
    let max = scores.iter().map(|t| t.max).sum::<f64>();
    let report = Gradescope {
        score,
        execution_time: wall_secs,
        output: format!(
            "{} of {} points; replay a failure with its command",
            points(score),
            points(max)
        ),
        tests,
    };
    serde_json::to_writer_pretty(&mut *out, &report).map_err(io::Error::other)?;
    writeln!(out)
}

/// Writes the results as JUnit XML: a `testsuite` per part, a `testcase` per test, and a
/// `failure` holding every listed failed seed with its replay command.
pub(super) fn write_junit(
    out: &mut dyn Write,
    command: &str,
    scores: &[TestScore<'_>],
) -> io::Result<()> {
    let mut xml = quick_xml::Writer::new_with_indent(out, b' ', 2);
    xml.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let failures =
        |tests: &[&TestScore<'_>]| tests.iter().filter(|t| t.passed < t.runs.len()).count();
    let seconds = |tests: &[&TestScore<'_>]| tests.iter().map(|t| t.wall_secs()).sum::<f64>();
    let all: Vec<&TestScore<'_>> = scores.iter().collect();
    let mut root = BytesStart::new("testsuites");
    root.push_attribute(("name", "grade"));
    root.push_attribute(("tests", all.len().to_string().as_str()));
    root.push_attribute(("failures", failures(&all).to_string().as_str()));
    root.push_attribute(("time", format!("{:.3}", seconds(&all)).as_str()));
    xml.write_event(Event::Start(root))?;
    let mut parts: Vec<&str> = Vec::new();
    for test in scores {
        if !parts.contains(&test.scenario.part) {
            parts.push(test.scenario.part);
        }
    }
    for part in parts {
        let tests: Vec<&TestScore<'_>> =
            scores.iter().filter(|t| t.scenario.part == part).collect();
        let mut suite = BytesStart::new("testsuite");
        suite.push_attribute(("name", part));
        suite.push_attribute(("tests", tests.len().to_string().as_str()));
        suite.push_attribute(("failures", failures(&tests).to_string().as_str()));
        suite.push_attribute(("errors", "0"));
        suite.push_attribute(("time", format!("{:.3}", seconds(&tests)).as_str()));
        xml.write_event(Event::Start(suite))?;
        for test in tests {
            let mut case = BytesStart::new("testcase");
            case.push_attribute(("classname", part));
            case.push_attribute(("name", test.scenario.name));
            case.push_attribute(("time", format!("{:.3}", test.wall_secs()).as_str()));
            if test.passed == test.runs.len() {
                xml.write_event(Event::Empty(case))?;
                continue;
            }
            xml.write_event(Event::Start(case))?;
            let mut failure = BytesStart::new("failure");
            let failed = test.runs.len() - test.passed;
            let message = format!("{failed} of {} seeds failed", test.runs.len());
            failure.push_attribute(("message", message.as_str()));
            failure.push_attribute(("type", "failed"));
            xml.write_event(Event::Start(failure))?;
            let text = xml_text(&test_output(command, test));
            xml.write_event(Event::Text(BytesText::new(&text)))?;
            xml.write_event(Event::End(BytesEnd::new("failure")))?;
            xml.write_event(Event::End(BytesEnd::new("testcase")))?;
        }
        xml.write_event(Event::End(BytesEnd::new("testsuite")))?;
    }
    xml.write_event(Event::End(BytesEnd::new("testsuites")))?;
    writeln!(xml.into_inner())
}

/// `text` with the characters XML 1.0 does not allow (C0 controls but tab, newline and
/// carriage return, which a panic message or colored output may hold) replaced.
fn xml_text(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => '\u{fffd}',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_text_replaces_what_xml_forbids() {
        assert_eq!(
            xml_text("a\u{1b}[31mb\tc\n\0"),
            "a\u{fffd}[31mb\tc\n\u{fffd}"
        );
    }
}
