//! Proposal fate: telling the caller which of its proposals will never commit.
//!
//! raft-rs accepts a proposal by appending it to the leader's log and then says nothing
//! more about it: the entry either commits at that `(index, term)` or is silently
//! replaced by another leader's entry. A server waiting on a client needs to know, so
//! the replica tracks each accepted proposal and reports it in `Output::lost` when:
//!
//! - the entry applied at its index has another term (overwritten), or is an empty entry
//!   where a membership change was proposed (raft-rs turned a conf change it refused
//!   into a no-op);
//! - a snapshot from the leader covers its index (we never saw what was there);
//! - this node stops being leader, or its term moves on, before the entry applied.
//!
//! The last rule is eager: the new leader may already hold the entry and commit it
//! later, so a proposal reported lost can still show up as applied. Callers must dedupe
//! retried requests (client id + sequence number), which they need anyway.
//!
//! Bounds: at most one tracked proposal per uncommitted log entry of the current term.
//!
//! This is the replica's side. The server's side (which client waits on which proposal,
//! and settling it from an `Output`) is [`crate::Pending`] in `pending.rs`.

use std::collections::BTreeMap;

use crate::{Index, Term};

/// An accepted proposal: it commits iff the entry applied at `index` has term `term`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Proposal {
    /// Log index the proposal was appended at.
    pub index: Index,
    /// Leader term it was appended in.
    pub term: Term,
}

/// What a proposal (or an applied entry) carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A normal command.
    Command,
    /// A membership change.
    Membership,
    /// An empty normal entry (leader no-op, or a refused conf change).
    Empty,
}

/// Proposals accepted by this node as leader and not yet applied, by index.
#[derive(Debug, Default)]
pub(crate) struct Proposals {
    pending: BTreeMap<Index, (Term, Kind)>,
}

impl Proposals {
    /// Tracks a proposal appended at `index` in `term`.
    pub(crate) fn track(&mut self, index: Index, term: Term, kind: Kind) -> Proposal {
        let previous = self.pending.insert(index, (term, kind));
        assert!(
            previous.is_none(),
            "proposal at index {index} term {term} replaces tracked {previous:?}"
        );
        Proposal { index, term }
    }

    /// The entry at `index` with `term` and `kind` applied: settles proposals up to it.
    pub(crate) fn on_applied(
        &mut self,
        index: Index,
        term: Term,
        kind: Kind,
        lost: &mut Vec<Proposal>,
    ) {
        while let Some((&at, &(at_term, at_kind))) = self.pending.first_key_value() {
            if at > index {
                break;
            }
            self.pending.remove(&at);
            if at < index || at_term != term || at_kind != kind {
                lost.push(Proposal {
                    index: at,
                    term: at_term,
                });
            }
        }
    }

    /// A snapshot through `index` was installed: everything it covers is unknown, so lost.
    pub(crate) fn on_snapshot(&mut self, index: Index, lost: &mut Vec<Proposal>) {
        let kept = self.pending.split_off(&(index + 1));
        let covered = std::mem::replace(&mut self.pending, kept);
        lost.extend(
            covered
                .into_iter()
                .map(|(index, (term, _))| Proposal { index, term }),
        );
    }

    /// Leadership check after a Ready: drops every proposal unless this node still leads
    /// in the term it was proposed in.
    pub(crate) fn on_role(&mut self, leader_term: Option<Term>, lost: &mut Vec<Proposal>) {
        let stale: Vec<Index> = self
            .pending
            .iter()
            .filter(|(_, (term, _))| Some(*term) != leader_term)
            .map(|(index, _)| *index)
            .collect();
        for index in stale {
            if let Some((term, _)) = self.pending.remove(&index) {
                lost.push(Proposal { index, term });
            }
        }
    }

    /// Number of proposals awaiting their fate.
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the fate table: matching entries settle silently, mismatches, snapshots and
    /// step-downs report the proposal lost.
    #[test]
    fn fates() {
        let mut proposals = Proposals::default();
        let mut lost = Vec::new();
        proposals.track(5, 2, Kind::Command);
        proposals.track(6, 2, Kind::Membership);
        proposals.track(7, 2, Kind::Command);
        proposals.track(9, 2, Kind::Command);
        proposals.on_applied(5, 2, Kind::Command, &mut lost);
        assert!(lost.is_empty());
        proposals.on_applied(6, 2, Kind::Empty, &mut lost);
        assert_eq!(lost, vec![Proposal { index: 6, term: 2 }]);
        proposals.on_applied(7, 3, Kind::Command, &mut lost);
        assert_eq!(lost[1], Proposal { index: 7, term: 2 });
        proposals.track(10, 2, Kind::Command);
        proposals.on_snapshot(9, &mut lost);
        assert_eq!(lost[2], Proposal { index: 9, term: 2 });
        proposals.on_role(Some(2), &mut lost);
        assert_eq!((lost.len(), proposals.len()), (3, 1));
        proposals.on_role(None, &mut lost);
        assert_eq!(lost[3], Proposal { index: 10, term: 2 });
        assert_eq!(proposals.len(), 0);
    }
}
