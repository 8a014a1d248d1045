//! The one place a lab harness creates its simulator and turns a finished run into an
//! [`Outcome`], so that every suite honours the same switches:
//!
//! - trace capture ([`crate::scenario::capture_trace`], used by `shardkv grade --trace`):
//!   the simulator keeps its readable log and hands it over at the end;
//! - `SHARDKV_TRACE=N`: a failed run prints its last `N` trace lines to stderr;
//! - failure messages carry the virtual time and the harness's description of the cluster.
//!
//! ```text
//!   scenario fn(seed) --> Cluster::new --> new_sim(seed) ----------+ (trace log on if asked)
//!                         Cluster::run --> finish(&sim, result) --+--> Outcome
//!                                                                  +--> capture (lines, names)
//! ```
//!
//! The Raft ([`crate::raft_lab`]) and master ([`crate::master_lab`]) harnesses use it. The
//! kv harness ([`crate::kv_lab`]) still builds its own simulator and outcome; until it
//! adopts these two functions, its runs yield an empty trace under `--trace` (the digest is
//! unaffected: it never depends on whether lines are kept).

use labrpc_sim::Sim;

use crate::scenario::{self, Outcome};

/// A simulator for `seed` whose readable trace log is on when a capture is requested or
/// `SHARDKV_TRACE` asks for lines.
pub fn new_sim(seed: u64) -> Sim {
    let sim = Sim::new(seed);
    sim.set_trace_log(scenario::capture_requested() || trace_lines_wanted() > 0);
    scenario::capture_sim(&sim);
    sim
}

/// The outcome of a run on `sim` that ended with `result`: a failure gains the virtual time
/// and `describe()` (the cluster's state, asked only on failure), and prints the trace
/// tail under `SHARDKV_TRACE`. Hands the trace to a pending capture, then frees the
/// simulation's tasks (the cluster must not be driven after this).
pub fn finish(sim: &Sim, result: Result<(), String>, describe: impl FnOnce() -> String) -> Outcome {
    let result = result.map_err(|e| {
        print_trace_tail(sim);
        format!("{e} (at {:?} virtual; {})", sim.now(), describe())
    });
    let outcome = Outcome {
        result,
        digest: sim.digest(),
        sim_time: sim.now(),
        rpcs: sim.total_rpcs(),
        bytes: sim.total_bytes(),
    };
    scenario::capture_finished(sim);
    sim.shutdown();
    outcome
}

/// With `SHARDKV_TRACE=N`, print the last `N` trace lines of a failed run to stderr.
fn print_trace_tail(sim: &Sim) {
    let wanted = trace_lines_wanted();
    if wanted == 0 {
        return;
    }
    let lines = sim.trace_log();
    for line in &lines[lines.len().saturating_sub(wanted)..] {
        eprintln!(
            "{:>12?} {:?} {}: {}",
            line.time, line.node, line.topic, line.line
        );
    }
}

/// How many trace lines to print on failure (`SHARDKV_TRACE`, default none).
fn trace_lines_wanted() -> usize {
    std::env::var("SHARDKV_TRACE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
