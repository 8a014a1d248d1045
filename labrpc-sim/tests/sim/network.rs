//! Network faults: unreliable drops, partitions, disconnects, host-to-host calls, counters.

use labrpc_sim::{ClientEnd, RpcError, Sim, SimNode};

use crate::common::{add_chatty, add_echo, ms, Node};

/// Proves an unreliable network fails about 19% of calls (10% requests and 10% replies
/// dropped: 1 - 0.9 * 0.9), and that a reliable one fails none.
#[test]
fn unreliable_network_drops_about_ten_percent_each_way() {
    let sim = Sim::new(11);
    let echo = add_echo(&sim, "echo");
    let client = sim.add_client("client");
    let s = sim.clone();
    let (reliable_failures, unreliable_failures) = sim.block_on(async move {
        let mut failures = [0u32; 2];
        for (round, reliable) in [true, false].into_iter().enumerate() {
            s.set_reliable(reliable);
            for i in 0..2000u32 {
                if client
                    .call(echo, i.to_le_bytes().to_vec(), ms(100))
                    .await
                    .is_err()
                {
                    failures[round] += 1;
                }
            }
        }
        (failures[0], failures[1])
    });
    assert_eq!(reliable_failures, 0);
    assert!(
        (280..=480).contains(&unreliable_failures),
        "{unreliable_failures} of 2000 failed"
    );
}

/// Proves an unreliable network drops about 10% of one-way messages (between 5% and 15%).
#[test]
fn unreliable_network_drops_about_ten_percent_of_messages() {
    let sim = Sim::new(12);
    let hosts = add_chatty(&sim, 0, 2);
    sim.set_reliable(false);
    let s = sim.clone();
    sim.block_on(async move { s.sleep(ms(100_000)).await });
    let sent = sim
        .with_host(hosts[0], |n: &mut Node, _| n.ticks)
        .expect("up");
    let received = sim
        .with_host(hosts[1], |n: &mut Node, _| n.messages.len() as u64)
        .expect("up");
    let dropped = sent - received;
    assert!(sent > 1000, "only {sent} ticks");
    assert!(
        dropped * 100 >= sent * 5 && dropped * 100 <= sent * 15,
        "{dropped} of {sent} dropped"
    );
}

/// Proves partition semantics: different sets cannot talk, unlisted nodes reach everyone,
/// heal restores traffic; and disconnect/connect cut and restore a single node.
#[test]
fn partition_and_disconnect_cut_and_restore_traffic() {
    let sim = Sim::new(3);
    let a = add_echo(&sim, "a");
    let b = add_echo(&sim, "b");
    let client = sim.add_client("client");
    let outsider = sim.add_client("outsider");
    let s = sim.clone();
    sim.block_on(async move {
        s.partition(&[&[a, client.id()], &[b]]);
        assert!(call(&client, a).await.is_ok());
        assert_eq!(call(&client, b).await, Err(RpcError::Unreachable));
        assert!(call(&outsider, a).await.is_ok() && call(&outsider, b).await.is_ok());
        s.heal();
        assert!(call(&client, b).await.is_ok());
        s.disconnect(client.id());
        let start = s.now();
        assert_eq!(call(&client, a).await, Err(RpcError::Unreachable));
        assert!(s.now() - start < ms(100), "unreachable fails within 100 ms");
        s.connect(client.id());
        s.disconnect(a);
        assert_eq!(call(&client, a).await, Err(RpcError::Unreachable));
        assert!(call(&client, b).await.is_ok());
    });
}

async fn call(end: &ClientEnd, to: SimNode) -> Result<Vec<u8>, RpcError> {
    end.call(to, b"x".to_vec(), ms(500)).await
}

/// Proves hosts are cut off from each other too: messages across a partition are lost,
/// and resume after heal.
#[test]
fn partition_stops_messages_between_hosts() {
    let sim = Sim::new(4);
    let hosts = add_chatty(&sim, 0, 2);
    let received = |sim: &Sim| {
        sim.with_host(hosts[1], |n: &mut Node, _| n.messages.len())
            .expect("up")
    };
    let s = sim.clone();
    sim.block_on(async move { s.sleep(ms(500)).await });
    sim.partition(&[&[hosts[0]], &[hosts[1]]]);
    let s = sim.clone();
    sim.block_on(async move { s.sleep(ms(20)).await });
    let before = received(&sim);
    let s = sim.clone();
    sim.block_on(async move { s.sleep(ms(1000)).await });
    assert_eq!(received(&sim), before, "no message crosses the partition");
    sim.heal();
    let s = sim.clone();
    sim.block_on(async move { s.sleep(ms(500)).await });
    assert!(received(&sim) > before);
}

/// Proves a host's Context::call resolves through on_response: Some(reply) from a live
/// peer, None once the peer is disconnected.
#[test]
fn host_calls_resolve_through_on_response() {
    let sim = Sim::new(8);
    let caller = add_echo(&sim, "caller");
    let callee = add_echo(&sim, "callee");
    let first = sim
        .with_host(caller, |_: &mut Node, cx| {
            cx.call(callee, b"hi".to_vec(), ms(300))
        })
        .expect("up");
    let s = sim.clone();
    sim.block_on(async move { s.sleep(ms(400)).await });
    sim.disconnect(callee);
    let second = sim
        .with_host(caller, |_: &mut Node, cx| {
            cx.call(callee, b"yo".to_vec(), ms(300))
        })
        .expect("up");
    let s = sim.clone();
    sim.block_on(async move { s.sleep(ms(400)).await });
    let responses = sim
        .with_host(caller, |n: &mut Node, _| n.responses.clone())
        .expect("up");
    assert_eq!(
        responses,
        vec![(first, Some(b"hi".to_vec())), (second, None)]
    );
}

/// Proves the counters: requests and messages delivered per host and in total, and the
/// bytes of every payload sent (requests and replies here).
#[test]
fn counters_count_rpcs_and_bytes() {
    let sim = Sim::new(9);
    let echo = add_echo(&sim, "echo");
    let other = add_echo(&sim, "other");
    let client = sim.add_client("client");
    let s = sim.clone();
    sim.block_on(async move {
        for _ in 0..5 {
            client
                .call(echo, vec![0; 10], ms(100))
                .await
                .expect("reliable network");
        }
        s.with_host(other, |_: &mut Node, cx| cx.send(echo, vec![1; 3]))
            .expect("up");
        s.sleep(ms(10)).await;
    });
    assert_eq!(sim.rpc_count(echo), 6);
    assert_eq!(sim.rpc_count(other), 0);
    assert_eq!(sim.total_rpcs(), 6);
    assert_eq!(sim.total_bytes(), 5 * 20 + 3);
}
