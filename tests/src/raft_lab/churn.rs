//! Part `raft-persistence` (6.824 2C), churn: three clients keep submitting while peers are
//! disconnected, reconnected, crashed and restarted at random; every value a client saw
//! committed must be in the final log, which all peers share (6.824 `internalChurn`).

use std::cell::Cell;
use std::rc::Rc;

use super::checks::ELECTION_TIMEOUT;
use super::cluster::{Cluster, ClusterOptions};
use super::lab::{Peer, RaftLab};
use crate::scenario::Outcome;

/// Churn rounds, each followed by 0.7 election timeouts of running (6.824: 20).
pub const CHURN_ROUNDS: usize = 20;

/// Churn on a reliable network (6.824 `TestReliableChurn2C`).
pub fn reliable_churn<L: RaftLab>(seed: u64) -> Outcome {
    churn::<L>(seed, false)
}

/// Churn on an unreliable network (6.824 `TestUnreliableChurn2C`).
pub fn unreliable_churn<L: RaftLab>(seed: u64) -> Outcome {
    churn::<L>(seed, true)
}

fn churn<L: RaftLab>(seed: u64, unreliable: bool) -> Outcome {
    let servers = 5;
    let options = ClusterOptions {
        unreliable,
        ..ClusterOptions::default()
    };
    let c = Cluster::<L>::new(seed, servers, options);
    c.run(async {
        let stop = Rc::new(Cell::new(false));
        let clients: Vec<_> = (0..3)
            .map(|me| c.sim.spawn(churn_client(c.clone(), me, stop.clone())))
            .collect();
        for _ in 0..CHURN_ROUNDS {
            if c.random(1000) < 200 {
                c.disconnect(c.random(servers as u64) as usize);
            }
            if c.random(1000) < 500 {
                let i = c.random(servers as u64) as usize;
                if !c.is_up(i) {
                    c.start1(i);
                }
                c.connect(i);
            }
            if c.random(1000) < 200 {
                let i = c.random(servers as u64) as usize;
                if c.is_up(i) {
                    c.crash1(i);
                }
            }
            // Make crash/restart infrequent enough that the peers can often keep up, but
            // not so infrequent that everything has settled between changes.
            c.sleep(ELECTION_TIMEOUT * 7 / 10).await;
        }
        c.sleep(ELECTION_TIMEOUT).await;
        c.set_unreliable(false);
        for peer in 0..servers {
            if !c.is_up(peer) {
                c.start1(peer);
            }
            c.connect(peer);
        }
        stop.set(true);
        let mut values = Vec::new();
        for client in clients {
            values.extend(client.await?);
        }
        c.sleep(ELECTION_TIMEOUT).await;
        let last_index = c.one(c.random_command(), servers, true).await?;
        let everyone: Vec<Peer> = (0..servers).collect();
        check_churn_log(&c, last_index, &values, &everyone)
    })
}

/// Every index with a command through `last_index` must be applied by each of `peers`, and
/// every value a client saw commit must be among them.
pub(super) fn check_churn_log<L: RaftLab>(
    c: &Cluster<L>,
    last_index: u64,
    values: &[Vec<u8>],
    peers: &[Peer],
) -> Result<(), String> {
    c.check_apply_error()?;
    let checker = c.checker();
    let really = checker.committed_through(last_index);
    for (index, _) in &really {
        if let Some(peer) = peers.iter().find(|&&p| !checker.has_applied(p, *index)) {
            return Err(format!(
                "server {peer} has not applied index {index} (last {last_index})"
            ));
        }
    }
    for value in values {
        if !really.iter().any(|(_, v)| v == value) {
            return Err(format!(
                "didn't find a value {} a client saw committed",
                super::checker::show(value)
            ));
        }
    }
    Ok(())
}

/// One churn client: start a random command wherever a leader accepts it and remember it
/// if it commits at its index within ~380 ms.
pub(super) async fn churn_client<L: RaftLab>(
    c: Cluster<L>,
    me: Peer,
    stop: Rc<Cell<bool>>,
) -> Result<Vec<Vec<u8>>, String> {
    let mut values = Vec::new();
    while !stop.get() {
        let x = c.random_command();
        let mut index = None;
        for peer in 0..c.n() {
            if let Some((i, _)) = c.start(peer, x.clone()) {
                index = Some(i);
            }
        }
        let Some(index) = index else {
            c.sleep_ms(79 + me as u64 * 17).await;
            continue;
        };
        // Maybe leader will commit our value, maybe not. But don't wait forever.
        for to in [10, 20, 50, 100, 200] {
            let (count, cmd) = c.n_committed(index)?;
            if count > 0 {
                if cmd.as_deref() == Some(&x[..]) {
                    values.push(x);
                }
                break;
            }
            c.sleep_ms(to).await;
        }
    }
    Ok(values)
}
