//! Ours, beyond 6.824: the lab's flows over an unreliable network (lost, delayed and
//! reordered messages make clerks retry, so exactly-once matters), and partitions of the
//! master replicas: a minority cannot make progress (not even a Query, which goes through
//! the log), the majority carries on, and after healing every replica converges.

use std::time::Duration;

use shardkv_client::AdminError;
use shardkv_proto::{Config, GroupId};

use super::basic::{basic_flow, move_flow};
use super::checks::{check_replicas_agree, check_same_config};
use super::clerk::{group, Clerk};
use super::cluster::{Cluster, AGREE_TIMEOUT, REPLICAS};
use super::concurrent::{concurrent_flow, concurrent_multi_flow};
use super::lab::{MasterLab, Peer};
use super::minimal::{checked_join, checked_leave};
use crate::scenario::Outcome;

/// How long a clerk on the losing side of a partition keeps trying before it gives up.
const MINORITY_DEADLINE: Duration = Duration::from_secs(3);

/// Basic, Move and concurrent flows with 10% of messages and replies lost and the rest
/// delayed up to 27 ms; then every replica holds the same history.
pub fn unreliable_basic<L: MasterLab>(seed: u64) -> Outcome {
    let c = Cluster::<L>::new(seed, true);
    c.run(async {
        let mut ck = c.clerk();
        basic_flow(&mut ck).await?;
        move_flow(&mut ck).await?;
        concurrent_flow(&c, &mut ck).await?;
        c.sim.set_reliable(true);
        let latest = ck.latest().await?;
        check_replicas_agree(&c, &latest, AGREE_TIMEOUT).await
    })
}

/// The concurrent multi flow and minimal-transfer steps over an unreliable network.
pub fn unreliable_multi<L: MasterLab>(seed: u64) -> Outcome {
    let c = Cluster::<L>::new(seed, true);
    c.run(async {
        let mut ck = c.clerk();
        concurrent_multi_flow(&c, &mut ck).await?;
        let extra: Vec<GroupId> = (1..=4).collect();
        for &gid in &extra {
            checked_join(&mut ck, group(gid, &[&format!("u{gid}")])).await?;
        }
        checked_leave(&mut ck, &extra[..2]).await?;
        checked_leave(&mut ck, &extra[2..]).await?;
        c.sim.set_reliable(true);
        let latest = ck.latest().await?;
        check_replicas_agree(&c, &latest, AGREE_TIMEOUT).await
    })
}

/// Cuts `minority` (with clerk `lonely`) off from the other replicas (with clerk `ck`):
/// `lonely`'s Join and Query time out, `ck`'s Join of `gid` succeeds; after healing,
/// every replica holds the majority's history and `lonely` reads it.
async fn minority_round<L: MasterLab>(
    c: &Cluster<L>,
    ck: &mut Clerk,
    lonely: &mut Clerk,
    minority: Peer,
    gid: GroupId,
) -> Result<(), String> {
    let majority: Vec<_> = (0..REPLICAS)
        .filter(|&p| p != minority)
        .map(|p| c.node(p))
        .chain([ck.node()])
        .collect();
    c.sim
        .partition(&[&[c.node(minority), lonely.node()], &majority]);
    let before = ck.latest().await?;
    expect_timeout(
        lonely.admin().join(group(gid + 1, &["lost"])).await,
        "minority join",
    )?;
    expect_timeout(lonely.admin().query(None).await, "minority query")?;
    let joined = ck.join(group(gid, &[&format!("m{gid}")])).await?;
    if joined.num != before.num + 1 || !joined.groups.contains_key(&gid) {
        return Err(format!(
            "majority join of {gid} made config {}: {:?}",
            joined.num,
            joined.groups.keys()
        ));
    }
    c.sim.heal();
    check_replicas_agree(c, &joined, AGREE_TIMEOUT).await?;
    let seen = lonely.latest().await?;
    check_same_config(&seen, &joined).map_err(|e| format!("after healing: {e}"))
}

fn expect_timeout(result: Result<Config, AdminError>, what: &str) -> Result<(), String> {
    match result {
        Err(AdminError::Timeout { .. }) => Ok(()),
        other => Err(format!(
            "{what} cut off from the majority answered {other:?}"
        )),
    }
}

/// The leader alone, then a random replica alone: the minority makes no progress, the
/// majority does, and healing converges.
pub fn partition_minority<L: MasterLab>(seed: u64) -> Outcome {
    let c = Cluster::<L>::new(seed, false);
    c.run(async {
        let mut ck = c.clerk();
        let mut lonely = c.clerk_with_deadline(MINORITY_DEADLINE);
        ck.join(group(1, &["a"])).await?;
        let leader = c.leader().ok_or("no leader after a committed join")?;
        minority_round(&c, &mut ck, &mut lonely, leader, 10).await?;
        let other = c.sim.random_range(0..REPLICAS as u64) as Peer;
        minority_round(&c, &mut ck, &mut lonely, other, 20).await?;
        ck.check(&[1, 10, 20]).await.map(|_| ())
    })
}

/// Every replica alone: nobody makes progress; after healing a new Join succeeds and
/// every replica agrees.
pub fn partition_no_majority<L: MasterLab>(seed: u64) -> Outcome {
    let c = Cluster::<L>::new(seed, false);
    c.run(async {
        let mut ck = c.clerk_with_deadline(MINORITY_DEADLINE);
        ck.join(group(1, &["a"])).await?;
        let nodes: Vec<_> = (0..REPLICAS).map(|p| c.node(p)).collect();
        c.sim.partition(&[&nodes[0..1], &nodes[1..2], &nodes[2..3]]);
        expect_timeout(
            ck.admin().join(group(2, &["b"])).await,
            "join without a majority",
        )?;
        c.sim.heal();
        let mut ck = c.clerk();
        let joined = ck.join(group(3, &["c"])).await?;
        // The timed-out Join may still commit: its entry can survive in the old leader's
        // log if that replica wins the next election.
        let members: &[GroupId] = if joined.groups.contains_key(&2) {
            &[1, 2, 3]
        } else {
            &[1, 3]
        };
        ck.check(members).await?;
        check_replicas_agree(&c, &joined, AGREE_TIMEOUT).await
    })
}
