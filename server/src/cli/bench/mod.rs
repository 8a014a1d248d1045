//! `shardkv bench`: concurrent clients against a cluster for a fixed time, then
//! throughput, errors and latency percentiles.
//!
//! ```text
//!   --masters given ──► that cluster
//!   no --masters ─────► a local cluster (Layout + Cluster, as `shardkv local`) in a
//!                       temporary directory: 3 masters, --groups groups of --replicas
//!   --processes ──────► the local cluster as one `shardkv serve` process per replica;
//!                       each one's peak memory and disk are reported
//!   load ─────────────► every key written once, not measured (the cluster is warm:
//!                       leaders elected, shards owned, keys present), by 256 clients
//!                       over 8 shared connections (requests batched per connection
//!                       and per raft Ready); its rate is reported
//!   run ──────────────► --clients clients on --threads threads, each a loop of one
//!                       operation at a time on a uniformly random key, until --duration;
//!                       they share --conns connections to each node (default: their own)
//!   --handle shared ──► instead every client is a clone of one `Client` over --conns
//!                       connections to each node, tasks of one runtime (current-thread
//!                       for --threads 1, else multi-thread)
//!   --timeline ───────► (local cluster, one client) the replicas record each request's
//!                       steps meanwhile; `breakdown` cuts them into stages
//!   --recovery ───────► (with --processes) after the run, the first group killed
//!                       whole and restarted, then one replica emptied and caught up
//!                       (`recovery`): both timed
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
use shardkv_client::tls::Tls;
use shardkv_client::RetryPolicy;

use super::certs;
use super::cluster::Cluster;
use super::local::{data_dir_or_temp, join_missing, Layout};
use super::parse_duration;
use crate::runtime::timeline;
use breakdown::Breakdown;
use clients::{load, thread_plan, Shape};
use processes::Processes;
use report::Report;

mod breakdown;
mod clients;
mod processes;
mod recovery;
mod report;

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

/// How the benchmark's clients hold the cluster.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handle {
    /// Each client its own `Client`, over connections shared as `--conns` says, on
    /// `--threads` single-threaded runtimes.
    PerClient,
    /// Every client a clone of one `Client` over `--conns` connections to each node, as
    /// tasks of one runtime (how a tokio service holds one): current-thread for
    /// `--threads 1`, else multi-thread with `--threads` workers.
    Shared,
}

