//! Grading: run lab scenarios over many seeds, score them, and replay any failure exactly.
//!
//! `shardkv grade` is a thin wrapper around [`Suite::reference`]; a course grades a
//! student's crate with a grading binary of its own (the README's "Grading a course", and
//! `labs/grader`), whose whole `main` is one expression over the student's types:
//!
//! ```no_run
//! # use shardkv_tests::{grade::Suite, raft_lab::ReplicaLab};
//! fn main() -> std::process::ExitCode {
//!     Suite::new("cargo run -p grader --").raft::<ReplicaLab>().main()
//! }
//! ```
//!
//! Every scenario is a deterministic function of its seed, so grading is embarrassingly
//! parallel: `--jobs` threads pull (scenario, seed) pairs from one queue, each run builds
//! its own simulator, and a failure is replayed exactly by running the same scenario with
//! the same seed. Each failure is listed with its seed, its trace digest and the command
//! that replays it (`<command> TEST --seed S --trace`); the replay prints the same digest
//! and, with `--trace`, the run's event log, one column per node (see [`pretty`]).
//!
//! Isolation: [`Suite::main`] (and `shardkv grade`) run every run in a worker process
//! ([`worker`]), so a run that hangs past `--run-timeout` (60 s), aborts, overflows its
//! stack or allocates past `--run-memory` fails with that reason and grading goes on.
//! [`Suite::run`] runs in its own threads unless [`Suite::in_child_processes`] says how
//! to start workers; so does `--in-process` (for a debugger).
//!
//! Scale: a test is worth [`POINTS_PER_TEST`] points unless weighted otherwise (see
//! [`Weights`]) and earns them only when *all* of its seeds pass (one failing seed fails
//! the test, as a flaky test fails in 6.824); a part's score is the sum of its tests, the
//! total the sum of the parts. `--gradescope FILE` and `--junit FILE` write the scores for
//! autograders and CI; `--save-traces DIR` keeps the event log of every failed run.
//!
//! Exit codes: 0 when every run passed (or for `--list`), 1 when any run failed, 2 when a
//! selector names no part or test, the weights are bad, or output failed.
//!
//! Caveats: `--trace` replays in the calling process, one run after another, and ends it
//! if a run passes `--run-timeout`; harnesses that do not build their simulator with
//! [`crate::sim_run`] yield an empty log. A run that dies leaves no trace (its file under
//! `--save-traces` says so); its replay, in one process, shows its log up to the end.

pub mod pretty;
mod report;
mod runner;
mod score;
pub mod worker;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::kv_lab::{self, KvLab};
use crate::master_lab::{self, MasterLab};
use crate::raft_lab::{self, RaftLab, RaftLabMembership};
use crate::scenario::{self, Scenario};

pub use runner::Run;
pub use score::Weights;
pub use worker::WorkerCommand;

use runner::Isolation;
use worker::Limits;

/// Points a test earns when every seed passes.
pub const POINTS_PER_TEST: u32 = 10;

/// Arguments of a grading command (`shardkv grade`, or a grading crate's `main`).
#[derive(clap::Args, Clone, Debug)]
pub struct GradeArgs {
    /// Parts (e.g. `raft-election`) or test names to run; all when none are given.
    pub selectors: Vec<String>,
    /// Number of seeds per test.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub seeds: u64,
    /// First seed; seeds run from here upward.
    #[arg(long, default_value_t = 1)]
    pub first_seed: u64,
    /// Run exactly this one seed (replay a reported failure).
    #[arg(long, conflicts_with_all = ["seeds", "first_seed"])]
    pub seed: Option<u64>,
    /// Worker threads (default: the number of cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Run every seed twice and fail on any trace digest mismatch.
    #[arg(long)]
    pub check_determinism: bool,
    /// List parts and tests, then exit.
    #[arg(long)]
    pub list: bool,
    /// Print the results as JSON on stdout instead of a table.
    #[arg(long, conflicts_with = "trace")]
    pub json: bool,
    /// Print the readable event log of the replayed run (needs `--seed`).
    #[arg(long, requires = "seed")]
    pub trace: bool,
    /// With `--trace`: show only these nodes (name like `raft-1`, node id, or `test` for
    /// lines of the harness and simulator). Repeatable.
    #[arg(long = "node", requires = "trace")]
    pub nodes: Vec<String>,
    /// With `--trace`: show only lines of these topics (e.g. `role`, `sim`). Repeatable.
    #[arg(long = "topic", requires = "trace")]
    pub topics: Vec<String>,
    /// With `--trace`: width of the event log in characters.
    #[arg(long, default_value_t = 160, requires = "trace")]
    pub width: usize,
    /// Wall-clock limit of one run (e.g. `60s`, `2m`): a run past it is stopped and fails
    /// as timed out.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub run_timeout: Duration,
    /// Memory limit of a worker process, which runs one run at a time (e.g. `4GiB`,
    /// `512MiB`): an allocation past it fails the run as out of memory.
    #[arg(long, default_value = "4GiB")]
    pub run_memory: bytesize::ByteSize,
    /// Run every test in this process, on threads: no time or memory limits, and a crash
    /// or hang takes the grader down (for a debugger).
    #[arg(long)]
    pub in_process: bool,
    /// Points per test and part, from a TOML file (`[tests]` and `[parts]` tables of
    /// points); they override the grading program's own.
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// Also write the scores as Gradescope's `results.json` to FILE.
    #[arg(long, value_name = "FILE")]
    pub gradescope: Option<PathBuf>,
    /// Also write the results as JUnit XML to FILE.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write the event log of every failed run to DIR, one file each (`TEST-seed-S.log`).
    #[arg(long, value_name = "DIR")]
    pub save_traces: Option<PathBuf>,
}

