//! The `shardkv` command line.
//!
//! Today it grades the lab suites (`shardkv grade`) over the deterministic simulator; the
//! real-cluster subcommands (`serve`, `local`, `demo`, admin and data commands) arrive with
//! the runtime.

mod grade;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// shardkv: a sharded, linearizable key/value store.
#[derive(Parser, Debug)]
#[command(name = "shardkv", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the lab suites over many seeds in the simulator and print a score table.
    Grade(grade::GradeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Grade(args) => grade::run(args),
    }
}
