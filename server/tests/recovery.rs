//! Real-process recovery tests: `kill -9` of the shard master's leader and of every
//! replica of a group, and SIGTERM of every replica of a group, with writes through the
//! library (`Client` over tarpc) and reads through both the library and the CLI.
//!
//! Bounded: every wait polls a condition under a generous limit; no assertion is about
//! speed.

mod common;

use std::time::Duration;

use common::{
    join, keep_on_failure, master_leader, policy, read_back, shardkv, shardkv_until_ok,
    start_cluster, stderr, stdout, LibraryWriter, Node, Service, SETTLE,
};

/// The shard master's leader is killed with SIGKILL mid-workload: the groups keep
/// acknowledging writes, the two remaining masters carry a configuration change, the
/// old leader restarts from its data directory and forms a majority with one other, and
/// every acknowledged write reads back.
#[test]
fn master_leader_kill_loses_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut masters_service, groups) = start_cluster(dir.path(), &[100, 101]);
    let masters = masters_service.addresses();
    let g101 = &groups[1];

    let writer = LibraryWriter::start(&masters, "m");
    writer.wait_for_more(10);
    let leader = master_leader(&masters);
    masters_service.nodes[leader].kill();
    let mut phases = vec![("master leader killed", writer.count())];
    writer.wait_for_more(10);
    // Two of three masters elect a leader and move shards while writes go on.
    let out = shardkv_until_ok(&masters, &["leave", "101", "--timeout", "20s"], SETTLE);
    assert!(
        out.status.success(),
        "leave without the old leader: {}",
        stderr(&out)
    );
    phases.push(("group 101 left", writer.count()));
    writer.wait_for_more(10);
    masters_service.nodes[leader].restart();
    phases.push(("master restarted", writer.count()));
    let out = shardkv_until_ok(
        &masters,
        &[
            "join",
            "101",
            &g101.addresses().join(","),
            "--timeout",
            "20s",
        ],
        SETTLE,
    );
    assert!(
        out.status.success(),
        "join after the restart: {}",
        stderr(&out)
    );
    phases.push(("group 101 joined again", writer.count()));
    writer.wait_for_more(10);
    let acked = writer.finish();

    let wrong = read_back(&masters, &acked);
    if !wrong.is_empty() {
        let mut failures = vec![format!(
            "{} of {} writes lost; acked counts at each step: {phases:?}",
            wrong.len(),
            acked.len()
        )];
        failures.extend(wrong);
        drop(groups);
        drop(masters_service);
        keep_on_failure(dir, &failures);
        return;
    }
    // The restarted master is a working member: with another master down, a majority
    // needs it, and configuration changes still go through.
    let other = (leader + 1) % masters.len();
    masters_service.nodes[other].kill();
    let out = shardkv_until_ok(&masters, &["leave", "101", "--timeout", "20s"], SETTLE);
    assert!(
        out.status.success(),
        "leave with the restarted master: {}",
        stderr(&out)
    );
    masters_service.nodes[other].restart();
}

/// Every replica of a group is killed with SIGKILL and started again from its data
/// directory mid-workload: every acknowledged write is still there (read through the
/// CLI), and the group serves new ones. On failure the data directories and the nodes'
/// logs are kept for a post-mortem.
#[test]
fn whole_group_restart_keeps_data() {
    whole_group_restart(|node| {
        node.kill();
        None
    });
}

/// The same with SIGTERM, as a service manager stops a node: each replica takes the
/// clean way out (its driver stops, its last flush succeeds: it logs so) and exits 0
/// within a bound, and its data is all there after the restart.
#[test]
fn whole_group_stopped_with_sigterm_keeps_data() {
    whole_group_restart(|node| {
        let status = node.terminate(SETTLE);
        let log = std::fs::read_to_string(&node.log).unwrap_or_default();
        match status {
            Some(status) if !status.success() => Some(format!(
                "node {} exited with {status} on SIGTERM",
                node.address
            )),
            Some(_) if !log.contains(STOPPED_CLEANLY) => Some(format!(
                "node {} exited 0 on SIGTERM without logging a clean stop",
                node.address
            )),
            Some(_) => None,
            None => Some(format!(
                "node {} still ran {SETTLE:?} after SIGTERM",
                node.address
            )),
        }
    });
}

/// What `shardkv serve` logs (at info) once its final flush has succeeded.
const STOPPED_CLEANLY: &str = "stopped cleanly, everything written flushed";

