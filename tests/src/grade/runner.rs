//! Running (scenario, seed) pairs: a pool of `--jobs` threads over one queue, each running
//! its runs in a worker process of its own ([`super::worker`]) or, with `--in-process`,
//! in the thread itself; and a serial, trace-capturing replay for `--trace`.

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::pretty::{self, TraceView};
use super::report::replay_command;
use super::worker::{Limits, Worker, WorkerCommand};
use super::GradeArgs;
use crate::scenario::{self, Scenario};

/// Largest trace file `--save-traces` writes; the rest of a longer trace is left out.
const MAX_TRACE_FILE: u64 = 64 << 20;

/// Width of a saved trace.
const TRACE_FILE_WIDTH: usize = 160;

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
    /// Trace digest of the run (0 when it panicked or its process died).
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

/// Where runs run: worker processes, or the grading threads themselves.
pub(super) enum Isolation<'a> {
    Processes(&'a WorkerCommand, Limits),
    InProcess,
}

/// Every scenario over every seed on `jobs` threads; the runs come back in (scenario,
/// seed) order whatever order they finished in.
pub(super) fn run_all(
    scenarios: &[Scenario],
    seeds: &[u64],
    jobs: usize,
    args: &GradeArgs,
    command: &str,
    isolation: &Isolation<'_>,
) -> Vec<Run> {
    let work: Vec<(&Scenario, u64)> = scenarios
        .iter()
        .flat_map(|s| seeds.iter().map(move |&seed| (s, seed)))
        .collect();
    let progress = Progress::new(scenarios, seeds.len());
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::with_capacity(work.len()));
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                let mut worker = match isolation {
                    Isolation::Processes(command, limits) => {
                        Some(Worker::new(command, limits.clone()))
                    }
                    Isolation::InProcess => None,
                };
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(scenario, seed)) = work.get(i) else {
                        break;
                    };
                    let run = match &mut worker {
                        Some(worker) => match worker.run(scenario, seed) {
                            Ok(run) => run,
                            Err(run) => {
                                save_reason(args.save_traces.as_deref(), command, &run);
                                run
                            }
                        },
                        None => {
                            let run = grade_one(scenario, seed, args.check_determinism);
                            if let (Some(dir), Some(_)) = (&args.save_traces, &run.error) {
                                if let Err(e) = save_trace(dir, command, scenario, &run) {
                                    eprintln!("grade: cannot save the trace: {e}");
                                }
                            }
                            run
                        }
                    };
                    progress.finished(i / seeds.len().max(1), &run);
                    results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((i, run));
                }
            });
        }
    });
    progress.finish();
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, run)| run).collect()
}

/// What grading shows while it runs: a progress bar on a terminal, otherwise a line per
/// test as its last seed finishes.
struct Progress {
    bar: Option<ProgressBar>,
    /// Per test: (name, runs left, runs failed).
    tests: Mutex<Vec<(&'static str, usize, usize)>>,
    tests_done: AtomicUsize,
    started: Instant,
}

impl Progress {
    fn new(scenarios: &[Scenario], seeds: usize) -> Self {
        let runs = (scenarios.len() * seeds) as u64;
        let bar = io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(runs);
            bar.set_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} runs, {elapsed} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Progress {
            bar,
            tests: Mutex::new(scenarios.iter().map(|s| (s.name, seeds, 0)).collect()),
            tests_done: AtomicUsize::new(0),
            started: Instant::now(),
        }
    }

