//! 6.824 `TestJoinLeave`, `TestSnapshot` and `TestMissChange`: data follows its shards
//! through joins and leaves (the old owner can then be shut down), survives snapshots
//! and the restart of every group, and replicas that were down during configuration
//! changes catch up on the ones they missed.

use super::cluster::{KvCluster, GIDS};
use super::lab::KvLab;
use super::statics::SETTLE_TIMEOUT;
use super::workload::{check_all, check_and_append, keys, put_all};
use crate::scenario::Outcome;

/// Join 100, put; join 101, check and append; leave 100, check and append; once the
/// shards moved, shut 100 down: every key still reads its value.
pub fn join_leave<L: KvLab>(seed: u64) -> Outcome {
    let c = KvCluster::<L>::new(seed, false, None);
    c.run("join_leave", async {
        let mut ck = c.clerk();
        c.join(&GIDS[..1]).await?;
        let ka = keys(10);
        let mut va = put_all(&c, &mut ck, &ka, 5).await?;
        check_all(&mut ck, &ka, &va).await?;
        c.join(&GIDS[1..2]).await?;
        check_and_append(&mut ck, &ka, &mut va, 1).await?;
        c.leave(&GIDS[..1]).await?;
        check_and_append(&mut ck, &ka, &mut va, 2).await?;
        c.settle(SETTLE_TIMEOUT).await?;
        c.shutdown_group(GIDS[0]);
        check_all(&mut ck, &ka, &va).await?;
        c.start_group(GIDS[0]);
        Ok(())
    })
}

/// With snapshots past 1000 bytes: 30 keys through joins of 101 and 102, leaves of 100
/// and 101 and a rejoin of 100; then every group is shut down and restarted and every
/// key still reads its value.
pub fn snapshot<L: KvLab>(seed: u64) -> Outcome {
    let c = KvCluster::<L>::new(seed, false, Some(1000));
    c.run("snapshot", async {
        let mut ck = c.clerk();
        c.join(&GIDS[..1]).await?;
        let ka = keys(30);
        let mut va = put_all(&c, &mut ck, &ka, 20).await?;
        check_all(&mut ck, &ka, &va).await?;
        c.join(&GIDS[1..2]).await?;
        c.join(&GIDS[2..]).await?;
        c.leave(&GIDS[..1]).await?;
        check_and_append(&mut ck, &ka, &mut va, 1).await?;
        c.leave(&GIDS[1..2]).await?;
        c.join(&GIDS[..1]).await?;
        check_and_append(&mut ck, &ka, &mut va, 2).await?;
        c.settle(SETTLE_TIMEOUT).await?;
        check_all(&mut ck, &ka, &va).await?;
        GIDS.iter().for_each(|&gid| c.shutdown_group(gid));
        GIDS.iter().for_each(|&gid| c.start_group(gid));
        check_all(&mut ck, &ka, &va).await
    })
}

/// Replica 0 of every group misses three configuration changes, replica 1 two more;
/// each restarts and catches up, and the groups keep serving throughout.
pub fn miss_change<L: KvLab>(seed: u64) -> Outcome {
    let c = KvCluster::<L>::new(seed, false, Some(1000));
    c.run("miss_change", async {
        let mut ck = c.clerk();
        c.join(&GIDS[..1]).await?;
        let ka = keys(10);
        let mut va = put_all(&c, &mut ck, &ka, 20).await?;
        check_all(&mut ck, &ka, &va).await?;
        c.join(&GIDS[1..2]).await?;
        GIDS.iter().for_each(|&gid| c.shutdown_server(gid, 0));
        c.join(&GIDS[2..]).await?;
        c.leave(&GIDS[1..2]).await?;
        c.leave(&GIDS[..1]).await?;
        check_and_append(&mut ck, &ka, &mut va, 1).await?;
        c.join(&GIDS[1..2]).await?;
        check_and_append(&mut ck, &ka, &mut va, 2).await?;
        GIDS.iter().for_each(|&gid| c.start_server(gid, 0));
        check_and_append(&mut ck, &ka, &mut va, 3).await?;
        c.sleep_ms(2000).await;
        GIDS.iter().for_each(|&gid| c.shutdown_server(gid, 1));
        c.join(&GIDS[..1]).await?;
        c.leave(&GIDS[2..]).await?;
        check_and_append(&mut ck, &ka, &mut va, 4).await?;
        GIDS.iter().for_each(|&gid| c.start_server(gid, 1));
        check_all(&mut ck, &ka, &va).await?;
        c.settle(SETTLE_TIMEOUT).await.map(|_| ())
    })
}
