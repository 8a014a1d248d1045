//! `shardkv bench`: concurrent clients against a cluster for a fixed time, then
//! throughput, errors and latency percentiles.
//!
//! ```text
//!   --masters given ──► that cluster
//!   no --masters ─────► a local cluster (Layout + Cluster, as `shardkv local`) in a
//!                       temporary directory: 3 masters, --groups groups of --replicas
//!   load ─────────────► every key written once, not measured (the cluster is warm:
//!                       leaders elected, shards owned, keys present)
//!   run ──────────────► --clients clients on --threads threads, each a loop of one
//!                       operation at a time on a uniformly random key, until --duration;
//!                       they share --conns connections to each node (default: their own)
//!   --timeline ───────► (local cluster, one client) the replicas record each request's
//!                       steps meanwhile; `breakdown` cuts them into stages
//! ```
//!
//! Keys are the key's number in decimal, zero-padded to `--key-size` bytes; values are
//! `--value-size` bytes. `mixed` is half Gets, half Puts. Every operation is the
//! library's (`Client` over tarpc): durable and linearizable, retried on a wrong leader
//! with the library's default policy; an operation that fails after its deadline counts
//! as an error and not in the latencies. Throughput is the operations that finished
//! within `--duration` divided by it (an operation still running at the end is dropped).
//! Latencies go into an HDR histogram (microsecond resolution, 3 significant digits);
//! `report` prints them.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use shardkv_client::{Client, RetryPolicy, TarpcTransport};

use super::cluster::Cluster;
use super::local::{data_dir_or_temp, join_missing, Layout};
use super::parse_duration;
use crate::runtime::timeline::{self, Step};
use breakdown::Breakdown;
use report::{Measured, Report};

mod breakdown;
mod report;

/// How long one operation may take before it counts as an error.
const OPERATION_DEADLINE: Duration = Duration::from_secs(10);

/// The operation a benchmark runs, on keys that were each written once beforehand.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchOp {
    /// Overwrite a key.
    Put,
    /// Linearizable read of a key.
    Get,
    /// Append to a key (values grow by --value-size per append; a key refuses
    /// appends past the value limit, 1 MiB, and those count as errors).
    Append,
    /// Half Gets, half Puts.
    Mixed,
}

impl BenchOp {
    fn name(self) -> &'static str {
        match self {
            BenchOp::Put => "put",
            BenchOp::Get => "get",
            BenchOp::Append => "append",
            BenchOp::Mixed => "mixed",
        }
    }
}

/// Options of `shardkv bench`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Benchmark the cluster whose shard masters are here (comma-separated, in NodeId
    /// order); without it, start a local cluster in a temporary directory.
    #[arg(long, value_delimiter = ',')]
    pub masters: Option<Vec<String>>,
    /// The operation.
    #[arg(long, value_enum, default_value_t = BenchOp::Put)]
    pub op: BenchOp,
    /// Concurrent clients, each with its own connections and one operation in flight.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub clients: u32,
    /// How long to measure, e.g. `10s`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Bytes per key.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub key_size: u32,
    /// Bytes per value.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(0..=65536))]
    pub value_size: u32,
    /// Distinct keys the clients choose from (each written once before the clock starts).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub keys: u64,
    /// Client threads; the clients are spread over them.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: u16,
    /// Connections to each node, shared by the clients round-robin (like etcd's
    /// `benchmark --conns`); default: one per client. Each thread has its own, at least
    /// one.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub conns: Option<u32>,
    /// Local cluster only: replica groups.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=50))]
    pub groups: u16,
    /// Local cluster only: replicas per group.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=9))]
    pub replicas: u16,
    /// Local cluster only: keep its data here instead of a temporary directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Print the result as one line of JSON.
    #[arg(long)]
    pub json: bool,
    /// Local cluster, one client, put/append/get: also report where the operations'
    /// time goes, stage by stage (client, leader, follower, sync, network), from steps
    /// the replicas record meanwhile.
    #[arg(long)]
    pub timeline: bool,
}

