//! Grading in child processes, so that code under test that hangs, aborts, overflows its
//! stack or allocates without bound fails its own run and grading goes on.
//!
//! The grader starts `--jobs` workers: its own program again, with its own arguments and
//! [`WORKER_ENV`] set, so the same `main` builds the same [`Suite`] and then serves runs
//! instead of grading. The parent writes a nonce as the first line on the worker's stdin,
//! then one request per line (`SEQ SEED TEST`), and reads the answer from its stdout: a
//! line that starts with a marker holding the nonce (which the code under test cannot
//! read: it is gone from stdin), then JSON naming the request's sequence number (anything else
//! the code under test prints, or a stale answer, is skipped). The worker runs its
//! requests one at a time, in its main thread, and marks the start of each on its stderr,
//! so the stderr kept to explain a death is the run's own. With `--save-traces`, a failed
//! run's answer comes first and the worker then replays it to write its trace, within a
//! second `--run-timeout`.
//!
//! Limits: a run that has not answered within `--run-timeout` (twice that with
//! `--check-determinism`, which runs it twice) is killed and fails as timed out; each
//! worker's data segment is limited to `--run-memory` (`RLIMIT_DATA`: heap and anonymous
//! mappings, at most the hard limit the grader was given), so an allocation past it fails
//! and Rust aborts with a message. A worker runs one run at a time but many runs in turn,
//! so the limit covers a run plus whatever earlier runs left allocated (normally nothing:
//! a run frees its simulator). A worker that dies fails the run it was on, with what its
//! exit status and its stderr since the run began say (out of memory, stack overflow,
//! abort, signal, exit status); the next run gets a new worker. Workers die with the
//! grader (`PR_SET_PDEATHSIG`), so a worker stuck in a loop does not outlive it.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::runner::{self, Run};
use super::{GradeArgs, Status, Suite};
use crate::scenario::Scenario;

/// Set (to `1`) in a worker's environment: the program serves runs instead of grading.
pub const WORKER_ENV: &str = "SHARDKV_GRADE_WORKER";

/// Starts every line a worker writes for the parent (an ASCII record separator and a
/// tag), followed by the worker's nonce and a space.
const MARKER: &str = "\u{1e}shardkv-grade ";

/// How long a worker whose stdin closed may take to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// Bytes of a worker's stderr kept to say why it died.
const STDERR_TAIL: usize = 4096;

/// Longest stdout line a worker's reader keeps; longer lines (the code under test's own
/// output) are skipped.
const MAX_LINE: u64 = 1 << 20;

/// Longest failure message a worker sends; longer ones are cut.
const MAX_MESSAGE: usize = 64 << 10;

/// How to start a worker: a program and the arguments that make it build the same suite
/// and call [`Suite::run`] with the same [`GradeArgs`].
#[derive(Clone, Debug)]
pub struct WorkerCommand {
    program: PathBuf,
    args: Vec<OsString>,
}

impl WorkerCommand {
    /// `program` started with `args`.
    pub fn new(program: impl Into<PathBuf>, args: impl IntoIterator<Item = OsString>) -> Self {
        WorkerCommand {
            program: program.into(),
            args: args.into_iter().collect(),
        }
    }

    /// This process's program with the arguments it was started with.
    pub fn this_process() -> io::Result<Self> {
        Ok(Self::new(
            std::env::current_exe()?,
            std::env::args_os().skip(1),
        ))
    }
}

/// True in a worker process (see the module docs).
pub(super) fn is_worker() -> bool {
    std::env::var_os(WORKER_ENV).is_some()
}

/// What a worker writes for the parent, each about request `seq`.
#[derive(Debug, Serialize, Deserialize)]
enum Message {
    /// The run's result; with `trace_follows`, a [`Message::Saved`] comes after it.
    Ran {
        seq: u64,
        reply: Reply,
        trace_follows: bool,
    },
    /// The failed run's trace is written (or could not be: the worker's stderr says why).
    Saved { seq: u64 },
}

/// One run's result as a worker sends it.
#[derive(Debug, Serialize, Deserialize)]
struct Reply {
    error: Option<String>,
    digest: u64,
    sim_secs: f64,
    wall_secs: f64,
    rpcs: u64,
    bytes: u64,
}

