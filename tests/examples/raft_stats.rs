//! Runs Raft lab scenarios over many seeds and prints, per scenario, how many seeds passed,
//! mean virtual time, messages and bytes per run, and wall time (a measurement tool, not a
//! test). `cargo run --release -p shardkv-tests --example raft_stats -- [SEEDS] [NAME..]`.

use std::time::{Duration, Instant};

use shardkv_tests::raft_lab::raft_scenarios;
use shardkv_tests::scenario::{failure_message, run_one};

fn main() {
    let mut args = std::env::args().skip(1);
    let seeds: u64 = args.next().map_or(3, |s| s.parse().expect("seed count"));
    let names: Vec<String> = args.collect();
    let started = Instant::now();
    let mut failures = 0;
    for scenario in raft_scenarios() {
        if !names.is_empty() && !names.iter().any(|n| n == scenario.name) {
            continue;
        }
        let wall = Instant::now();
        let (mut passed, mut sim, mut rpcs, mut bytes) = (0, Duration::ZERO, 0, 0);
        for seed in 1..=seeds {
            let outcome = run_one(&scenario, seed);
            match &outcome.result {
                Ok(()) => passed += 1,
                Err(message) => {
                    failures += 1;
                    println!("  {}", failure_message(&scenario, seed, message));
                }
            }
            sim += outcome.sim_time;
            rpcs += outcome.rpcs;
            bytes += outcome.bytes;
        }
        println!(
            "{:<36} {:<17} {passed:>3}/{seeds} passed  {:>6.1} s virtual  {:>7} msgs  {:>9} bytes  {:>6.2} s wall",
            scenario.name,
            scenario.part,
            sim.as_secs_f64() / seeds as f64,
            rpcs / seeds,
            bytes / seeds,
            wall.elapsed().as_secs_f64()
        );
    }
    println!(
        "{failures} failures; {:.1} s wall in all",
        started.elapsed().as_secs_f64()
    );
}