/// Stops every replica of a group with `stop` (which says what went wrong, if
/// anything) mid-workload, starts them again, and checks every acknowledged write.
fn whole_group_restart(stop: impl Fn(&mut Node) -> Option<String>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (masters_service, mut groups) = start_cluster(dir.path(), &[100]);
    let masters = masters_service.addresses();
    let g100 = &mut groups[0];

    let writer = LibraryWriter::start(&masters, "g");
    writer.wait_for_more(40);
    let acked_before_kill = writer.count();
    let mut failures: Vec<String> = g100.nodes.iter_mut().filter_map(&stop).collect();
    let acked_while_down = writer.count();
    for node in &mut g100.nodes {
        node.restart();
    }
    // The write in flight during the stop is retried until the group is back.
    writer.wait_for_more(10);
    let acked = writer.finish();
    for node in &mut g100.nodes {
        if !node.is_running() {
            failures.push(format!("restarted node {} exited", node.address));
        }
    }

    for (i, (key, value)) in acked.iter().enumerate() {
        let out = shardkv_until_ok(&masters, &["get", key, "--timeout", "30s"], SETTLE);
        let when = match i {
            i if i < acked_before_kill => "before the kill",
            i if i < acked_while_down => "during the kill",
            _ => "after the restart",
        };
        if !out.status.success() {
            failures.push(format!("get {key} (acked {when}): {}", stderr(&out).trim()));
        } else if stdout(&out).trim_end() != value {
            failures.push(format!("get {key} (acked {when}): {}", stdout(&out).trim()));
        }
    }
    let out = shardkv(
        &masters,
        &["put", "after-restart", "yes", "--timeout", "30s"],
    );
    if !out.status.success() {
        failures.push(format!("put after the restart: {}", stderr(&out).trim()));
    }
    failures.extend(read_back(
        &masters,
        &[("after-restart".into(), "yes".into())],
    ));
    drop(groups);
    drop(masters_service);
    keep_on_failure(dir, &failures);
}

/// A group whose replicas have a 1 MiB page cache takes 24 MiB of values (past the
/// size at which its data flushes, and past three log snapshots, each a checkpoint of
/// the data), loses every replica to SIGKILL, and after the restart reads every value
/// back.
#[test]
fn a_small_cache_group_killed_whole_keeps_everything() {
    let dir = tempfile::tempdir().expect("temp dir");
    let masters_service = Service::start(dir.path(), None, 3, &[]);
    let masters = masters_service.addresses();
    let mut group = Service::start_with(dir.path(), Some(100), 3, &masters, &["--cache-mb", "1"]);
    join(&masters, &[("100", &group)]);

    let (acked, failed) = put_until_refused(&masters, "big", 3000, 1024);
    let mut failures: Vec<String> = failed.into_iter().collect();
    for node in &mut group.nodes {
        node.kill();
    }
    for node in &mut group.nodes {
        node.restart();
    }
    failures.extend(read_back(&masters, &acked));
    if acked.len() != 3000 {
        failures.push(format!("{} of 3000 puts acknowledged", acked.len()));
    }
    drop(group);
    drop(masters_service);
    keep_on_failure(dir, &failures);
}

