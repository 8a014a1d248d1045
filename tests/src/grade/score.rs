//! Points: what each test is worth, and what the runs earned.
//!
//! A test is worth [`super::POINTS_PER_TEST`] points unless the course's weights say
//! otherwise, and earns them only when every one of its seeds passes. Weights come from the
//! [`super::Suite`] builder and from a small TOML file (`--weights FILE`, which wins):
//!
//! ```toml
//! # Points of one test (default 10).
//! [tests]
//! figure8_unreliable = 20
//!
//! # Points of a whole part: its tests share them in proportion to their own weights.
//! [parts]
//! raft-election = 15
//! ```
//!
//! A part's points are shared over all of the suite's tests of that part, so a test is
//! worth the same whichever tests a command selects.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::runner::Run;
use super::POINTS_PER_TEST;
use crate::scenario::Scenario;

/// Largest weights file read, in bytes.
const MAX_WEIGHTS_FILE: u64 = 1 << 20;

/// Points per test and per part; see the module docs.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Weights {
    /// Points of a whole part, shared by its tests in proportion to their weights.
    #[serde(default)]
    pub parts: BTreeMap<String, f64>,
    /// Points of one test (its share of the part when the part has points).
    #[serde(default)]
    pub tests: BTreeMap<String, f64>,
}

impl Weights {
    /// Parses the TOML form (see the module docs).
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| format!("weights: {e}"))
    }

    /// Reads and parses a weights file.
    pub fn read(path: &Path) -> Result<Self, String> {
        let fail = |e: std::io::Error| format!("cannot read the weights {}: {e}", path.display());
        let size = std::fs::metadata(path).map_err(fail)?.len();
        if size > MAX_WEIGHTS_FILE {
            return Err(format!(
                "the weights {} hold {size} bytes, more than the {MAX_WEIGHTS_FILE} read",
                path.display()
            ));
        }
        let text = std::fs::read_to_string(path).map_err(fail)?;
        Self::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// These weights with `other`'s laid over them.
    pub(super) fn merged(&self, other: &Weights) -> Weights {
        let mut merged = self.clone();
        merged.parts.extend(other.parts.clone());
        merged.tests.extend(other.tests.clone());
        merged
    }

    /// Refuses weights that name no test or part of `scenarios`, or are not finite and
    /// non-negative.
    pub(super) fn check(&self, scenarios: &[Scenario]) -> Result<(), String> {
        let named = |kind: &str, name: &str, known: bool, points: f64| {
            if !known {
                Err(format!("the weights name no {kind} called {name:?}"))
            } else if !points.is_finite() || points < 0.0 {
                Err(format!("the weight of {kind} {name:?} is {points}: points must be a non-negative number"))
            } else {
                Ok(())
            }
        };
        for (part, &points) in &self.parts {
            named(
                "part",
                part,
                scenarios.iter().any(|s| s.part == part),
                points,
            )?;
        }
        for (test, &points) in &self.tests {
            named(
                "test",
                test,
                scenarios.iter().any(|s| s.name == test),
                points,
            )?;
        }
        Ok(())
    }

    /// What `scenario` is worth, within the whole suite `all`.
    pub(super) fn max_points(&self, scenario: &Scenario, all: &[Scenario]) -> f64 {
        let weight = |s: &Scenario| {
            self.tests
                .get(s.name)
                .copied()
                .unwrap_or(f64::from(POINTS_PER_TEST))
        };
        let own = weight(scenario);
        match self.parts.get(scenario.part) {
            None => own,
            Some(&part_points) => {
                let part_weight: f64 = all
                    .iter()
                    .filter(|s| s.part == scenario.part)
                    .map(weight)
                    .sum();
                if part_weight > 0.0 {
                    part_points * own / part_weight
                } else {
                    0.0
                }
            }
        }
    }
}

/// One test's result: its runs and its points.
#[derive(Debug)]
pub(super) struct TestScore<'a> {
    pub(super) scenario: &'a Scenario,
    /// Its runs, in seed order.
    pub(super) runs: Vec<&'a Run>,
    /// How many runs passed.
    pub(super) passed: usize,
    /// Points earned: all of `max` when it ran and every run passed, else none.
    pub(super) score: f64,
    /// Points it is worth.
    pub(super) max: f64,
}

impl TestScore<'_> {
    /// The failed runs.
    pub(super) fn failures(&self) -> impl Iterator<Item = &Run> {
        self.runs.iter().copied().filter(|r| r.error.is_some())
    }

    /// Wall-clock seconds of all its runs.
    pub(super) fn wall_secs(&self) -> f64 {
        self.runs.iter().map(|r| r.wall_secs).sum()
    }
}

/// Every selected test's score, in the order of `selected`.
pub(super) fn score<'a>(
    selected: &'a [Scenario],
    all: &[Scenario],
    weights: &Weights,
    runs: &'a [Run],
) -> Vec<TestScore<'a>> {
    selected
        .iter()
        .map(|scenario| {
            let mine: Vec<&Run> = runs.iter().filter(|r| r.test == scenario.name).collect();
            let passed = mine.iter().filter(|r| r.error.is_none()).count();
            let max = weights.max_points(scenario, all);
            TestScore {
                scenario,
                passed,
                score: if passed == mine.len() && !mine.is_empty() {
                    max
                } else {
                    0.0
                },
                max,
                runs: mine,
            }
        })
        .collect()
}

/// Points as printed: whole numbers without decimals, others with two.
pub(super) fn points(value: f64) -> String {
    if (value - value.round()).abs() < 1e-9 {
        format!("{}", value.round())
    } else {
        format!("{value:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Outcome;

    fn never(_: u64) -> Outcome {
        unreachable!("scoring tests do not run scenarios")
    }

    fn suite() -> Vec<Scenario> {
        let s = |part, name| Scenario {
            name,
            part,
            run: never,
        };
        vec![s("a", "a1"), s("a", "a2"), s("a", "a3"), s("b", "b1")]
    }

    #[test]
    fn parts_share_their_points_by_test_weight() {
        let all = suite();
        let weights = Weights::from_toml("[parts]\na = 40\n[tests]\na1 = 20\nb1 = 5\n").unwrap();
        weights.check(&all).unwrap();
        let max: Vec<f64> = all.iter().map(|s| weights.max_points(s, &all)).collect();
        assert_eq!(max, vec![20.0, 10.0, 10.0, 5.0]);
        let plain = Weights::default();
        assert_eq!(plain.max_points(&all[0], &all), 10.0);
    }

    #[test]
    fn bad_weights_are_refused_with_the_name() {
        let all = suite();
        let unknown = Weights::from_toml("[tests]\nzz = 1\n").unwrap();
        assert!(unknown.check(&all).unwrap_err().contains("\"zz\""));
        let negative = Weights::from_toml("[parts]\nb = -1\n").unwrap();
        assert!(negative.check(&all).unwrap_err().contains("non-negative"));
        assert!(Weights::from_toml("[test]\na1 = 1\n").is_err());
        assert!(Weights::from_toml("[tests]\na1 = \"ten\"\n").is_err());
    }

    #[test]
    fn points_print_whole_or_with_two_decimals() {
        assert_eq!(points(10.0), "10");
        assert_eq!(points(0.0), "0");
        assert_eq!(points(20.0 / 3.0), "6.67");
    }
}
