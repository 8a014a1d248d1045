//! 6.824 shardctrler `TestMulti`: multi-group join/leave with exact server lists, and the
//! same configuration on every replica after the leader is shut down. (The concurrent and
//! minimal-transfer parts of `TestMulti` live in `concurrent.rs` and `minimal.rs`.)

use shardkv_proto::Config;

use super::checks::{check_replicas_agree, check_same_config, check_servers};
use super::clerk::{group, Clerk, Groups};
use super::cluster::{Cluster, AGREE_TIMEOUT};
use super::concurrent::concurrent_multi_flow;
use super::lab::MasterLab;
use crate::scenario::Outcome;

/// Joins 1 and 2 in one Join, then 3, then leaves 1 and 3 in one Leave, then 2, checking
/// members, balance and server lists along the way. Returns the final configuration.
pub async fn multi_flow(ck: &mut Clerk) -> Result<Config, String> {
    ck.check(&[]).await?;
    let mut both: Groups = group(1, &["x", "y", "z"]);
    both.extend(group(2, &["a", "b", "c"]));
    let joined = ck.join(both).await?;
    if joined.num != 1 {
        return Err(format!(
            "a two-group Join made config {}, wanted 1 (one config per Join)",
            joined.num
        ));
    }
    ck.check(&[1, 2]).await?;
    ck.join(group(3, &["j", "k", "l"])).await?;
    let cfx = ck.check(&[1, 2, 3]).await?;
    check_servers(&cfx, 1, &["x", "y", "z"])?;
    check_servers(&cfx, 2, &["a", "b", "c"])?;
    check_servers(&cfx, 3, &["j", "k", "l"])?;
    ck.leave(&[1, 3]).await?;
    let cfx = ck.check(&[2]).await?;
    check_servers(&cfx, 2, &["a", "b", "c"])?;
    ck.leave(&[2]).await?;
    ck.check(&[]).await
}

/// 6.824 "Multi-group join/leave".
pub fn multi_join_leave<L: MasterLab>(seed: u64) -> Outcome {
    let c = Cluster::<L>::new(seed, false);
    c.run(async {
        let mut ck = c.clerk();
        let latest = multi_flow(&mut ck).await?;
        if latest.num != 4 {
            return Err(format!("ended at config {}, wanted 4", latest.num));
        }
        check_replicas_agree(&c, &latest, AGREE_TIMEOUT).await
    })
}

/// After some history, the leader is shut down; the latest configuration the clerk
/// gets from the new leader is the one the old leader gave, and the two survivors hold
/// the same history (6.824 "Check Same config on servers").
pub fn same_config_after_leader_shutdown<L: MasterLab>(seed: u64) -> Outcome {
    let c = Cluster::<L>::new(seed, false);
    c.run(async {
        let mut ck = c.clerk();
        multi_flow(&mut ck).await?;
        concurrent_multi_flow(&c, &mut ck).await?;
        let before = ck.latest().await?;
        let leader = c.leader().ok_or("leader not found")?;
        c.shutdown_server(leader);
        let mut found = false;
        for _ in 0..30 {
            c.sleep_ms(100).await;
            if c.leader().is_some() {
                found = true;
                break;
            }
        }
        if !found {
            return Err("no new leader within 3 s of shutting down the old one".into());
        }
        let after = ck.latest().await?;
        check_same_config(&after, &before)?;
        check_replicas_agree(&c, &after, AGREE_TIMEOUT).await
    })
}