impl Reply {
    /// A failed run that did not get to run.
    fn failed(error: String) -> Self {
        Reply {
            error: Some(error),
            digest: 0,
            sim_secs: 0.0,
            wall_secs: 0.0,
            rpcs: 0,
            bytes: 0,
        }
    }

    /// The run of `scenario` with `seed` this reply reports.
    fn into_run(self, scenario: &Scenario, seed: u64) -> Run {
        Run {
            test: scenario.name,
            part: scenario.part,
            seed,
            error: self.error,
            digest: self.digest,
            sim_secs: self.sim_secs,
            wall_secs: self.wall_secs,
            rpcs: self.rpcs,
            bytes: self.bytes,
        }
    }
}

/// A worker's side: serve requests from stdin until it closes.
pub(super) fn serve(suite: &Suite, args: &GradeArgs) -> Status {
    die_with_parent();
    let mut nonce = String::new();
    if let Err(e) = io::stdin().read_line(&mut nonce) {
        eprintln!("grade worker: no nonce on stdin: {e}");
        return Status::Usage;
    }
    let nonce = nonce.trim().to_string();
    if let Err(e) = limit_memory(args.run_memory.as_u64()) {
        eprintln!("grade worker: cannot limit its memory: {e}");
        return Status::Usage;
    }
    match serve_requests(suite, args, &nonce) {
        Ok(()) => Status::Passed,
        Err(e) => {
            eprintln!("grade worker: {e}");
            Status::Usage
        }
    }
}

fn serve_requests(suite: &Suite, args: &GradeArgs, nonce: &str) -> io::Result<()> {
    let send = |message: &Message| -> io::Result<()> {
        let json = serde_json::to_string(message).map_err(io::Error::other)?;
        let mut out = io::stdout().lock();
        writeln!(out, "\n{MARKER}{nonce} {json}")?;
        out.flush()
    };
    let stdin = io::stdin().lock();
    for line in stdin.lines() {
        let line = line?;
        let mut words = line.splitn(3, ' ');
        let (Some(seq), Some(seed), Some(name)) = (
            words.next().and_then(|w| w.parse::<u64>().ok()),
            words.next().and_then(|w| w.parse::<u64>().ok()),
            words.next(),
        ) else {
            return Err(io::Error::other(format!("bad request {line:?}")));
        };
        eprintln!("\n{MARKER}{nonce} run {seq}");
        let Some(scenario) = suite.list().iter().find(|s| s.name == name) else {
            let reply = Reply::failed(format!("the grading process has no test {name:?}"));
            send(&Message::Ran {
                seq,
                reply,
                trace_follows: false,
            })?;
            continue;
        };
        let run = runner::grade_one(scenario, seed, args.check_determinism);
        let trace_dir = args.save_traces.as_deref().filter(|_| run.error.is_some());
        let reply = Reply {
            error: run.error.clone().map(|mut e| {
                cut(&mut e, MAX_MESSAGE);
                e
            }),
            digest: run.digest,
            sim_secs: run.sim_secs,
            wall_secs: run.wall_secs,
            rpcs: run.rpcs,
            bytes: run.bytes,
        };
        send(&Message::Ran {
            seq,
            reply,
            trace_follows: trace_dir.is_some(),
        })?;
        if let Some(dir) = trace_dir {
            if let Err(e) = runner::save_trace(dir, &suite.command, scenario, &run) {
                eprintln!("grade: cannot save the trace of {name} seed {seed}: {e}");
            }
            send(&Message::Saved { seq })?;
        }
    }
    Ok(())
}

/// Cuts `text` to at most `max` bytes, on a character boundary.
fn cut(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(" [cut]");
    }
}

/// Asks the kernel to kill this process when its parent ends.
fn die_with_parent() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
}

/// Limits this process's data segment (heap and anonymous mappings) to `bytes`, or to the
/// hard limit this process was given if that is lower.
fn limit_memory(bytes: u64) -> io::Result<()> {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::DATA)?;
    rlimit::setrlimit(rlimit::Resource::DATA, bytes.min(hard), hard)
}

/// Why an attempt at a run failed, and whether the worker had begun the run (a worker
/// that died before it, between runs, is not the run's fault).
struct Failure {
    reason: String,
    began: bool,
}

/// What a parent's runs need to know of the limits.
#[derive(Clone, Debug)]
pub(super) struct Limits {
    pub(super) run_timeout: Duration,
    pub(super) run_memory: bytesize::ByteSize,
    pub(super) twice: bool,
}

