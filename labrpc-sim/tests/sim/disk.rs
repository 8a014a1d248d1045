//! The hosts' disks in the simulator: a crash keeps every byte and kills open handles, a
//! power failure keeps what was synced and loses part of the rest, deterministically.

use std::io::ErrorKind;

use labrpc_sim::{Context, Host, Persister, RequestId, Sim, SimFile, SimNode};

use crate::common::ms;

/// A host with a write-ahead log on its disk: a request appends its payload to file "log"
/// and is answered only once a wake (the write's completion) has synced it.
struct Logger {
    persister: Persister,
    file: SimFile,
    end: u64,
}

impl Logger {
    fn boot(persister: Persister) -> Logger {
        let disk = persister.disk();
        let file = match disk.open("log") {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let file = disk.create("log").expect("create log");
                disk.sync_dir().expect("sync_dir");
                file
            }
            Err(e) => panic!("open log: {e}"),
        };
        let end = file.len().expect("len");
        Logger {
            persister,
            file,
            end,
        }
    }
}

impl Host for Logger {
    fn on_message(&mut self, _cx: &mut Context<'_>, _from: SimNode, _payload: Vec<u8>) {}

    fn on_request(&mut self, cx: &mut Context<'_>, id: RequestId, payload: Vec<u8>) {
        self.file.write_at(self.end, &payload).expect("append");
        self.end += payload.len() as u64;
        cx.wake_after(ms(1)..ms(3), id);
    }

    fn on_wake(&mut self, cx: &mut Context<'_>, token: u64) {
        self.file.sync_data().expect("sync");
        cx.reply(token, b"ok".to_vec());
    }

    fn on_tick(&mut self, _cx: &mut Context<'_>) {}
}

fn add_logger(sim: &Sim) -> SimNode {
    sim.add_host("logger", |_, persister| Box::new(Logger::boot(persister)))
}

/// The whole content of `name` on host `id`'s disk.
fn read_log(sim: &Sim, id: SimNode) -> Vec<u8> {
    let file = sim.disk(id).open("log").expect("log exists");
    let mut buf = vec![0; file.len().expect("len") as usize];
    file.read_at(0, &mut buf).expect("read");
    buf
}

/// Proves a crash keeps unsynced writes and kills the handles the old incarnation held,
/// while the restarted incarnation reads everything; the disk is the persister's.
#[test]
fn crash_keeps_unsynced_writes_and_kills_old_handles() {
    let sim = Sim::new(31);
    let id = add_logger(&sim);
    let old = sim
        .with_host(id, |h: &mut Logger, _| {
            h.file.write_at(0, b"unsynced").expect("write");
            h.file.clone()
        })
        .expect("up");
    sim.crash(id);
    let err = old.write_at(0, b"zombie").expect_err("a dead handle");
    assert_eq!(err.kind(), ErrorKind::Other);
    assert_eq!(read_log(&sim, id), b"unsynced");
    sim.restart(id);
    let end = sim.with_host(id, |h: &mut Logger, _| h.end).expect("up");
    assert_eq!(end, 8);
    assert_eq!(sim.persister(id).disk().list(), ["log"]);
    assert_eq!(sim.disk(id).bytes_written(), 8);
}

/// Runs a logger through acknowledged appends, an unsynced tail, a power failure and a
/// restart. Returns the digest, the log after the power failure, and the trace lines.
fn power_fail_run(seed: u64) -> (u64, Vec<u8>, Vec<String>) {
    let sim = Sim::new(seed);
    sim.set_trace_log(true);
    let id = add_logger(&sim);
    let client = sim.add_client("client");
    let s = sim.clone();
    sim.block_on(async move {
        for i in 0..20u8 {
            let reply = client.call(id, vec![i; 8], ms(100)).await;
            assert_eq!(reply.as_deref(), Ok(&b"ok"[..]), "seed {}", s.seed());
        }
    });
    sim.persister(id).put(b"term", b"3");
    sim.with_host(id, |h: &mut Logger, _| {
        h.file
            .write_at(h.end, &[0xee; 5000])
            .expect("unsynced tail")
    })
    .expect("up");
    sim.power_fail(id);
    assert!(!sim.is_up(id));
    let log = read_log(&sim, id);
    sim.restart(id);
    let term = sim.with_host(id, |h: &mut Logger, _| h.persister.get(b"term"));
    assert_eq!(
        term,
        Some(Some(b"3".to_vec())),
        "the persister's areas are untouched"
    );
    let lines = sim.trace_log().into_iter().map(|l| l.line).collect();
    (sim.digest(), log, lines)
}

/// Proves acknowledged (synced) appends survive a power failure, the unsynced tail is
/// sometimes cut, the outcome is traced, and the same seed replays the same disk and digest.
#[test]
fn power_fail_keeps_acknowledged_writes_deterministically() {
    let acked: Vec<u8> = (0..20u8).flat_map(|i| [i; 8]).collect();
    let mut cut = 0;
    for seed in 0..8 {
        let (digest, log, lines) = power_fail_run(seed);
        assert_eq!(&log[..acked.len()], &acked[..], "seed {seed}");
        assert!(log.len() <= acked.len() + 5000, "seed {seed}");
        cut += usize::from(log.len() < acked.len() + 5000 || log[acked.len()..].contains(&0));
        assert!(
            lines.iter().any(|l| l.starts_with("power_fail ")),
            "seed {seed}: no power_fail trace line"
        );
        let (again, log_again, _) = power_fail_run(seed);
        assert_eq!(
            (digest, &log),
            (again, &log_again),
            "seed {seed} replayed differently"
        );
    }
    assert!(cut > 0, "no seed lost any of the unsynced tail");
}

/// Proves a power failure is part of the digest: the same run with a crash instead of a
/// power failure differs.
#[test]
fn power_fail_enters_the_digest() {
    let run = |power: bool| {
        let sim = Sim::new(5);
        let id = add_logger(&sim);
        if power {
            sim.power_fail(id);
        } else {
            sim.crash(id);
        }
        sim.restart(id);
        sim.digest()
    };
    assert_eq!(run(true), run(true));
    assert_ne!(run(true), run(false));
}
