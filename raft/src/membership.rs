//! Membership changes: joint consensus through raft-rs's `ConfChangeV2`, minus its traps.
//!
//! A change adds and removes voters. One change of one voter is applied directly; more
//! go through a joint configuration (old and new majorities both needed) that raft-rs
//! leaves automatically once the joint entry applies (`auto_leave`). The state machine
//! sees one [`crate::Applied::Membership`] per conf entry applied.
//!
//! raft-rs traps, and what this module does about them:
//!
//! - **A second change while one is pending is silently turned into an empty entry**
//!   (`propose_conf_change` still returns Ok). `change_membership` answers `Busy` up
//!   front while a conf entry is unapplied or the configuration is joint; should one
//!   slip through, the empty entry is not reported, so a [`crate::Pending`] settles
//!   the proposal as lost when the next entry applies.
//! - **A removed leader keeps leading and drops every proposal.** Asked to remove
//!   itself, the leader first hands leadership to its most up-to-date other voter and
//!   answers `NotLeader { hint }` (retry there). If a leader finds itself removed anyway
//!   (a change proposed under an earlier leader), `advance` hands leadership off.
//! - **A removed node** is not promotable in raft-rs once it applies its removal, so it
//!   stops campaigning; proposals to it answer `NotLeader`.
//! - **Auto-leave can be skipped** when leadership changes while joint; `advance` then
//!   proposes the leave entry itself.
//!
//! Bootstrap writes the founding voters into the log, as etcd does: entries `1..=n` of
//! term 1, one `AddNode` conf change per voter (sorted), already committed. Every
//! founding member writes the same entries, and a node added later replays them from
//! the leader like any other entry, so it learns the founding configuration without a
//! snapshot. (Putting the founders only into the stored conf state would leave a joiner
//! replaying the log from index 1 with no configuration to apply changes to.)
//!
//! Snapshots need the configuration *as of* their index, which may be older than the
//! applied one; [`ConfHistory`] keeps the configurations applied since the last snapshot.

use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, ConfState,
    Entry, EntryType, HardState,
};
use raft::StateRole;

use crate::{Error, Index, LogStore, NodeId, Proposal, Replica};

/// A membership change: voters to add and voters to remove.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    /// Nodes to make voters (new nodes start with `peers` empty).
    pub add: Vec<NodeId>,
    /// Voters to remove.
    pub remove: Vec<NodeId>,
}

/// Configurations applied since the last snapshot, oldest first; never empty.
#[derive(Debug)]
pub(crate) struct ConfHistory {
    states: Vec<(Index, ConfState)>,
}

impl ConfHistory {
    /// A history starting from `cs` as of `index` (the snapshot, or 0 at bootstrap).
    pub(crate) fn new(index: Index, cs: ConfState) -> Self {
        Self {
            states: vec![(index, cs)],
        }
    }

    /// `cs` took effect at `index`.
    pub(crate) fn record(&mut self, index: Index, cs: ConfState) {
        let last = self.states.last().map_or(0, |(at, _)| *at);
        assert!(
            index > last,
            "conf state at {index} recorded after one at {last}"
        );
        self.states.push((index, cs));
    }

    /// The configuration in force at `index`.
    pub(crate) fn at(&self, index: Index) -> &ConfState {
        let base = self.states[0].0;
        assert!(
            index >= base,
            "conf state at {index} asked, history starts at {base}"
        );
        let position = self.states.partition_point(|(at, _)| *at <= index);
        &self.states[position - 1].1
    }

    /// Forgets configurations superseded before `index` (a snapshot was taken there).
    pub(crate) fn compact(&mut self, index: Index) {
        let position = self.states.partition_point(|(at, _)| *at <= index);
        if position > 1 {
            let cs = self.at(index).clone();
            self.states.drain(..position);
            self.states.insert(0, (index, cs));
        }
    }
}

/// Sorted voters of `cs` (the incoming configuration when joint).
pub(crate) fn sorted_voters(cs: &ConfState) -> Vec<NodeId> {
    let mut voters = cs.voters.clone();
    voters.sort_unstable();
    voters
}

/// Writes the founding configuration `peers` into an empty store (see module docs).
pub(crate) fn bootstrap<S: LogStore>(store: &mut S, peers: &[NodeId]) -> Result<(), Error> {
    let mut voters = peers.to_vec();
    voters.sort_unstable();
    voters.dedup();
    if voters.contains(&0) {
        return Err(conf_error("node id 0 is reserved"));
    }
    let mut entries = Vec::with_capacity(voters.len());
    for (position, id) in voters.iter().enumerate() {
        let cc = ConfChange {
            node_id: *id,
            change_type: ConfChangeType::AddNode,
            ..ConfChange::default()
        };
        let mut entry = Entry::default();
        entry.set_entry_type(EntryType::EntryConfChange);
        entry.term = 1;
        entry.index = position as u64 + 1;
        entry.data = cc.write_to_bytes().map_err(raft::Error::from)?.into();
        entries.push(entry);
    }
    store.append(&entries)?;
    let hs = HardState {
        term: 1,
        vote: 0,
        commit: entries.len() as u64,
        ..HardState::default()
    };
    store.set_hard_state(&hs)?;
    store.sync()?;
    Ok(())
}

