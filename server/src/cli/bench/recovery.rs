//! `shardkv bench --processes --recovery`: after the measured run, how the first group
//! comes back from the two losses a deployment must survive, with the data the run left.
//!
//! ```text
//!   restart ───► every replica of the group killed with SIGKILL at once, started again
//!                on its data directory; timed from the start until a Get of a loaded key
//!                answers; then CHECKED_KEYS keys read back (present, with the value the
//!                run wrote)
//!   catch-up ──► the group killed whole again and its last replica's data directory
//!                emptied; the others started and serving; then all but a quorum's
//!                worth less one killed and the empty one started, so the group's
//!                quorum needs it: it copies the
//!                group's state from the leader in chunks (a raft snapshot held back,
//!                `replica-group/src/catch_up.rs`) or, if the leader's log still starts
//!                at the beginning, replays the log; timed until a Put commits (an
//!                election on the way), with its peak resident memory and bytes on disk
//!                then, and whether it copied (its log says "caught up from a copy")
//! ```
//!
//! The group is killed whole before a replica comes back empty because a leader that
//! stays up remembers how much of its log the replica had: raft assumes a replica keeps
//! what it acknowledged, and the replica refuses the leader's heartbeats committing past
//! its log (raft-rs would panic on them). A replica whose disk was lost comes back only
//! through a new leader's fresh view of it.
//!
//! Only the replica's log tells a copy from a replay (no node reports its state yet), so
//! that replica runs with `RUST_LOG=replica_group=info`.

use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use shardkv_client::{Client, RetryPolicy, TarpcTransport};

use super::clients::Shape;
use super::processes::Processes;

/// Keys read back after the restart.
const CHECKED_KEYS: u64 = 1_000;

/// How long a recovery may take before the bench gives up on it.
const RECOVERY_LIMIT: Duration = Duration::from_secs(600);

/// What the catch-up's replica logs when it has switched to the copy.
const CAUGHT_UP: &str = "caught up from a copy";

/// What `--recovery` measured.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct Recovery {
    /// The group whose replicas were killed.
    pub(super) gid: u64,
    /// From starting the killed group again to the first answered Get, as a client sees
    /// it (its retry backoff, up to 0.5 s, included).
    pub(super) restart_seconds: f64,
    /// Distinct keys read back after the restart, every one present with its value.
    pub(super) restart_keys_checked: u64,
    /// The replica that lost its data.
    pub(super) catch_up_replica: String,
    /// From starting it again to the first Put committed with it in the quorum, as a
    /// client sees it (an election and the client's retry backoff included).
    pub(super) catch_up_seconds: f64,
    /// Whether it copied the state (else the log from its beginning was enough).
    pub(super) catch_up_from_copy: bool,
    /// Its peak resident memory then, MiB.
    pub(super) catch_up_peak_rss_mib: f64,
    /// Its data directory's bytes then (its log file left out), MiB.
    pub(super) catch_up_disk_mib: f64,
}

/// Runs both recoveries on the first group of `processes`.
pub(super) fn measure(
    processes: &mut Processes,
    masters: &[String],
    shape: &Shape,
) -> Result<Recovery, String> {
    let (gid, replicas) = processes
        .first_group()
        .ok_or("--recovery needs a replica group")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))?;
    let policy = RetryPolicy {
        deadline: Some(RECOVERY_LIMIT),
        ..RetryPolicy::default()
    };
    let mut client = Client::with_policy(TarpcTransport::new(), masters.to_vec(), policy);

    for name in &replicas {
        processes.kill(name)?;
    }
    let started = Instant::now();
    for name in &replicas {
        processes.respawn(name, &[])?;
    }
    // Distinct keys: `checked` of them, chosen at random.
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(gid);
    let checked = CHECKED_KEYS.min(shape.keys);
    let keys = usize::try_from(shape.keys).map_err(|_| "too many keys to choose from")?;
    let chosen = rand::seq::index::sample(&mut rng, keys, checked as usize);
    let mut chosen = chosen.iter().map(|n| n as u64);
    let first = chosen.next().ok_or("no key to read back")?;
    runtime.block_on(read_back(&mut client, shape, first))?;
    let restart_seconds = started.elapsed().as_secs_f64();
    for n in chosen {
        runtime.block_on(read_back(&mut client, shape, n))?;
    }

    // The catch-up: the last replica comes back empty where the group needs it for a
    // quorum (of the others, a quorum less one stay up; the rest are killed and stay
    // down to the end of the bench), so the group commits again only once that replica
    // holds the log the leader has.
    let quorum = replicas.len() / 2 + 1;
    let Some(empty) = replicas.last().cloned() else {
        return Err("the group has no replicas".into());
    };
    if replicas.len() < 3 {
        return Err(
            "--recovery needs --replicas 3 or more (a quorum without the emptied one)".into(),
        );
    }
    for name in &replicas {
        processes.kill(name)?;
    }
    processes.empty_data_dir(&empty)?;
    for other in replicas.iter().filter(|other| **other != empty) {
        processes.respawn(other, &[])?;
    }
    runtime.block_on(read_back(&mut client, shape, first))?;
    for down in &replicas[..replicas.len() - quorum] {
        processes.kill(down)?;
    }
    let started = Instant::now();
    processes.respawn(&empty, &[("RUST_LOG", "replica_group=info")])?;
    runtime
        .block_on(client.put(shape.key(first), shape.value(first)))
        .map_err(|error| format!("writing with {empty} in the quorum: {error}"))?;
    let catch_up_seconds = started.elapsed().as_secs_f64();
    runtime.block_on(read_back(&mut client, shape, first))?;
    let usage = processes.usage_of(&empty)?;
    let log = processes.log_path(&empty)?;
    let from_copy = (std::fs::read_to_string(&log))
        .map_err(|error| format!("cannot read {}: {error}", log.display()))?
        .contains(CAUGHT_UP);
    Ok(Recovery {
        gid,
        restart_seconds,
        restart_keys_checked: CHECKED_KEYS.min(shape.keys),
        catch_up_replica: empty,
        catch_up_seconds,
        catch_up_from_copy: from_copy,
        catch_up_peak_rss_mib: usage.peak_rss_mib,
        catch_up_disk_mib: usage.disk_mib,
    })
}

/// Reads key `n` and checks it holds what the run wrote: the value, or (appends) the
/// value repeated.
async fn read_back(
    client: &mut Client<TarpcTransport>,
    shape: &Shape,
    n: u64,
) -> Result<(), String> {
    let value = (client.get(shape.key(n)).await)
        .map_err(|error| format!("reading key {n} back: {error}"))?
        .ok_or(format!("key {n} was lost"))?;
    let expected = shape.value(n);
    let whole = match expected.is_empty() {
        true => value.is_empty(),
        false => value.len() % expected.len() == 0 && !value.is_empty(),
    };
    match whole && value.chunks(expected.len().max(1)).all(|c| c == expected) {
        true => Ok(()),
        false => Err(format!("key {n} reads back {} other bytes", value.len())),
    }
}
