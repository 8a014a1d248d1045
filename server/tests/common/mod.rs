//! A real cluster of `shardkv serve` processes on loopback, for the process tests.
//!
//! Ports are chosen below the ephemeral range and checked free (see [`free_address`]).
//! Every process is killed when its [`Node`] drops, so a failing test leaves nothing
//! behind.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shardkv_client::{Client, RetryPolicy};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_shardkv");

/// The ports nodes listen on: below Linux's ephemeral range (32768 and up), so no
/// outgoing connection (of a client, a peer, a CLI run) can take a node's port while the
/// node is down between a kill and its restart, or connect to itself through it.
const NODE_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A loopback address for a node: a port of [`NODE_PORTS`] that was free when chosen and
/// that no other node of this test process was given (each process starts at its own
/// offset, so concurrent test processes rarely meet).
pub fn free_address() -> String {
    use std::sync::atomic::AtomicU32;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = u32::from(NODE_PORTS.end - NODE_PORTS.start);
    let start = std::process::id().wrapping_mul(97) % span;
    loop {
        let taken = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(taken < span, "no free port left in {NODE_PORTS:?}");
        let offset = u16::try_from((start + taken) % span).expect("within the span");
        let port = NODE_PORTS.start + offset;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return format!("127.0.0.1:{port}");
        }
    }
}

/// One `shardkv serve` process and how to start it again.
pub struct Node {
    pub args: Vec<String>,
    pub address: String,
    /// Where the process's stderr goes (appended across restarts), for post-mortems.
    pub log: PathBuf,
    child: Option<Child>,
}

impl Node {
    /// Starts `shardkv serve` with `args`, logging at `info` to `log`.
    pub fn start(args: Vec<String>, address: String, log: PathBuf) -> Self {
        let mut node = Node {
            args,
            address,
            log,
            child: None,
        };
        node.restart();
        node
    }

    /// Starts the process again (after [`Node::kill`]).
    pub fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the node's log file");
        let child = Command::new(BIN)
            .arg("serve")
            .args(&self.args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn shardkv serve");
        self.child = Some(child);
    }

