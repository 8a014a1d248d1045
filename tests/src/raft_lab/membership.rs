//! Part `raft-agreement`, membership change under churn (no 6.824 counterpart; needs
//! [`RaftLabMembership`]): a cluster of three grows to five, shrinks, re-adds removed peers
//! and swaps two voters in one joint change, while clients submit commands and, before
//! every change, one random peer is disconnected or crashed.
//!
//! Checks: one value per index throughout (the checker); each change takes effect within
//! [`CHANGE_TIMEOUT`] on the leader and every reachable member; after healing, every final
//! voter applies every committed command and reports the final voter set; every value a
//! client saw commit is in the log.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use super::churn::{check_churn_log, churn_client};
use super::cluster::{Cluster, ClusterOptions};
use super::lab::{Peer, RaftLabMembership};
use crate::scenario::Outcome;

/// Time allowed for one membership change to take effect.
pub const CHANGE_TIMEOUT: Duration = Duration::from_secs(20);

/// Peers `0..INITIAL_VOTERS` start as voters; the others start as joiners.
const INITIAL_VOTERS: usize = 3;

/// The changes, in order: (add, remove).
const CHANGES: [(&[Peer], &[Peer]); 7] = [
    (&[3], &[]),
    (&[4], &[]),
    (&[], &[0]),
    (&[], &[1]),
    (&[0], &[]),
    (&[1], &[2]),
    (&[], &[3]),
];

/// Membership change under churn (see the module docs).
pub fn membership_churn<L: RaftLabMembership>(seed: u64) -> Outcome {
    let servers = 5;
    let maker = Rc::new(|me: Peer, persister| {
        if me < INITIAL_VOTERS {
            L::make(me, INITIAL_VOTERS, persister)
        } else {
            L::make_joiner(me, persister)
        }
    });
    let c = Cluster::<L>::with_maker(seed, servers, ClusterOptions::default(), maker);
    c.run(async {
        let stop = Rc::new(Cell::new(false));
        let clients: Vec<_> = (0..2)
            .map(|me| c.sim.spawn(churn_client(c.clone(), me, stop.clone())))
            .collect();
        let mut voters: Vec<Peer> = (0..INITIAL_VOTERS).collect();
        for (add, remove) in CHANGES {
            heal(&c);
            match c.random(3) {
                1 => c.disconnect(c.random(servers as u64) as usize),
                2 => c.crash1(c.random(servers as u64) as usize),
                _ => {}
            }
            voters.retain(|p| !remove.contains(p));
            voters.extend_from_slice(add);
            voters.sort_unstable();
            change(&c, add, remove, &voters).await?;
        }
        heal(&c);
        stop.set(true);
        let mut values = Vec::new();
        for client in clients {
            values.extend(client.await?);
        }
        let last_index = c.one(c.random_command(), voters.len(), true).await?;
        settle(&c, last_index, &voters).await?;
        check_churn_log(&c, last_index, &values, &voters)
    })
}

/// Restart crashed peers and reconnect everyone.
fn heal<L: RaftLabMembership>(c: &Cluster<L>) {
    for peer in 0..c.n() {
        if !c.is_up(peer) {
            c.start1(peer);
        }
        c.connect(peer);
    }
}

fn members<L: RaftLabMembership>(c: &Cluster<L>, peer: Peer) -> Option<Vec<Peer>> {
    c.with_lab(peer, |lab| lab.members())
}

/// The connected peer claiming leadership in the highest term, if any.
fn leader<L: RaftLabMembership>(c: &Cluster<L>) -> Option<Peer> {
    (0..c.n())
        .filter(|&p| c.is_connected(p))
        .filter_map(|p| {
            c.get_state(p)
                .filter(|&(_, leads)| leads)
                .map(|(term, _)| (term, p))
        })
        .max()
        .map(|(_, p)| p)
}

/// Propose the change at the leader until the leader and every reachable target voter
/// report `target` as the voter set.
async fn change<L: RaftLabMembership>(
    c: &Cluster<L>,
    add: &[Peer],
    remove: &[Peer],
    target: &[Peer],
) -> Result<(), String> {
    c.sim.trace(
        "harness",
        format_args!("change add {add:?} remove {remove:?} -> {target:?}"),
    );
    let t0 = c.sim.now();
    while c.sim.now() - t0 < CHANGE_TIMEOUT {
        c.check_apply_error()?;
        if let Some(leader) = leader(c) {
            let leader_members = members(c, leader);
            let reachable = target.iter().filter(|&&p| c.is_connected(p) && c.is_up(p));
            let everyone_knows = reachable
                .clone()
                .all(|&p| members(c, p).as_deref() == Some(target));
            if leader_members.as_deref() == Some(target)
                && everyone_knows
                && target.contains(&leader)
            {
                return Ok(());
            }
            if leader_members.as_deref() != Some(target) {
                c.with_lab(leader, |lab| lab.change_membership(add, remove));
            }
        }
        c.sleep_ms(200).await;
    }
    let seen: Vec<_> = (0..c.n())
        .map(|p| (p, c.get_state(p), members(c, p)))
        .collect();
    Err(format!(
        "change add {add:?} remove {remove:?} to {target:?} did not take effect: {seen:?}"
    ))
}

/// Wait until every voter applied `last_index` and reports `voters`.
async fn settle<L: RaftLabMembership>(
    c: &Cluster<L>,
    last_index: u64,
    voters: &[Peer],
) -> Result<(), String> {
    let t0 = c.sim.now();
    loop {
        let applied = voters
            .iter()
            .all(|&p| c.checker().has_applied(p, last_index));
        let agreed = voters
            .iter()
            .all(|&p| members(c, p).as_deref() == Some(voters));
        if applied && agreed {
            return Ok(());
        }
        if c.sim.now() - t0 > CHANGE_TIMEOUT {
            return Err(format!(
                "voters {voters:?} did not all apply {last_index} and agree on membership"
            ));
        }
        c.sleep_ms(100).await;
    }
}
