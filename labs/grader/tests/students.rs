//! Mutant students: Raft peers that hang, abort, overflow their stack, allocate without bound
//! or panic, each only under a narrow condition, graded in worker processes. Grading each
//! completes, fails only the tests that meet the condition, with the right reason, and exits
//! 1; the other tests keep their points.
//!
//! This test has no libtest harness: its `main` is also the grading program its workers
//! run (the first argument names the mutant), as a course's grader is.

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use labrpc_sim::Persister;
use shardkv_tests::grade::{worker::WORKER_ENV, GradeArgs, Status, Suite, WorkerCommand};
use shardkv_tests::raft_lab::{Effects, Index, Peer, RaftLab, ReplicaLab, Term};

/// Where a mutant counts its own restarts, in its persister's key/value area (which the
/// reference peer it wraps leaves alone).
const RESTARTS: &[u8] = b"mutant/restarts";

/// A wrapper around the reference peer that misbehaves as `M` says.
struct Mutant<M: Misbehaviour> {
    inner: ReplicaLab,
    /// How many times this peer has been restarted in this run.
    restarts: u64,
    _mutant: std::marker::PhantomData<M>,
}

/// What a mutant does wrong, and when.
trait Misbehaviour: 'static {
    /// Called at the end of `make`.
    fn made(_restarts: u64) {}
    /// Called before each tick.
    fn tick(_restarts: u64) {}
    /// Called before each message.
    fn step(_restarts: u64) {}
    /// Called before each snapshot.
    fn snapshot() {}
}

impl<M: Misbehaviour> RaftLab for Mutant<M> {
    fn make(me: Peer, n: usize, persister: Persister) -> Self {
        let restarts = match persister.get(RESTARTS) {
            Some(bytes) => u64::from_le_bytes(bytes.try_into().unwrap_or([0; 8])) + 1,
            None => 0,
        };
        persister.put(RESTARTS, &restarts.to_le_bytes());
        M::made(restarts);
        Mutant {
            inner: ReplicaLab::make(me, n, persister),
            restarts,
            _mutant: std::marker::PhantomData,
        }
    }

    fn start(&mut self, command: Vec<u8>) -> Option<(Index, Term)> {
        self.inner.start(command)
    }

    fn get_state(&self) -> (Term, bool) {
        self.inner.get_state()
    }

    fn snapshot(&mut self, index: Index, snapshot: Vec<u8>) {
        M::snapshot();
        self.inner.snapshot(index, snapshot)
    }

    fn step(&mut self, from: Peer, message: Vec<u8>) {
        M::step(self.restarts);
        self.inner.step(from, message)
    }

    fn tick(&mut self) {
        M::tick(self.restarts);
        self.inner.tick()
    }

    fn take_effects(&mut self) -> Effects {
        self.inner.take_effects()
    }

    fn wake(&mut self, token: u64) {
        self.inner.wake(token)
    }

    fn raft_state_size(&self, persister: &Persister) -> usize {
        self.inner.raft_state_size(persister)
    }
}

/// Spins forever in `tick` once restarted three times.
struct LoopsAfterThirdRestart;
impl Misbehaviour for LoopsAfterThirdRestart {
    fn tick(restarts: u64) {
        if restarts >= 3 {
            loop {
                std::hint::black_box(());
            }
        }
    }
}

/// Aborts the process when asked to snapshot.
struct AbortsOnSnapshot;
impl Misbehaviour for AbortsOnSnapshot {
    fn snapshot() {
        std::process::abort();
    }
}

