//! Grading: run lab scenarios over many seeds, score them, and replay any failure exactly.
//!
//! `shardkv grade` is a thin wrapper around [`Suite::reference`]; a course grades a
//! student's crate with a three-line `main` over the student's types:
//!
//! ```no_run
//! # use shardkv_tests::{grade::Suite, raft_lab::ReplicaLab};
//! fn main() -> std::process::ExitCode {
//!     Suite::new("cargo run -p my-raft --").raft::<ReplicaLab>().main()
//! }
//! ```
//!
//! Every scenario is a deterministic function of its seed, so grading is embarrassingly
//! parallel: `--jobs` worker threads pull (scenario, seed) pairs from one queue, each run
//! builds its own simulator, and a failure is replayed exactly by running the same scenario
//! with the same seed. Each failure is listed with its seed, its trace digest and the
//! command that replays it (`<command> TEST --seed S --trace`); the replay prints the same
//! digest and, with `--trace`, the run's event log, one column per node (see [`pretty`]).
//!
//! Scale: every test is worth [`POINTS_PER_TEST`] points and earns them only when *all* of
//! its seeds pass (one failing seed fails the test, as a flaky test fails in 6.824); a
//! part's score is the sum of its tests, the total the sum of the parts.
//!
//! Exit codes: 0 when every run passed (or for `--list`), 1 when any run failed, 2 when a
//! selector names no part or test.
//!
//! Caveats: `--trace` replays in the calling thread, one run after another; harnesses that
//! do not build their simulator with [`crate::sim_run`] yield an empty log.

pub mod pretty;
mod report;
mod runner;

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use crate::kv_lab::{self, KvLab};
use crate::master_lab::{self, MasterLab};
use crate::raft_lab::{self, RaftLab, RaftLabMembership};
use crate::scenario::{self, Scenario};

pub use runner::Run;

/// Points a test earns when every seed passes.
pub const POINTS_PER_TEST: u32 = 10;

/// Arguments of a grading command (`shardkv grade`, or a lab crate's `main`).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct GradeArgs {
    /// Parts (e.g. `raft-election`) or test names to run; all when none are given.
    pub selectors: Vec<String>,
    /// Number of seeds per test.
    #[arg(long, default_value_t = 10)]
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
    /// The arguments named no such part or test, or output failed (exit 2).
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
}

impl Suite {
    /// An empty suite whose failures print `command TEST --seed S --trace` as their replay
    /// (e.g. `"cargo run -p my-raft --"`).
    pub fn new(command: &str) -> Self {
        Suite {
            scenarios: Vec::new(),
            command: command.to_string(),
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

    /// The scenarios, in grading order.
    pub fn list(&self) -> &[Scenario] {
        &self.scenarios
    }

    /// Parse the process arguments and grade, printing on stdout; the exit code is 0 only
    /// when everything passed. This is the whole `main` of a lab crate.
    pub fn main(&self) -> ExitCode {
        let args = match GradeArgs::try_parse_from(std::env::args_os()) {
            Ok(args) => args,
            Err(e) => e.exit(),
        };
        self.run(&args, &mut std::io::stdout().lock()).into()
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
        let seeds: Vec<u64> = match args.seed {
            Some(seed) => vec![seed],
            None => (args.first_seed..args.first_seed.saturating_add(args.seeds)).collect(),
        };
        let jobs = args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let started = Instant::now();
        let runs = if args.trace {
            runner::replay_traced(&selected, &seeds, args, out)?
        } else {
            runner::run_all(&selected, &seeds, jobs.max(1), args.check_determinism)
        };
        let wall = started.elapsed();
        if args.json {
            report::print_json(out, &runs)?;
        } else {
            report::print_table(out, &selected, &runs)?;
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
