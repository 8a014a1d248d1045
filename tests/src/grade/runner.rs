//! Running (scenario, seed) pairs: a pool of worker threads over one queue for grading, and
//! a serial, trace-capturing replay for `--trace`.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::pretty::{self, TraceView};
use super::GradeArgs;
use crate::scenario::{self, Scenario};

/// One finished run of one scenario with one seed.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    /// The scenario's name.
    pub test: &'static str,
    /// Its lab part.
    pub part: &'static str,
    /// The seed it ran with.
    pub seed: u64,
    /// `None` when it passed, else the failure message.
    pub error: Option<String>,
    /// Trace digest of the run (0 when it panicked).
    pub digest: u64,
    /// Virtual time the run took.
    pub sim_secs: f64,
    /// Wall-clock time the run took.
    pub wall_secs: f64,
    /// Messages and requests delivered.
    pub rpcs: u64,
    /// Bytes of every payload sent.
    pub bytes: u64,
}

/// Every scenario over every seed on `jobs` threads, with a progress bar on stderr; the
/// runs come back in (scenario, seed) order whatever order they finished in.
pub(super) fn run_all(scenarios: &[Scenario], seeds: &[u64], jobs: usize, twice: bool) -> Vec<Run> {
    let work: Vec<(&Scenario, u64)> = scenarios
        .iter()
        .flat_map(|s| seeds.iter().map(move |&seed| (s, seed)))
        .collect();
    let bar = ProgressBar::new(work.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} runs, {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::with_capacity(work.len()));
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(scenario, seed)) = work.get(i) else {
                    break;
                };
                let run = grade_one(scenario, seed, twice);
                if run.error.is_some() {
                    bar.set_message(format!("{} failed (seed {})", run.test, run.seed));
                }
                bar.inc(1);
                results
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((i, run));
            });
        }
    });
    bar.finish_and_clear();
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, run)| run).collect()
}

/// Every scenario over every seed in this thread, each with trace capture on, printing each
/// run's event log to `out` as `args` filter it.
pub(super) fn replay_traced(
    scenarios: &[Scenario],
    seeds: &[u64],
    args: &GradeArgs,
    out: &mut dyn Write,
) -> std::io::Result<Vec<Run>> {
    let view = TraceView {
        nodes: args.nodes.clone(),
        topics: args.topics.clone(),
        width: args.width,
    };
    let mut runs = Vec::new();
    for scenario in scenarios {
        for &seed in seeds {
            let (run, trace) =
                scenario::capture_trace(|| grade_one(scenario, seed, args.check_determinism));
            writeln!(out, "== {} seed {} ==", run.test, run.seed)?;
            pretty::render(out, &trace, &view)?;
            writeln!(out)?;
            runs.push(run);
        }
    }
    Ok(runs)
}

/// Runs one scenario with one seed, turning a panic into a failure; with `twice`, runs it
/// again and fails on a digest mismatch.
fn grade_one(scenario: &Scenario, seed: u64, twice: bool) -> Run {
    let started = Instant::now();
    let outcome = scenario::run_one(scenario, seed);
    let wall = started.elapsed();
    let mut error = outcome.result.clone().err();
    if twice && error.is_none() {
        let again = scenario::run_one(scenario, seed);
        if again.digest != outcome.digest {
            error = Some(format!(
                "nondeterministic: trace digest {:016x} then {:016x}",
                outcome.digest, again.digest
            ));
        }
    }
    Run {
        test: scenario.name,
        part: scenario.part,
        seed,
        error,
        digest: outcome.digest,
        sim_secs: outcome.sim_time.as_secs_f64(),
        wall_secs: wall.as_secs_f64(),
        rpcs: outcome.rpcs,
        bytes: outcome.bytes,
    }
}