/// Parses `argv` (program name first) as grading arguments.
#[derive(clap::Parser, Debug)]
#[command(
    name = "grade",
    about = "Run lab scenarios over many seeds and score them"
)]
struct GradeCli {
    #[command(flatten)]
    args: GradeArgs,
}

impl GradeArgs {
    /// Parse `argv` (the program name first), as a lab crate's `main` receives it.
    pub fn try_parse_from<I, T>(argv: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        <GradeCli as clap::Parser>::try_parse_from(argv).map(|cli| cli.args)
    }
}

/// How a grading run ended; converts into the process exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Every run passed (exit 0).
    Passed,
    /// Some run failed (exit 1).
    Failed,
    /// The arguments named no such part or test, the weights are bad, or output failed
    /// (exit 2).
    Usage,
}

impl From<Status> for ExitCode {
    fn from(status: Status) -> ExitCode {
        match status {
            Status::Passed => ExitCode::SUCCESS,
            Status::Failed => ExitCode::FAILURE,
            Status::Usage => ExitCode::from(2),
        }
    }
}

/// The scenarios to grade and the command that replays one of them.
#[derive(Clone, Debug)]
pub struct Suite {
    scenarios: Vec<Scenario>,
    command: String,
    weights: Weights,
    worker: Option<WorkerCommand>,
}

impl Suite {
    /// An empty suite whose failures print `command TEST --seed S --trace` as their replay
    /// (e.g. `"cargo run -p my-raft --"`).
    pub fn new(command: &str) -> Self {
        Suite {
            scenarios: Vec::new(),
            command: command.to_string(),
            weights: Weights::default(),
            worker: None,
        }
    }

    /// Every registered scenario against the reference implementations: `shardkv grade`.
    pub fn reference() -> Self {
        Suite::new("shardkv grade").scenarios(scenario::all())
    }

    /// Add the Raft lab's scenarios (parts `raft-*`) for implementation `L`.
    pub fn raft<L: RaftLab>(self) -> Self {
        self.scenarios(raft_lab::lab_scenarios::<L>())
    }

    /// Add the Raft membership scenario for `L` (needs [`RaftLabMembership`]).
    pub fn raft_membership<L: RaftLabMembership>(self) -> Self {
        self.scenarios(raft_lab::membership_scenarios::<L>())
    }

    /// Add the shard-master lab's scenarios (part `master`) for implementation `L`.
    pub fn master<L: MasterLab>(self) -> Self {
        self.scenarios(master_lab::lab_scenarios::<L>())
    }

    /// Add the sharded KV lab's scenarios (part `kv`) for replica-group implementation
    /// `L` (the shard master is ours).
    pub fn kv<L: KvLab>(self) -> Self {
        self.scenarios(kv_lab::lab_scenarios::<L>())
    }

    /// Add arbitrary scenarios (a course's own, or a test's).
    pub fn scenarios(mut self, scenarios: Vec<Scenario>) -> Self {
        self.scenarios.extend(scenarios);
        self
    }

    /// Lays `weights` over the suite's (a test's points, a part's points).
    pub fn weights(mut self, weights: &Weights) -> Self {
        self.weights = self.weights.merged(weights);
        self
    }

    /// Test `name` is worth `points` (default [`POINTS_PER_TEST`]).
    pub fn test_points(mut self, name: &str, points: f64) -> Self {
        self.weights.tests.insert(name.to_string(), points);
        self
    }

    /// Part `part`'s tests share `points`, in proportion to their own points.
    pub fn part_points(mut self, part: &str, points: f64) -> Self {
        self.weights.parts.insert(part.to_string(), points);
        self
    }

    /// Run every run in a worker process started by `worker`, which must build this same
    /// suite and call [`Suite::run`] with the same arguments (see [`worker`]).
    pub fn in_child_processes(mut self, worker: WorkerCommand) -> Self {
        self.worker = Some(worker);
        self
    }

    /// The scenarios, in grading order.
    pub fn list(&self) -> &[Scenario] {
        &self.scenarios
    }

