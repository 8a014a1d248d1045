//! 6.824 shardctrler `TestBasic`, first half: basic join/leave with exact server lists,
//! historical queries with each replica shut down in turn, and Move.

use shardkv_proto::{Config, GroupId, ShardId};

use super::checks::{check_replicas_agree, check_same_config, check_servers};
use super::clerk::{group, Clerk};
use super::cluster::{Cluster, AGREE_TIMEOUT, REPLICAS};
use super::lab::{MasterLab, LAB_NSHARDS};
use crate::scenario::Outcome;

/// Join 1, join 2, leave 1, leave 2, checking members, balance and server lists after
/// each step; returns every configuration seen (6.824's `cfa`).
pub async fn basic_flow(ck: &mut Clerk) -> Result<Vec<Config>, String> {
    let mut cfa = vec![ck.latest().await?];
    ck.check(&[]).await?;
    ck.join(group(1, &["x", "y", "z"])).await?;
    cfa.push(ck.check(&[1]).await?);
    ck.join(group(2, &["a", "b", "c"])).await?;
    cfa.push(ck.check(&[1, 2]).await?);
    let cfx = ck.latest().await?;
    check_servers(&cfx, 1, &["x", "y", "z"])?;
    check_servers(&cfx, 2, &["a", "b", "c"])?;
    ck.leave(&[1]).await?;
    cfa.push(ck.check(&[2]).await?);
    ck.leave(&[2]).await?;
    cfa.push(ck.check(&[]).await?);
    let nums: Vec<u64> = cfa.iter().map(|c| c.num).collect();
    if nums != [0, 1, 2, 3, 4] {
        return Err(format!(
            "configuration numbers {nums:?}, wanted [0, 1, 2, 3, 4]"
        ));
    }
    Ok(cfa)
}

/// Basic leave/join with exact server lists (6.824 "Basic leave/join"); every replica
/// ends with the same history.
pub fn basic_join_leave<L: MasterLab>(seed: u64) -> Outcome {
    let c = Cluster::<L>::new(seed, false);
    c.run(async {
        let mut ck = c.clerk();
        let cfa = basic_flow(&mut ck).await?;
        check_replicas_agree(&c, cfa.last().expect("five configs"), AGREE_TIMEOUT).await
    })
}

/// Every past configuration is still answered exactly while each replica in turn is
/// shut down and restarted from its persister (6.824 "Historical queries").
pub fn historical_queries<L: MasterLab>(seed: u64) -> Outcome {
    let c = Cluster::<L>::new(seed, false);
    c.run(async {
        let mut ck = c.clerk();
        let cfa = basic_flow(&mut ck).await?;
        for s in 0..REPLICAS {
            c.shutdown_server(s);
            for want in &cfa {
                let got = ck.query(want.num).await?;
                check_same_config(&got, want).map_err(|e| format!("with replica {s} down: {e}"))?;
            }
            c.start_server(s);
            c.connect_all();
        }
        check_replicas_agree(&c, cfa.last().expect("five configs"), AGREE_TIMEOUT).await
    })
}

/// Moves the first half of the shards to 503 and the rest to 504; every Move that
/// changes an owner raises the configuration number, and the final placement is exact
/// (6.824 "Move"). Returns the configuration after the last Move.
pub async fn move_flow(ck: &mut Clerk) -> Result<Config, String> {
    let (gid3, gid4): (GroupId, GroupId) = (503, 504);
    ck.join(group(gid3, &["3a", "3b", "3c"])).await?;
    ck.join(group(gid4, &["4a", "4b", "4c"])).await?;
    for shard in 0..LAB_NSHARDS {
        let cf = ck.latest().await?;
        let gid = placement(shard, gid3, gid4);
        let moved = ck.move_shard(shard, gid).await?;
        if moved.shards[shard] != gid {
            return Err(format!(
                "move of shard {shard} to {gid} answered config {}: {:?}",
                moved.num, moved.shards
            ));
        }
        if cf.shards[shard] != gid {
            let cf1 = ck.latest().await?;
            if cf1.num <= cf.num {
                return Err(format!(
                    "move of shard {shard} to {gid} left the config number at {}",
                    cf1.num
                ));
            }
        }
    }
    let cf2 = ck.latest().await?;
    for shard in 0..LAB_NSHARDS {
        let want = placement(shard, gid3, gid4);
        if cf2.shards[shard] != want {
            return Err(format!(
                "expected shard {shard} on gid {want}, actually {}",
                cf2.shards[shard]
            ));
        }
    }
    ck.leave(&[gid3]).await?;
    ck.leave(&[gid4]).await?;
    ck.check(&[]).await?;
    Ok(cf2)
}

fn placement(shard: ShardId, low: GroupId, high: GroupId) -> GroupId {
    if shard < LAB_NSHARDS / 2 {
        low
    } else {
        high
    }
}

/// 6.824 "Move", after the basic flow as in 6.824's `TestBasic`.
pub fn move_shards<L: MasterLab>(seed: u64) -> Outcome {
    let c = Cluster::<L>::new(seed, false);
    c.run(async {
        let mut ck = c.clerk();
        basic_flow(&mut ck).await?;
        move_flow(&mut ck).await?;
        let latest = ck.latest().await?;
        check_replicas_agree(&c, &latest, AGREE_TIMEOUT).await
    })
}
