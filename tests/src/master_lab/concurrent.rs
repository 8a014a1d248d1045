//! Concurrent clerks (6.824 "Concurrent leave/join" and "Concurrent multi leave/join"):
//! ten clerks join and leave groups at once; the result has exactly the groups that
//! stayed, balanced, and every replica holds the same history.

use std::future::Future;

use shardkv_proto::{Config, GroupId};

use super::checks::check_replicas_agree;
use super::clerk::{group, Clerk, Groups};
use super::cluster::{Cluster, AGREE_TIMEOUT};
use super::lab::MasterLab;
use crate::scenario::Outcome;

/// Clerks running at once, as in 6.824.
pub const NPARA: usize = 10;

/// Runs `work(clerk, i)` for `i` in `0..NPARA`, each on its own new clerk, all at once;
/// the first failure, if any.
pub async fn in_parallel<L, F, Fut>(c: &Cluster<L>, work: F) -> Result<(), String>
where
    L: MasterLab,
    F: Fn(Clerk, usize) -> Fut,
    Fut: Future<Output = Result<(), String>> + 'static,
{
    let handles: Vec<_> = (0..NPARA)
        .map(|i| c.sim.spawn(work(c.clerk(), i)))
        .collect();
    for (i, handle) in handles.into_iter().enumerate() {
        handle.await.map_err(|e| format!("clerk {i}: {e}"))?;
    }
    Ok(())
}

/// Each clerk `i` joins `gid + 1000`, joins `gid = 100 + 10 i`, and leaves `gid + 1000`;
/// then `ck` checks exactly the ten gids remain. Returns the final configuration.
pub async fn concurrent_flow<L: MasterLab>(
    c: &Cluster<L>,
    ck: &mut Clerk,
) -> Result<Config, String> {
    let gids: Vec<GroupId> = (0..NPARA as GroupId).map(|i| i * 10 + 100).collect();
    in_parallel(c, |mut cka, i| {
        let gid = gids[i];
        async move {
            cka.join(group(gid + 1000, &[&format!("s{gid}a")])).await?;
            cka.join(group(gid, &[&format!("s{gid}b")])).await?;
            cka.leave(&[gid + 1000]).await?;
            Ok(())
        }
    })
    .await?;
    ck.check(&gids).await
}

/// Each clerk `i` joins `gid = 1000 + i` with three servers together with `gid + 1000`
/// and `gid + 2000` in one Join, then leaves the latter two in one Leave. Returns the
/// final configuration, checked to hold exactly the ten `gid`s.
pub async fn concurrent_multi_flow<L: MasterLab>(
    c: &Cluster<L>,
    ck: &mut Clerk,
) -> Result<Config, String> {
    let gids: Vec<GroupId> = (0..NPARA as GroupId).map(|i| i + 1000).collect();
    in_parallel(c, |mut cka, i| {
        let gid = gids[i];
        async move {
            let mut groups: Groups = group(
                gid,
                &[&format!("{gid}a"), &format!("{gid}b"), &format!("{gid}c")],
            );
            groups.extend(group(gid + 1000, &[&format!("{}a", gid + 1000)]));
            groups.extend(group(gid + 2000, &[&format!("{}a", gid + 2000)]));
            cka.join(groups).await?;
            cka.leave(&[gid + 1000, gid + 2000]).await?;
            Ok(())
        }
    })
    .await?;
    let config = ck.check(&gids).await?;
    for &gid in &gids {
        let want = [format!("{gid}a"), format!("{gid}b"), format!("{gid}c")];
        if config.servers(gid) != Some(&want[..]) {
            return Err(format!(
                "wrong servers for gid {gid}: {:?}",
                config.servers(gid)
            ));
        }
    }
    Ok(config)
}

/// 6.824 "Concurrent leave/join".
pub fn concurrent_join_leave<L: MasterLab>(seed: u64) -> Outcome {
    let c = Cluster::<L>::new(seed, false);
    c.run(async {
        let mut ck = c.clerk();
        let latest = concurrent_flow(&c, &mut ck).await?;
        check_replicas_agree(&c, &latest, AGREE_TIMEOUT).await
    })
}

/// 6.824 "Concurrent multi leave/join".
pub fn concurrent_multi_join_leave<L: MasterLab>(seed: u64) -> Outcome {
    let c = Cluster::<L>::new(seed, false);
    c.run(async {
        let mut ck = c.clerk();
        let latest = concurrent_multi_flow(&c, &mut ck).await?;
        check_replicas_agree(&c, &latest, AGREE_TIMEOUT).await
    })
}
