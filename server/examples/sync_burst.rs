//! What the disk alone costs one client's durable put, with no shardkv code on the path.
//!
//! Three threads stand for a group's three replicas, each appending small records (366
//! bytes, what one put adds to a replica's log) to a file of its own with pwrite +
//! `fdatasync`, in rounds: the "leader" starts, the two "followers" start LEAD_US after
//! it (the time a raft message takes to reach them), as under `shardkv bench --clients
//! 1`. An entry commits once two of the three replicas have it durable (raft counts the
//! leader's own copy once its sync is done, like a follower's), so the figure that
//! matters is when the second of the three syncs completes, counted from the leader's
//! start. Printed: its median over the rounds, and the median sync of each role.
//!
//! ```sh
//! cargo run --release -p shardkv --example sync_burst -- [DIR [ROUNDS [LEAD_US]]]
//! ```
//!
//! DIR: where the three files `sync_burst.N` go (created, then removed), default the
//! current directory: use the disk the data directories live on. ROUNDS: default 1000.
//! LEAD_US: default 40.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

const RECORD: usize = 366;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

/// What the threads share: two barriers a round (all start together, all finish
/// before the next round), the leader's start, and a flag a failed thread raises.
struct Shared {
    barrier: Barrier,
    epoch: Instant,
    leader_start_ns: AtomicU64,
    failed: AtomicBool,
    rounds: usize,
    lead: Duration,
}

/// The three files, removed when dropped (whatever happened).
struct Files(Vec<(PathBuf, File)>);

impl Drop for Files {
    fn drop(&mut self) {
        for (path, _) in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() > 3 {
        return Err("usage: sync_burst [DIR [ROUNDS [LEAD_US]]]".into());
    }
    let dir = PathBuf::from(args.first().map_or(".", String::as_str));
    let rounds: usize = parse(args.get(1), 1000)?;
    if rounds == 0 {
        return Err("ROUNDS must be at least 1".into());
    }
    let lead = Duration::from_micros(parse(args.get(2), 40)?);
    let mut files = Files(Vec::new());
    for n in 0..3 {
        let path = dir.join(format!("sync_burst.{n}"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map_err(|error| format!("cannot create {}: {error}", path.display()))?;
        files.0.push((path, file));
    }
    let shared = Shared {
        barrier: Barrier::new(3),
        epoch: Instant::now(),
        leader_start_ns: AtomicU64::new(0),
        failed: AtomicBool::new(false),
        rounds,
        lead,
    };
    let shared = &shared;
    let results: Vec<Result<Vec<(Duration, Duration)>, String>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (files.0.iter().enumerate())
            .map(|(role, (_, file))| scope.spawn(move || replica(role, file, shared)))
            .collect();
        threads
            .into_iter()
            .map(|thread| {
                thread
                    .join()
                    .unwrap_or_else(|_| Err("a thread panicked".into()))
            })
            .collect()
    });
    let times = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    let mut second = Vec::new();
    for round in 0..rounds {
        let start = times[0][round].0;
        let mut ends: Vec<Duration> = times.iter().map(|t| t[round].1).collect();
        ends.sort();
        second.push(ends[1].saturating_sub(start));
    }
    let syncs = |roles: &[usize]| -> Vec<Duration> {
        roles
            .iter()
            .flat_map(|&r| {
                times[r]
                    .iter()
                    .map(|(start, end)| end.saturating_sub(*start))
            })
            .collect()
    };
    println!(
        "{rounds} rounds in {}, followers {lead:?} behind the leader: second sync done \
         {:.0} us after the leader's start (median); one sync takes {:.0} us (leader), \
         {:.0} us (followers)",
        dir.display(),
        median_us(second),
        median_us(syncs(&[0])),
        median_us(syncs(&[1, 2])),
    );
    Ok(())
}

/// One replica's rounds: (start, end) of each sync since the epoch. Role 0 leads; the
/// others start `lead` after its start. A failed write or sync raises the shared flag
/// and the thread keeps meeting the barriers, so no thread waits for it forever.
fn replica(role: usize, file: &File, shared: &Shared) -> Result<Vec<(Duration, Duration)>, String> {
    let record = [role as u8 + 1; RECORD];
    let mut times = Vec::with_capacity(shared.rounds);
    let mut error = None;
    for round in 0..shared.rounds {
        shared.barrier.wait();
        if shared.failed.load(Ordering::Acquire) {
            shared.barrier.wait();
            continue;
        }
        if role == 0 {
            let now = shared.epoch.elapsed().as_nanos() as u64;
            shared.leader_start_ns.store(now.max(1), Ordering::Release);
        } else {
            // Spin, not sleep: a sleep this short overshoots by more than itself.
            let begin = loop {
                match shared.leader_start_ns.load(Ordering::Acquire) {
                    0 => std::hint::spin_loop(),
                    ns => break Duration::from_nanos(ns) + shared.lead,
                }
            };
            while shared.epoch.elapsed() < begin {
                std::hint::spin_loop();
            }
        }
        let start = shared.epoch.elapsed();
        let wrote = file
            .write_all_at(&record, (round * RECORD) as u64)
            .and_then(|()| file.sync_data());
        times.push((start, shared.epoch.elapsed()));
        if let Err(failure) = wrote {
            error = Some(format!("write or sync failed: {failure}"));
            shared.failed.store(true, Ordering::Release);
        }
        shared.barrier.wait();
        if role == 0 {
            shared.leader_start_ns.store(0, Ordering::Release);
        }
    }
    match error {
        Some(error) => Err(error),
        None if shared.failed.load(Ordering::Acquire) => Err("another replica failed".into()),
        None => Ok(times),
    }
}

fn parse<T: std::str::FromStr>(arg: Option<&String>, default: T) -> Result<T, String> {
    match arg {
        None => Ok(default),
        Some(text) => text.parse().map_err(|_| format!("not a number: {text}")),
    }
}

/// The (upper) median of `values` in microseconds; 0 when there are none.
fn median_us(mut values: Vec<Duration>) -> f64 {
    match values.len() {
        0 => 0.0,
        n => values.select_nth_unstable(n / 2).1.as_secs_f64() * 1e6,
    }
}