/// A worker as the parent sees it: started on first use, replaced after it dies.
pub(super) struct Worker<'a> {
    command: &'a WorkerCommand,
    limits: Limits,
    running: Option<Running>,
    /// The last request's sequence number.
    seq: u64,
}

/// The end of a worker's stderr.
type Tail = Arc<Mutex<VecDeque<u8>>>;

/// How long the parent waits for a dead worker's stderr to be read to its end.
const STDERR_DRAIN: Duration = Duration::from_secs(1);

/// A live worker process.
struct Running {
    process: Child,
    stdin: ChildStdin,
    messages: Receiver<Message>,
    stderr: Tail,
    /// Closed once the worker's stderr has been read to its end.
    stderr_done: Receiver<()>,
    /// What the worker's lines for the parent start with: [`MARKER`] and its nonce.
    marker: String,
}

impl<'a> Worker<'a> {
    pub(super) fn new(command: &'a WorkerCommand, limits: Limits) -> Self {
        Worker {
            command,
            limits,
            running: None,
            seq: 0,
        }
    }

    /// Runs `scenario` with `seed` in the worker, starting one if none is alive: `Ok` with
    /// the run the worker reported, or `Err` with a failed run when the worker died, was
    /// stopped or could not start.
    pub(super) fn run(&mut self, scenario: &Scenario, seed: u64) -> Result<Run, Run> {
        let started = Instant::now();
        match self.try_run(scenario, seed) {
            Ok(reply) => Ok(reply.into_run(scenario, seed)),
            Err(reason) => Err(Run {
                wall_secs: started.elapsed().as_secs_f64(),
                ..Reply::failed(reason).into_run(scenario, seed)
            }),
        }
    }

    /// One attempt, and a second on a fresh worker if the first one's worker died before
    /// the run began (between runs, after the check below).
    fn try_run(&mut self, scenario: &Scenario, seed: u64) -> Result<Reply, String> {
        match self.attempt(scenario, seed) {
            Err(Failure { began: false, .. }) => self.attempt(scenario, seed),
            other => other,
        }
        .map_err(|failure| failure.reason)
    }

    fn attempt(&mut self, scenario: &Scenario, seed: u64) -> Result<Reply, Failure> {
        if let Some(running) = &mut self.running {
            if !matches!(running.process.try_wait(), Ok(None)) {
                // It ended between runs (after its last answer): start afresh.
                self.stop();
            }
        }
        let running = match &mut self.running {
            Some(running) => running,
            None => {
                let running = Running::start(self.command).map_err(|reason| Failure {
                    reason,
                    began: true,
                })?;
                self.running.insert(running)
            }
        };
        let timeout = if self.limits.twice {
            self.limits.run_timeout * 2
        } else {
            self.limits.run_timeout
        };
        self.seq += 1;
        let seq = self.seq;
        let deadline = Instant::now() + timeout;
        let sent = writeln!(running.stdin, "{seq} {seed} {}", scenario.name)
            .and_then(|()| running.stdin.flush());
        let mut outcome = sent.map_err(|_| RecvTimeoutError::Disconnected);
        let reply = loop {
            if let Err(e) = outcome {
                break Err(e);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            outcome = match running.messages.recv_timeout(left) {
                Ok(Message::Ran {
                    seq: answered,
                    reply,
                    trace_follows,
                }) if answered == seq => break Ok((reply, trace_follows)),
                // A stale or stray answer: not this run's.
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            };
        };
        match reply {
            Ok((reply, trace_follows)) => {
                if trace_follows {
                    self.await_trace(seq);
                }
                Ok(reply)
            }
            Err(RecvTimeoutError::Timeout) => {
                self.stop();
                Err(Failure {
                    reason: format!(
                        "timed out after {} of wall-clock time (--run-timeout); the run was stopped",
                        humantime::format_duration(timeout)
                    ),
                    began: true,
                })
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.reap(deadline);
                let (began, tail) = self.stderr_since(seq);
                self.running = None;
                Err(Failure {
                    reason: describe_death(status, &tail, &self.limits),
                    began,
                })
            }
        }
    }

    /// Waits, at most a run's timeout, for the worker to write request `seq`'s trace; a
    /// worker that takes longer is stopped (the run's result stands).
    fn await_trace(&mut self, seq: u64) {
        let Some(running) = &self.running else {
            return;
        };
        let deadline = Instant::now() + self.limits.run_timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match running.messages.recv_timeout(left) {
                Ok(Message::Saved { seq: saved }) if saved == seq => return,
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => {
                    eprintln!("grade: writing a trace took longer than --run-timeout; stopped");
                    self.stop();
                    return;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    eprintln!("grade: a grading process died writing a trace");
                    self.stop();
                    return;
                }
            }
        }
    }

