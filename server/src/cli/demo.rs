//! `shardkv demo`: a real cluster and a narrated workload, from nothing, in under a
//! minute.
//!
//! The demo runs what `shardkv local` runs (the same [`Layout`] and [`Cluster`]: three
//! shard masters and three groups of three replicas, tarpc over loopback TCP, write-ahead logs in a
//! temporary directory) on a free block of ports from 17000 to 57999, and then:
//!
//! 1. group 100 joins, then groups 101 and 102 (the shard map after each);
//! 2. concurrent clients write and read their own keys (see [`super::workload`]);
//! 3. group 101 leaves while they write: the shard map before and after, each moved shard;
//! 4. replica 1 of group 100 is killed (its task aborted), the group serves on with two
//!    replicas, and the replica is started again from its data directory;
//! 5. the clients stop, a fresh client reads back every acknowledged write, and a
//!    summary line gives operations, throughput and moved shards.
//!
//! It exits 0 only when every acknowledged write reads back exactly, no read during
//! the workload contradicted an acknowledged write, and every node stopped cleanly at
//! the end (its last flush included): 1 when writes were lost, 2 on any other error.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use shardkv_client::tls::Tls;
use shardkv_client::{Admin, Config, GroupId, RetryPolicy, TarpcTransport};
use shardkv_proto::NO_GROUP;

use super::admin::render;
use super::cluster::Cluster;
use super::local::{data_dir_or_temp, Layout};
use super::workload::{transport, verify, Workload, OPERATION_DEADLINE};

/// Operations to wait for in each phase of the workload.
const PHASE_OPS: u64 = 500;

/// The longest any phase waits for its operations.
const PHASE_LIMIT: Duration = Duration::from_secs(8);

/// Options of `shardkv demo`.
#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Concurrent clients.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub clients: u16,
}

/// Prints each step with the time since the demo started.
struct Narrator {
    start: Instant,
}

impl Narrator {
    fn say(&self, message: impl std::fmt::Display) {
        println!("[{:5.1}s] {message}", self.start.elapsed().as_secs_f64());
    }

    fn show(&self, config: &Config) {
        for line in render(config).lines() {
            println!("           {line}");
        }
    }
}

/// Runs `shardkv demo`.
pub fn run(args: DemoArgs) -> ExitCode {
    super::logging::init("error");
    let (temp, data_dir) = match data_dir_or_temp(None) {
        Ok(dirs) => dirs,
        Err(message) => return super::fail(message),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => return super::fail(format!("cannot start the runtime: {error}")),
    };
    let local = tokio::task::LocalSet::new();
    let code = runtime.block_on(local.run_until(demo(data_dir, args.clients)));
    drop(temp);
    code
}

/// Starts the cluster, runs the script, stops the cluster, and turns the outcome into
/// the exit code.
async fn demo(data_dir: std::path::PathBuf, clients: u16) -> ExitCode {
    let narrator = Narrator {
        start: Instant::now(),
    };
    let layout = match Layout::free(3, 3, data_dir).await {
        Ok(layout) => layout,
        Err(message) => return super::fail(message),
    };
    narrator.say(format!(
        "starting 3 shard masters and 3 groups of 3 replicas on 127.0.0.1 ({} ...), data in {}",
        layout.masters[0],
        layout.data_dir.display()
    ));
    let mut specs = layout.specs();
    let tls = super::certs::certify(&layout.data_dir.join("tls"), &mut specs)
        .and_then(|dir| Tls::load(&dir));
    let tls = match tls {
        Ok(tls) => tls,
        Err(message) => return super::fail(format!("cannot make certificates: {message}")),
    };
    narrator.say("every connection is mutual TLS, with certificates made for the demo");
    let mut cluster = Cluster::start(specs);
    let outcome = script(&layout, &mut cluster, clients, &narrator, &tls).await;
    let stopped = cluster.stop().await;
    if let Err(message) = &stopped {
        eprintln!("error: {message}");
    }
    match outcome {
        Ok(0) if stopped.is_ok() => ExitCode::SUCCESS,
        Ok(0) => ExitCode::from(super::EXIT_ERROR),
        Ok(_) => ExitCode::FAILURE,
        Err(message) => super::fail(message),
    }
}

