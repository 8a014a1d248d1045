//! Same seed, same run: the digest is a faithful fingerprint of a run.

use std::collections::HashMap;

use labrpc_sim::{Context, Host, Sim, SimNode};

use crate::common::{add_chatty, ms};

/// A faulty scenario: chatting hosts, an unreliable reordering network, concurrent client
/// tasks, a crash and a restart. Returns the run's digest.
fn faulty_run(seed: u64) -> u64 {
    let sim = Sim::new(seed);
    let hosts = add_chatty(&sim, 0, 3);
    sim.set_reliable(false);
    sim.set_long_reordering(true);
    let mut tasks = Vec::new();
    for c in 0..2u8 {
        let client = sim.add_client(&format!("client{c}"));
        let s = sim.clone();
        let hosts = hosts.clone();
        tasks.push(sim.spawn(async move {
            for i in 0..30u8 {
                let to = hosts[usize::from(i) % hosts.len()];
                let reply = client.call(to, vec![c, i], ms(300)).await;
                s.trace("client", format!("{c} {i} {reply:?}"));
                s.sleep(ms(u64::from(i) * 7)).await;
            }
        }));
    }
    let s = sim.clone();
    sim.block_on(async move {
        s.sleep(ms(1500)).await;
        s.crash(hosts[1]);
        s.sleep(ms(700)).await;
        s.restart(hosts[1]);
        for task in tasks {
            task.await;
        }
    });
    assert!(
        sim.total_rpcs() > 100,
        "the scenario should exchange traffic"
    );
    sim.digest()
}

/// Proves two runs with the same seed produce the same digest, and another seed a different one.
#[test]
fn same_seed_same_digest_different_seed_different_digest() {
    let a = faulty_run(42);
    let b = faulty_run(42);
    let c = faulty_run(43);
    assert_eq!(a, b, "same seed must replay the same run");
    assert_ne!(a, c, "a different seed should change the run");
}

/// A host that writes the iteration order of a std `HashMap` (random per instance) into
/// trace lines: the nondeterminism the digest exists to catch.
struct HashMapLeaker;

impl Host for HashMapLeaker {
    fn on_message(&mut self, _cx: &mut Context<'_>, _from: SimNode, _payload: Vec<u8>) {}

    fn on_tick(&mut self, cx: &mut Context<'_>) {
        let map: HashMap<u32, u32> = (0..32).map(|k| (k, k * k)).collect();
        for (k, v) in &map {
            cx.trace("leak", format!("{k}={v}"));
        }
    }
}

fn leaky_run(seed: u64) -> u64 {
    let sim = Sim::new(seed);
    sim.add_host("leaker", |_, _| Box::new(HashMapLeaker));
    let s = sim.clone();
    sim.block_on(async move { s.sleep(ms(200)).await });
    sim.digest()
}

/// Proves the digest catches nondeterminism: iterating a `RandomState` HashMap into trace
/// lines makes two same-seed runs disagree.
#[test]
fn digest_catches_hashmap_iteration_order() {
    assert_ne!(leaky_run(7), leaky_run(7));
}

/// Proves the trace log keeps readable lines with time and node, and that the RNG helpers
/// are part of the seeded stream.
#[test]
fn trace_log_and_rng_are_seeded() {
    let sim = Sim::new(5);
    sim.set_trace_log(true);
    sim.trace("test", "hello");
    let line = sim
        .trace_log()
        .into_iter()
        .find(|l| l.topic == "test")
        .expect("line kept");
    assert_eq!((line.node, line.line.as_str()), (None, "hello"));
    let draws = |seed| {
        let s = Sim::new(seed);
        (s.random_u64(), s.random_range(10..20))
    };
    assert_eq!(draws(5), draws(5));
    assert!((10..20).contains(&draws(6).1));
    assert_eq!(sim.replay_hint(), "seed 5");
}