    /// Whether the dead worker had begun request `seq`, and its stderr since then (all of
    /// what is kept if it had not). Waits a moment for the stderr to be read to its end.
    fn stderr_since(&self, seq: u64) -> (bool, String) {
        let Some(running) = &self.running else {
            return (false, String::new());
        };
        let _ = running.stderr_done.recv_timeout(STDERR_DRAIN);
        let tail = running.stderr.lock().unwrap_or_else(|e| e.into_inner());
        let text = String::from_utf8_lossy(&tail.iter().copied().collect::<Vec<u8>>()).into_owned();
        let mark = format!("{}run {seq}\n", running.marker);
        match text.rfind(&mark) {
            Some(at) => (true, text[at + mark.len()..].to_string()),
            None => (false, text),
        }
    }

    /// Waits for the worker to exit (it closed its stdout), killing it at `deadline`.
    fn reap(&mut self, deadline: Instant) -> Option<ExitStatus> {
        let running = self.running.as_mut()?;
        loop {
            match running.process.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => {
                    let _ = running.process.kill();
                    return running.process.wait().ok();
                }
            }
        }
    }

    /// Kills the worker and waits for it.
    fn stop(&mut self) {
        if let Some(mut running) = self.running.take() {
            let _ = running.process.kill();
            let _ = running.process.wait();
        }
    }
}

impl Drop for Worker<'_> {
    /// Closes the worker's stdin, so it finishes and exits, and waits for it a moment
    /// before killing it.
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            let Running {
                mut process, stdin, ..
            } = running;
            drop(stdin);
            let deadline = Instant::now() + EXIT_GRACE;
            while matches!(process.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

impl Running {
    fn start(command: &WorkerCommand) -> Result<Self, String> {
        use std::hash::{BuildHasher, Hasher};
        let nonce = format!(
            "{:016x}",
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        );
        let mut process = Command::new(&command.program)
            .args(&command.args)
            .env(WORKER_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start a grading process ({}): {e}",
                    command.program.display()
                )
            })?;
        let marker = format!("{MARKER}{nonce} ");
        match Self::attach(&mut process, &marker, &nonce) {
            Ok((stdin, messages, (stderr, stderr_done))) => Ok(Running {
                process,
                stdin,
                messages,
                stderr,
                stderr_done,
                marker,
            }),
            Err(e) => {
                let _ = process.kill();
                let _ = process.wait();
                Err(e)
            }
        }
    }

    /// Takes `process`'s pipes and starts the threads that read its stdout and stderr.
    #[allow(clippy::type_complexity)]
    fn attach(
        process: &mut Child,
        marker: &str,
        nonce: &str,
    ) -> Result<(ChildStdin, Receiver<Message>, (Tail, Receiver<()>)), String> {
        let (Some(mut stdin), Some(stdout), Some(stderr)) = (
            process.stdin.take(),
            process.stdout.take(),
            process.stderr.take(),
        ) else {
            return Err("a grading process started without its pipes".to_string());
        };
        writeln!(stdin, "{nonce}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("cannot talk to a grading process: {e}"))?;
        let (send, messages) = mpsc::channel();
        let mark = marker.to_string();
        std::thread::Builder::new()
            .name("grade-replies".into())
            .spawn(move || read_messages(stdout, &mark, send))
            .map_err(|e| format!("cannot start a reader thread: {e}"))?;
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
        let keep = Arc::clone(&tail);
        let (done, stderr_done) = mpsc::channel();
        std::thread::Builder::new()
            .name("grade-stderr".into())
            .spawn(move || {
                keep_tail(stderr, &keep);
                drop(done);
            })
            .map_err(|e| format!("cannot start a reader thread: {e}"))?;
        Ok((stdin, messages, (tail, stderr_done)))
    }
}