/// The demo's steps; returns how many acknowledged writes were lost or contradicted.
async fn script(
    layout: &Layout,
    cluster: &mut Cluster,
    clients: u16,
    narrator: &Narrator,
    tls: &Tls,
) -> Result<usize, String> {
    let policy = RetryPolicy {
        deadline: Some(Duration::from_secs(30)),
        ..RetryPolicy::default()
    };
    let mut admin = Admin::with_policy(transport(Some(tls)), layout.masters.clone(), policy);
    let mut moved = join_groups(layout, &mut admin, narrator).await?;

    narrator.say(format!(
        "{clients} clients start writing (put, append) and reading their own keys"
    ));
    let started = Instant::now();
    let workload = Workload::start(&layout.masters, clients, Some(tls));
    let done = workload.wait_progress(PHASE_OPS, PHASE_LIMIT).await?;
    narrator.say(format!("{done} operations acknowledged"));

    moved += leave_group(&mut admin, 101, narrator).await?;
    let done = workload.wait_progress(PHASE_OPS, PHASE_LIMIT).await?;
    narrator.say(format!(
        "{done} operations since the leave, on the new owners"
    ));

    kill_and_restart(cluster, &workload, narrator).await?;

    let counters = workload.counters.clone();
    let acked = workload.finish().await?;
    let elapsed = started.elapsed().as_secs_f64();
    narrator.say(format!(
        "clients stopped; reading back all {} keys with a fresh client",
        acked.values.len()
    ));
    let mut lost = verify(&layout.masters, &acked, Some(tls)).await;
    lost.extend(counters.anomalies.borrow().iter().cloned());
    for line in &lost {
        println!("LOST: {line}");
    }
    if !acked.uncertain.is_empty() {
        narrator.say(format!(
            "{} keys skipped: a write to them timed out after {OPERATION_DEADLINE:?}, outcome unknown",
            acked.uncertain.len()
        ));
    }
    let ops = counters.ops();
    println!(
        "summary: {ops} operations ({} writes, {} reads) in {elapsed:.1} s, {:.0} ops/s; \
         {moved} shards moved; {} acknowledged writes lost; {} keys verified",
        counters.writes.get(),
        counters.reads.get(),
        ops as f64 / elapsed.max(0.001),
        lost.len(),
        acked.values.len(),
    );
    Ok(lost.len())
}

/// Joins group 100, then 101 and 102; returns how many shards moved between groups.
async fn join_groups(
    layout: &Layout,
    admin: &mut Admin<TarpcTransport>,
    narrator: &Narrator,
) -> Result<usize, String> {
    let servers = |gid: GroupId| layout.groups.get(&gid).cloned().unwrap_or_default();
    narrator.say("group 100 joins (once the shard masters have elected a leader)");
    let first = admin
        .join(BTreeMap::from([(100, servers(100))]))
        .await
        .map_err(|error| format!("join 100: {error}"))?;
    narrator.show(&first);
    narrator.say("groups 101 and 102 join; the shard master rebalances");
    let second = admin
        .join(BTreeMap::from([(101, servers(101)), (102, servers(102))]))
        .await
        .map_err(|error| format!("join 101, 102: {error}"))?;
    narrator.show(&second);
    let moves = moves(&first, &second);
    narrator.say(format!(
        "{} shards moved from group 100 to the new groups",
        moves.len()
    ));
    Ok(moves.len())
}

