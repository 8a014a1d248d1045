//! The scenario registry: named, seeded simulations grouped into parts, and the runner that
//! `cargo test` and a grading command use to run them over many seeds.
//!
//! A scenario is a plain `fn(seed) -> Outcome`: it builds its own simulator from the seed,
//! runs to completion in virtual time, and reports pass or a failure message together with
//! a digest of its event trace (same seed, same digest) and some statistics.
//!
//! Seeds: `SHARDKV_SEED=S` runs seed `S` only; `SHARDKV_SEEDS=N` runs seeds `1..=N`;
//! otherwise seeds `1..=3`. A failure panics with the seed and the command that replays it.
//!
//! Trace capture: [`capture_trace`] runs a scenario with its readable trace log switched on
//! and returns the log next to the outcome (`shardkv grade TEST --seed S --trace`). The
//! request travels in a thread-local, so scenario signatures stay `fn(seed) -> Outcome`;
//! every harness honours it by building its simulator with [`crate::sim_run::new_sim`] and
//! its outcome with [`crate::sim_run::finish`].

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use labrpc_sim::{Sim, TraceLine};

/// Seeds run when the environment names none.
pub const DEFAULT_SEEDS: u64 = 3;

/// What one run of a scenario produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Pass, or the first failure found.
    pub result: Result<(), String>,
    /// Digest of the simulator's event trace: equal for equal seeds.
    pub digest: u64,
    /// Virtual time the run took.
    pub sim_time: Duration,
    /// Messages and requests delivered.
    pub rpcs: u64,
    /// Bytes of every payload sent.
    pub bytes: u64,
}

/// A named scenario of a lab part.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    /// Unique name; also the name of its `#[test]`.
    pub name: &'static str,
    /// Lab part: `raft-election`, `raft-agreement`, `raft-persistence`, `raft-snapshot`,
    /// `master`, `kv`.
    pub part: &'static str,
    /// Run it with one seed.
    pub run: fn(seed: u64) -> Outcome,
}

/// The seeds the environment asks for (see the module docs).
pub fn seeds_from_env() -> Vec<u64> {
    let parse = |name: &str| -> Option<u64> {
        let value = std::env::var(name).ok()?;
        Some(
            value
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
        )
    };
    if let Some(seed) = parse("SHARDKV_SEED") {
        return vec![seed];
    }
    let count = parse("SHARDKV_SEEDS").unwrap_or(DEFAULT_SEEDS);
    (1..=count).collect()
}

/// Run `scenario` with `seed`, turning a panic inside it into a failed outcome.
pub fn run_one(scenario: &Scenario, seed: u64) -> Outcome {
    match catch_unwind(AssertUnwindSafe(|| (scenario.run)(seed))) {
        Ok(outcome) => outcome,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic with a non-string payload".to_string());
            Outcome {
                result: Err(format!("panicked: {message}")),
                digest: 0,
                sim_time: Duration::ZERO,
                rpcs: 0,
                bytes: 0,
            }
        }
    }
}

/// The message a failed run reports, with the command that replays it. The integration
/// test target is named after the part's prefix (`raft-election` runs in `--test raft`).
pub fn failure_message(scenario: &Scenario, seed: u64, message: &str) -> String {
    let target = scenario.part.split('-').next().unwrap_or(scenario.part);
    format!(
        "scenario {name} failed with seed {seed}: {message}\n replay: SHARDKV_SEED={seed} cargo test -p shardkv-tests --test {target} {name}",
        name = scenario.name
    )
}

/// Run `scenario` over `seeds`, returning every outcome; stop at the first failure and
/// return its message (with the replay command) instead.
pub fn run_seeds(scenario: &Scenario, seeds: &[u64]) -> Result<Vec<Outcome>, String> {
    let mut outcomes = Vec::with_capacity(seeds.len());
    for &seed in seeds {
        let outcome = run_one(scenario, seed);
        if let Err(message) = &outcome.result {
            return Err(failure_message(scenario, seed, message));
        }
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// Run `scenario` over the seeds of the environment; panic on the first failure.
pub fn check(scenario: &Scenario) {
    if let Err(message) = run_seeds(scenario, &seeds_from_env()) {
        panic!("{message}");
    }
}

/// The scenario called `name` in `scenarios`; panics if there is none.
pub fn find(scenarios: &[Scenario], name: &str) -> Scenario {
    *scenarios
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no scenario named {name}"))
}

/// The readable trace of one run: its lines and the names of its simulator nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CapturedTrace {
    /// Every trace line, in the order written.
    pub lines: Vec<TraceLine>,
    /// `node_names[id]` is the name simulator node `id` was added under.
    pub node_names: Vec<String>,
}

/// The capture request of this thread: `None` when nobody asked for a trace.
enum Capture {
    /// Asked for; no simulator built yet.
    Requested,
    /// The run's simulator, kept so that a run that panics still yields its log.
    Running(Sim),
    /// The run finished and handed its trace over.
    Done(CapturedTrace),
}

thread_local! {
    static CAPTURE: RefCell<Option<Capture>> = const { RefCell::new(None) };
}

/// Run `f` (typically `|| run_one(&scenario, seed)`) with trace capture on, returning its
/// result and the trace of the simulator it built (empty if it built none).
pub fn capture_trace<T>(f: impl FnOnce() -> T) -> (T, CapturedTrace) {
    /// Clears the request even when `f` panics.
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            CAPTURE.with(|c| c.borrow_mut().take());
        }
    }
    CAPTURE.with(|c| *c.borrow_mut() = Some(Capture::Requested));
    let reset = Reset;
    let value = f();
    let capture = CAPTURE.with(|c| c.borrow_mut().take());
    drop(reset);
    let trace = match capture {
        Some(Capture::Done(trace)) => trace,
        Some(Capture::Running(sim)) => captured_from(&sim),
        Some(Capture::Requested) | None => CapturedTrace::default(),
    };
    (value, trace)
}

/// Whether this thread runs under [`capture_trace`].
pub(crate) fn capture_requested() -> bool {
    CAPTURE.with(|c| c.borrow().is_some())
}

/// Remember `sim` as the captured run's simulator (no-op without a capture request).
pub(crate) fn capture_sim(sim: &Sim) {
    CAPTURE.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_some() {
            *c = Some(Capture::Running(sim.clone()));
        }
    });
}

/// Hand `sim`'s finished trace to the capture (no-op without a capture request).
pub(crate) fn capture_finished(sim: &Sim) {
    CAPTURE.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_some() {
            *c = Some(Capture::Done(captured_from(sim)));
        }
    });
}

fn captured_from(sim: &Sim) -> CapturedTrace {
    CapturedTrace {
        lines: sim.trace_log(),
        node_names: (0..).map_while(|id| sim.name(id)).collect(),
    }
}

/// Every registered scenario of every lab part, Raft parts first, in a stable order.
pub fn all() -> Vec<Scenario> {
    let mut all = crate::raft_lab::raft_scenarios();
    all.extend(crate::master_lab::scenarios());
    all.extend(crate::kv_lab::scenarios());
    all
}