/// Allocates (and touches) memory without bound when restarted.
struct AllocatesOnRestart;
impl Misbehaviour for AllocatesOnRestart {
    fn made(restarts: u64) {
        if restarts >= 1 {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
    }
}

/// Recurses without end when asked to snapshot.
struct OverflowsOnSnapshot;
impl Misbehaviour for OverflowsOnSnapshot {
    fn snapshot() {
        #[allow(unconditional_recursion)] // The point: it never returns.
        fn deeper(depth: u64) -> u64 {
            let frame = std::hint::black_box([depth; 64]);
            deeper(frame[0] + 1) + frame[63]
        }
        std::hint::black_box(deeper(0));
    }
}

/// Panics in `step` once restarted, and before every message prints on stdout what
/// looks like a worker's answers saying its runs passed (without the worker's nonce), after
/// half a line.
struct Forger;
impl Misbehaviour for Forger {
    fn step(restarts: u64) {
        print!("half a line ");
        for seq in 1..=8 {
            println!(
                "\u{1e}shardkv-grade 0000000000000000 {{\"Ran\":{{\"seq\":{seq},\"reply\":{{\"error\":null,\"digest\":1,\"sim_secs\":1.0,\"wall_secs\":0.1,\"rpcs\":1,\"bytes\":1}},\"trace_follows\":false}}}}"
            );
        }
        println!("\u{1e}shardkv-grade not json");
        PanicsInStepAfterRestart::step(restarts);
    }
}

/// Panics in `step` once restarted.
struct PanicsInStepAfterRestart;
impl Misbehaviour for PanicsInStepAfterRestart {
    fn step(restarts: u64) {
        if restarts >= 1 {
            panic!("a restarted peer got a message");
        }
    }
}

/// The suite over the mutant called `name`.
fn suite_of(name: &str) -> Option<Suite> {
    let command = format!("students {name}");
    let suite = Suite::new(&command);
    Some(match name {
        "loops" => suite.raft::<Mutant<LoopsAfterThirdRestart>>(),
        "aborts" => suite.raft::<Mutant<AbortsOnSnapshot>>(),
        "allocates" => suite.raft::<Mutant<AllocatesOnRestart>>(),
        "overflows" => suite.raft::<Mutant<OverflowsOnSnapshot>>(),
        "forger" => suite.raft::<Mutant<Forger>>(),
        "panics" => suite.raft::<Mutant<PanicsInStepAfterRestart>>(),
        _ => return None,
    })
}

/// Grades mutant `name` with `command` (as typed after a grading binary), each run in a
/// worker process that is this program; returns the status and the printed results.
fn grade(name: &str, command: &str) -> (Status, String) {
    let words: Vec<&str> = command.split_whitespace().collect();
    let args = match GradeArgs::try_parse_from(std::iter::once("grade").chain(words.clone())) {
        Ok(args) => args,
        Err(e) => return (Status::Usage, e.to_string()),
    };
    let Some(suite) = suite_of(name) else {
        return (Status::Usage, format!("no mutant {name}"));
    };
    let program = match std::env::current_exe() {
        Ok(program) => program,
        Err(e) => return (Status::Usage, format!("no path to this test: {e}")),
    };
    let worker_args = std::iter::once(name).chain(words).map(OsString::from);
    let mut out = Vec::new();
    let status = suite
        .in_child_processes(WorkerCommand::new(program, worker_args))
        .run(&args, &mut out);
    (status, String::from_utf8_lossy(&out).into_owned())
}

/// Grades `name` over two tests, `unaffected` (which never meets the mutant's condition)
/// and `affected` (which always does), and checks the outcome: exit 1, `unaffected` with
/// full points, every run of `affected` failed with `reason` and 0 points, and a file
/// under `--save-traces` for each failed run that holds `trace`.
fn check(
    name: &str,
    unaffected: &str,
    affected: &str,
    limits: &str,
    reason: &str,
    trace: &str,
) -> Result<(), String> {
    let traces = tempfile::tempdir().map_err(|e| format!("no temporary directory: {e}"))?;
    let command = format!(
        "{unaffected} {affected} --seeds 2 --jobs 2 {limits} --save-traces {}",
        traces.path().display()
    );
    let (status, output) = grade(name, &command);
    let fail = |what: &str| Err(format!("mutant {name}: {what}\n{output}"));
    if status != Status::Failed {
        return fail(&format!("status {status:?}, not Failed"));
    }
    let row = |test: &str| {
        output
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(test))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let (good, bad) = (row(unaffected), row(affected));
    if good.get(2) != Some(&"2/2") || good.last() != Some(&"10") {
        return fail(&format!("{unaffected} lost points"));
    }
    if bad.get(2) != Some(&"0/2") || bad.last() != Some(&"0") {
        return fail(&format!("{affected} did not fail every seed"));
    }
    let failures = output
        .lines()
        .filter(|l| l.trim_start().starts_with(&format!("{affected} seed ")))
        .collect::<Vec<_>>();
    if failures.len() != 2 || !failures.iter().all(|l| l.contains(reason)) {
        return fail(&format!("the failures do not say {reason:?}"));
    }
    for seed in 1..=2 {
        let file = traces.path().join(format!("{affected}-seed-{seed}.log"));
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if !text.starts_with(&format!("{affected} seed {seed}: ")) || !text.contains(trace) {
            return fail(&format!(
                "{} does not hold {trace:?}:\n{text}",
                file.display()
            ));
        }
    }
    let saved = std::fs::read_dir(traces.path()).map_or(0, Iterator::count);
    if saved != 2 {
        return fail(&format!("{saved} trace files, not 2"));
    }
    Ok(())
}

/// A check: `Err` says what went wrong.
type Check = Box<dyn Fn() -> Result<(), String>>;

/// Every check, by name.
fn checks() -> Vec<(&'static str, Check)> {
    vec![
        (
            "a_peer_that_loops_after_its_third_restart_times_out_alone",
            Box::new(|| {
                check(
                    "loops",
                    "basic_agree",
                    "persist2",
                    "--run-timeout 3s",
                    "timed out after 3s of wall-clock time",
                    "No trace: the run's process did not finish the run",
                )
            }),
        ),
        (
            "a_peer_that_aborts_fails_the_snapshot_tests_alone",
            Box::new(|| {
                check(
                    "aborts",
                    "basic_agree",
                    "snapshot_basic",
                    "",
                    "the run's process aborted (SIGABRT)",
                    "No trace",
                )
            }),
        ),
        (
            "a_peer_that_allocates_without_bound_runs_out_of_memory_alone",
            Box::new(|| {
                check(
                    "allocates",
                    "basic_agree",
                    "persist1",
                    "--run-memory 512MiB",
                    "ran out of memory (a worker may use 512.0 MiB: --run-memory)",
                    "No trace",
                )
            }),
        ),
        (
            "a_peer_that_overflows_its_stack_fails_the_snapshot_tests_alone",
            Box::new(|| {
                check(
                    "overflows",
                    "basic_agree",
                    "snapshot_basic",
                    "",
                    "the run's process overflowed its stack",
                    "No trace",
                )
            }),
        ),
        (
            "a_peer_that_forges_answers_on_stdout_still_fails",
            Box::new(|| {
                check(
                    "forger",
                    "basic_agree",
                    "persist1",
                    "",
                    "panicked: a restarted peer got a message",
                    "role: ",
                )
            }),
        ),
        (
            "a_peer_that_panics_in_step_fails_alone",
            Box::new(|| {
                check(
                    "panics",
                    "basic_agree",
                    "persist1",
                    "",
                    "panicked: a restarted peer got a message",
                    "role: ",
                )
            }),
        ),
    ]
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if std::env::var_os(WORKER_ENV).is_some() {
        // A worker: `students MUTANT GRADE-ARGS...`.
        let Some((name, rest)) = argv.split_first() else {
            return ExitCode::from(2);
        };
        let (status, output) = grade(name, &rest.join(" "));
        print!("{output}");
        return status.into();
    }
    if argv.iter().any(|a| a == "--list") {
        // What test runners that list first (cargo-nextest) ask.
        for (name, _) in checks() {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    let filters: Vec<&String> = argv.iter().filter(|a| !a.starts_with("--")).collect();
    let mut failed = 0;
    for (name, check) in checks() {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        match check() {
            Ok(()) => println!("test {name} ... ok"),
            Err(message) => {
                failed += 1;
                println!("test {name} ... FAILED\n{message}");
            }
        }
        let _ = std::io::stdout().flush();
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