    /// Parse the process arguments and grade, each run in a worker process that is this
    /// program again, printing on stdout; the exit code is 0 only when everything passed.
    /// This is the whole `main` of a grading crate.
    pub fn main(&self) -> ExitCode {
        let args = match GradeArgs::try_parse_from(std::env::args_os()) {
            Ok(args) => args,
            Err(e) => e.exit(),
        };
        self.clone()
            .in_this_process_again()
            .run(&args, &mut std::io::stdout())
            .into()
    }

    /// Workers are this program started with this process's arguments (as `main` and
    /// `shardkv grade` are); without a path to this program, runs stay in this process.
    pub fn in_this_process_again(self) -> Self {
        match WorkerCommand::this_process() {
            Ok(worker) => self.in_child_processes(worker),
            Err(e) => {
                eprintln!("grade: cannot find this program ({e}); runs stay in this process");
                self
            }
        }
    }

    /// Grade as `args` ask, writing the table (or JSON, list, trace) to `out`.
    pub fn run(&self, args: &GradeArgs, out: &mut dyn Write) -> Status {
        match self.try_run(args, out) {
            Ok(status) => status,
            Err(e) => {
                eprintln!("grade: cannot write the results: {e}");
                Status::Usage
            }
        }
    }

    fn try_run(&self, args: &GradeArgs, out: &mut dyn Write) -> std::io::Result<Status> {
        if self.worker.is_some() && worker::is_worker() {
            return Ok(worker::serve(self, args));
        }
        if let Err(message) = check_names(&self.scenarios) {
            eprintln!("{}: {message}", self.command);
            return Ok(Status::Usage);
        }
        if args.list {
            report::print_list(out, &self.scenarios)?;
            return Ok(Status::Passed);
        }
        let selected = match select(&self.scenarios, &args.selectors) {
            Ok(selected) => selected,
            Err(message) => {
                eprintln!("{0}: {message} (see `{0} --list`)", self.command);
                return Ok(Status::Usage);
            }
        };
        let weights = match &args.weights {
            Some(path) => match Weights::read(path) {
                Ok(file) => self.weights.merged(&file),
                Err(message) => {
                    eprintln!("{}: {message}", self.command);
                    return Ok(Status::Usage);
                }
            },
            None => self.weights.clone(),
        };
        if let Err(message) = weights.check(&self.scenarios) {
            eprintln!("{}: {message}", self.command);
            return Ok(Status::Usage);
        }
        let seeds: Vec<u64> = match args.seed {
            Some(seed) => vec![seed],
            None => (args.first_seed..args.first_seed.saturating_add(args.seeds)).collect(),
        };
        let jobs = args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let started = Instant::now();
        let isolation = match &self.worker {
            Some(worker) if !args.in_process => Isolation::Processes(
                worker,
                Limits {
                    run_timeout: args.run_timeout,
                    run_memory: args.run_memory,
                    twice: args.check_determinism,
                },
            ),
            _ => Isolation::InProcess,
        };
        let runs = if args.trace {
            runner::replay_traced(&selected, &seeds, args, out)?
        } else {
            runner::run_all(
                &selected,
                &seeds,
                jobs.max(1),
                args,
                &self.command,
                &isolation,
            )
        };
        let wall = started.elapsed();
        let scores = score::score(&selected, &self.scenarios, &weights, &runs);
        if let Some(path) = &args.gradescope {
            write_file(path, |file| {
                report::write_gradescope(file, &self.command, &scores, wall.as_secs_f64())
            })?;
        }
        if let Some(path) = &args.junit {
            write_file(path, |file| {
                report::write_junit(file, &self.command, &scores)
            })?;
        }
        if args.json {
            report::print_json(out, &runs)?;
        } else {
            report::print_table(out, &scores)?;
            report::print_failures(out, &self.command, &runs)?;
            let secs = wall.as_secs_f64();
            writeln!(
                out,
                "graded {} runs in {secs:.1}s with {jobs} jobs",
                runs.len()
            )?;
            if args.seed.is_some() {
                for run in &runs {
                    writeln!(
                        out,
                        "{} seed {}: trace digest {:016x}",
                        run.test, run.seed, run.digest
                    )?;
                }
            }
        }
        Ok(if runs.iter().all(|r| r.error.is_none()) {
            Status::Passed
        } else {
            Status::Failed
        })
    }
}

/// Writes `path` with `write`; errors name the file.
fn write_file(
    path: &std::path::Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let named =
        |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).map_err(named)?);
    write(&mut file).and_then(|()| file.flush()).map_err(named)
}

/// Refuses a suite with two tests of one name, or a name with whitespace (a test is
/// named on command lines and in a worker's requests).
fn check_names(all: &[Scenario]) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for s in all {
        if s.name.is_empty() || s.name.contains(char::is_whitespace) {
            return Err(format!(
                "the test name {:?} is empty or holds whitespace",
                s.name
            ));
        }
        if !seen.insert(s.name) {
            return Err(format!("two tests are named {:?}", s.name));
        }
    }
    Ok(())
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