/// The workload's shape, shared by every client.
#[derive(Debug, Clone)]
struct Shape {
    op: BenchOp,
    key_size: usize,
    keys: u64,
    value: Vec<u8>,
}

impl Shape {
    fn key(&self, n: u64) -> Vec<u8> {
        format!("{n:0>width$}", width = self.key_size).into_bytes()
    }
}

/// Runs `shardkv bench`.
pub fn run(args: BenchArgs) -> ExitCode {
    super::logging::init("error");
    if let Err(message) = check(&args) {
        return super::fail(message);
    }
    let result = match args.masters.clone() {
        Some(masters) => measure(&args, &masters, "external", &[]).map(|report| (report, None)),
        None => with_local_cluster(&args),
    };
    match result {
        Ok((report, None)) => {
            report.print(args.json);
            ExitCode::SUCCESS
        }
        // The run's numbers stand, but a node that failed its last flush is a bug.
        Ok((report, Some(stop_failed))) => {
            report.print(args.json);
            super::fail(stop_failed)
        }
        Err(message) => super::fail(message),
    }
}

/// Refuses shapes that cannot work.
fn check(args: &BenchArgs) -> Result<(), String> {
    let capacity = 10u64.checked_pow(args.key_size).unwrap_or(u64::MAX);
    if capacity < args.keys {
        return Err(format!(
            "--key-size {} cannot hold {} distinct keys (at most {capacity})",
            args.key_size, args.keys
        ));
    }
    if args.timeline {
        if args.masters.is_some() {
            return Err("--timeline needs the local cluster (no --masters)".into());
        }
        if args.replicas < 2 {
            return Err(
                "--timeline follows a leader and its followers: --replicas 2 or more".into(),
            );
        }
        if args.clients != 1 || args.op == BenchOp::Mixed {
            return Err("--timeline follows one client's operations of one kind: \
                        --clients 1 and --op put, append or get"
                .into());
        }
    }
    Ok(())
}

/// Starts a local cluster on free ports, benchmarks it, stops it; with the report, why
/// the cluster did not stop cleanly, if it did not.
fn with_local_cluster(args: &BenchArgs) -> Result<(Report, Option<String>), String> {
    let (temp, data_dir) = data_dir_or_temp(args.data_dir.clone())?;
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|error| format!("cannot start the runtime: {error}"))?;
    let layout = runtime.block_on(Layout::free(args.groups, args.replicas, data_dir))?;
    let _guard = runtime.enter();
    let cluster = Cluster::start(layout.specs());
    let policy = RetryPolicy {
        deadline: Some(Duration::from_secs(30)),
        ..RetryPolicy::default()
    };
    let joined =
        runtime.block_on(tokio::task::LocalSet::new().run_until(join_missing(&layout, policy)));
    let label = format!(
        "local: {} group(s) of {} replicas, 3 masters",
        args.groups, args.replicas
    );
    let report = joined
        .map_err(|message| format!("cannot join the groups: {message}"))
        .and_then(|()| measure(args, &layout.masters, &label, &labels(&layout)));
    let stopped = runtime.block_on(cluster.stop());
    drop(temp);
    match (report, stopped) {
        (Ok(report), stopped) => Ok((report, stopped.err())),
        (Err(message), Ok(())) => Err(message),
        (Err(message), Err(stop_failed)) => Err(format!("{message}; {stop_failed}")),
    }
}

/// Each group's replicas as `--timeline` knows them: by the labels they record their
/// steps under, their ports.
fn labels(layout: &Layout) -> Vec<BTreeSet<u16>> {
    layout
        .groups
        .values()
        .map(|servers| {
            servers
                .iter()
                .filter_map(|server| server.parse::<SocketAddr>().ok())
                .map(|address| address.port())
                .collect()
        })
        .collect()
}

