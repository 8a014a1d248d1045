//! The course's grading binaries, run as a course runs them: the handout skeleton grades 0
//! without hanging, the reference gets full marks, and both write a Gradescope
//! `results.json` and a JUnit report that parse and add up.

use std::path::Path;
use std::process::Command;

use quick_xml::events::Event;
use serde_json::Value;

/// Runs grading binary `exe` with `args` and the two report files in `dir`; returns its
/// exit code, its stdout, and the two files' text.
fn grade(exe: &str, args: &[&str], dir: &Path) -> (Option<i32>, String, Value, String) {
    let gradescope = dir.join("results.json");
    let junit = dir.join("report.xml");
    let output = Command::new(exe)
        .args(args)
        .arg("--gradescope")
        .arg(&gradescope)
        .arg("--junit")
        .arg(&junit)
        .output()
        .expect("the grading binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let results = std::fs::read_to_string(&gradescope).expect("results.json written");
    let results: Value = serde_json::from_str(&results).expect("results.json is JSON");
    let junit = std::fs::read_to_string(&junit).expect("the JUnit report written");
    (output.status.code(), stdout, results, junit)
}

/// Checks a Gradescope file: every test has a name, a score, a max_score and an output,
/// and the scores add up to the total. Returns (total, max).
fn check_gradescope(results: &Value) -> (f64, f64) {
    let tests = results["tests"].as_array().expect("top-level tests");
    assert!(!tests.is_empty());
    let (mut sum, mut max) = (0.0, 0.0);
    for test in tests {
        assert!(
            test["name"].as_str().is_some_and(|n| !n.is_empty()),
            "{test}"
        );
        assert!(test["output"].as_str().is_some(), "{test}");
        sum += test["score"].as_f64().expect("a score");
        max += test["max_score"].as_f64().expect("a max_score");
    }
    let total = results["score"].as_f64().expect("a total score");
    assert!((total - sum).abs() < 1e-6, "{total} != {sum}");
    (total, max)
}

/// What a JUnit report holds, checked for consistency: per `testsuite`, its `tests` and
/// `failures` counts match its `testcase` and `failure` elements. Returns the text of
/// every `failure`.
fn check_junit(xml: &str) -> Vec<String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let attribute = |e: &quick_xml::events::BytesStart<'_>, name: &str| -> usize {
        let value = e
            .try_get_attribute(name)
            .expect("attributes parse")
            .unwrap_or_else(|| panic!("no {name} attribute"));
        let value = value.unescape_value().expect("attribute text");
        value.parse().expect("a count")
    };
    let (mut suites, mut failures) = (0, Vec::new());
    let mut expected = (0, 0);
    let mut seen = (0, 0);
    let mut in_failure = false;
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) if e.name().as_ref() == b"testsuite" => {
                suites += 1;
                expected = (attribute(&e, "tests"), attribute(&e, "failures"));
                seen = (0, 0);
            }
            Event::End(e) if e.name().as_ref() == b"testsuite" => {
                assert_eq!(expected, seen, "a testsuite's counts");
            }
            Event::Start(e) | Event::Empty(e) if e.name().as_ref() == b"testcase" => seen.0 += 1,
            Event::Start(e) if e.name().as_ref() == b"failure" => {
                seen.1 += 1;
                in_failure = true;
                failures.push(String::new());
            }
            Event::End(e) if e.name().as_ref() == b"failure" => in_failure = false,
            Event::Text(text) if in_failure => {
                let text = text.decode().expect("text");
                if let Some(last) = failures.last_mut() {
                    last.push_str(&text);
                }
            }
            Event::GeneralRef(entity) if in_failure => {
                let name = entity.decode().expect("an entity name");
                let text = quick_xml::escape::resolve_predefined_entity(&name)
                    .unwrap_or_else(|| panic!("unknown entity {name}"));
                if let Some(last) = failures.last_mut() {
                    last.push_str(text);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert!(suites > 0, "no testsuite in\n{xml}");
    failures
}

/// Proves the handout grades 0 (every `todo!()` fails its run at once), with a failure per
/// test that names a seed and its replay command in both files.
#[test]
fn the_skeleton_grades_zero() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (code, stdout, results, junit) = grade(
        env!("CARGO_BIN_EXE_grader"),
        &["--seeds", "3", "--run-timeout", "30s"],
        dir.path(),
    );
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("score total                 0 / 100"),
        "{stdout}"
    );
    let (total, max) = check_gradescope(&results);
    assert_eq!((total, max), (0.0, 100.0));
    let failures = check_junit(&junit);
    let tests = results["tests"].as_array().map_or(0, Vec::len);
    assert_eq!(failures.len(), tests, "every test fails");
    for failure in failures {
        assert!(
            failure.contains("seed 1: panicked: not yet implemented"),
            "{failure}"
        );
        assert!(
            failure.contains("replay: cargo run -p grader -- "),
            "{failure}"
        );
    }
}

/// Proves the reference peer gets full marks from the same suite and weights, and the
/// reports say so.
#[test]
fn the_reference_gets_full_marks() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (code, stdout, results, junit) = grade(
        env!("CARGO_BIN_EXE_grader-reference"),
        &["--seeds", "3"],
        dir.path(),
    );
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains("score total               100 / 100"),
        "{stdout}"
    );
    assert_eq!(check_gradescope(&results), (100.0, 100.0));
    assert!(check_junit(&junit).is_empty());
    // The weights took: a doubled test is worth twice its neighbours.
    let test = |name: &str| {
        results["tests"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["name"].as_str().is_some_and(|n| n.ends_with(name)))
            .map(|t| t["max_score"].as_f64())
    };
    let doubled = test("/ figure8_unreliable")
        .flatten()
        .expect("figure8_unreliable");
    let plain = test("/ persist1").flatten().expect("persist1");
    assert!((doubled - 2.0 * plain).abs() < 1e-9, "{doubled} vs {plain}");
}
