//! `shardkv grade`: run the registered lab scenarios over many seeds and score them.
//!
//! Every scenario is a deterministic function of its seed, so grading is embarrassingly
//! parallel: `--jobs` worker threads pull (scenario, seed) pairs from one queue, each run
//! builds its own simulator, and a failure is replayed exactly by running the same
//! scenario with the same seed (`shardkv grade TEST --seed S`).
//!
//! Scoring: every test is worth [`POINTS_PER_TEST`] points and earns them only when all of
//! its seeds pass (one failing seed is a failed test, as with `go test` in 6.824); a part's
//! score is the sum of its tests.

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use shardkv_tests::scenario::{self, Scenario};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Points a test earns when every seed passes.
pub const POINTS_PER_TEST: u32 = 10;

/// Arguments of `shardkv grade`.
#[derive(clap::Args, Debug)]
pub struct GradeArgs {
    /// Parts (e.g. `raft-election`) or test names to run; all when none are given.
    selectors: Vec<String>,
    /// Number of seeds per test.
    #[arg(long, default_value_t = 10)]
    seeds: u64,
    /// First seed; seeds run from here upward.
    #[arg(long, default_value_t = 1)]
    first_seed: u64,
    /// Run exactly this one seed (replay a reported failure).
    #[arg(long, conflicts_with_all = ["seeds", "first_seed"])]
    seed: Option<u64>,
    /// Worker threads (default: the number of cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Run every seed twice and fail on any trace digest mismatch.
    #[arg(long)]
    check_determinism: bool,
    /// List parts and tests, then exit.
    #[arg(long)]
    list: bool,
    /// Print the results as JSON on stdout instead of a table.
    #[arg(long)]
    json: bool,
}

/// One finished run of one scenario with one seed.
#[derive(Debug, Serialize)]
struct Run {
    test: &'static str,
    part: &'static str,
    seed: u64,
    error: Option<String>,
    digest: u64,
    sim_secs: f64,
    wall_secs: f64,
    rpcs: u64,
    bytes: u64,
}

/// Entry point of `shardkv grade`; the exit code is 0 only when every run passed.
pub fn run(args: GradeArgs) -> ExitCode {
    let all = scenario::all();
    if args.list {
        print_list(&all);
        return ExitCode::SUCCESS;
    }
    let selected = match select(&all, &args.selectors) {
        Ok(selected) => selected,
        Err(message) => {
            eprintln!("shardkv grade: {message} (see `shardkv grade --list`)");
            return ExitCode::from(2);
        }
    };
    let seeds: Vec<u64> = match args.seed {
        Some(seed) => vec![seed],
        None => (args.first_seed..args.first_seed.saturating_add(args.seeds)).collect(),
    };
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let started = Instant::now();
    let runs = run_all(&selected, &seeds, jobs.max(1), args.check_determinism);
    let wall = started.elapsed();
    if args.json {
        match serde_json::to_string_pretty(&runs) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("shardkv grade: cannot encode results: {e}"),
        }
    } else {
        print_table(&selected, &runs);
        print_failures(&runs);
        println!(
            "graded {} runs in {:.1}s with {jobs} jobs",
            runs.len(),
            wall.as_secs_f64()
        );
        if args.seed.is_some() {
            for run in &runs {
                println!(
                    "{} seed {}: trace digest {:016x}",
                    run.test, run.seed, run.digest
                );
            }
        }
    }
    if runs.iter().all(|r| r.error.is_none()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_list(all: &[Scenario]) {
    let mut by_part: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in all {
        by_part.entry(s.part).or_default().push(s.name);
    }
    for (part, tests) in by_part {
        println!("{part}");
        for test in tests {
            println!("  {test}");
        }
    }
}

/// The scenarios named by `selectors` (parts or test names), in registry order.
fn select(all: &[Scenario], selectors: &[String]) -> Result<Vec<Scenario>, String> {
    for sel in selectors {
        if !all.iter().any(|s| s.part == sel || s.name == sel) {
            return Err(format!("no part or test named {sel:?}"));
        }
    }
    Ok(all
        .iter()
        .filter(|s| selectors.is_empty() || selectors.iter().any(|x| x == s.part || x == s.name))
        .cloned()
        .collect())
}

fn run_all(scenarios: &[Scenario], seeds: &[u64], jobs: usize, twice: bool) -> Vec<Run> {
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

fn print_table(scenarios: &[Scenario], runs: &[Run]) {
    println!(
        "{:<18} {:<34} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11} {:>6}",
        "part", "test", "passed", "sim mean", "sim max", "wall mean", "rpcs", "bytes", "score"
    );
    let mut part_scores: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    for s in scenarios {
        let mine: Vec<&Run> = runs.iter().filter(|r| r.test == s.name).collect();
        let n = mine.len().max(1) as f64;
        let passed = mine.iter().filter(|r| r.error.is_none()).count();
        let points = if passed == mine.len() {
            POINTS_PER_TEST
        } else {
            0
        };
        let entry = part_scores.entry(s.part).or_default();
        entry.0 += points;
        entry.1 += POINTS_PER_TEST;
        let sim_mean = mine.iter().map(|r| r.sim_secs).sum::<f64>() / n;
        let sim_max = mine.iter().map(|r| r.sim_secs).fold(0.0, f64::max);
        let wall_mean = mine.iter().map(|r| r.wall_secs).sum::<f64>() / n;
        let rpcs = mine.iter().map(|r| r.rpcs).sum::<u64>() / mine.len().max(1) as u64;
        let bytes = mine.iter().map(|r| r.bytes).sum::<u64>() / mine.len().max(1) as u64;
        println!(
            "{:<18} {:<34} {:>9} {:>8.1}s {:>8.1}s {:>8.3}s {:>9} {:>11} {:>6}",
            s.part,
            s.name,
            format!("{passed}/{}", mine.len()),
            sim_mean,
            sim_max,
            wall_mean,
            rpcs,
            bytes,
            points
        );
    }
    println!();
    let (mut total, mut max) = (0, 0);
    for (part, (score, out_of)) in &part_scores {
        println!("score {part:<18} {score:>4} / {out_of}");
        total += score;
        max += out_of;
    }
    println!("score {:<18} {total:>4} / {max}", "total");
}

fn print_failures(runs: &[Run]) {
    let failed: Vec<&Run> = runs.iter().filter(|r| r.error.is_some()).collect();
    if failed.is_empty() {
        return;
    }
    println!("\nfailures:");
    for run in failed {
        println!(
            "  {} seed {}: {}",
            run.test,
            run.seed,
            run.error.as_deref().unwrap_or("")
        );
        println!("    replay: shardkv grade {} --seed {}", run.test, run.seed);
    }
}