/// Loads the keys (unmeasured; without it the first requests of a put run measured the
/// cluster's start-up, up to ~0.5 s), then runs the clients for the duration. `groups`:
/// the local cluster's groups, by their replicas' labels (for `--timeline`).
fn measure(
    args: &BenchArgs,
    masters: &[String],
    cluster: &str,
    groups: &[BTreeSet<u16>],
) -> Result<Report, String> {
    let shape = Shape {
        op: args.op,
        key_size: args.key_size as usize,
        keys: args.keys,
        value: vec![b'v'; args.value_size as usize],
    };
    if !args.json {
        eprintln!("loading {} keys ...", args.keys);
    }
    load(masters, &shape, args.clients.min(64))?;
    if !args.json {
        eprintln!(
            "running {} {} clients for {:?} ...",
            args.clients,
            args.op.name(),
            args.duration
        );
    }
    let plan = thread_plan(args.clients, args.threads, args.conns);
    let conns = plan.iter().map(|(_, conns)| *conns as u32).sum();
    if args.timeline {
        timeline::start();
    }
    let started = Instant::now();
    let measured = std::thread::scope(|scope| {
        let handles: Vec<_> = plan
            .into_iter()
            .map(|(ids, conns)| {
                let shape = shape.clone();
                scope.spawn(move || run_thread(masters, &shape, &ids, conns, args.duration))
            })
            .collect();
        let mut all = Measured::new()?;
        for handle in handles {
            let measured = handle
                .join()
                .map_err(|_| "a client thread panicked".to_string())??;
            all.merge(measured)?;
        }
        Ok::<_, String>(all)
    })?;
    let elapsed = started.elapsed();
    let mut report = Report::new(args, cluster, conns, measured, elapsed);
    if args.timeline {
        let write = args.op != BenchOp::Get;
        report.timeline = Some(Breakdown::of(timeline::finish(), write, groups));
    }
    Ok(report)
}

/// Writes every key once, `clients` at a time.
fn load(masters: &[String], shape: &Shape, clients: u32) -> Result<(), String> {
    let runtime = current_thread()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let tasks: Vec<_> = (0..u64::from(clients))
            .map(|c| {
                let mut client = Client::connect(masters.to_vec(), policy());
                let shape = shape.clone();
                tokio::task::spawn_local(async move {
                    for n in (c..shape.keys).step_by(clients as usize) {
                        client
                            .put(shape.key(n), shape.value.clone())
                            .await
                            .map_err(|error| format!("loading key {n}: {error}"))?;
                    }
                    Ok::<(), String>(())
                })
            })
            .collect();
        for task in tasks {
            task.await
                .map_err(|error| format!("load task failed: {error}"))??;
        }
        Ok(())
    })
}

/// Which clients each thread runs (thread t: clients t, t + threads, ...) and over how
/// many connections: `conns` (default: one per client) spread as evenly as the clients
/// are, at least one per thread and at most one per client.
fn thread_plan(clients: u32, threads: u16, conns: Option<u32>) -> Vec<(Vec<u32>, usize)> {
    let threads = u32::from(threads).min(clients).max(1);
    let conns = conns.unwrap_or(clients);
    (0..threads)
        .map(|t| {
            let ids: Vec<u32> = (t..clients).step_by(threads as usize).collect();
            let share = conns / threads + u32::from(t < conns % threads);
            let conns = (share as usize).clamp(1, ids.len().max(1));
            (ids, conns)
        })
        .collect()
}

