//! `shardkv bench` end to end: standalone (its own local cluster) and against a cluster
//! of `shardkv serve` processes, with `--json`. Only the report's shape and consistency
//! are checked: no assertion is about speed.

mod common;

use std::process::{Command, Output, Stdio};

use common::{shardkv, start_cluster, stderr, stdout, BIN};

/// Runs `shardkv bench ARGS --json` and returns its report.
fn bench(args: &[&str]) -> serde_json::Value {
    let out: Output = Command::new(BIN)
        .arg("bench")
        .args(args)
        .arg("--json")
        .stdin(Stdio::null())
        .output()
        .expect("run shardkv bench");
    assert!(out.status.success(), "bench {args:?}: {}", stderr(&out));
    serde_json::from_str(stdout(&out).trim()).expect("one line of JSON")
}

/// Checks what holds of every report: operations done, none failed, and latency
/// percentiles in order.
fn check_report(report: &serde_json::Value, op: &str, clients: u64) {
    assert_eq!(report["op"], op, "{report}");
    assert_eq!(report["clients"], clients, "{report}");
    assert!(report["operations"].as_u64().unwrap_or(0) > 0, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    let latency = |name: &str| report["latency_ms"][name].as_f64().unwrap_or(-1.0);
    assert!(latency("p50") > 0.0, "{report}");
    assert!(latency("p50") <= latency("p90"), "{report}");
    assert!(latency("p90") <= latency("p99"), "{report}");
    assert!(latency("p99") <= latency("max"), "{report}");
}

/// Without `--masters` the benchmark starts, uses and stops its own cluster; clients
/// can share connections.
#[test]
fn standalone_bench_reports_json() {
    let args = [
        "--op",
        "mixed",
        "--clients",
        "4",
        "--conns",
        "1",
        "--duration",
        "1s",
        "--keys",
        "200",
    ];
    let report = bench(&args);
    check_report(&report, "mixed", 4);
    assert_eq!(report["conns"], 1, "{report}");
    assert!(
        report["cluster"]
            .as_str()
            .unwrap_or("")
            .starts_with("local"),
        "{report}"
    );
}

/// With `--tls` every connection of the benchmark's cluster is mutual TLS, with
/// certificates made for the run, and the report says so.
#[test]
fn standalone_bench_runs_over_mutual_tls() {
    let args = [
        "--op",
        "put",
        "--clients",
        "4",
        "--duration",
        "1s",
        "--keys",
        "200",
        "--tls",
    ];
    let report = bench(&args);
    check_report(&report, "put", 4);
    let cluster = report["cluster"].as_str().unwrap_or("");
    assert!(cluster.ends_with("mutual TLS"), "{report}");
}

/// Against a running cluster, the benchmark's writes are real: the loaded keys read
/// back through the CLI afterwards.
#[test]
fn bench_against_a_cluster_writes_real_data() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (masters_service, _groups) = start_cluster(dir.path(), &[100]);
    let masters = masters_service.addresses();
    let joined = masters.join(",");
    let args = [
        "--masters",
        joined.as_str(),
        "--op",
        "get",
        "--clients",
        "2",
        "--duration",
        "1s",
        "--keys",
        "50",
        "--value-size",
        "16",
    ];
    let report = bench(&args);
    check_report(&report, "get", 2);
    assert_eq!(
        report["conns"], 2,
        "one connection per client by default: {report}"
    );
    assert_eq!(report["cluster"], "external", "{report}");
    let out = shardkv(&masters, &["get", "00000049"]);
    assert!(out.status.success(), "get a loaded key: {}", stderr(&out));
    // The value: 16 random bytes (the bench's values do not compress) and a newline.
    assert_eq!(out.stdout.len(), 17, "{:?}", out.stdout);
    assert_ne!(&out.stdout[..16], &[out.stdout[0]; 16], "{:?}", out.stdout);
}

/// `--timeline` follows one client's writes through the process (every operation it
/// reports is one the bench made, cut into the twelve stages of a write, the
/// followers' flush among them, and the leader's own flush measured), and refuses what
/// it cannot follow.
#[test]
fn timeline_follows_the_writes() {
    let args: Vec<&str> = "--op put --clients 1 --duration 1s --keys 100 --timeline"
        .split(' ')
        .collect();
    let report = bench(&args);
    check_report(&report, "put", 1);
    let timeline = &report["timeline"];
    let found = timeline["operations"].as_u64().unwrap_or(0);
    let operations = report["operations"].as_u64().unwrap_or(0);
    assert!(found > 0 && found <= operations, "{report}");
    let stages = timeline["stages"].as_array().cloned().unwrap_or_default();
    assert_eq!(stages.len(), 12, "{report}");
    assert!(stages
        .iter()
        .any(|stage| stage["stage"] == "follower: flush (write + fdatasync)"));
    assert!(timeline["latency_mean_us"].as_f64().unwrap_or(0.0) > 0.0);
    assert!(timeline["leader_flush_p50_us"].as_f64().unwrap_or(0.0) > 0.0);

    let out = Command::new(BIN)
        .args(["bench", "--op", "put", "--clients", "2", "--timeline"])
        .output()
        .expect("run shardkv bench");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--clients 1"), "{}", stderr(&out));
}

/// `--processes --recovery`: every replica is a process of its own with its memory and
/// disk reported; after the run the group killed whole serves again with the keys read
/// back, and a replica that lost its data gets back into the quorum.
#[test]
fn processes_report_usage_and_recovery() {
    let args: Vec<&str> =
        "--processes --recovery --op put --clients 2 --duration 1s --keys 300 --value-size 64"
            .split(' ')
            .collect();
    let report = bench(&args);
    check_report(&report, "put", 2);
    let replicas = report["replicas"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = replicas.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "master-1",
            "master-2",
            "master-3",
            "group-100-1",
            "group-100-2",
            "group-100-3"
        ],
        "{report}"
    );
    for replica in &replicas {
        assert!(
            replica["peak_rss_mib"].as_f64().unwrap_or(0.0) > 1.0,
            "{report}"
        );
        assert!(
            replica["disk_mib"].as_f64().unwrap_or(0.0) > 0.0,
            "{report}"
        );
    }
    let recovery = &report["recovery"];
    assert_eq!(recovery["gid"], 100, "{report}");
    assert_eq!(recovery["restart_keys_checked"], 300, "{report}");
    assert!(
        recovery["restart_seconds"].as_f64().unwrap_or(0.0) > 0.0,
        "{report}"
    );
    assert_eq!(recovery["catch_up_replica"], "group-100-3", "{report}");
    assert!(
        recovery["catch_up_seconds"].as_f64().unwrap_or(0.0) > 0.0,
        "{report}"
    );
    // 300 small keys never fill a log to its compaction: the replica replays it.
    assert_eq!(recovery["catch_up_from_copy"], false, "{report}");

    let out = Command::new(BIN)
        .args(["bench", "--recovery"])
        .output()
        .expect("run shardkv bench");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--processes"), "{}", stderr(&out));
    let out = Command::new(BIN)
        .args(["bench", "--processes", "--recovery", "--replicas", "2"])
        .output()
        .expect("run shardkv bench");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--replicas 3"), "{}", stderr(&out));
}