/// A data directory that is not the replica's, or that has lost its log or its data,
/// refuses to start (a non-zero exit and an error naming what is wrong) instead of
/// coming up as a new replica; put right, the replica starts and nothing is lost.
#[test]
fn a_foreign_or_damaged_data_directory_refuses_to_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (masters_service, mut groups) = cluster_holding_kept(dir.path());
    let masters = masters_service.addresses();
    let group = &mut groups[0];
    for node in &mut group.nodes[..2] {
        stop_cleanly(node);
    }
    let own = dir.path().join("group-100-1");
    let other = dir.path().join("group-100-2");
    let aside = dir.path().join("aside");
    std::fs::create_dir(&aside).expect("mkdir");
    let data_dir_arg = |node: &mut Node, to: &std::path::Path| {
        let at = node
            .args
            .iter()
            .position(|arg| arg == "--data-dir")
            .expect("--data-dir");
        node.args[at + 1] = to.display().to_string();
    };
    let segments: Vec<String> = std::fs::read_dir(&own)
        .expect("read dir")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("wal-"))
        .collect();
    let node = &mut group.nodes[0];
    let mut attempts: Vec<(Vec<String>, &str)> = vec![
        (
            Vec::new(),
            "holds the data of replica 2 of group 100, not of replica 1",
        ),
        (vec!["state.fjall".into()], "has lost state.fjall"),
        (segments, "has lost its write-ahead log"),
    ];
    for (i, (moved, why)) in attempts.drain(..).enumerate() {
        data_dir_arg(node, if i == 0 { &other } else { &own });
        for file in &moved {
            std::fs::rename(own.join(file), aside.join(file)).expect("move aside");
        }
        let before = std::fs::read_to_string(&node.log).unwrap_or_default().len();
        node.restart();
        let status = node.wait_for_exit(Duration::from_secs(30));
        assert!(
            status.is_some_and(|status| !status.success()),
            "started anyway: {status:?}"
        );
        let log = std::fs::read_to_string(&node.log).expect("log");
        assert!(log[before..].contains(why), "{}", &log[before..]);
        for file in &moved {
            std::fs::rename(aside.join(file), own.join(file)).expect("put back");
        }
    }
    data_dir_arg(&mut group.nodes[0], &own);
    for node in &mut group.nodes[..2] {
        node.restart();
    }
    let out = shardkv_until_ok(&masters, &["get", "kept"], SETTLE);
    assert_eq!(stdout(&out).trim_end(), "yes", "{}", stderr(&out));
    for node in &mut group.nodes {
        assert!(node.is_running(), "replica at {} is down", node.address);
    }
}

/// A group whose disks are nearly full (here: a reserve larger than any disk) refuses
/// writes with an error that says so, serves reads, and stops cleanly on SIGTERM;
/// started again with room, it takes writes.
#[test]
fn a_group_out_of_space_refuses_writes_and_serves_reads() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (masters_service, mut groups) = cluster_holding_kept(dir.path());
    let masters = masters_service.addresses();
    let group = &mut groups[0];
    for node in &mut group.nodes {
        stop_cleanly(node);
        node.args
            .extend(["--reserve-mb".to_string(), (1u64 << 40).to_string()]);
        node.restart();
    }
    let started = std::time::Instant::now();
    let refused = loop {
        let out = shardkv(&masters, &["put", "new", "no", "--timeout", "5s"]);
        let err = stderr(&out);
        if err.contains("no space") || started.elapsed() > SETTLE {
            break err;
        }
    };
    assert!(refused.contains("no space"), "{refused}");
    let out = shardkv_until_ok(&masters, &["get", "kept"], SETTLE);
    assert_eq!(stdout(&out).trim_end(), "yes", "{}", stderr(&out));
    for node in &mut group.nodes {
        stop_cleanly(node);
        node.args.truncate(node.args.len() - 2);
        node.restart();
    }
    let out = shardkv_until_ok(&masters, &["put", "new", "yes"], SETTLE);
    assert!(out.status.success(), "put with room: {}", stderr(&out));
}

/// Stops `node` with SIGTERM and asserts that it exits cleanly within 30 s.
fn stop_cleanly(node: &mut Node) {
    let stopped = node.terminate(Duration::from_secs(30));
    assert!(
        stopped.is_some_and(|status| status.success()),
        "{stopped:?}"
    );
}

/// Masters and group 100, with key `kept` written (`yes`).
fn cluster_holding_kept(dir: &std::path::Path) -> (Service, Vec<Service>) {
    let (masters_service, groups) = start_cluster(dir, &[100]);
    let masters = masters_service.addresses();
    let out = shardkv_until_ok(&masters, &["put", "kept", "yes"], SETTLE);
    assert!(out.status.success(), "put: {}", stderr(&out));
    (masters_service, groups)
}

/// Puts keys `{prefix}-{i}` for `i` in `0..count`, each `{i:08}` repeated `repeat`
/// times, through the library, in order, until one fails; returns the acknowledged
/// pairs and the failure, if any.
fn put_until_refused(
    masters: &[String],
    prefix: &str,
    count: usize,
    repeat: usize,
) -> (Vec<(String, String)>, Option<String>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let client = shardkv_client::Client::connect(masters.to_vec(), policy());
    let mut acked = Vec::new();
    for i in 0..count {
        let key = format!("{prefix}-{i}");
        let value = incompressible(i as u64, 8 * repeat);
        match runtime.block_on(client.put(key.as_str(), value.as_str())) {
            Ok(()) => acked.push((key, value)),
            Err(error) => return (acked, Some(format!("put {key}: {error}"))),
        }
    }
    (acked, None)
}

