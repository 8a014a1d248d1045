//! Real-process tests: `shardkv serve` processes on loopback, driven through the CLI.
//!
//! Bounded: every wait has a generous limit; no assertion is about speed.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    group_leader, shardkv, shardkv_until_ok, start_cluster, stderr, stdout, wait_for_writes,
    Service, BIN, SETTLE,
};

/// Writes through the CLI, kills a group leader with SIGKILL mid-workload, restarts
/// it, makes a group leave, and reads back every acknowledged value.
#[test]
fn acknowledged_writes_survive_leader_kill_and_leave() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (masters_service, mut groups) = start_cluster(dir.path(), &[100, 101]);
    let masters = masters_service.addresses();
    let g100 = &mut groups[0];

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
    let leader = group_leader(&g100.addresses());
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
}

/// Garbage bytes, an oversized frame and broken raft streams do not take a node down,
/// and bad CLI input gets a one-line error and a non-zero exit.
#[test]
fn bad_frames_and_bad_input_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut service = Service::start(dir.path(), None, 3, &[]);
    let masters = service.addresses();
    let out = shardkv_until_ok(
        &masters,
        &["join", "100", "127.0.0.1:1", "--force", "--timeout", "20s"],
        SETTLE,
    );
    assert!(out.status.success(), "join: {}", stderr(&out));

    // tarpc garbage, an oversized tarpc frame, raft streams of an unknown and of the
    // previous version, one whose frame does not decode, one whose frame holds a message
    // that is not raft (from shard-master replica 2: masters 1 and 3 decode it), and one
    // from another service's replica (heard by no one).
    let hello = |version: &[u8], service: u64, id: u64| {
        let mut bytes = b"SKVRAFT".to_vec();
        bytes.extend_from_slice(version);
        bytes.extend_from_slice(&service.to_be_bytes());
        bytes.extend_from_slice(&id.to_be_bytes());
        bytes
    };
    let with_frame = |mut bytes: Vec<u8>, frame: &[u8]| {
        bytes.extend_from_slice(&(frame.len() as u32).to_be_bytes());
        bytes.extend_from_slice(frame);
        bytes
    };
    let mut not_raft = 1u64.to_le_bytes().to_vec();
    not_raft.extend_from_slice(&4u64.to_le_bytes());
    not_raft.extend_from_slice(b"junk");
    for frame in [
        b"\x00\x00\x00\x10garbage-garbage!".to_vec(),
        b"\x7f\xff\xff\xffmore".to_vec(),
        hello(b"9", 0, 2),
        b"SKVRAFT1\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x03abc".to_vec(),
        with_frame(hello(b"2", 0, 2), b"abc"),
        with_frame(hello(b"2", 0, 2), &not_raft),
        with_frame(hello(b"2", 100, 2), &not_raft),
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

/// An operator's mistakes are refused with what is wrong, before anything changes: a
/// join naming another group's replicas, a group's addresses out of raft id order, or
/// addresses where nothing answers; a leave that would leave no group to hold the
/// shards. The data stays readable.
#[test]
fn operator_mistakes_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (masters_service, groups) = start_cluster(dir.path(), &[100]);
    let masters = masters_service.addresses();
    let g101 = Service::start(dir.path(), Some(101), 3, &masters);
    let out = shardkv_until_ok(&masters, &["put", "kept", "yes"], SETTLE);
    assert!(out.status.success(), "put: {}", stderr(&out));

    let mut reversed = g101.addresses();
    reversed.reverse();
    let dead = [common::free_address(), common::free_address()];
    let cases = [
        (
            groups[0].addresses(),
            "is replica 1 of group 100, not a replica of group 101",
        ),
        (
            reversed,
            "is replica 3 of group 101 but is listed as replica 1",
        ),
        (
            dead.to_vec(),
            "no replica of group 101 answers at its addresses",
        ),
    ];
    for (addresses, why) in cases {
        // Until every replica listens, an address may not answer yet.
        let started = Instant::now();
        let err = loop {
            let out = shardkv(&masters, &["join", "101", &addresses.join(",")]);
            assert!(!out.status.success(), "join {addresses:?} succeeded");
            let err = stderr(&out);
            if err.contains(why) || started.elapsed() > SETTLE {
                break err;
            }
        };
        assert!(err.contains(why), "join {addresses:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
    common::join(&masters, &[("101", &g101)]);

    let out = shardkv(&masters, &["leave", "100", "101"]);
    assert!(!out.status.success(), "leaving every group succeeded");
    assert!(
        stderr(&out).contains("would leave no group"),
        "{}",
        stderr(&out)
    );
    let out = shardkv(&masters, &["query"]);
    let shown = stdout(&out);
    assert!(
        shown.contains("group 100 (") && shown.contains("group 101 ("),
        "{shown}"
    );
    let out = shardkv_until_ok(&masters, &["get", "kept"], SETTLE);
    assert_eq!(stdout(&out).trim_end(), "yes", "{}", stderr(&out));
}

/// A group joined at addresses where nothing will ever serve (`--force`) takes shards
/// that the other groups then hold frozen for it; `abandon` is refused while it is a
/// member and for a group that answers, and after it leaves, `abandon` brings every
/// shard back with every value written before. Its id cannot join again.
#[test]
fn an_abandoned_group_gives_its_shards_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (masters_service, _groups) = start_cluster(dir.path(), &[100, 101]);
    let masters = masters_service.addresses();
    let keys: Vec<String> = (0..20).map(|i| format!("key{i}")).collect();
    for key in &keys {
        let out = shardkv_until_ok(&masters, &["put", key, &format!("v-{key}")], SETTLE);
        assert!(out.status.success(), "put {key}: {}", stderr(&out));
    }
    let dead = [common::free_address(), common::free_address()].join(",");
    let refused = |args: &[&str], why: &str| {
        let out = shardkv(&masters, args);
        let err = stderr(&out);
        assert!(
            !out.status.success() && err.contains(why),
            "{args:?}: {err}"
        );
    };
    let out = shardkv(&masters, &["join", "102", &dead, "--force"]);
    assert!(
        out.status.success(),
        "join of the dead group: {}",
        stderr(&out)
    );
    refused(&["abandon", "102"], "group 102 is still a member");
    let out = shardkv(&masters, &["leave", "102"]);
    assert!(out.status.success(), "leave 102: {}", stderr(&out));
    let out = shardkv(&masters, &["leave", "101"]);
    assert!(out.status.success(), "leave 101: {}", stderr(&out));
    refused(&["abandon", "101"], "group 101 is alive");
    let out = shardkv(&masters, &["abandon", "102"]);
    assert!(out.status.success(), "abandon 102: {}", stderr(&out));
    for key in &keys {
        let out = shardkv_until_ok(&masters, &["get", key], SETTLE);
        assert_eq!(
            stdout(&out).trim_end(),
            format!("v-{key}"),
            "{}",
            stderr(&out)
        );
    }
    refused(
        &["join", "102", &dead, "--force"],
        "group 102 was abandoned",
    );
}

/// Raft messages that raft-rs panics on or that would move the group, sent over a raft
/// stream as a listed peer (the streams are not authenticated): one naming a sender
/// other than the stream's, a heartbeat of term `u64::MAX`, one committing far past the log, a burst of leadership hand-overs from a
/// follower, a proposal from the network. Every replica stays up, and the group keeps
/// serving, with what it had acknowledged.
#[test]
fn forged_raft_messages_do_not_take_a_group_down() {
    use protobuf::Message as _;
    use shardkv_raft::raft::eraftpb::{Entry, Message, MessageType};

    let dir = tempfile::tempdir().expect("temp dir");
    let (masters_service, mut groups) = start_cluster(dir.path(), &[100]);
    let masters = masters_service.addresses();
    let out = shardkv_until_ok(&masters, &["put", "before", "kept"], SETTLE);
    assert!(out.status.success(), "put: {}", stderr(&out));

    let forged = |to: u64, from: u64, kind: MessageType, term: u64, commit: u64| {
        let mut message = Message::default();
        message.set_msg_type(kind);
        message.to = to;
        message.from = from;
        message.term = term;
        message.commit = commit;
        if kind == MessageType::MsgPropose {
            message.mut_entries().push(Entry {
                data: b"forged".to_vec().into(),
                ..Entry::default()
            });
        }
        message.write_to_bytes().expect("encode")
    };
    let addresses = groups[0].addresses();
    for (i, address) in addresses.iter().enumerate() {
        let to = i as u64 + 1;
        let from = if to == 1 { 2 } else { 1 };
        let stranger = 6 - to - from;
        let mut messages = vec![
            forged(to, stranger, MessageType::MsgHeartbeat, 1_000, 0),
            forged(to, from, MessageType::MsgHeartbeat, u64::MAX, 0),
            forged(to, from, MessageType::MsgHeartbeat, 1_000, 1_000_000_000),
            forged(to, from, MessageType::MsgPropose, 0, 0),
        ];
        messages.extend((0..50).map(|_| forged(to, from, MessageType::MsgTimeoutNow, 1, 0)));
        // A bincode Vec<ByteBuf>: a u64 count, then each one's u64 length and bytes.
        let mut frame = (messages.len() as u64).to_le_bytes().to_vec();
        for message in &messages {
            frame.extend_from_slice(&(message.len() as u64).to_le_bytes());
            frame.extend_from_slice(message);
        }
        let mut bytes = b"SKVRAFT2".to_vec();
        bytes.extend_from_slice(&100u64.to_be_bytes());
        bytes.extend_from_slice(&from.to_be_bytes());
        bytes.extend_from_slice(&(frame.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&frame);
        let mut stream = TcpStream::connect(address).expect("connect");
        stream.write_all(&bytes).expect("send the forged frame");
    }
    let out = shardkv_until_ok(&masters, &["put", "after", "written"], SETTLE);
    assert!(out.status.success(), "put after: {}", stderr(&out));
    for (key, value) in [("before", "kept"), ("after", "written")] {
        let out = shardkv_until_ok(&masters, &["get", key], SETTLE);
        assert_eq!(stdout(&out).trim_end(), value, "{key}: {}", stderr(&out));
    }
    for node in &mut groups[0].nodes {
        assert!(node.is_running(), "replica at {} died", node.address);
    }
    for id in 1..=3 {
        let log = dir.path().join(format!("group-100-{id}.log"));
        let log = std::fs::read_to_string(&log).expect("the replica's log");
        assert!(!log.contains("panicked"), "replica {id}: {log}");
        assert!(log.contains("refused peer message"), "replica {id}: {log}");
        assert!(log.contains("arrived from node"), "replica {id}: {log}");
    }
}

/// Floods of connections as an attacker would send them. On one replica: 300 that each
/// declare a frame they never finish (raft streams declaring 64 MiB, tarpc connections
/// the largest call frame). On another, with short handshake and idle timeouts: more
/// connections than it serves, ones that never say anything, and ones that stall mid
/// frame. The first replica's resident memory grows by less than 256 MiB (and its address
/// space by less than 4 GiB: no frame is reserved before its bytes arrive), the silent and
/// stalled connections are closed, nothing dies, and the group keeps serving.
#[test]
fn connection_floods_are_bounded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let masters_service = Service::start(dir.path(), None, 3, &[]);
    let masters = masters_service.addresses();
    let mut group = Service::start_with(
        dir.path(),
        Some(100),
        3,
        &masters,
        &["--max-connections", "400"],
    );
    let quick = ["--handshake-timeout", "1s", "--idle-timeout", "2s"];
    group.nodes[1].kill();
    group.nodes[1].args.extend(quick.map(String::from));
    group.nodes[1].restart();
    common::join(&masters, &[("100", &group)]);
    let out = shardkv_until_ok(&masters, &["put", "before", "kept"], SETTLE);
    assert!(out.status.success(), "put: {}", stderr(&out));

    // Declared frames, never finished.
    let target = &group.nodes[0];
    let pid = target.pid().expect("running");
    let (resident, virtual_size) = (memory_kib(pid, "VmRSS:"), memory_kib(pid, "VmSize:"));
    let mut held = Vec::new();
    for i in 0..300 {
        let mut bytes = match i % 2 {
            0 => raft_hello(100, 2),
            _ => Vec::new(),
        };
        let declared: u32 = if i % 2 == 0 { (64 << 20) - 1 } else { 2 << 20 };
        bytes.extend_from_slice(&declared.to_be_bytes());
        bytes.extend_from_slice(&[0xAB; 64 << 10]);
        let mut stream = TcpStream::connect(&target.address).expect("connect");
        stream.write_all(&bytes).expect("send a frame's start");
        held.push(stream);
    }
    for (key, value) in [("during", "written"), ("before", "kept")] {
        if key == "during" {
            let out = shardkv_until_ok(&masters, &["put", key, value], SETTLE);
            assert!(out.status.success(), "put {key}: {}", stderr(&out));
        }
        let out = shardkv_until_ok(&masters, &["get", key], SETTLE);
        assert_eq!(stdout(&out).trim_end(), value, "{key}: {}", stderr(&out));
    }
    let grown = memory_kib(pid, "VmRSS:").saturating_sub(resident) / 1024;
    let reserved = memory_kib(pid, "VmSize:").saturating_sub(virtual_size) / 1024;
    assert!(grown < 256, "resident memory grew by {grown} MiB");
    assert!(reserved < 4096, "address space grew by {reserved} MiB");

    // Over the limit, silent, and stalled mid-frame, on the quick replica.
    let target = &group.nodes[1];
    let mut flood = Vec::new();
    for i in 0..500 {
        let bytes = match i % 4 {
            0 | 1 => Vec::new(),
            2 => vec![0, 0],
            _ => [raft_hello(100, 1), vec![0, 0, 0, 16], b"part".to_vec()].concat(),
        };
        let mut stream = TcpStream::connect(&target.address).expect("connect");
        stream.write_all(&bytes).expect("send");
        flood.push(stream);
    }
    for (i, stream) in flood.iter_mut().enumerate() {
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("read timeout");
        let mut buf = [0u8; 16];
        let read = stream.read(&mut buf);
        assert!(
            matches!(read, Ok(0) | Err(_))
                && !read.as_ref().is_err_and(|error| matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )),
            "connection {i} is still open: {read:?}"
        );
    }
    let out = shardkv_until_ok(&masters, &["put", "after", "written"], SETTLE);
    assert!(out.status.success(), "put after: {}", stderr(&out));
    drop(held);
    for node in group.nodes.iter_mut() {
        assert!(node.is_running(), "replica at {} died", node.address);
    }
    let log = std::fs::read_to_string(dir.path().join("group-100-2.log")).expect("log");
    for line in ["serves its limit", "said nothing whole"] {
        assert!(log.contains(line), "no \"{line}\" in {log}");
    }
    assert!(!log.contains("panicked"), "{log}");
}