    /// Run `run` of test number `test` finished.
    fn finished(&self, test: usize, run: &Run) {
        if let Some(bar) = &self.bar {
            if run.error.is_some() {
                bar.set_message(format!("{} failed (seed {})", run.test, run.seed));
            }
            bar.inc(1);
            return;
        }
        let mut tests = self.tests.lock().unwrap_or_else(|e| e.into_inner());
        let total = tests.len();
        let Some((name, left, failed)) = tests.get_mut(test) else {
            return;
        };
        *left = left.saturating_sub(1);
        *failed += usize::from(run.error.is_some());
        if *left == 0 {
            let done = self.tests_done.fetch_add(1, Ordering::Relaxed) + 1;
            let verdict = match *failed {
                0 => "passed".to_string(),
                n => format!("FAILED {n} seeds"),
            };
            eprintln!(
                "grade: {done}/{total} {name} {verdict} ({:.0}s)",
                self.started.elapsed().as_secs_f64()
            );
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Every scenario over every seed in this thread, each with trace capture on, printing each
/// run's event log to `out` as `args` filter it. A run past `--run-timeout` ends the
/// process (nothing else can stop a run in this thread).
pub(super) fn replay_traced(
    scenarios: &[Scenario],
    seeds: &[u64],
    args: &GradeArgs,
    out: &mut dyn Write,
) -> io::Result<Vec<Run>> {
    let view = TraceView {
        nodes: args.nodes.clone(),
        topics: args.topics.clone(),
        width: args.width,
    };
    let mut runs = Vec::new();
    for scenario in scenarios {
        for &seed in seeds {
            let watchdog = Watchdog::start(scenario.name, seed, args.run_timeout);
            let (run, trace) =
                scenario::capture_trace(|| grade_one(scenario, seed, args.check_determinism));
            drop(watchdog);
            writeln!(out, "== {} seed {} ==", run.test, run.seed)?;
            pretty::render(out, &trace, &view)?;
            writeln!(out)?;
            runs.push(run);
        }
    }
    Ok(runs)
}

/// Ends the process with a message if it is not dropped within its timeout.
struct Watchdog {
    _cancel: mpsc::Sender<()>,
}

impl Watchdog {
    fn start(test: &'static str, seed: u64, timeout: Duration) -> Self {
        let (cancel, cancelled) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = cancelled.recv_timeout(timeout) {
                eprintln!(
                    "grade: {test} seed {seed} timed out after {} of wall-clock time (--run-timeout)",
                    humantime::format_duration(timeout)
                );
                std::process::exit(1);
            }
        });
        Watchdog { _cancel: cancel }
    }
}

/// Runs one scenario with one seed, turning a panic into a failure; with `twice`, runs it
/// again and fails on a digest mismatch.
pub(super) fn grade_one(scenario: &Scenario, seed: u64, twice: bool) -> Run {
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

/// The file `--save-traces DIR` keeps a failed run's trace in.
fn trace_file(dir: &Path, run: &Run) -> PathBuf {
    dir.join(format!("{}-seed-{}.log", run.test, run.seed))
}

/// Replays the failed `run` with its trace captured and writes the trace, after the failure
/// and its replay command, to its file in `dir` (at most [`MAX_TRACE_FILE`] bytes).
pub(super) fn save_trace(
    dir: &Path,
    command: &str,
    scenario: &Scenario,
    run: &Run,
) -> io::Result<()> {
    let (_, trace) = scenario::capture_trace(|| scenario::run_one(scenario, run.seed));
    let mut file = create_trace_file(dir, command, run)?;
    let view = TraceView {
        nodes: Vec::new(),
        topics: Vec::new(),
        width: TRACE_FILE_WIDTH,
    };
    let mut limited = Limited {
        inner: &mut file,
        left: MAX_TRACE_FILE,
    };
    match pretty::render(&mut limited, &trace, &view) {
        Err(e) if e.kind() == io::ErrorKind::FileTooLarge => writeln!(
            file,
            "\n[the trace goes on; this file keeps its first {} bytes]",
            MAX_TRACE_FILE
        ),
        other => other,
    }
}

/// Writes the reason a run left no trace (its process died or was stopped) to its file in
/// `dir`, if any; a failure to write is reported, not fatal.
fn save_reason(dir: Option<&Path>, command: &str, run: &Run) {
    let (Some(dir), Some(_)) = (dir, &run.error) else {
        return;
    };
    let written = create_trace_file(dir, command, run).and_then(|mut file| {
        writeln!(
            file,
            "No trace: the run's process did not finish the run. The replay runs it in this process, with its trace."
        )
    });
    if let Err(e) = written {
        eprintln!("grade: cannot save the trace: {e}");
    }
}

/// Creates the trace file of `run` in `dir` with its header: the failure and the replay.
fn create_trace_file(dir: &Path, command: &str, run: &Run) -> io::Result<File> {
    std::fs::create_dir_all(dir)?;
    let mut file = File::create(trace_file(dir, run))?;
    writeln!(
        file,
        "{} seed {}: {}",
        run.test,
        run.seed,
        run.error.as_deref().unwrap_or("passed")
    )?;
    writeln!(file, "replay: {}\n", replay_command(command, run))?;
    Ok(file)
}

/// A writer that fails with `FileTooLarge` once `left` bytes are written.
struct Limited<'w> {
    inner: &'w mut dyn Write,
    left: u64,
}

impl Write for Limited<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() as u64 > self.left {
            return Err(io::Error::from(io::ErrorKind::FileTooLarge));
        }
        self.left -= buf.len() as u64;
        self.inner.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