/// Sends every message line of `stdout` (one that starts with `marker`) until it closes;
/// skips every other line.
fn read_messages(stdout: impl Read, marker: &str, send: mpsc::Sender<Message>) {
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader).take(MAX_LINE).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.last() != Some(&b'\n') && line.len() as u64 == MAX_LINE {
            // The rest of an overlong line: skip it.
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        let Some(json) = text.trim_end().strip_prefix(marker) else {
            continue;
        };
        // A line with the marker that does not parse is the code under test's: skip it.
        if let Ok(message) = serde_json::from_str(json) {
            if send.send(message).is_err() {
                return;
            }
        }
    }
}

/// Keeps the last [`STDERR_TAIL`] bytes of `stderr` in `tail` until it closes.
fn keep_tail(mut stderr: impl Read, tail: &Mutex<VecDeque<u8>>) {
    let mut buf = [0u8; 4096];
    loop {
        let n = match stderr.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
        tail.extend(&buf[..n]);
        let excess = tail.len().saturating_sub(STDERR_TAIL);
        tail.drain(..excess);
    }
}

/// Why a worker died in a run, from its exit status and the end of its stderr.
fn describe_death(status: Option<ExitStatus>, stderr: &str, limits: &Limits) -> String {
    use std::os::unix::process::ExitStatusExt;
    let what = if stderr.contains("memory allocation of") {
        format!(
            "ran out of memory (a worker may use {}: --run-memory)",
            limits.run_memory.display().iec()
        )
    } else if stderr.contains("has overflowed its stack") {
        "overflowed its stack".to_string()
    } else {
        match status {
            None => "vanished (its exit status is unknown)".to_string(),
            Some(status) => match (status.signal(), status.code()) {
                (Some(libc::SIGABRT), _) => "aborted (SIGABRT)".to_string(),
                (Some(libc::SIGKILL), _) => {
                    "was killed (SIGKILL; by the kernel's out-of-memory killer?)".to_string()
                }
                (Some(libc::SIGSEGV), _) => "crashed: segmentation fault (SIGSEGV)".to_string(),
                (Some(libc::SIGBUS), _) => "crashed: bus error (SIGBUS)".to_string(),
                (Some(libc::SIGILL), _) => "crashed: illegal instruction (SIGILL)".to_string(),
                (Some(libc::SIGFPE), _) => "crashed: arithmetic fault (SIGFPE)".to_string(),
                (Some(signal), _) => format!("was killed by signal {signal}"),
                (None, Some(code)) => {
                    format!("exited with status {code} in the middle of the run")
                }
                (None, None) => format!("ended ({status})"),
            },
        }
    };
    let last: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("note: run with `RUST_BACKTRACE")
                && !l.starts_with("skipping backtrace printing")
        })
        .collect();
    let last = last[last.len().saturating_sub(2)..].join(" | ");
    if last.is_empty() {
        format!("the run's process {what}")
    } else {
        let mut last = last;
        cut(&mut last, 400);
        format!("the run's process {what}; its stderr ended with: {last}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn limits() -> Limits {
        Limits {
            run_timeout: Duration::from_secs(60),
            run_memory: bytesize::ByteSize::gib(2),
            twice: false,
        }
    }

    #[test]
    fn deaths_are_described_by_their_cause() {
        let abort = Some(ExitStatus::from_raw(libc::SIGABRT));
        let oom = describe_death(
            abort,
            "memory allocation of 1048576 bytes failed\n",
            &limits(),
        );
        assert!(
            oom.contains("ran out of memory (a worker may use 2.0 GiB"),
            "{oom}"
        );
        let stack = describe_death(
            abort,
            "\nthread 'main' has overflowed its stack\nfatal runtime error: stack overflow\n",
            &limits(),
        );
        assert!(stack.contains("overflowed its stack"), "{stack}");
        let plain = describe_death(abort, "", &limits());
        assert_eq!(plain, "the run's process aborted (SIGABRT)");
        let exit = describe_death(Some(ExitStatus::from_raw(3 << 8)), "bye\n", &limits());
        assert_eq!(
            exit,
            "the run's process exited with status 3 in the middle of the run; its stderr ended with: bye"
        );
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let mut text = "é".repeat(10);
        cut(&mut text, 5);
        assert_eq!(text, "éé [cut]");
    }
}
