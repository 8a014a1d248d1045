//! Part `raft-persistence`, power failures: a peer that loses power keeps only what its
//! syncs covered (and a seeded part of the rest, in any order: labrpc-sim's
//! `Sim::power_fail`), unlike a crash, which keeps every write. A peer must not
//! acknowledge an entry, grant a vote or count itself toward a commit before the write
//! is durable; the checker fails any run in which an applied command changes.

use std::time::Duration;

use super::cluster::{command, Cluster, ClusterOptions};
use super::lab::RaftLab;
use super::persistence::figure8_with;
use crate::scenario::Outcome;

/// Rounds of the power-failure scenarios.
const ROUNDS: usize = 8;

/// One random peer at a time loses power while commands are in flight, and restarts.
pub fn power_fail_one<L: RaftLab>(seed: u64) -> Outcome {
    let servers = 3;
    let c = Cluster::<L>::new(seed, servers, ClusterOptions::default());
    c.run(async {
        for round in 0..ROUNDS as u64 {
            c.one(command(100 + round), servers, true).await?;
            for peer in 0..servers {
                c.start(peer, command(1000 + round));
            }
            c.sleep_ms(c.random(20)).await;
            let victim = c.random(servers as u64) as usize;
            c.power_fail1(victim);
            c.start1(victim);
            c.connect(victim);
        }
        c.one(command(999), servers, true).await?;
        Ok(())
    })
}

/// A follower's acknowledgement is a promise: it loses power again right after the
/// acknowledgement that let the leader commit an entry (the other follower is cut off,
/// so the leader needed it), then the leader is cut off and the two followers carry on
/// alone. The entry was committed, so they must keep it. The follower first loses power
/// with the entry in flight, so it has entries to take again after its restart.
pub fn power_fail_after_ack<L: RaftLab>(seed: u64) -> Outcome {
    let servers = 3;
    let c = Cluster::<L>::new(seed, servers, ClusterOptions::default());
    c.run(async {
        for round in 0..ROUNDS as u64 {
            c.one(command(100 + round), servers, true).await?;
            let started = (0..servers).find_map(|peer| {
                let (index, _) = c.start(peer, command(1000 + round))?;
                Some((peer, index))
            });
            let Some((leader, index)) = started else {
                continue;
            };
            let follower = (leader + 1 + c.random(2) as usize) % servers;
            let other = (0..servers).find(|&p| p != leader && p != follower);
            let other = other.ok_or("three peers have a third")?;
            c.disconnect(other);
            c.sleep(Duration::from_micros(c.random(5000))).await;
            c.power_fail1(follower);
            c.start1(follower);
            c.connect(follower);
            // The leader commits `index` once the follower acknowledges it: cut the
            // follower's power the moment the leader applies it.
            let t0 = c.sim.now();
            while c.n_committed(index)?.0 == 0 && c.sim.now() - t0 < Duration::from_secs(2) {
                c.sleep(Duration::from_micros(50)).await;
            }
            c.power_fail1(follower);
            c.disconnect(leader);
            c.start1(follower);
            c.connect(follower);
            c.connect(other);
            c.one(command(2000 + round), servers - 1, true).await?;
            c.connect(leader);
        }
        c.one(command(999), servers, true).await?;
        Ok(())
    })
}

/// Figure 8 with power failures: leaders lose power right after appending, over and over,
/// at most two of five down at a time (a minority), so entries a leader had not synced
/// are gone when it comes back.
pub fn figure8_power<L: RaftLab>(seed: u64) -> Outcome {
    figure8_with::<L>(seed, FIGURE8_POWER_ITERATIONS, Cluster::power_fail1)
}

/// Iterations of `figure8_power` (Figure 8's are 1000; each power failure here also
/// replays a log from its last sync).
const FIGURE8_POWER_ITERATIONS: usize = 300;

/// Every peer loses power at the same instant, within a few milliseconds of commands
/// being started (while their syncs are in flight), then all restart: what was committed
/// before stays committed.
pub fn power_fail_all<L: RaftLab>(seed: u64) -> Outcome {
    let servers = 3;
    let c = Cluster::<L>::new(seed, servers, ClusterOptions::default());
    c.run(async {
        for round in 0..3 * ROUNDS as u64 {
            c.one(command(100 + round), servers, true).await?;
            for peer in 0..servers {
                c.start(peer, command(1000 + round));
            }
            // Within a few syncs' time: some entries are durable on some peers only.
            c.sleep(Duration::from_micros(c.random(5000))).await;
            for peer in 0..servers {
                c.power_fail1(peer);
            }
            for peer in 0..servers {
                c.start1(peer);
                c.connect(peer);
            }
        }
        c.one(command(999), servers, true).await?;
        Ok(())
    })
}
