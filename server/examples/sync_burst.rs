//! What the disk alone costs one client's durable put, with no shardkv code on the path.
//!
//! Three threads stand for a group's three replicas, each appending small records (366
//! bytes, what one put adds to a replica's log) to a file of its own with pwrite +
//! `fdatasync`, in rounds: the "leader" starts, the two "followers" start `--lead-us`
//! later (the time a raft message takes to reach them), as they do under `shardkv bench
//! --clients 1`. A put commits when the leader and one follower have synced, so the
//! figure that matters is when the second of the three syncs completes, counted from the
//! first start. Printed: its median over the rounds, and the median sync of each role.
//!
//! ```sh
//! cargo run --release -p shardkv --example sync_burst -- [DIR] [ROUNDS] [LEAD_US]
//! ```
//!
//! DIR defaults to the current directory (use the disk the data directories live on);
//! ROUNDS to 1000, LEAD_US to 40. Three files `sync_burst.N` are created there and
//! removed.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const RECORD: usize = 366;

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| ".".into()));
    let rounds: usize = parse(args.next(), 1000)?;
    let lead = Duration::from_micros(parse(args.next(), 40)?);
    let files = (0..3)
        .map(|n| {
            let path = dir.join(format!("sync_burst.{n}"));
            let file = OpenOptions::new()
                .create(true)
                .truncate(true)
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|error| format!("cannot create {}: {error}", path.display()))?;
            Ok((path, file))
        })
        .collect::<Result<Vec<_>, String>>()?;
    // Two barriers a round: all start together, all finish before the next round.
    let barrier = Arc::new(Barrier::new(3));
    let epoch = Instant::now();
    let threads: Vec<_> = files
        .iter()
        .enumerate()
        .map(|(role, (_, file))| {
            let file = file.try_clone().map_err(|error| error.to_string())?;
            let barrier = Arc::clone(&barrier);
            Ok(std::thread::spawn(move || {
                run(role, &file, rounds, lead, &barrier, epoch)
            }))
        })
        .collect::<Result<_, String>>()?;
    let mut times = Vec::new();
    for thread in threads {
        times.push(thread.join().map_err(|_| "a thread panicked")??);
    }
    for (path, _) in &files {
        let _ = std::fs::remove_file(path);
    }
    let mut second = Vec::new();
    for round in 0..rounds {
        // From the first start (the leader's, unless it was descheduled).
        let start = times.iter().map(|t| t[round].0).min().unwrap_or_default();
        let mut ends: Vec<Duration> = times.iter().map(|t| t[round].1).collect();
        ends.sort();
        second.push(ends[1].saturating_sub(start));
    }
    let syncs = |roles: &[usize]| -> Vec<Duration> {
        roles
            .iter()
            .flat_map(|&r| times[r].iter().map(|(start, end)| *end - *start))
            .collect()
    };
    println!(
        "{rounds} rounds in {}, followers {lead:?} behind: second sync done after {:.0} us \
         (median); a sync takes {:.0} us (leader), {:.0} us (followers)",
        dir.display(),
        median_us(second),
        median_us(syncs(&[0])),
        median_us(syncs(&[1, 2])),
    );
    Ok(())
}

/// One role's rounds: (start, end) of each sync, since `epoch`.
fn run(
    role: usize,
    file: &File,
    rounds: usize,
    lead: Duration,
    barrier: &Barrier,
    epoch: Instant,
) -> Result<Vec<(Duration, Duration)>, String> {
    let record = [role as u8 + 1; RECORD];
    let mut times = Vec::with_capacity(rounds);
    for round in 0..rounds {
        barrier.wait();
        if role > 0 {
            // Spin, not sleep: a sleep this short overshoots by more than itself.
            let start = Instant::now();
            while start.elapsed() < lead {
                std::hint::spin_loop();
            }
        }
        let start = epoch.elapsed();
        file.write_all_at(&record, (round * RECORD) as u64)
            .and_then(|()| file.sync_data())
            .map_err(|error| format!("write or sync failed: {error}"))?;
        times.push((start, epoch.elapsed()));
        barrier.wait();
    }
    Ok(times)
}

fn parse<T: std::str::FromStr>(arg: Option<String>, default: T) -> Result<T, String> {
    match arg {
        None => Ok(default),
        Some(text) => text.parse().map_err(|_| format!("not a number: {text}")),
    }
}

fn median_us(mut values: Vec<Duration>) -> f64 {
    values.sort();
    values
        .get(values.len() / 2)
        .map_or(0.0, |d| d.as_secs_f64() * 1e6)
}