    /// `kill -9`: no chance to flush anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, as a service manager stops a node, then waits (at most `within`) for
    /// the process to exit: its exit status, or `None` if it was still running (it is
    /// killed then).
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("node {} is not running", self.address));
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        self.wait_for_exit(within)
    }

    /// Waits (at most `within`) for the process to exit by itself: its exit status, or
    /// `None` if it was still running (it is killed then).
    pub fn wait_for_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let start = Instant::now();
        while start.elapsed() < within {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A replicated service's processes (the shard master or one group).
pub struct Service {
    pub nodes: Vec<Node>,
}

impl Service {
    /// Starts `replicas` replicas of a master (`gid` None) or of group `gid`.
    pub fn start(dir: &Path, gid: Option<u64>, replicas: usize, masters: &[String]) -> Self {
        Self::start_with(dir, gid, replicas, masters, &[])
    }

    /// As [`Service::start`], each replica given `extra` options too.
    pub fn start_with(
        dir: &Path,
        gid: Option<u64>,
        replicas: usize,
        masters: &[String],
        extra: &[&str],
    ) -> Self {
        let extra: Vec<String> = extra.iter().map(|option| option.to_string()).collect();
        Self::start_each(dir, gid, replicas, masters, |_| extra.clone())
    }

    /// As [`Service::start`], over mutual TLS: each replica gets a certificate of its
    /// own from the CA in `ca` (`shardkv certs init`) and `--tls-dir`.
    pub fn start_tls(
        dir: &Path,
        gid: Option<u64>,
        replicas: usize,
        masters: &[String],
        ca: &Path,
    ) -> Self {
        Self::start_each(dir, gid, replicas, masters, |i| {
            let name = gid.map_or_else(|| "master".to_string(), |gid| format!("group-{gid}"));
            let out = dir.join(format!("tls-{name}-{}", i + 1));
            let mut args = vec!["certs".to_string(), "node".into()];
            args.extend(["--dir".into(), ca.display().to_string()]);
            args.extend(["--out".into(), out.display().to_string()]);
            args.extend(["--id".into(), (i + 1).to_string()]);
            if let Some(gid) = gid {
                args.extend(["--gid".into(), gid.to_string()]);
            }
            let made = Command::new(BIN).args(&args).output().expect("run certs");
            assert!(made.status.success(), "certs node: {}", stderr(&made));
            vec!["--tls-dir".into(), out.display().to_string()]
        })
    }

    /// As [`Service::start`], replica `i` (from 0) given the options `extra(i)` too.
    pub fn start_each(
        dir: &Path,
        gid: Option<u64>,
        replicas: usize,
        masters: &[String],
        extra: impl Fn(usize) -> Vec<String>,
    ) -> Self {
        let addresses: Vec<String> = (0..replicas).map(|_| free_address()).collect();
        let peers: Vec<String> = addresses
            .iter()
            .enumerate()
            .map(|(i, address)| format!("{}={address}", i + 1))
            .collect();
        let nodes = addresses
            .iter()
            .enumerate()
            .map(|(i, address)| {
                let name = gid.map_or_else(|| "master".to_string(), |gid| format!("group-{gid}"));
                let data: PathBuf = dir.join(format!("{name}-{}", i + 1));
                let mut args = vec![
                    "--id".to_string(),
                    (i + 1).to_string(),
                    "--listen".into(),
                    address.clone(),
                    "--peers".into(),
                    peers.join(","),
                    "--data-dir".into(),
                    data.display().to_string(),
                ];
                match gid {
                    None => args.extend(["--role".into(), "master".into()]),
                    Some(gid) => args.extend([
                        "--role".into(),
                        "group".into(),
                        "--gid".into(),
                        gid.to_string(),
                        "--masters".into(),
                        masters.join(","),
                    ]),
                }
                let extra = extra(i);
                if !extra.iter().any(|option| option == "--tls-dir") {
                    args.push("--insecure".into());
                }
                args.extend(extra);
                Node::start(
                    args,
                    address.clone(),
                    dir.join(format!("{name}-{}.log", i + 1)),
                )
            })
            .collect();
        Service { nodes }
    }

    /// The replicas' addresses, in raft id order.
    pub fn addresses(&self) -> Vec<String> {
        self.nodes.iter().map(|node| node.address.clone()).collect()
    }
}

/// Keeps `dir` (data directories and node logs) when `failures` is not empty, and
/// panics naming it; removes it otherwise.
pub fn keep_on_failure(dir: tempfile::TempDir, failures: &[String]) {
    if failures.is_empty() {
        return;
    }
    let kept = dir.keep();
    panic!(
        "{} failure(s); data directories and node logs kept in {}:\n{}",
        failures.len(),
        kept.display(),
        failures.join("\n")
    );
}

/// Runs a `shardkv` client subcommand against `masters`.
pub fn shardkv(masters: &[String], args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--masters")
        .arg(masters.join(","))
        .stdin(Stdio::null())
        .output()
        .expect("run shardkv")
}

/// Runs a client subcommand until it succeeds or `within` passes; returns the last run.
pub fn shardkv_until_ok(masters: &[String], args: &[&str], within: Duration) -> Output {
    let start = Instant::now();
    loop {
        let output = shardkv(masters, args);
        if output.status.success() || start.elapsed() > within {
            return output;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Stdout as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Stderr as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Generous limit for a cluster to elect leaders and finish a step.
pub const SETTLE: Duration = Duration::from_secs(60);

/// Waits (bounded by [`SETTLE`]) until `count()` reaches `target`.
pub fn wait_for_writes(count: &dyn Fn() -> usize, target: usize) {
    let start = Instant::now();
    while count() < target {
        assert!(
            start.elapsed() < SETTLE,
            "only {} of {target} writes acknowledged within {SETTLE:?}",
            count()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The index of the replica at `addresses` that answers `probe` as a leader would
/// (`is_answer` on its reply), polling (bounded by [`SETTLE`]) until one does.
fn leader_of(addresses: &[String], probe: &[u8], is_answer: fn(&[u8]) -> bool) -> usize {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let transport = shardkv_client::TarpcTransport::new();
    let start = Instant::now();
    loop {
        for (i, address) in addresses.iter().enumerate() {
            let reply = runtime.block_on(transport.call_bytes(
                address,
                probe.to_vec(),
                Duration::from_secs(2),
            ));
            if matches!(reply, Ok(reply) if is_answer(&reply)) {
                return i;
            }
        }
        assert!(start.elapsed() < SETTLE, "no leader among {addresses:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The leader of a replica group: the replica that answers a Get.
pub fn group_leader(addresses: &[String]) -> usize {
    use shardkv_proto::kv::{GroupRequest, GroupResponse, KvError, Op, Request};
    let request = GroupRequest::Kv(Request {
        client: 7,
        seq: 1,
        seen: 0,
        op: Op::Get {
            key: b"probe".to_vec(),
        },
    });
    let probe = bincode::serialize(&request).expect("encode a Get");
    leader_of(addresses, &probe, |reply| {
        !matches!(
            bincode::deserialize::<GroupResponse>(reply),
            Ok(GroupResponse::Kv(Err(KvError::WrongLeader { .. }), _)) | Err(_)
        )
    })
}

/// The shard master's leader: the replica that answers a Query with a configuration.
pub fn master_leader(addresses: &[String]) -> usize {
    use shardkv_proto::master::{Op, Request, Response};
    let request = Request {
        client: 7,
        seq: 0,
        op: Op::Query { num: None },
    };
    let probe = bincode::serialize(&request).expect("encode a Query");
    leader_of(addresses, &probe, |reply| {
        matches!(bincode::deserialize::<Response>(reply), Ok(Ok(_)))
    })
}

/// Writes acknowledged so far: (key, value).
pub type Acked = Arc<Mutex<Vec<(String, String)>>>;

/// A thread writing `prefix-N` keys through the library (`Client` over tarpc), one
/// at a time, recording every acknowledged write, until stopped.
pub struct LibraryWriter {
    pub acked: Acked,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LibraryWriter {
    /// Starts writing to the cluster at `masters`.
    pub fn start(masters: &[String], prefix: &str) -> Self {
        let acked: Acked = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (masters, prefix) = (masters.to_vec(), prefix.to_string());
        let thread = {
            let (acked, stop) = (acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                let client = Client::connect(masters, policy());
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let (key, value) = (format!("{prefix}-{i}"), format!("value-{i}"));
                    if runtime
                        .block_on(client.put(key.as_str(), value.as_str()))
                        .is_ok()
                    {
                        acked.lock().expect("lock").push((key, value));
                    }
                }
            })
        };
        LibraryWriter {
            acked,
            stop,
            thread: Some(thread),
        }
    }

    /// How many writes have been acknowledged.
    pub fn count(&self) -> usize {
        self.acked.lock().expect("lock").len()
    }

    /// Waits (bounded) for `more` acknowledged writes from now.
    pub fn wait_for_more(&self, more: usize) {
        let target = self.count() + more;
        wait_for_writes(&|| self.count(), target);
    }

    /// Stops the thread after its current write; returns every acknowledged write.
    pub fn finish(mut self) -> Vec<(String, String)> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("writer thread");
        }
        self.acked.lock().expect("lock").clone()
    }
}

/// The library's retry policy in the tests: 30 s per operation.
pub fn policy() -> RetryPolicy {
    RetryPolicy {
        deadline: Some(Duration::from_secs(30)),
        ..RetryPolicy::default()
    }
}

/// Reads every write back through a fresh library client; returns the mismatches.
pub fn read_back(masters: &[String], acked: &[(String, String)]) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let client = Client::connect(masters.to_vec(), policy());
    let mut wrong = Vec::new();
    for (key, value) in acked {
        match runtime.block_on(client.get(key.as_str())) {
            Ok(Some(read)) if read == value.as_bytes() => {}
            other => wrong.push(format!("{key}: {other:?}, acknowledged {value}")),
        }
    }
    wrong
}

/// Joins each `(gid, group)` through the CLI.
pub fn join(masters: &[String], groups: &[(&str, &Service)]) {
    for (gid, group) in groups {
        let servers = group.addresses().join(",");
        let out = shardkv_until_ok(
            masters,
            &["join", gid, &servers, "--timeout", "20s"],
            SETTLE,
        );
        assert!(out.status.success(), "join {gid}: {}", stderr(&out));
    }
}

/// Starts three shard masters and a group of three replicas per gid, joined in order;
/// returns the masters' service and the groups'.
pub fn start_cluster(dir: &Path, gids: &[u64]) -> (Service, Vec<Service>) {
    let masters = Service::start(dir, None, 3, &[]);
    let addresses = masters.addresses();
    let groups: Vec<Service> = gids
        .iter()
        .map(|&gid| Service::start(dir, Some(gid), 3, &addresses))
        .collect();
    for (gid, group) in gids.iter().zip(&groups) {
        join(&addresses, &[(&gid.to_string(), group)]);
    }
    (masters, groups)
}
