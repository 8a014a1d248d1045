//! Ours: clerks joining and leaving groups over an unreliable network while master
//! replicas crash and restart one at a time. Every Join and Leave must take effect
//! exactly once (a retried Join answered `AlreadyJoined`, or a retried Leave answered
//! `UnknownGroup`, fails the clerk), restarted replicas must recover from what they
//! persisted (the reference snapshots along the way), and all must converge.

use std::time::Duration;

use shardkv_proto::GroupId;

use super::checks::check_replicas_agree;
use super::clerk::group;
use super::cluster::{Cluster, AGREE_TIMEOUT, REPLICAS};
use super::lab::{MasterLab, Peer};
use crate::scenario::Outcome;

/// Clerks in the churn scenario.
const CLERKS: usize = 5;
/// Join/leave rounds per clerk.
const ROUNDS: GroupId = 6;

/// Clerk `i` joins and leaves `100 (i + 1) + r` for each round `r`, checking each answer, then
/// joins `1000 + i` for good.
async fn clerk_work(mut ck: super::Clerk, i: usize) -> Result<(), String> {
    let base = 100 * (i as GroupId + 1);
    for r in 0..ROUNDS {
        let gid = base + r;
        let joined = ck.join(group(gid, &[&format!("c{gid}")])).await?;
        if !joined.groups.contains_key(&gid) {
            return Err(format!(
                "join of {gid} answered config {} without it",
                joined.num
            ));
        }
        let left = ck.leave(&[gid]).await?;
        if left.groups.contains_key(&gid) {
            return Err(format!(
                "leave of {gid} answered config {} still with it",
                left.num
            ));
        }
    }
    let last = 1000 + i as GroupId;
    ck.join(group(last, &[&format!("c{last}")]))
        .await
        .map(|_| ())
}

/// Crash a random replica, keep it down a while, restart it; repeat until `done`.
async fn crash_restart_loop<L: MasterLab>(c: &Cluster<L>, done: impl Fn() -> bool) {
    while !done() {
        c.sleep_ms(200 + c.sim.random_range(0..800)).await;
        let victim = c.sim.random_range(0..REPLICAS as u64) as Peer;
        c.shutdown_server(victim);
        c.sleep_ms(c.sim.random_range(0..1000)).await;
        c.start_server(victim);
        c.connect_all();
    }
}

/// Five clerks churn groups while replicas crash and restart over an unreliable network.
pub fn unreliable_restarts<L: MasterLab>(seed: u64) -> Outcome {
    let c = Cluster::<L>::new(seed, true);
    c.run(async {
        let handles: Vec<_> = (0..CLERKS)
            .map(|i| c.sim.spawn(clerk_work(c.clerk(), i)))
            .collect();
        crash_restart_loop(&c, || handles.iter().all(|h| h.is_finished())).await;
        for (i, handle) in handles.into_iter().enumerate() {
            handle.await.map_err(|e| format!("clerk {i}: {e}"))?;
        }
        c.sim.set_reliable(true);
        let gids: Vec<GroupId> = (0..CLERKS as GroupId).map(|i| 1000 + i).collect();
        let latest = c.clerk().check(&gids).await?;
        let want = (ROUNDS * 2 + 1) * CLERKS as GroupId;
        if latest.num != want {
            return Err(format!(
                "{} configurations, wanted {want}: a change was applied twice or lost",
                latest.num
            ));
        }
        c.sim.sleep(Duration::from_millis(100)).await;
        check_replicas_agree(&c, &latest, AGREE_TIMEOUT).await
    })
}