impl<S: LogStore> Replica<S> {
    /// Proposes `change`; the new configuration holds once `Applied::Membership` shows it.
    pub(crate) fn propose_membership(&mut self, change: Membership) -> Result<Proposal, Error> {
        self.check_can_propose()?;
        check_change(&change)?;
        if self.raw.raft.has_pending_conf() || self.is_joint() {
            return Err(Error::Busy);
        }
        if change.remove.contains(&self.id()) {
            let Some(target) = self.most_up_to_date_voter(&change.remove) else {
                return Err(conf_error("cannot remove the only voter"));
            };
            self.raw.transfer_leader(target);
            return Err(Error::NotLeader { hint: Some(target) });
        }
        let mut voters = self.voters();
        voters.extend(&change.add);
        voters.retain(|id| !change.remove.contains(id));
        if voters.is_empty() {
            return Err(conf_error("change would leave no voter"));
        }
        let mut cc = ConfChangeV2::default();
        cc.set_transition(ConfChangeTransition::Auto);
        let adds = change
            .add
            .iter()
            .map(|id| single(*id, ConfChangeType::AddNode));
        let removes = change
            .remove
            .iter()
            .map(|id| single(*id, ConfChangeType::RemoveNode));
        cc.set_changes(adds.chain(removes).collect::<Vec<_>>().into());
        let before = self.raw.raft.raft_log.last_index();
        self.raw.propose_conf_change(Vec::new(), cc)?;
        self.appended(before)
    }

    /// True while the applied configuration is joint.
    pub(crate) fn is_joint(&self) -> bool {
        !self
            .raw
            .raft
            .prs()
            .conf()
            .to_conf_state()
            .voters_outgoing
            .is_empty()
    }

    /// The voter (other than this node and `excluded`) with the highest matched index;
    /// the lowest id wins ties so the choice is deterministic.
    pub(crate) fn most_up_to_date_voter(&self, excluded: &[NodeId]) -> Option<NodeId> {
        let cs = self.raw.raft.prs().conf().to_conf_state();
        let mut candidates: Vec<NodeId> = cs
            .voters
            .iter()
            .chain(&cs.voters_outgoing)
            .copied()
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        candidates
            .into_iter()
            .filter(|id| *id != self.id() && !excluded.contains(id))
            .filter_map(|id| self.raw.raft.prs().get(id).map(|pr| (pr.matched, id)))
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
            .map(|(_, id)| id)
    }

    /// Leader-only upkeep run by `advance`: leave a joint configuration raft-rs forgot
    /// to leave, and hand leadership off if this leader was removed. Best effort: a
    /// refusal is retried on the next `advance`.
    pub(crate) fn maintain_membership(&mut self) {
        if self.raw.raft.state != StateRole::Leader || self.raw.raft.lead_transferee.is_some() {
            return;
        }
        if !self.raw.raft.promotable() {
            if let Some(target) = self.most_up_to_date_voter(&[]) {
                self.raw.transfer_leader(target);
            }
            return;
        }
        let auto_leave = *self.raw.raft.prs().conf().auto_leave();
        if self.is_joint() && auto_leave && !self.raw.raft.has_pending_conf() {
            let leave = self
                .raw
                .propose_conf_change(Vec::new(), ConfChangeV2::default());
            if let Err(error) = leave {
                tracing::debug!(node = self.id(), %error, "proposing to leave joint config");
            }
        }
    }
}

fn single(node_id: NodeId, change_type: ConfChangeType) -> ConfChangeSingle {
    ConfChangeSingle {
        node_id,
        change_type,
        ..ConfChangeSingle::default()
    }
}

fn conf_error(reason: &str) -> Error {
    Error::Raft(raft::Error::ConfChangeError(reason.to_string()))
}

/// Rejects changes that are empty, name node 0, or add and remove the same node.
fn check_change(change: &Membership) -> Result<(), Error> {
    if change.add.is_empty() && change.remove.is_empty() {
        return Err(conf_error("empty membership change"));
    }
    if change.add.iter().chain(&change.remove).any(|id| *id == 0) {
        return Err(conf_error("node id 0 is reserved"));
    }
    if change.add.iter().any(|id| change.remove.contains(id)) {
        return Err(conf_error("a node is both added and removed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cs(voters: &[NodeId]) -> ConfState {
        ConfState {
            voters: voters.to_vec(),
            ..ConfState::default()
        }
    }

    /// Proves the history answers "configuration at index" and compacts to a snapshot.
    #[test]
    fn history_at_and_compact() {
        let mut history = ConfHistory::new(0, cs(&[1, 2, 3]));
        history.record(5, cs(&[1, 2, 3, 4]));
        history.record(9, cs(&[1, 2, 4]));
        assert_eq!(history.at(4).voters, vec![1, 2, 3]);
        assert_eq!(history.at(5).voters, vec![1, 2, 3, 4]);
        assert_eq!(history.at(100).voters, vec![1, 2, 4]);
        history.compact(7);
        assert_eq!(history.at(7).voters, vec![1, 2, 3, 4]);
        assert_eq!(history.at(9).voters, vec![1, 2, 4]);
        assert_eq!(history.states.len(), 2);
    }

    /// Proves obviously bad changes are refused before reaching raft-rs.
    #[test]
    fn bad_changes_are_refused() {
        assert!(check_change(&Membership::default()).is_err());
        assert!(check_change(&Membership {
            add: vec![0],
            remove: vec![]
        })
        .is_err());
        assert!(check_change(&Membership {
            add: vec![2],
            remove: vec![2]
        })
        .is_err());
        assert!(check_change(&Membership {
            add: vec![4],
            remove: vec![3]
        })
        .is_ok());
    }
}