/// The start of a raft stream from replica `id` of `service`.
fn raft_hello(service: u64, id: u64) -> Vec<u8> {
    let mut bytes = b"SKVRAFT2".to_vec();
    bytes.extend_from_slice(&service.to_be_bytes());
    bytes.extend_from_slice(&id.to_be_bytes());
    bytes
}

/// A memory figure of process `pid` (`VmRSS:`, `VmSize:`), in KiB.
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = (status.lines().find(|line| line.starts_with(field)))
        .unwrap_or_else(|| panic!("no {field} in {status}"));
    let number = line[field.len()..].trim().trim_end_matches("kB").trim();
    number.parse().expect("a number of kB")
}

/// `shardkv local` does not run on with a dead node: one whose data directory it cannot
/// open stops the whole cluster, and the exit code and message say which node and why.
#[test]
fn local_stops_loudly_when_a_node_dies() {
    let dir = tempfile::tempdir().expect("temp dir");
    let replica = dir.path().join("group-100").join("replica-2");
    std::fs::create_dir_all(&replica).expect("mkdir");
    std::fs::write(replica.join("IDENTITY"), "not an identity\n").expect("write");
    let base = common::free_address();
    let port = base.rsplit(':').next().expect("a port");
    let mut child = Command::new(BIN)
        .args(["local", "--groups", "1", "--base-port", port, "--data-dir"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shardkv local");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if started.elapsed() > SETTLE {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut err);
    }
    let _ = child.wait();
    assert_eq!(status.and_then(|status| status.code()), Some(2), "{err}");
    assert!(err.contains("IDENTITY"), "{err}");
    assert!(err.contains("stopping the whole cluster"), "{err}");
}

/// With mutual TLS: an administrator's certificate joins a group, a client's reads and
/// writes but may not change the configuration, and a caller without a certificate of
/// the cluster's CA (plaintext, or another CA's) gets nothing; a raft stream over a
/// client's certificate is not heard, whatever its hello claims.
#[test]
fn mutual_tls_refuses_strangers_and_non_admins() {
    use shardkv_proto::kv::{GroupRequest, GroupResponse, KvError, MigrationRequest};

    let dir = tempfile::tempdir().expect("temp dir");
    let certs = |args: &[&str]| {
        let made = Command::new(BIN)
            .arg("certs")
            .args(args)
            .output()
            .expect("certs");
        assert!(made.status.success(), "certs {args:?}: {}", stderr(&made));
    };
    let path = |name: &str| dir.path().join(name).display().to_string();
    certs(&["init", "--dir", &path("ca"), "--cluster", "test"]);
    certs(&["init", "--dir", &path("other-ca"), "--cluster", "test"]);
    let ca = dir.path().join("ca");
    certs(&[
        "client",
        "--dir",
        &path("ca"),
        "--out",
        &path("admin"),
        "--name",
        "ops",
        "--admin",
    ]);
    certs(&[
        "client",
        "--dir",
        &path("ca"),
        "--out",
        &path("user"),
        "--name",
        "web",
    ]);
    let (stranger_ca, stranger) = (path("other-ca"), path("stranger"));
    certs(&[
        "client",
        "--dir",
        &stranger_ca,
        "--out",
        &stranger,
        "--name",
        "web",
        "--admin",
    ]);

    let masters_service = Service::start_tls(dir.path(), None, 3, &[], &ca);
    let masters = masters_service.addresses();
    let mut group = Service::start_tls(dir.path(), Some(100), 3, &masters, &ca);
    let servers = group.addresses().join(",");
    let (admin, user) = (path("admin"), path("user"));
    let as_who = |who: &str, args: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        args.extend(["--tls-dir".to_string(), who.to_string()]);
        args
    };
    let run = |args: Vec<String>, within: Duration| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        shardkv_until_ok(&masters, &args, within)
    };
    let out = run(as_who(&admin, &["join", "100", &servers]), SETTLE);
    assert!(out.status.success(), "join as admin: {}", stderr(&out));
    let out = run(as_who(&user, &["put", "k", "v"]), SETTLE);
    assert!(out.status.success(), "put as client: {}", stderr(&out));
    let out = run(as_who(&user, &["get", "k"]), SETTLE);
    assert_eq!(stdout(&out).trim_end(), "v", "{}", stderr(&out));

    let out = run(as_who(&user, &["leave", "100", "--force"]), Duration::ZERO);
    assert!(!out.status.success(), "a client's certificate left");
    assert!(stderr(&out).contains("not allowed"), "{}", stderr(&out));
    for who in [None, Some(stranger.as_str())] {
        let mut args = vec![
            "get".to_string(),
            "k".into(),
            "--timeout".into(),
            "2s".into(),
        ];
        if let Some(who) = who {
            args.extend(["--tls-dir".to_string(), who.to_string()]);
        }
        let out = run(args, Duration::ZERO);
        assert!(!out.status.success(), "{who:?} read the key");
        assert!(stdout(&out).is_empty(), "{who:?}: {}", stdout(&out));
    }

    // Another group's replica asking group 100 for a copy of its whole state, and a
    // client asking for a shard: both refused.
    certs(&[
        "node",
        "--dir",
        &path("ca"),
        "--out",
        &path("g300"),
        "--gid",
        "300",
        "--id",
        "1",
    ]);
    let refused = |who: &str, request: MigrationRequest| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let tls = shardkv_client::tls::Tls::load(std::path::Path::new(who)).expect("tls");
            let transport = shardkv_client::TarpcTransport::with_tls(tls);
            let bytes = bincode::serialize(&GroupRequest::Migration(request)).expect("encode");
            let address = &group.nodes[0].address;
            let answer = transport
                .call_bytes(address, bytes, Duration::from_secs(10))
                .await;
            let answer: GroupResponse =
                bincode::deserialize(&answer.expect("an answer")).expect("decode");
            matches!(
                answer,
                GroupResponse::Migration(Err(KvError::NotAllowed { .. }))
            )
        })
    };
    let pull_state = MigrationRequest::PullState {
        index: 0,
        view: None,
        after: None,
    };
    assert!(
        refused(&path("g300"), pull_state),
        "another group copied the state"
    );
    let pull_shard = MigrationRequest::PullShard {
        config_num: 1,
        shard: 0,
        after: None,
    };
    assert!(refused(&user, pull_shard), "a client pulled a shard");

    // A client's certificate opening a raft stream, its hello claiming replica 2.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        use tokio::io::AsyncWriteExt;
        let tls = shardkv_client::tls::Tls::load(std::path::Path::new(&admin)).expect("tls");
        let tcp = tokio::net::TcpStream::connect(&group.nodes[0].address)
            .await
            .expect("connect");
        let node_name = shardkv_client::tls::Tls::node_name();
        let mut stream = tls
            .connector()
            .connect(node_name, tcp)
            .await
            .expect("handshake");
        stream.write_all(&raft_hello(100, 2)).await.expect("hello");
        stream
            .write_all(&[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0])
            .await
            .expect("frame");
        stream.flush().await.expect("flush");
    });
    let out = shardkv_until_ok(
        &masters,
        &as_who(&user, &["get", "k"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        SETTLE,
    );
    assert_eq!(stdout(&out).trim_end(), "v", "{}", stderr(&out));
    let log = std::fs::read_to_string(dir.path().join("group-100-1.log")).expect("log");
    assert!(
        log.contains("the stream's certificate names administrator \"ops\""),
        "{log}"
    );
    for node in group.nodes.iter_mut() {
        assert!(node.is_running(), "replica at {} died", node.address);
    }
}

/// A node serves plaintext only when told to: without `--tls-dir` or `--insecure`,
/// `serve` refuses to start and says why.
#[test]
fn serve_refuses_plaintext_unless_asked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let address = common::free_address();
    let out = Command::new(BIN)
        .args([
            "serve", "--role", "master", "--id", "1", "--listen", &address,
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run serve");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--insecure"), "{}", stderr(&out));
}