impl Handle {
    fn name(self) -> &'static str {
        match self {
            Handle::PerClient => "per-client",
            Handle::Shared => "shared",
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
    /// Bytes per value: random bytes, which compression cannot shrink (each key its own).
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
    /// Whether each client has a handle of its own or all share one (with `shared`,
    /// `--conns` is the handle's connections to each node, default 1).
    #[arg(long, value_enum, default_value_t = Handle::PerClient)]
    pub handle: Handle,
    /// Local cluster only: replica groups.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=50))]
    pub groups: u16,
    /// Local cluster only: replicas per group.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=9))]
    pub replicas: u16,
    /// Local cluster only: keep its data here instead of a temporary directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Local cluster only: run each replica as its own `shardkv serve` process (as a
    /// deployment does) and report each one's peak resident memory and bytes on disk.
    #[arg(long)]
    pub processes: bool,
    /// Local cluster only: each group replica's page cache for its data, MiB (as
    /// `serve --cache-mb`).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub cache_mb: u64,
    /// Print the result as one line of JSON.
    #[arg(long)]
    pub json: bool,
    /// Local cluster, one client, put/append/get: also report where the operations'
    /// time goes, stage by stage (client, leader, follower, sync, network), from steps
    /// the replicas record meanwhile.
    #[arg(long)]
    pub timeline: bool,
    /// With --processes (and 3 or more replicas): after the run, kill the first group's
    /// replicas with SIGKILL, start them again and time the first answered Get (then read
    /// 1,000 distinct keys back); then empty one replica's data directory and time its
    /// catch-up from the others.
    #[arg(long, requires = "processes")]
    pub recovery: bool,
    /// Mutual TLS on every connection of the local cluster, nodes' and clients' alike,
    /// with a CA and certificates made for the run (`shardkv certs`).
    #[arg(long, conflicts_with_all = ["masters", "processes"])]
    pub tls: bool,
}

/// Runs `shardkv bench`.
pub fn run(args: BenchArgs) -> ExitCode {
    super::logging::init("error");
    if let Err(message) = check(&args) {
        return super::fail(message);
    }
    let result = match args.masters.clone() {
        Some(masters) => {
            measure(&args, &masters, "external", &[], None).map(|report| (report, None))
        }
        None => with_local_cluster(&args),
    };
    match result {
        Ok((report, None)) => {
            report.print(args.json);
            ExitCode::SUCCESS
        }
        // The run's numbers stand, but a node that failed its last flush (or a failed
        // recovery) is a bug.
        Ok((report, Some(problem))) => {
            report.print(args.json);
            super::fail(problem)
        }
        Err(message) => super::fail(message),
    }
}

/// Refuses shapes that cannot work.
fn check(args: &BenchArgs) -> Result<(), String> {
    if args.recovery && args.replicas < 3 {
        return Err(
            "--recovery needs --replicas 3 or more (a quorum without the emptied one)".into(),
        );
    }
    let capacity = 10u64.checked_pow(args.key_size).unwrap_or(u64::MAX);
    if capacity < args.keys {
        return Err(format!(
            "--key-size {} cannot hold {} distinct keys (at most {capacity})",
            args.key_size, args.keys
        ));
    }
    if args.timeline {
        if args.processes {
            return Err("--timeline follows replicas in this process: not with --processes".into());
        }
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
    let mut specs = layout.specs();
    for spec in &mut specs {
        spec.cache_bytes = usize::try_from(args.cache_mb << 20).unwrap_or(usize::MAX);
    }
    let tls = match args.tls {
        true => Some(Tls::load(&certs::certify(
            &layout.data_dir.join("tls"),
            &mut specs,
        )?)?),
        false => None,
    };
    let cluster = match args.processes {
        true => Local::Processes(Processes::start(&specs, args.cache_mb)?),
        false => Local::InProcess(Cluster::start(specs)),
    };
    let policy = RetryPolicy {
        deadline: Some(Duration::from_secs(30)),
        ..RetryPolicy::default()
    };
    let admin = shape(args, tls.clone()).transport();
    let joined = runtime
        .block_on(tokio::task::LocalSet::new().run_until(join_missing(&layout, policy, admin)));
    let label = format!(
        "local: {} group(s) of {} replicas, 3 masters{}",
        args.groups,
        args.replicas,
        match (args.processes, args.tls) {
            (true, _) => ", a process each",
            (false, true) => ", mutual TLS",
            (false, false) => "",
        }
    );
    let mut report = joined
        .map_err(|message| format!("cannot join the groups: {message}"))
        .and_then(|()| measure(args, &layout.masters, &label, &labels(&layout), tls));
    // A failed recovery (a key lost, a replica that never caught up) fails the run
    // like a node that did not stop cleanly: the numbers stand, the exit code says so.
    let mut recovery_failed = None;
    let stopped = match cluster {
        Local::InProcess(cluster) => runtime.block_on(cluster.stop()),
        Local::Processes(mut processes) => {
            if let Ok(report) = &mut report {
                report.replicas = Some(processes.usage());
                if args.recovery {
                    if !args.json {
                        eprintln!("killing and restarting group replicas ...");
                    }
                    let shape = shape(args, None);
                    match recovery::measure(&mut processes, &layout.masters, &shape) {
                        Ok(recovery) => report.recovery = Some(recovery),
                        Err(message) => recovery_failed = Some(format!("recovery: {message}")),
                    }
                }
            }
            processes.stop()
        }
    };
    drop(temp);
    let problems = [recovery_failed, stopped.err()].into_iter().flatten();
    let problems = problems.collect::<Vec<_>>();
    let problem = (!problems.is_empty()).then(|| problems.join("; "));
    match (report, problem) {
        (Ok(report), problem) => Ok((report, problem)),
        (Err(message), None) => Err(message),
        (Err(message), Some(problem)) => Err(format!("{message}; {problem}")),
    }
}

/// The local cluster, in this process or one process per replica.
enum Local {
    InProcess(Cluster),
    Processes(Processes),
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

/// The workload `args` describe.
fn shape(args: &BenchArgs, tls: Option<Tls>) -> Shape {
    Shape {
        op: args.op,
        key_size: args.key_size as usize,
        keys: args.keys,
        value_size: args.value_size as usize,
        pool: clients::value_pool(args.value_size as usize),
        tls,
    }
}

/// Loads the keys (unmeasured; without it the first requests of a put run measured the
/// cluster's start-up, up to ~0.5 s), then runs the clients for the duration. `groups`:
/// the local cluster's groups, by their replicas' labels (for `--timeline`).
fn measure(
    args: &BenchArgs,
    masters: &[String],
    cluster: &str,
    groups: &[BTreeSet<u16>],
    tls: Option<Tls>,
) -> Result<Report, String> {
    let shape = shape(args, tls);
    if !args.json {
        eprintln!("loading {} keys ...", args.keys);
    }
    let loading = Instant::now();
    load(masters, &shape)?;
    let load_seconds = loading.elapsed().as_secs_f64();
    if !args.json {
        eprintln!(
            "running {} {} clients for {:?} ...",
            args.clients,
            args.op.name(),
            args.duration
        );
    }
    let plan = thread_plan(args.clients, args.threads, args.conns);
    let conns = match args.handle {
        Handle::PerClient => plan.iter().map(|(_, conns)| *conns as u32).sum(),
        Handle::Shared => (args.conns.unwrap_or(1) as usize)
            .min(shardkv_client::tarpc_transport::MAX_CONNECTIONS_PER_NODE)
            as u32,
    };
    if args.timeline {
        timeline::start();
    }
    let started = Instant::now();
    let measured = match args.handle {
        Handle::PerClient => clients::run(masters, &shape, plan, args.duration)?,
        Handle::Shared => clients::run_shared(masters, &shape, args, conns, args.duration)?,
    };
    let elapsed = started.elapsed();
    let mut report = Report::new(args, cluster, conns, measured, elapsed);
    report.load_seconds = load_seconds;
    if args.timeline {
        let write = args.op != BenchOp::Get;
        report.timeline = Some(Breakdown::of(timeline::finish(), write, groups));
    }
    Ok(report)
}

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