/// Makes `gid` leave while the clients write; shows the maps and each moved shard.
async fn leave_group(
    admin: &mut Admin<TarpcTransport>,
    gid: GroupId,
    narrator: &Narrator,
) -> Result<usize, String> {
    let before = admin
        .query(None)
        .await
        .map_err(|error| format!("query: {error}"))?;
    narrator.say(format!(
        "group {gid} leaves while the clients keep writing; before:"
    ));
    narrator.show(&before);
    let after = admin
        .leave(vec![gid])
        .await
        .map_err(|error| format!("leave {gid}: {error}"))?;
    narrator.say("after:");
    narrator.show(&after);
    let moves = moves(&before, &after);
    for line in fold_moves(&moves) {
        narrator.say(line);
    }
    narrator.say(format!("{} shards moved", moves.len()));
    Ok(moves.len())
}

/// Kills replica 1 of group 100, waits for writes to go on, restarts it.
async fn kill_and_restart(
    cluster: &mut Cluster,
    workload: &Workload,
    narrator: &Narrator,
) -> Result<(), String> {
    let victim = cluster.index(Some(100), 1).ok_or("no replica 1 of 100")?;
    let (address, dir) = match cluster.spec(victim) {
        Some(spec) => (spec.listen.clone(), spec.data_dir.clone()),
        None => return Err("no replica 1 of group 100".into()),
    };
    narrator.say(format!(
        "killing replica 1 of group 100 ({address}): task aborted, no clean shutdown"
    ));
    cluster.kill(victim).await?;
    let done = workload.wait_progress(PHASE_OPS, PHASE_LIMIT).await?;
    narrator.say(format!(
        "{done} operations acknowledged with group 100 down to 2 of 3 replicas"
    ));
    narrator.say(format!(
        "restarting replica 1 of group 100 from its data directory ({})",
        dir.display()
    ));
    cluster.restart(victim).await?;
    let done = workload.wait_progress(PHASE_OPS, PHASE_LIMIT).await?;
    narrator.say(format!("{done} operations acknowledged since the restart"));
    Ok(())
}

/// The shards whose owner changed from one group to another: (shard, from, to).
fn moves(before: &Config, after: &Config) -> Vec<(usize, GroupId, GroupId)> {
    before
        .shards
        .iter()
        .zip(&after.shards)
        .enumerate()
        .filter(|(_, (from, to))| **from != NO_GROUP && from != to)
        .map(|(shard, (&from, &to))| (shard, from, to))
        .collect()
}

/// Moves as lines, runs of consecutive shards with the same route folded together.
fn fold_moves(moves: &[(usize, GroupId, GroupId)]) -> Vec<String> {
    let mut lines = Vec::new();
    let mut start = 0;
    for end in 1..=moves.len() {
        let (first, from, to) = moves[start];
        let continues = moves
            .get(end)
            .is_some_and(|&(shard, f, t)| shard == moves[end - 1].0 + 1 && (f, t) == (from, to));
        if !continues {
            let last = moves[end - 1].0;
            let range = match last == first {
                true => format!("shard {first}"),
                false => format!("shards {first}-{last}"),
            };
            lines.push(format!("{range} move: group {from} -> group {to}"));
            start = end;
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only shards that change from one group to another count as moved.
    #[test]
    fn moves_count_owner_changes() {
        let config = |num, shards: Vec<GroupId>| Config {
            num,
            shards,
            groups: BTreeMap::new(),
        };
        let before = config(1, vec![NO_GROUP, 100, 101, 101]);
        let after = config(2, vec![100, 100, 100, 102]);
        assert_eq!(moves(&before, &after), vec![(2, 101, 100), (3, 101, 102)]);
    }

    /// Consecutive shards on the same route fold into one line.
    #[test]
    fn moves_fold_into_ranges() {
        let lines = fold_moves(&[(1, 101, 100), (2, 101, 100), (4, 101, 100), (5, 101, 102)]);
        assert_eq!(
            lines,
            vec![
                "shards 1-2 move: group 101 -> group 100",
                "shard 4 move: group 101 -> group 100",
                "shard 5 move: group 101 -> group 102",
            ]
        );
        assert!(fold_moves(&[]).is_empty());
    }
}
