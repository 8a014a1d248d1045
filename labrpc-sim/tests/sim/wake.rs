//! Wakes: a host's own completion events, delayed by a random draw from a range, delivered
//! only to the incarnation that asked for them, and never counted as RPCs.

use std::time::Duration;

use labrpc_sim::{Context, Host, Sim, SimNode};

use crate::common::ms;

/// A host that records every wake it gets, with the time it got it.
#[derive(Default)]
struct Sleeper {
    wakes: Vec<(Duration, u64)>,
}

impl Host for Sleeper {
    fn on_message(&mut self, _cx: &mut Context<'_>, _from: SimNode, _payload: Vec<u8>) {}

    fn on_tick(&mut self, _cx: &mut Context<'_>) {}

    fn on_wake(&mut self, cx: &mut Context<'_>, token: u64) {
        cx.trace("wake", token);
        self.wakes.push((cx.now(), token));
    }
}

fn add_sleeper(sim: &Sim) -> SimNode {
    sim.add_host("sleeper", |_, _| Box::new(Sleeper::default()))
}

fn sleep(sim: &Sim, d: Duration) {
    let s = sim.clone();
    sim.block_on(async move { s.sleep(d).await });
}

/// Asks for three wakes (a range, an empty range, an inverted range) at `start`, runs 20
/// ms, and returns the wakes received, each with its delay after `start`.
fn three_wakes(seed: u64) -> Vec<(Duration, u64)> {
    let sim = Sim::new(seed);
    let id = add_sleeper(&sim);
    sleep(&sim, ms(10));
    let start = sim.now();
    sim.with_host(id, |_: &mut Sleeper, cx| {
        cx.wake_after(ms(5)..ms(15), 1);
        cx.wake_after(ms(7)..ms(7), 2);
        cx.wake_after(ms(9)..ms(3), 3);
    })
    .expect("up");
    sleep(&sim, ms(20));
    assert_eq!(sim.rpc_count(id), 0, "a wake is not an RPC");
    assert_eq!(sim.total_rpcs(), 0);
    let wakes = sim.with_host(id, |h: &mut Sleeper, _| h.wakes.clone());
    wakes
        .expect("up")
        .into_iter()
        .map(|(at, token)| (at - start, token))
        .collect()
}

/// Proves a wake arrives once, after a delay inside its range (exactly the start for an
/// empty or inverted range), that the delay is random across seeds, and that wakes do not
/// count as RPCs.
#[test]
fn wake_arrives_within_its_range() {
    let mut delays = Vec::new();
    for seed in 0..10 {
        let mut wakes = three_wakes(seed);
        wakes.sort_by_key(|&(_, token)| token);
        let tokens: Vec<u64> = wakes.iter().map(|&(_, t)| t).collect();
        assert_eq!(tokens, [1, 2, 3], "seed {seed}");
        let ranged = wakes[0].0;
        assert!(
            ranged >= ms(5) && ranged < ms(15),
            "seed {seed}: {ranged:?}"
        );
        assert_eq!(wakes[1].0, ms(7), "seed {seed}");
        assert_eq!(wakes[2].0, ms(9), "seed {seed}");
        delays.push(ranged);
    }
    delays.sort();
    delays.dedup();
    assert!(delays.len() > 5, "delays barely vary: {delays:?}");
}

/// Proves a crash, a restart and a power failure each cancel the wakes the old
/// incarnation asked for, while the new incarnation's own wakes arrive.
#[test]
fn crash_restart_and_power_failure_cancel_pending_wakes() {
    let sim = Sim::new(7);
    let id = add_sleeper(&sim);
    let ask = |token: u64| {
        sim.with_host(id, |_: &mut Sleeper, cx| {
            cx.wake_after(ms(10)..ms(20), token)
        })
        .expect("up");
    };
    let wakes = || {
        sim.with_host(id, |h: &mut Sleeper, _| h.wakes.len())
            .expect("up")
    };

    ask(1);
    sleep(&sim, ms(5));
    sim.restart(id);
    sleep(&sim, ms(30));
    assert_eq!(wakes(), 0, "restart must cancel the wake");

    ask(2);
    sim.crash(id);
    sleep(&sim, ms(5));
    sim.restart(id);
    sleep(&sim, ms(30));
    assert_eq!(wakes(), 0, "crash must cancel the wake");

    ask(3);
    sim.power_fail(id);
    assert!(!sim.is_up(id), "a power failure leaves the host down");
    sim.restart(id);
    sleep(&sim, ms(30));
    assert_eq!(wakes(), 0, "power failure must cancel the wake");

    ask(4);
    sleep(&sim, ms(30));
    assert_eq!(wakes(), 1, "the live incarnation gets its own wake");
}