/// One thread's clients, each a closed loop until `duration` has passed, sharing
/// `conns` connections to each node.
fn run_thread(
    masters: &[String],
    shape: &Shape,
    ids: &[u32],
    conns: usize,
    duration: Duration,
) -> Result<Measured, String> {
    let runtime = current_thread()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let until = Instant::now() + duration;
        let transports: Vec<TarpcTransport> = (0..conns).map(|_| TarpcTransport::new()).collect();
        let tasks: Vec<_> = ids
            .iter()
            .zip(transports.iter().cycle())
            .map(|(&id, transport)| {
                let client = Client::with_policy(transport.clone(), masters.to_vec(), policy());
                tokio::task::spawn_local(run_client(client, shape.clone(), id, until))
            })
            .collect();
        let mut all = Measured::new()?;
        for task in tasks {
            let measured = task
                .await
                .map_err(|error| format!("client task failed: {error}"))??;
            all.merge(measured)?;
        }
        Ok(all)
    })
}

/// One client: operations one at a time on random keys until `until`.
async fn run_client(
    mut client: Client<shardkv_client::TarpcTransport>,
    shape: Shape,
    id: u32,
    until: Instant,
) -> Result<Measured, String> {
    let mut measured = Measured::new()?;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(u64::from(id));
    while Instant::now() < until {
        let key = shape.key(rng.random_range(0..shape.keys));
        let read = match shape.op {
            BenchOp::Get => true,
            BenchOp::Mixed => rng.random_bool(0.5),
            BenchOp::Put | BenchOp::Append => false,
        };
        let start = Instant::now();
        timeline::mark(Step::ClientSend, 0);
        let outcome = match (read, shape.op) {
            (true, _) => client.get(key).await.map(drop),
            (false, BenchOp::Append) => client.append(key, shape.value.clone()).await,
            (false, _) => client.put(key, shape.value.clone()).await,
        };
        if Instant::now() > until {
            // Finished after the measured window: neither counted nor timed.
            break;
        }
        timeline::mark(Step::ClientDone, 0);
        match outcome {
            Ok(()) => {
                let micros = start.elapsed().as_micros().max(1);
                measured.latencies.saturating_record(micros as u64);
            }
            Err(error) => measured.error(error),
        }
    }
    Ok(measured)
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        deadline: Some(OPERATION_DEADLINE),
        ..RetryPolicy::default()
    }
}

fn current_thread() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))
}

/// The numbers a run produced.
#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(args: &[&str]) -> BenchArgs {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .map(|cli| cli.bench)
            .expect("parses")
    }

    /// Keys are zero-padded to the key size and distinct.
    #[test]
    fn keys_have_the_key_size() {
        let shape = Shape {
            op: BenchOp::Put,
            key_size: 8,
            keys: 10_000,
            value: Vec::new(),
        };
        assert_eq!(shape.key(42), b"00000042");
        assert_eq!(shape.key(9_999).len(), 8);
    }

    /// Connections go to threads as evenly as their clients, one per client by default,
    /// never more than a thread's clients nor fewer than one.
    #[test]
    fn connections_follow_the_clients() {
        let plan = |clients, threads, conns| -> Vec<(usize, usize)> {
            thread_plan(clients, threads, conns)
                .into_iter()
                .map(|(ids, conns)| (ids.len(), conns))
                .collect()
        };
        assert_eq!(plan(10, 4, None), [(3, 3), (3, 3), (2, 2), (2, 2)]);
        assert_eq!(plan(64, 1, Some(1)), [(64, 1)]);
        assert_eq!(plan(10, 4, Some(6)), [(3, 2), (3, 2), (2, 1), (2, 1)]);
        assert_eq!(plan(4, 4, Some(1)), [(1, 1); 4]);
        assert_eq!(plan(3, 8, Some(100)), [(1, 1); 3]);
        assert_eq!(thread_plan(5, 2, None)[1].0, [1, 3]);
    }

    /// A key size too small for the key count is refused before anything starts.
    #[test]
    fn too_small_keys_are_refused() {
        let args = parse(&["--key-size", "3", "--keys", "10000"]);
        let error = check(&args).expect_err("refused");
        assert!(error.contains("--key-size 3"), "{error}");
        assert!(check(&parse(&["--key-size", "4", "--keys", "9999"])).is_ok());
        assert!(check(&parse(&[])).is_ok());
    }
}
