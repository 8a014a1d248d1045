//! Part `raft-persistence` (6.824 2C), crash scenarios: peers restart from what they
//! persisted and agreement survives crashes of any minority, of all, and of leaders.

use super::checks::ELECTION_TIMEOUT;
use super::cluster::{command, Cluster, ClusterOptions};
use super::lab::{Peer, RaftLab};
use crate::scenario::Outcome;

/// Restart all, the leader, a follower: committed commands survive and agreement resumes
/// (6.824 `TestPersist12C`).
pub fn persist1<L: RaftLab>(seed: u64) -> Outcome {
    let servers = 3;
    let c = Cluster::<L>::new(seed, servers, ClusterOptions::default());
    c.run(async {
        c.one(command(11), servers, true).await?;
        // Crash and re-start all.
        for peer in 0..servers {
            c.start1(peer);
        }
        for peer in 0..servers {
            c.connect(peer);
        }
        c.one(command(12), servers, true).await?;
        let leader1 = c.check_one_leader().await?;
        c.start1(leader1);
        c.connect(leader1);
        c.one(command(13), servers, true).await?;
        let leader2 = c.check_one_leader().await?;
        c.disconnect(leader2);
        let index14 = c.one(command(14), servers - 1, true).await?;
        c.start1(leader2);
        c.connect(leader2);
        // Wait for leader2 to join before killing i3.
        c.wait(index14, servers, None).await?;
        let i3 = (c.check_one_leader().await? + 1) % servers;
        c.disconnect(i3);
        c.one(command(15), servers - 1, true).await?;
        c.start1(i3);
        c.connect(i3);
        c.one(command(16), servers, true).await?;
        Ok(())
    })
}

/// Five peers: repeatedly lose two followers, then the leader and the other two, restarting
/// the first pair: progress needs persisted logs and votes (6.824 `TestPersist22C`).
pub fn persist2<L: RaftLab>(seed: u64) -> Outcome {
    let servers = 5;
    let c = Cluster::<L>::new(seed, servers, ClusterOptions::default());
    c.run(async {
        let mut index = 1;
        for _ in 0..5 {
            c.one(command(10 + index), servers, true).await?;
            index += 1;
            let leader1 = c.check_one_leader().await?;
            let at = |k: usize| (leader1 + k) % servers;
            c.disconnect(at(1));
            c.disconnect(at(2));
            c.one(command(10 + index), servers - 2, true).await?;
            index += 1;
            c.disconnect(at(0));
            c.disconnect(at(3));
            c.disconnect(at(4));
            c.start1(at(1));
            c.start1(at(2));
            c.connect(at(1));
            c.connect(at(2));
            c.sleep(ELECTION_TIMEOUT).await;
            c.start1(at(3));
            c.connect(at(3));
            c.one(command(10 + index), servers - 2, true).await?;
            index += 1;
            c.connect(at(4));
            c.connect(at(0));
        }
        c.one(command(1000), servers, true).await?;
        Ok(())
    })
}

/// A partitioned leader and a follower crash: the restarted peers, with the one that
/// missed entries, recover the committed ones (6.824 `TestPersist32C`).
pub fn persist3<L: RaftLab>(seed: u64) -> Outcome {
    let servers = 3;
    let c = Cluster::<L>::new(seed, servers, ClusterOptions::default());
    c.run(async {
        c.one(command(101), 3, true).await?;
        let leader = c.check_one_leader().await?;
        c.disconnect((leader + 2) % servers);
        c.one(command(102), 2, true).await?;
        c.crash1(leader % servers);
        c.crash1((leader + 1) % servers);
        c.connect((leader + 2) % servers);
        c.start1(leader % servers);
        c.connect(leader % servers);
        c.one(command(103), 2, true).await?;
        c.start1((leader + 1) % servers);
        c.connect((leader + 1) % servers);
        c.one(command(104), servers, true).await?;
        Ok(())
    })
}

/// Iterations of the Figure 8 loops, as in 6.824.
pub const FIGURE8_ITERATIONS: usize = 1000;

/// Sleep as 6.824's Figure 8 tests do: usually a few ms, one time in ten up to half an
/// election timeout.
async fn figure8_pause<L: RaftLab>(c: &Cluster<L>) {
    let half = ELECTION_TIMEOUT.as_millis() as u64 / 2;
    if c.random(1000) < 100 {
        c.sleep_ms(c.random(half)).await;
    } else {
        c.sleep_ms(c.random(13)).await;
    }
}

/// Leaders crash right after appending entries, over and over, creating the situation of
/// the Raft paper's Figure 8: an entry from an old term must not be counted committed by
/// replica count alone (6.824 `TestFigure82C`).
pub fn figure8<L: RaftLab>(seed: u64) -> Outcome {
    figure8_with::<L>(seed, FIGURE8_ITERATIONS, Cluster::crash1)
}

/// The Figure 8 loop, `iterations` times, with `fail` taking the leader down (a crash, or
/// a power failure in `power.rs`); at most two of five peers are down at a time.
pub(super) fn figure8_with<L: RaftLab>(
    seed: u64,
    iterations: usize,
    fail: fn(&Cluster<L>, Peer),
) -> Outcome {
    let servers = 5;
    let c = Cluster::<L>::new(seed, servers, ClusterOptions::default());
    c.run(async {
        c.one(c.random_command(), 1, true).await?;
        let mut nup = servers;
        for _ in 0..iterations {
            let mut leader = None;
            for peer in 0..servers {
                if c.is_up(peer) && c.start(peer, c.random_command()).is_some() {
                    leader = Some(peer);
                }
            }
            figure8_pause(&c).await;
            if let Some(leader) = leader {
                fail(&c, leader);
                nup -= 1;
            }
            if nup < 3 {
                let s = c.random(servers as u64) as usize;
                if !c.is_up(s) {
                    c.start1(s);
                    c.connect(s);
                    nup += 1;
                }
            }
        }
        for peer in 0..servers {
            if !c.is_up(peer) {
                c.start1(peer);
                c.connect(peer);
            }
        }
        c.one(c.random_command(), servers, true).await?;
        Ok(())
    })
}
