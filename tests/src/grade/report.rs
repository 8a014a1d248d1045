//! What a grading run prints: the list of parts and tests, the score table, the failures
//! with their replay commands, or JSON for scripts.

use std::collections::BTreeMap;
use std::io::{self, Write};

use super::runner::Run;
use super::POINTS_PER_TEST;
use crate::scenario::Scenario;

/// Parts, each followed by its tests, in registry order within a part.
pub(super) fn print_list(out: &mut dyn Write, all: &[Scenario]) -> io::Result<()> {
    let mut by_part: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in all {
        by_part.entry(s.part).or_default().push(s.name);
    }
    for (part, tests) in by_part {
        writeln!(out, "{part}")?;
        for test in tests {
            writeln!(out, "  {test}")?;
        }
    }
    Ok(())
}

/// The runs as a pretty-printed JSON array.
pub(super) fn print_json(out: &mut dyn Write, runs: &[Run]) -> io::Result<()> {
    let text = serde_json::to_string_pretty(runs).map_err(io::Error::other)?;
    writeln!(out, "{text}")
}

/// One row per test (passed/total, simulated and wall time, traffic, points), then the
/// score of every part and the total.
pub(super) fn print_table(
    out: &mut dyn Write,
    scenarios: &[Scenario],
    runs: &[Run],
) -> io::Result<()> {
    writeln!(
        out,
        "{:<18} {:<34} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11} {:>6}",
        "part", "test", "passed", "sim mean", "sim max", "wall mean", "rpcs", "bytes", "score"
    )?;
    let mut part_scores: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    for s in scenarios {
        let mine: Vec<&Run> = runs.iter().filter(|r| r.test == s.name).collect();
        let n = mine.len().max(1) as f64;
        let passed = mine.iter().filter(|r| r.error.is_none()).count();
        let points = if passed == mine.len() {
            POINTS_PER_TEST
        } else {
            0
        };
        let entry = part_scores.entry(s.part).or_default();
        entry.0 += points;
        entry.1 += POINTS_PER_TEST;
        let sim_mean = mine.iter().map(|r| r.sim_secs).sum::<f64>() / n;
        let sim_max = mine.iter().map(|r| r.sim_secs).fold(0.0, f64::max);
        let wall_mean = mine.iter().map(|r| r.wall_secs).sum::<f64>() / n;
        let rpcs = mine.iter().map(|r| r.rpcs).sum::<u64>() / mine.len().max(1) as u64;
        let bytes = mine.iter().map(|r| r.bytes).sum::<u64>() / mine.len().max(1) as u64;
        writeln!(
            out,
            "{:<18} {:<34} {:>9} {:>8.1}s {:>8.1}s {:>8.3}s {:>9} {:>11} {:>6}",
            s.part,
            s.name,
            format!("{passed}/{}", mine.len()),
            sim_mean,
            sim_max,
            wall_mean,
            rpcs,
            bytes,
            points
        )?;
    }
    writeln!(out)?;
    let (mut total, mut max) = (0, 0);
    for (part, (score, out_of)) in &part_scores {
        writeln!(out, "score {part:<18} {score:>4} / {out_of}")?;
        total += score;
        max += out_of;
    }
    writeln!(out, "score {:<18} {total:>4} / {max}", "total")
}

/// Every failed run with its seed, digest, message and replay command.
pub(super) fn print_failures(out: &mut dyn Write, command: &str, runs: &[Run]) -> io::Result<()> {
    let failed: Vec<&Run> = runs.iter().filter(|r| r.error.is_some()).collect();
    if failed.is_empty() {
        return Ok(());
    }
    writeln!(out, "\nfailures:")?;
    for run in failed {
        writeln!(
            out,
            "  {} seed {} (trace digest {:016x}): {}",
            run.test,
            run.seed,
            run.digest,
            run.error.as_deref().unwrap_or("")
        )?;
        writeln!(out, "    replay: {}", replay_command(command, run))?;
    }
    Ok(())
}

/// The command that replays `run` with its event log.
pub(super) fn replay_command(command: &str, run: &Run) -> String {
    format!("{command} {} --seed {} --trace", run.test, run.seed)
}