/// `len` hex digits drawn from `seed`: a value the engine's compression cannot shrink,
/// so the bytes written are the bytes stored.
fn incompressible(seed: u64, len: usize) -> String {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..len)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).expect("a hex digit"))
        .collect()
}

/// A tmpfs mounted at a path, for a disk that really fills; unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size_mb` MiB at `path` (which it creates). Needs root, as the
    /// tests and CI have on this project's machines.
    fn mount(path: &std::path::Path, size_mb: u64) -> Tmpfs {
        std::fs::create_dir_all(path).expect("mount point");
        let tmpfs = Tmpfs(path.to_path_buf());
        tmpfs.run(&["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"]);
        tmpfs
    }

    /// Grows (or shrinks) it to `size_mb` MiB, keeping its files.
    fn resize(&self, size_mb: u64) {
        self.run(&["-o", &format!("remount,size={size_mb}m")]);
    }

    /// Bytes free on it.
    fn free(&self) -> u64 {
        let stat = rustix::fs::statvfs(&self.0).expect("statvfs");
        stat.f_bavail * stat.f_frsize
    }

    fn run(&self, args: &[&str]) {
        let status = std::process::Command::new("mount")
            .args(args)
            .arg(&self.0)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mount {args:?} {}: {status}",
            self.0.display()
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A group whose replicas each keep their data on a tmpfs of their own that really
/// fills (issue 24's "full disk on a tmpfs"): writes go on until the free space falls
/// under the reserve, then every write is refused with "no space" while everything
/// acknowledged reads back; the replicas stop on SIGTERM and start again on the full
/// disks; once the disks grow, writes are taken again, and nothing acknowledged is lost.
#[test]
fn a_really_full_disk_refuses_writes_and_loses_nothing() {
    const DISK_MB: u64 = 512;
    const RESERVE_MB: u64 = 256;
    let dir = tempfile::tempdir().expect("temp dir");
    let masters_service = Service::start(dir.path(), None, 3, &[]);
    let masters = masters_service.addresses();
    let disks: Vec<Tmpfs> = (1..=3)
        .map(|i| Tmpfs::mount(&dir.path().join(format!("group-100-{i}")), DISK_MB))
        .collect();
    let reserve = RESERVE_MB.to_string();
    let mut group = Service::start_with(
        dir.path(),
        Some(100),
        3,
        &masters,
        &["--reserve-mb", &reserve],
    );
    join(&masters, &[("100", &group)]);

    let (mut acked, failed) = put_until_refused(&masters, "full", 20_000, 2048);
    let (refused, mut failures): (Option<String>, Vec<String>) = match failed {
        Some(error) if error.contains("no space") => (Some(error), Vec::new()),
        other => (None, other.into_iter().collect()),
    };
    let free: Vec<u64> = disks.iter().map(|disk| disk.free() >> 20).collect();
    println!(
        "{} puts of 16 KiB acknowledged; MiB free of {DISK_MB}: {free:?}; refused: {refused:?}",
        acked.len()
    );
    if refused.is_none() {
        // Reading thousands of keys back from a group that ran out of disk and died
        // would take a deadline each: fail now.
        failures.push(format!("no write refused; MiB free: {free:?}"));
        drop(group);
        return keep_on_failure(dir, &failures);
    }
    failures.extend(read_back(&masters, &acked));
    for node in &mut group.nodes {
        let stopped = node.terminate(Duration::from_secs(30));
        if !stopped.is_some_and(|status| status.success()) {
            failures.push(format!("SIGTERM on the full disk: {stopped:?}"));
        }
    }
    for node in &mut group.nodes {
        node.restart();
    }
    failures.extend(read_back(&masters, &acked));
    // The restart may free some space (the engine compacts and drops its journal), but
    // the reserve holds: writing on fills the disk to it again.
    let (mut more, failed) = put_until_refused(&masters, "after", 20_000, 2048);
    match failed {
        Some(error) if error.contains("no space") => acked.append(&mut more),
        other => failures.push(format!("writes after the restart: {other:?}")),
    }
    disks.iter().for_each(|disk| disk.resize(4 * DISK_MB));
    let out = shardkv_until_ok(&masters, &["put", "more", "yes"], SETTLE);
    if !out.status.success() {
        failures.push(format!("a write with room again: {}", stderr(&out)));
    }
    failures.extend(read_back(&masters, &acked));
    drop(group);
    drop(masters_service);
    drop(disks);
    keep_on_failure(dir, &failures);
}