/// `shardkv demo` runs its whole story against a real cluster and exits 0 with its
/// summary line: nothing acknowledged was lost.
#[test]
fn demo_runs_and_loses_nothing() {
    let mut child = Command::new(BIN)
        .arg("demo")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shardkv demo");
    let mut out = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        text
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the demo") {
            break status;
        }
        if start.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            panic!("shardkv demo still running after 180 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = reader.join().expect("stdout reader");
    let mut err = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut err);
    }
    assert!(status.success(), "demo failed: {status}\n{text}\n{err}");
    let summary = text
        .lines()
        .find(|line| line.starts_with("summary: "))
        .unwrap_or_else(|| panic!("no summary line:\n{text}"));
    assert!(summary.contains(" 0 acknowledged writes lost"), "{summary}");
    assert!(summary.contains("shards moved"), "{summary}");
    for step in ["joins", "leaves", "killing replica", "restarting replica"] {
        assert!(text.contains(step), "no `{step}` in the story:\n{text}");
    }
}

/// 64 tasks on a multi-thread tokio runtime share one `Client` (a clone each, built with
/// `Client::builder` over 4 connections per node) over a real cluster of two groups: puts, appends and gets on 32 keys, every operation
/// recorded with its call and return times and the whole history checked for
/// linearizability; every operation is answered.
#[test]
fn one_client_shared_by_64_tasks_is_linearizable() {
    use shardkv_tests::linearizability::{
        check, CheckOptions, CheckResult, KvInput, KvOutput, Operation,
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let (masters_service, _groups) = start_cluster(dir.path(), &[100, 101]);
    let masters = masters_service.addresses();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let started = Instant::now();
    let operations: Vec<Operation> = runtime.block_on(async {
        let client = shardkv_client::Client::builder(masters.clone())
            .policy(common::policy())
            .connections_per_node(4)
            .build()
            .await
            .expect("the cluster answers");
        let tasks: Vec<_> = (0..64u64)
            .map(|task| {
                let client = client.clone();
                tokio::spawn(async move {
                    let mut recorded = Vec::new();
                    for n in 0..20u64 {
                        let key = format!("shared-{}", (task * 7 + n) % 32).into_bytes();
                        let value = format!("<{task}.{n}>").into_bytes();
                        let input = match n % 3 {
                            0 => KvInput::Append { key, value },
                            1 => KvInput::Get { key },
                            _ => KvInput::Put { key, value },
                        };
                        let call = started.elapsed();
                        let output = match &input {
                            KvInput::Get { key } => {
                                client.get(key.clone()).await.map(KvOutput::Value)
                            }
                            KvInput::Put { key, value } => {
                                let done = client.put(key.clone(), value.clone()).await;
                                done.map(|()| KvOutput::Done)
                            }
                            KvInput::Append { key, value } => {
                                let done = client.append(key.clone(), value.clone()).await;
                                done.map(|()| KvOutput::Done)
                            }
                            KvInput::Delete { .. } => unreachable!("no deletes"),
                        };
                        recorded.push(match output {
                            Ok(output) => {
                                Operation::done(task, input, call, output, started.elapsed())
                            }
                            Err(_) => Operation::pending(task, input, call),
                        });
                    }
                    recorded
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.expect("a client task"));
        }
        all
    });
    let unanswered = operations.iter().filter(|op| op.output.is_none()).count();
    assert_eq!(unanswered, 0, "{unanswered} operations got no answer");
    // 64 tasks whose calls all wait for the cluster's first configuration overlap on
    // every key at the start, which costs the search more than a lab history does.
    let options = CheckOptions {
        max_steps_per_key: 100_000_000,
    };
    match check(&operations, &options) {
        CheckResult::Ok => {}
        CheckResult::Illegal(violation) => panic!("not linearizable: {violation}"),
        CheckResult::Unknown { key, steps } => {
            panic!("the checker gave up on {key:?} after {steps} steps")
        }
    }
}
