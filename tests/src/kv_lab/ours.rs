//! Ours, beyond 6.824: a group's leader cut off from its own followers (but not from
//! clients or other groups), a majority of the shard masters down for a while, and
//! every replica of every group crashed and restarted at the same instant.

use std::time::Duration;

use shardkv_proto::GroupId;

use super::cluster::{KvCluster, GIDS, GROUP_SIZE, MASTERS};
use super::lab::KvLab;
use super::workload::appends_during;
use crate::scenario::Outcome;

/// The replica of `gid` that believes it leads, if any.
fn leader<L: KvLab>(c: &KvCluster<L>, gid: GroupId) -> Option<usize> {
    (0..GROUP_SIZE).find(|&me| c.with_lab(gid, me, |lab| lab.is_leader()) == Some(true))
}

/// Six rounds under concurrent appends: a random group's leader is partitioned from
/// its two followers for a second (clients, masters and other groups still reach it,
/// so a stale leader must not answer), during a join or leave; then healed.
pub fn partition_in_group<L: KvLab>(seed: u64) -> Outcome {
    let c = KvCluster::<L>::new(seed, false, Some(1000));
    c.run("partition_in_group", async {
        let during = async {
            for round in 0..6 {
                c.sleep_ms(300).await;
                let gid = GIDS[c.sim.random_range(0..GIDS.len() as u64) as usize];
                let lonely = leader(&c, gid).unwrap_or(0);
                let nodes = c.nodes(gid);
                let others: Vec<_> = (0..GROUP_SIZE)
                    .filter(|&me| me != lonely)
                    .map(|me| nodes[me])
                    .collect();
                c.sim.partition(&[&[nodes[lonely]], &others]);
                if round % 2 == 0 {
                    c.join(&GIDS[2..]).await?;
                } else {
                    c.leave(&GIDS[2..]).await?;
                }
                c.sleep_ms(1000).await;
                c.sim.heal();
            }
            c.sleep_ms(500).await;
            Ok(())
        };
        appends_during(&c, &GIDS[..2], 5, 10, during)
            .await
            .map(|_| ())
    })
}

/// Two of the three masters are down for 4 s under concurrent appends: the groups keep
/// serving their shards (at least ten appends complete meanwhile), a Join
/// issued during the outage completes after the masters return, and the data then
/// follows the new configurations.
pub fn master_majority_down<L: KvLab>(seed: u64) -> Outcome {
    let c = KvCluster::<L>::new(seed, false, Some(1000));
    c.run("master_majority_down", async {
        let during = async {
            c.sleep_ms(500).await;
            let first = c.masters.leader().unwrap_or(0);
            let second = (first + 1) % MASTERS;
            c.masters.shutdown_server(first);
            c.masters.shutdown_server(second);
            let outage_start = c.sim.now();
            let joiner = c.clone();
            let join = c.sim.spawn(async move { joiner.join(&GIDS[2..]).await });
            c.sleep_ms(4000).await;
            let acked = acked_between(&c, outage_start, c.sim.now());
            if acked < 10 {
                return Err(format!(
                    "only {acked} operations completed while the masters were down"
                ));
            }
            c.masters.start_server(first);
            c.masters.start_server(second);
            c.masters.connect_all();
            join.await?;
            c.sleep_ms(1000).await;
            c.leave(&GIDS[..1]).await?;
            c.sleep_ms(1000).await;
            Ok(())
        };
        appends_during(&c, &GIDS[..2], 5, 10, during)
            .await
            .map(|_| ())
    })
}

/// Operations answered between `from` and `to`.
fn acked_between<L: KvLab>(c: &KvCluster<L>, from: Duration, to: Duration) -> usize {
    (c.history.operations().iter())
        .filter(|op| op.return_time.is_some_and(|t| t > from && t <= to))
        .count()
}

/// Snapshots past 300 bytes; three rounds under concurrent appends: every replica of
/// every group crashes at one instant and restarts half a second later (in the second
/// round a group leaves while all are down, and rejoins after).
pub fn all_groups_crash<L: KvLab>(seed: u64) -> Outcome {
    let c = KvCluster::<L>::new(seed, false, Some(300));
    c.run("all_groups_crash", async {
        let during = async {
            for round in 0..3 {
                c.sleep_ms(c.sim.random_range(200..1000)).await;
                GIDS.iter().for_each(|&gid| c.shutdown_group(gid));
                if round == 1 {
                    c.leave(&GIDS[1..2]).await?;
                }
                c.sleep_ms(500).await;
                GIDS.iter().for_each(|&gid| c.start_group(gid));
                if round == 1 {
                    c.sleep_ms(500).await;
                    c.join(&GIDS[1..2]).await?;
                }
            }
            c.sleep_ms(1000).await;
            Ok(())
        };
        appends_during(&c, &GIDS, 5, 10, during).await.map(|_| ())
    })
}
