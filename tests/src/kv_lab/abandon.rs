//! Ours: a group that joins and dies for good before installing the shards it was given.
//! Its migrations hold the other groups back, and `leave` alone does not help; after
//! `abandon` (issue 24) every shard serves again and nothing acknowledged is lost.

use std::time::Duration;

use shardkv_proto::{Config, GroupId, ShardId};

use super::cluster::{KvCluster, GIDS, GROUP_SIZE};
use super::lab::KvLab;
use super::statics::SETTLE_TIMEOUT;
use super::workload::{key_per_shard, Appenders};
use crate::scenario::Outcome;

/// The group that dies.
const DEAD: GroupId = GIDS[2];

/// How long the groups are given to settle while the dead group holds them back.
const STUCK_FOR: Duration = Duration::from_secs(3);

/// Group 102 is crashed for good, then joins: with an even seed together with 100 at the
/// start (its shards come from nobody), with an odd one after 100 and 101 (its shards
/// come from them, who freeze them for it). Appenders write a key of every shard
/// throughout. The other group joins; a shard 102 was given moves on to a group that did
/// not own it before (so a copy held for 102 must travel between groups); 102 leaves,
/// and the groups must still be stuck; then 102 is abandoned, and a replica of each
/// live group crashes and restarts a moment later: every running replica settles on the
/// latest configuration and every key holds exactly its acknowledged appends.
pub fn abandon_dead_group<L: KvLab>(seed: u64) -> Outcome {
    let c = KvCluster::<L>::new(seed, false, Some(1000));
    c.run("abandon_dead_group", async {
        let (a, b) = (GIDS[0], GIDS[1]);
        let fresh = seed.is_multiple_of(2);
        let (first, second) = if fresh {
            ([a, DEAD], b)
        } else {
            ([a, b], DEAD)
        };
        c.shutdown_group(DEAD);
        c.join(&first).await?;
        let ka = key_per_shard();
        let appenders = Appenders::start(&c, &ka, &vec![String::new(); ka.len()], 10);
        c.sleep_ms(c.sim.random_range(200..800)).await;
        c.join(&[second]).await?;
        let given = c.latest_config().await?;
        let (shard, to) = moved_on(&c, &given).await?;
        c.move_shard(shard, to).await?;
        c.sleep_ms(c.sim.random_range(200..800)).await;
        c.leave(&[DEAD]).await?;
        if c.settle(STUCK_FOR).await.is_ok() {
            return Err("settled with a dead member: the scenario recovers nothing".into());
        }
        c.abandon(DEAD).await?;
        // A replica of each live group crashes and restarts while the held copies move
        // on: it must reopen a state that holds them.
        c.sleep_ms(c.sim.random_range(1500..5000)).await;
        for gid in [a, b] {
            let me = c.sim.random_range(0..GROUP_SIZE as u64) as usize;
            c.shutdown_server(gid, me);
            c.sleep_ms(c.sim.random_range(0..300)).await;
            c.start_server(gid, me);
        }
        c.settle(SETTLE_TIMEOUT).await?;
        let mut ck = c.clerk();
        appenders.stop(&mut ck, &ka).await.map(|_| ())
    })
}

/// A shard the dead group was given in `given`, and a live group that did not own it
/// before: a held copy must then travel between groups.
async fn moved_on<L: KvLab>(
    c: &KvCluster<L>,
    given: &Config,
) -> Result<(ShardId, GroupId), String> {
    let before = c.query(given.num - 1).await?;
    let shard = (0..given.nshards())
        .find(|&shard| given.shards[shard] == DEAD)
        .ok_or("the dead group was given no shard")?;
    let to = if before.shards[shard] == GIDS[0] {
        GIDS[1]
    } else {
        GIDS[0]
    };
    Ok((shard, to))
}
