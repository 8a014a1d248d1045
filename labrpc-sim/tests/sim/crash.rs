//! Crash and restart: volatile state is lost, the persister survives, in-flight work dies.

use labrpc_sim::{RpcError, Sim};

use crate::common::{add_echo, add_silent, ms, Node};

/// Proves a crash loses the host object's volatile state while the persister's contents
/// (both areas) survive into the restarted incarnation, which ticks again.
#[test]
fn crash_loses_volatile_state_but_persister_survives() {
    let sim = Sim::new(21);
    let id = add_echo(&sim, "node");
    sim.with_host(id, |n: &mut Node, _| {
        n.persister.put(b"term", b"7");
        n.persister.save_snapshot(b"snap");
    });
    let s = sim.clone();
    sim.block_on(async move { s.sleep(ms(500)).await });
    assert!(sim.with_host(id, |n: &mut Node, _| n.ticks).expect("up") > 0);
    sim.crash(id);
    assert!(!sim.is_up(id));
    assert!(
        sim.with_host(id, |n: &mut Node, _| n.ticks).is_none(),
        "a down host is unreachable"
    );
    sim.restart(id);
    assert!(sim.is_up(id));
    let (ticks, term, snap) = sim
        .with_host(id, |n: &mut Node, _| {
            (n.ticks, n.persister.get(b"term"), n.persister.snapshot())
        })
        .expect("up");
    assert_eq!(
        (ticks, term, snap),
        (0, Some(b"7".to_vec()), b"snap".to_vec())
    );
    let s = sim.clone();
    sim.block_on(async move { s.sleep(ms(500)).await });
    assert!(
        sim.with_host(id, |n: &mut Node, _| n.ticks).expect("up") > 0,
        "restart reschedules ticks"
    );
    assert_eq!(sim.persister(id).get(b"term"), Some(b"7".to_vec()));
}

/// Proves a request the host had not answered when it crashed is never answered: the
/// caller times out, even though the host is back before the deadline.
#[test]
fn crash_abandons_unanswered_requests() {
    let sim = Sim::new(22);
    let id = add_silent(&sim, "silent");
    let client = sim.add_client("client");
    let s = sim.clone();
    let call = sim.spawn(async move { client.call(id, b"q".to_vec(), ms(1000)).await });
    sim.block_on(async move {
        s.sleep(ms(100)).await;
        assert_eq!(s.with_host(id, |n: &mut Node, _| n.requests), Some(1));
        s.restart(id);
        // The new incarnation replies to every request id it might guess: all are stale.
        s.with_host(id, |_: &mut Node, cx| {
            (0..10).for_each(|r| cx.reply(r, b"late".to_vec()))
        });
        assert_eq!(call.await, Err(RpcError::Timeout));
    });
}

/// Proves calls a host made before crashing are forgotten: the restarted incarnation never
/// gets an on_response for them.
#[test]
fn crash_forgets_calls_the_host_made() {
    let sim = Sim::new(23);
    let caller = add_echo(&sim, "caller");
    let callee = add_silent(&sim, "callee");
    sim.with_host(caller, |_: &mut Node, cx| {
        cx.call(callee, b"q".to_vec(), ms(300))
    });
    sim.restart(caller);
    let s = sim.clone();
    sim.block_on(async move { s.sleep(ms(1000)).await });
    let responses = sim
        .with_host(caller, |n: &mut Node, _| n.responses.len())
        .expect("up");
    assert_eq!(responses, 0);
}

/// Proves calls to a down host fail as unreachable within the short delay.
#[test]
fn calls_to_a_down_host_are_unreachable() {
    let sim = Sim::new(24);
    let id = add_echo(&sim, "node");
    let client = sim.add_client("client");
    sim.crash(id);
    let s = sim.clone();
    sim.block_on(async move {
        let start = s.now();
        assert_eq!(
            client.call(id, vec![], ms(1000)).await,
            Err(RpcError::Unreachable)
        );
        assert!(s.now() - start < ms(100));
        s.set_long_delays(true);
        let start = s.now();
        assert_eq!(
            client.call(id, vec![], ms(60_000)).await,
            Err(RpcError::Unreachable)
        );
        assert!(s.now() - start < ms(7000));
    });
}
