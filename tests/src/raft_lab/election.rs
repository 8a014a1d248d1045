//! Part `raft-election` (6.824 2A): a leader is elected, stays leader without failures, and
//! a new one is elected when the old one is cut off, but never without a majority.

use super::checks::ELECTION_TIMEOUT;
use super::cluster::{Cluster, ClusterOptions};
use super::lab::RaftLab;
use crate::scenario::Outcome;

/// Three peers elect one leader; with no failures the term stays put (6.824
/// `TestInitialElection2A`; a changed term is traced as a warning, as 6.824 only warns).
pub fn initial_election<L: RaftLab>(seed: u64) -> Outcome {
    let c = Cluster::<L>::new(seed, 3, ClusterOptions::default());
    c.run(async {
        c.check_one_leader().await?;
        // Sleep a bit to avoid racing with followers learning of the election.
        c.sleep_ms(50).await;
        let term1 = c.check_terms()?;
        if term1 < 1 {
            return Err(format!("term is {term1}, but should be at least 1"));
        }
        // Does the leader and term stay the same if there is no network failure?
        c.sleep(2 * ELECTION_TIMEOUT).await;
        let term2 = c.check_terms()?;
        if term1 != term2 {
            c.sim.trace(
                "warning",
                format_args!("term changed from {term1} to {term2} without failures"),
            );
        }
        // There should still be a leader.
        c.check_one_leader().await?;
        Ok(())
    })
}

/// A new leader is elected when the leader is cut off, the old leader rejoining does not
/// disturb it, and no leader is elected without a majority (6.824 `TestReElection2A`).
pub fn re_election<L: RaftLab>(seed: u64) -> Outcome {
    let servers = 3;
    let c = Cluster::<L>::new(seed, servers, ClusterOptions::default());
    c.run(async {
        let leader1 = c.check_one_leader().await?;
        // If the leader disconnects, a new one should be elected.
        c.disconnect(leader1);
        c.check_one_leader().await?;
        // If the old leader rejoins, that shouldn't disturb the new leader.
        c.connect(leader1);
        let leader2 = c.check_one_leader().await?;
        // If there's no quorum, no new leader should be elected.
        c.disconnect(leader2);
        c.disconnect((leader2 + 1) % servers);
        c.sleep(2 * ELECTION_TIMEOUT).await;
        // Check that the one connected server does not think it is the leader.
        c.check_no_leader()?;
        // If a quorum arises, it should elect a leader.
        c.connect((leader2 + 1) % servers);
        c.check_one_leader().await?;
        // Re-join of last node shouldn't prevent leader from existing.
        c.connect(leader2);
        c.check_one_leader().await?;
        Ok(())
    })
}

/// Seven peers; ten times, three random peers are cut off and the other four must still
/// have one leader (6.824 `TestManyElections2A`).
pub fn many_elections<L: RaftLab>(seed: u64) -> Outcome {
    let servers = 7;
    let c = Cluster::<L>::new(seed, servers, ClusterOptions::default());
    c.run(async {
        c.check_one_leader().await?;
        for _ in 0..10 {
            // Disconnect three nodes.
            let picks: Vec<usize> = (0..3).map(|_| c.random(servers as u64) as usize).collect();
            for &p in &picks {
                c.disconnect(p);
            }
            // Either the current leader should still be alive, or the remaining four should
            // elect a new one.
            c.check_one_leader().await?;
            for &p in &picks {
                c.connect(p);
            }
        }
        c.check_one_leader().await?;
        Ok(())
    })
}
