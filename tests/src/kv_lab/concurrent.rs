//! 6.824 `TestConcurrent1/2/3`: one appender per key runs throughout while groups join,
//! leave, and are shut down and restarted; every key ends with exactly its appends.

use super::cluster::{KvCluster, GIDS};
use super::lab::KvLab;
use super::workload::appends_during;
use crate::scenario::Outcome;

/// Virtual time the randomised configuration loops of `concurrent3` run for.
pub const CHURN_MS: u64 = 12_000;

/// Shut down every group, `pause_ms` apart.
pub async fn shutdown_all<L: KvLab>(c: &KvCluster<L>, pause_ms: u64) {
    for gid in GIDS {
        c.shutdown_group(gid);
        c.sleep_ms(pause_ms).await;
    }
}

/// Snapshots past 100 bytes; joins of 101 and 102 and a leave of 100 under load, every
/// group shut down and restarted, 100 rejoined and 101 left and rejoined.
pub fn concurrent1<L: KvLab>(seed: u64) -> Outcome {
    let c = KvCluster::<L>::new(seed, false, Some(100));
    c.run("concurrent1", async {
        let during = async {
            churn1(&c).await?;
            c.sleep_ms(1000).await;
            Ok(())
        };
        appends_during(&c, &GIDS[..1], 5, 10, during)
            .await
            .map(|_| ())
    })
}

/// From 100 alone to 101 and 102: join 101, join 102, leave 100, 500 ms apart (the
/// opening of `concurrent1` and `unreliable2`/`3`).
pub async fn hand_over<L: KvLab>(c: &KvCluster<L>) -> Result<(), String> {
    c.sleep_ms(150).await;
    c.join(&GIDS[1..2]).await?;
    c.sleep_ms(500).await;
    c.join(&GIDS[2..]).await?;
    c.sleep_ms(500).await;
    c.leave(&GIDS[..1]).await
}

/// `concurrent1`'s configuration changes and restarts (also `challenge1_concurrent`'s).
pub async fn churn1<L: KvLab>(c: &KvCluster<L>) -> Result<(), String> {
    hand_over(c).await?;
    shutdown_all(c, 100).await;
    c.leave(&GIDS[2..]).await?;
    c.sleep_ms(100).await;
    GIDS.iter().for_each(|&gid| c.start_group(gid));
    c.sleep_ms(100).await;
    c.join(&GIDS[..1]).await?;
    c.leave(&GIDS[1..2]).await?;
    c.sleep_ms(500).await;
    c.join(&GIDS[1..2]).await
}

/// No snapshots; slower appenders; groups leave and rejoin with 3 s between changes,
/// then two groups are shut down for a second.
pub fn concurrent2<L: KvLab>(seed: u64) -> Outcome {
    let c = KvCluster::<L>::new(seed, false, None);
    c.run("concurrent2", async {
        c.join(&[GIDS[1]]).await?;
        c.join(&[GIDS[0]]).await?;
        let during = async {
            c.leave(&[GIDS[0]]).await?;
            c.leave(&[GIDS[2]]).await?;
            c.sleep_ms(3000).await;
            c.join(&[GIDS[0]]).await?;
            c.join(&[GIDS[2]]).await?;
            c.leave(&[GIDS[1]]).await?;
            c.sleep_ms(3000).await;
            c.join(&[GIDS[1]]).await?;
            c.leave(&[GIDS[0]]).await?;
            c.leave(&[GIDS[2]]).await?;
            c.sleep_ms(3000).await;
            c.shutdown_group(GIDS[1]);
            c.shutdown_group(GIDS[2]);
            c.sleep_ms(1000).await;
            c.start_group(GIDS[1]);
            c.start_group(GIDS[2]);
            c.sleep_ms(2000).await;
            Ok(())
        };
        appends_during(&c, &[GIDS[2]], 1, 50, during)
            .await
            .map(|_| ())
    })
}

/// Snapshots past 300 bytes; for 12 s, joins, a restart of every group at once and
/// leaves, at random intervals.
pub fn concurrent3<L: KvLab>(seed: u64) -> Outcome {
    let c = KvCluster::<L>::new(seed, false, Some(300));
    c.run("concurrent3", async {
        let during = async {
            churn3(&c).await?;
            c.sleep_ms(2000).await;
            Ok(())
        };
        appends_during(&c, &GIDS[..1], 1, 10, during)
            .await
            .map(|_| ())
    })
}

/// `concurrent3`'s loop (also `challenge1_concurrent`'s).
pub async fn churn3<L: KvLab>(c: &KvCluster<L>) -> Result<(), String> {
    let start = c.sim.now();
    while (c.sim.now() - start).as_millis() < u128::from(CHURN_MS) {
        c.join(&[GIDS[2]]).await?;
        c.join(&[GIDS[1]]).await?;
        c.sleep_ms(c.sim.random_range(0..900)).await;
        GIDS.iter().for_each(|&gid| c.shutdown_group(gid));
        GIDS.iter().for_each(|&gid| c.start_group(gid));
        c.sleep_ms(c.sim.random_range(0..900)).await;
        c.leave(&[GIDS[1]]).await?;
        c.leave(&[GIDS[2]]).await?;
        c.sleep_ms(c.sim.random_range(0..900)).await;
    }
    Ok(())
}
