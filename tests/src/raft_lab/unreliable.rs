//! Part `raft-persistence` (6.824 2C), lossy-network scenarios: agreement among concurrent
//! clients over a network that drops, delays and reorders messages, and Figure 8 on it.

use super::checks::ELECTION_TIMEOUT;
use super::cluster::{command, Cluster, ClusterOptions};
use super::lab::RaftLab;
use super::persistence::FIGURE8_ITERATIONS;
use crate::scenario::Outcome;

/// Rounds of `unreliable_agree` (6.824: 50).
pub const UNRELIABLE_AGREE_ROUNDS: u64 = 50;

/// Each round, four concurrent clients and the test submit a command on an unreliable
/// network; after it heals every command has committed (6.824 `TestUnreliableAgree2C`).
pub fn unreliable_agree<L: RaftLab>(seed: u64) -> Outcome {
    let servers = 5;
    let options = ClusterOptions {
        unreliable: true,
        ..ClusterOptions::default()
    };
    let c = Cluster::<L>::new(seed, servers, options);
    c.run(async {
        let mut clients = Vec::new();
        for round in 1..UNRELIABLE_AGREE_ROUNDS {
            for j in 0..4 {
                let client = c.clone();
                let task = async move { client.one(command(100 * round + j), 1, true).await };
                clients.push(c.sim.spawn(task));
            }
            c.one(command(round), 1, true).await?;
        }
        c.set_unreliable(false);
        for client in clients {
            client.await?;
        }
        c.one(command(100), servers, true).await?;
        Ok(())
    })
}

/// Figure 8 on an unreliable network with long reordering from a fifth of the way in:
/// leaders are cut off (not crashed) half of the time (6.824 `TestFigure8Unreliable2C`).
/// Long reordering stays on through the final agreement, as in 6.824.
pub fn figure8_unreliable<L: RaftLab>(seed: u64) -> Outcome {
    let servers = 5;
    let options = ClusterOptions {
        unreliable: true,
        ..ClusterOptions::default()
    };
    let c = Cluster::<L>::new(seed, servers, options);
    c.run(async {
        c.one(command(c.random(10_000)), 1, true).await?;
        let half = ELECTION_TIMEOUT.as_millis() as u64 / 2;
        let mut nup = servers;
        for iteration in 0..FIGURE8_ITERATIONS {
            if iteration == FIGURE8_ITERATIONS / 5 {
                c.set_long_reordering(true);
            }
            let mut leader = None;
            for peer in 0..servers {
                let started = c.start(peer, command(c.random(10_000))).is_some();
                if started && c.is_connected(peer) {
                    leader = Some(peer);
                }
            }
            if c.random(1000) < 100 {
                c.sleep_ms(c.random(half)).await;
            } else {
                c.sleep_ms(c.random(13)).await;
            }
            if let Some(leader) = leader {
                if c.random(1000) < half {
                    c.disconnect(leader);
                    nup -= 1;
                }
            }
            if nup < 3 {
                let s = c.random(servers as u64) as usize;
                if !c.is_connected(s) {
                    c.connect(s);
                    nup += 1;
                }
            }
        }
        for peer in 0..servers {
            if !c.is_connected(peer) {
                c.connect(peer);
            }
        }
        c.one(command(c.random(10_000)), servers, true).await?;
        Ok(())
    })
}
