//! Power failures in the kv lab: a replica that loses power keeps only what its syncs
//! covered (and a seeded part of the rest, in any order). Appenders run throughout and
//! every key must end with exactly its acknowledged appends, in order; the histories are
//! checked for linearizability like every kv scenario's.

use super::cluster::{KvCluster, GIDS, GROUP_SIZE};
use super::lab::KvLab;
use super::workload::appends_during;
use crate::scenario::Outcome;

/// Power-failure rounds per scenario.
const ROUNDS: usize = 4;

/// Snapshots past 300 bytes; one replica of a random group at a time loses power under
/// load and restarts a moment later.
pub fn power_fail_one_replica<L: KvLab>(seed: u64) -> Outcome {
    let c = KvCluster::<L>::new(seed, false, Some(300));
    c.run("power_fail_one_replica", async {
        let during = async {
            for _ in 0..ROUNDS * 2 {
                c.sleep_ms(c.sim.random_range(100..600)).await;
                let gid = GIDS[c.sim.random_range(0..GIDS.len() as u64) as usize];
                let me = c.sim.random_range(0..GROUP_SIZE as u64) as usize;
                c.power_fail_server(gid, me);
                c.sleep_ms(c.sim.random_range(0..300)).await;
                c.start_server(gid, me);
            }
            c.sleep_ms(1000).await;
            Ok(())
        };
        appends_during(&c, &GIDS, 5, 10, during).await.map(|_| ())
    })
}

/// No snapshots; a minority of every group (one of three) loses power during writes,
/// while the others keep serving, again and again, with configuration changes between.
pub fn power_fail_minority<L: KvLab>(seed: u64) -> Outcome {
    let c = KvCluster::<L>::new(seed, false, None);
    c.run("power_fail_minority", async {
        let during = async {
            for round in 0..ROUNDS {
                c.sleep_ms(c.sim.random_range(200..800)).await;
                let me = c.sim.random_range(0..GROUP_SIZE as u64) as usize;
                GIDS.iter().for_each(|&gid| c.power_fail_server(gid, me));
                if round == 1 {
                    c.leave(&GIDS[2..]).await?;
                }
                c.sleep_ms(c.sim.random_range(100..700)).await;
                GIDS.iter().for_each(|&gid| c.start_server(gid, me));
                if round == 1 {
                    c.join(&GIDS[2..]).await?;
                }
            }
            c.sleep_ms(1000).await;
            Ok(())
        };
        appends_during(&c, &GIDS, 5, 10, during).await.map(|_| ())
    })
}

/// Snapshots past 300 bytes; every replica of a group loses power at the same instant
/// during writes (or of every group), and restarts half a second later.
pub fn power_fail_whole_group<L: KvLab>(seed: u64) -> Outcome {
    let c = KvCluster::<L>::new(seed, false, Some(300));
    c.run("power_fail_whole_group", async {
        let during = async {
            for round in 0..ROUNDS {
                c.sleep_ms(c.sim.random_range(200..1000)).await;
                let gids: &[_] = match round {
                    3 => &GIDS,
                    _ => &GIDS[round % GIDS.len()..][..1],
                };
                for &gid in gids {
                    (0..GROUP_SIZE).for_each(|me| c.power_fail_server(gid, me));
                }
                c.sleep_ms(500).await;
                for &gid in gids {
                    c.start_group(gid);
                }
            }
            c.sleep_ms(1000).await;
            Ok(())
        };
        appends_during(&c, &GIDS, 5, 10, during).await.map(|_| ())
    })
}

/// Snapshots past 300 bytes; four rounds under concurrent appends: a configuration
/// change moves shards (groups leave and join), and a moment into the move a replica of
/// a group it involves loses power (in the last round, the whole group), so shards are
/// pulled, installed chunk by chunk and acknowledged across power failures.
pub fn power_fail_during_migration<L: KvLab>(seed: u64) -> Outcome {
    let c = KvCluster::<L>::new(seed, false, Some(300));
    c.run("power_fail_during_migration", async {
        let during = async {
            for round in 0..ROUNDS {
                c.sleep_ms(c.sim.random_range(200..600)).await;
                match round % 2 {
                    0 => c.leave(&GIDS[2..]).await?,
                    _ => c.join(&GIDS[2..]).await?,
                }
                c.sleep_ms(c.sim.random_range(0..150)).await;
                let gid = GIDS[c.sim.random_range(0..GIDS.len() as u64) as usize];
                let whole = round == ROUNDS - 1;
                let failed: Vec<usize> = match whole {
                    true => (0..GROUP_SIZE).collect(),
                    false => vec![c.sim.random_range(0..GROUP_SIZE as u64) as usize],
                };
                failed.iter().for_each(|&me| c.power_fail_server(gid, me));
                c.sleep_ms(c.sim.random_range(100..500)).await;
                failed.iter().for_each(|&me| c.start_server(gid, me));
            }
            c.sleep_ms(1000).await;
            Ok(())
        };
        appends_during(&c, &GIDS, 5, 10, during).await.map(|_| ())
    })
}

/// Snapshots past 300 bytes; four rounds under concurrent appends: a follower is cut
/// off from its group long enough for the log to be compacted past it, then let back,
/// so it catches up by copying another replica's state in chunks; a moment into the
/// copy it (or, every other round, the group's leader, which serves the copy) loses
/// power and restarts.
pub fn power_fail_during_catch_up<L: KvLab>(seed: u64) -> Outcome {
    let c = KvCluster::<L>::new(seed, false, Some(300));
    c.run("power_fail_during_catch_up", async {
        let during = async {
            for round in 0..ROUNDS {
                c.sleep_ms(c.sim.random_range(200..500)).await;
                let gid = GIDS[c.sim.random_range(0..GIDS.len() as u64) as usize];
                let leader = (0..GROUP_SIZE)
                    .find(|&me| c.with_lab(gid, me, |lab| lab.is_leader()) == Some(true))
                    .unwrap_or(0);
                let lagging = (leader + 1 + round % 2) % GROUP_SIZE;
                let nodes = c.nodes(gid);
                let others: Vec<_> = (0..GROUP_SIZE)
                    .filter(|&me| me != lagging)
                    .map(|me| nodes[me])
                    .collect();
                c.sim.partition(&[&[nodes[lagging]], &others]);
                c.sleep_ms(c.sim.random_range(600..1200)).await;
                c.sim.heal();
                c.sleep_ms(c.sim.random_range(0..120)).await;
                let failed = match round % 2 {
                    0 => lagging,
                    _ => leader,
                };
                c.power_fail_server(gid, failed);
                c.sleep_ms(c.sim.random_range(100..400)).await;
                c.start_server(gid, failed);
            }
            c.sleep_ms(1500).await;
            Ok(())
        };
        appends_during(&c, &GIDS, 5, 10, during).await.map(|_| ())
    })
}
