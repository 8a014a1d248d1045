//! Real-process tests: `shardkv serve` processes on loopback, driven through the CLI.
//!
//! Bounded: every wait has a generous limit; no assertion is about speed.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{shardkv, shardkv_until_ok, stderr, stdout, Service};
use shardkv_client::TarpcTransport;
use shardkv_proto::kv::{GroupRequest, GroupResponse, KvError, Op, Request};

/// Generous limit for a cluster to elect leaders and finish a step.
const SETTLE: Duration = Duration::from_secs(60);

/// Asks each replica of a group whether it leads (a Get answered by anything but
/// WrongLeader); returns the leader's index, if one answered so.
fn find_leader(addresses: &[String]) -> Option<usize> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    runtime.block_on(async {
        let transport = TarpcTransport::new();
        let request = GroupRequest::Kv(Request {
            client: 7,
            seq: 1,
            op: Op::Get {
                key: b"probe".to_vec(),
            },
        });
        let bytes = bincode::serialize(&request).ok()?;
        for (i, address) in addresses.iter().enumerate() {
            let Ok(reply) = transport
                .call_bytes(address, bytes.clone(), Duration::from_secs(2))
                .await
            else {
                continue;
            };
            match bincode::deserialize::<GroupResponse>(&reply) {
                Ok(GroupResponse::Kv(Err(KvError::WrongLeader { .. }))) | Err(_) => {}
                Ok(_) => return Some(i),
            }
        }
        None
    })
}

/// Writes through the CLI, kills a group leader with SIGKILL mid-workload, restarts
/// it, makes a group leave, and reads back every acknowledged value.
#[test]
fn acknowledged_writes_survive_leader_kill_and_leave() {
    let dir = tempfile::tempdir().expect("temp dir");
    let masters_service = Service::start(dir.path(), None, 3, &[]);
    let masters = masters_service.addresses();
    let mut g100 = Service::start(dir.path(), Some(100), 3, &masters);
    let g101 = Service::start(dir.path(), Some(101), 3, &masters);
    for (gid, group) in [("100", &g100), ("101", &g101)] {
        let servers = group.addresses().join(",");
        let out = shardkv_until_ok(
            &masters,
            &["join", gid, &servers, "--timeout", "20s"],
            SETTLE,
        );
        assert!(out.status.success(), "join {gid}: {}", stderr(&out));
    }

    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop, masters) = (acked.clone(), stop.clone(), masters.clone());
        std::thread::spawn(move || {
            for i in 0..400 {
                if stop.load(Ordering::Relaxed) && i >= 20 {
                    break;
                }
                let (key, value) = (format!("key-{i}"), format!("value-{i}"));
                let out = shardkv(&masters, &["put", &key, &value, "--timeout", "30s"]);
                if out.status.success() {
                    acked.lock().expect("lock").push((key, value));
                }
            }
        })
    };
    let acked_count = || acked.lock().expect("lock").len();
    wait_for_writes(&acked_count, 5);
    let leader = (0..100)
        .find_map(|_| {
            find_leader(&g100.addresses()).or_else(|| {
                std::thread::sleep(Duration::from_millis(200));
                None
            })
        })
        .expect("group 100 elects a leader");
    g100.nodes[leader].kill();
    // The group keeps serving with two of three replicas: writes go on being acknowledged.
    wait_for_writes(&acked_count, acked_count() + 5);
    g100.nodes[leader].restart();
    wait_for_writes(&acked_count, acked_count() + 5);
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer thread");

    let out = shardkv_until_ok(&masters, &["leave", "101", "--timeout", "20s"], SETTLE);
    assert!(out.status.success(), "leave: {}", stderr(&out));
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() >= 20,
        "only {} writes acknowledged",
        acked.len()
    );
    for (key, value) in &acked {
        let out = shardkv_until_ok(&masters, &["get", key, "--timeout", "30s"], SETTLE);
        assert!(out.status.success(), "get {key}: {}", stderr(&out));
        assert_eq!(stdout(&out).trim_end(), value, "key {key}");
    }
    let out = shardkv(&masters, &["get", "never-written", "--timeout", "30s"]);
    assert_eq!(out.status.code(), Some(1), "absent key: {}", stderr(&out));
    assert!(stdout(&out).is_empty() && stderr(&out).contains("not found"));
    drop(g101);
}

/// Garbage bytes and an oversized frame do not take a node down, and bad CLI input
/// gets a one-line error and a non-zero exit.
#[test]
fn bad_frames_and_bad_input_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut service = Service::start(dir.path(), None, 3, &[]);
    let masters = service.addresses();
    let out = shardkv_until_ok(
        &masters,
        &["join", "100", "127.0.0.1:1", "--timeout", "20s"],
        SETTLE,
    );
    assert!(out.status.success(), "join: {}", stderr(&out));

    for frame in [
        b"\x00\x00\x00\x10garbage-garbage!".to_vec(),
        b"\x7f\xff\xff\xffmore".to_vec(),
    ] {
        for address in &masters {
            if let Ok(mut stream) = TcpStream::connect(address) {
                let _ = stream.write_all(&frame);
                let _ = stream.write_all(&[0xAB; 4096]);
            }
        }
    }
    let out = shardkv_until_ok(&masters, &["query", "--timeout", "20s"], SETTLE);
    assert!(
        out.status.success(),
        "query after garbage: {}",
        stderr(&out)
    );
    for node in &mut service.nodes {
        assert!(node.is_running(), "node {} died", node.address);
    }
    assert!(stdout(&out).contains("group 100"), "{}", stdout(&out));

    let unreachable = [common::free_address()];
    let cases: [(&[String], Vec<&str>); 4] = [
        (&masters, vec!["leave", "999", "--timeout", "20s"]),
        (&masters, vec!["move", "99999", "100", "--timeout", "20s"]),
        (&masters, vec!["move", "0", "999", "--timeout", "20s"]),
        (&unreachable, vec!["get", "k", "--timeout", "1s"]),
    ];
    for (masters, args) in cases {
        let out = shardkv(masters, &args);
        let err = stderr(&out);
        assert!(
            matches!(out.status.code(), Some(code) if code != 0),
            "{args:?} succeeded"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error:"), "{args:?}: {err}");
    }
}

/// Waits (bounded by [`SETTLE`]) until at least `target` writes have been acknowledged.
fn wait_for_writes(count: &dyn Fn() -> usize, target: usize) {
    let start = std::time::Instant::now();
    while count() < target {
        assert!(
            start.elapsed() < SETTLE,
            "only {} of {target} writes acknowledged within {SETTLE:?}",
            count()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
