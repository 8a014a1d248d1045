//! Simulator speed: runs the 5-node unreliable churn scenario of the Raft lab over a few
//! seeds and prints simulated seconds per wall-clock second. Run it in release mode:
//! `cargo run --release -p shardkv-tests --example sim_bench` (optionally `-- SEEDS`).

use std::time::{Duration, Instant};

use shardkv_tests::raft_lab::{churn, ReplicaLab};

fn main() {
    let seeds: u64 = std::env::args()
        .nth(1)
        .map_or(20, |s| s.parse().expect("seed count"));
    let mut simulated = Duration::ZERO;
    let mut messages = 0;
    let started = Instant::now();
    for seed in 1..=seeds {
        let outcome = churn::unreliable_churn::<ReplicaLab>(seed);
        if let Err(message) = &outcome.result {
            eprintln!("seed {seed} failed: {message}");
        }
        simulated += outcome.sim_time;
        messages += outcome.rpcs;
    }
    let wall = started.elapsed();
    println!(
        "unreliable_churn x{seeds}: {:.1} s simulated in {:.2} s wall = {:.0}x real time, {:.0} messages/s wall",
        simulated.as_secs_f64(),
        wall.as_secs_f64(),
        simulated.as_secs_f64() / wall.as_secs_f64(),
        messages as f64 / wall.as_secs_f64()
    );
}
