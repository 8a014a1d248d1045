//! The `shardkv` command line.
//!
//! - Nodes: `serve` runs one replica (of the shard master or of a replica group) as a
//!   process; `local` runs a whole cluster on 127.0.0.1 in one process; `demo` runs one
//!   in a temporary directory and narrates a workload against it.
//! - Admin: `join`, `leave`, `move`, `query` steer shards through the shard master;
//!   `abandon` recovers the shards of a group that died for good.
//! - Data: `get`, `put`, `append`, `delete`.
//! - Performance: `bench` measures throughput and latency.
//! - Labs: `grade` runs the lab suites over many seeds in the simulator.
//!
//! Client commands exit 0 on success, 1 when `get` finds no value, 2 on any other error
//! (one line on stderr). Logs go to stderr, filtered by `RUST_LOG`.

mod cli;
mod grade;
mod runtime;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: a node allocates and frees many small buffers
/// per request (frames, entries, replies), where glibc's arena locking and
/// consolidation cost several percent of the CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// shardkv: a sharded, linearizable key/value store.
#[derive(Parser, Debug)]
#[command(name = "shardkv", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one replica of the shard master or of a replica group until SIGTERM/Ctrl-C.
    Serve(cli::serve::ServeArgs),
    /// Run a whole cluster (3 masters and the groups, joined) on 127.0.0.1 until Ctrl-C.
    Local(cli::local::LocalArgs),
    /// Start a local cluster in a temporary directory and narrate a real workload: joins,
    /// a leave, a killed replica, every acknowledged write verified (under a minute).
    Demo(cli::demo::DemoArgs),
    /// Add a replica group and rebalance shards onto it.
    Join(cli::admin::JoinArgs),
    /// Remove replica groups; their shards move to the others.
    Leave(cli::admin::LeaveArgs),
    /// Give one shard to one group.
    Move(cli::admin::MoveArgs),
    /// Declare a group that has left dead for good: the shards it was given but never
    /// installed come back from the groups that still hold them.
    Abandon(cli::admin::AbandonArgs),
    /// Show a configuration (the latest by default) as a shard map.
    Query(cli::admin::QueryArgs),
    /// Print the value of a key (exit 1, `not found` on stderr, when absent).
    Get(cli::data::KeyArgs),
    /// Set a key to a value.
    Put(cli::data::KeyValueArgs),
    /// Append to a key's value (a put when absent).
    Append(cli::data::KeyValueArgs),
    /// Remove a key.
    Delete(cli::data::KeyArgs),
    /// Measure throughput and latency: concurrent clients for a fixed time against a
    /// cluster (`--masters`) or a local one started for the run.
    Bench(cli::bench::BenchArgs),
    /// Run the lab suites over many seeds in the simulator and print a score table.
    Grade(grade::GradeArgs),
    /// Make a development CA and the certificates of nodes and clients (mutual TLS).
    #[command(subcommand)]
    Certs(cli::certs::CertsCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => cli::serve::run(args),
        Command::Local(args) => cli::local::run(args),
        Command::Demo(args) => cli::demo::run(args),
        Command::Join(args) => cli::admin::join(args),
        Command::Leave(args) => cli::admin::leave(args),
        Command::Move(args) => cli::admin::move_shard(args),
        Command::Abandon(args) => cli::admin::abandon(args),
        Command::Query(args) => cli::admin::query(args),
        Command::Get(args) => cli::data::get(args),
        Command::Put(args) => cli::data::write(args, cli::data::WriteKind::Put),
        Command::Append(args) => cli::data::write(args, cli::data::WriteKind::Append),
        Command::Delete(args) => cli::data::delete(args),
        Command::Bench(args) => cli::bench::run(args),
        Command::Grade(args) => grade::run(args),
        Command::Certs(command) => cli::certs::run(command),
    }
}
