//! [`Pending`]: proposal fate, tracked in one place. Who waits on each proposal, and what
//! one [`Replica::advance`] means for each of them.
//!
//! raft-rs accepts a proposal by appending it to the leader's log and then says nothing
//! more about it: the entry either commits at that `(index, term)` or is silently
//! replaced by another leader's entry. A server proposes an entry for a *waiter* (a
//! client request, another server's request, its own internal work), remembers
//! `(index, term) → waiter`, and settles the waiter from what the replica reports:
//!
//! - the entry at `index` applied with the same `term`: it is the proposal; the waiter
//!   gets the state machine's answer ([`Fate::Committed`]);
//! - another term applied there ([`Fate::Displaced`]); a later index applied first (the
//!   entry was empty: raft-rs turned a conf change it refused into a no-op, or refused
//!   it at apply); a snapshot covered the index (we never saw what was there); or this
//!   replica no longer leads in the proposal's term (`Output::leader_term`): it may or
//!   may not commit later; the server fails the waiter (`WrongLeader`) and the client
//!   retries, which its duplicate detection makes safe.
//!
//! The last rule is eager: the new leader may already hold the entry and commit it
//! later, so a waiter failed on a step-down may see its entry applied after all.
//!
//! [`Pending::advance`] runs the replica's Ready protocol and applies those rules to the
//! whole [`Output`], in the order a server acts on them:
//!
//! ```text
//!   Replica::advance() ─► Output { messages, applied, reads, leader_term }
//!                                      │ settle against the waiters
//!                                      ▼
//!   Settled { messages   ─► send first (everything they promise is durable)
//!             applied    ─► apply in log order; each Step carries the waiters it settles:
//!                             Command  { fate }     answer (Committed) or fail (Displaced)
//!                             Snapshot { covered }  fail, once the snapshot is restored
//!             reads      ─► serve once applied
//!             failed }   ─► fail: proposals passed over by the applied entries, then
//!                           those of a term this replica does not lead in
//! ```
//!
//! Bound: one waiter per proposal, so at most one per uncommitted entry of the current
//! term.

use std::collections::BTreeMap;

use crate::{Applied, Error, Index, LogStore, NodeId, Output, Replica, Term};

/// An accepted proposal: it commits iff the entry applied at `index` has term `term`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Proposal {
    /// Log index the proposal was appended at.
    pub index: Index,
    /// Leader term it was appended in.
    pub term: Term,
}

/// Waiters of in-flight proposals, by log index.
#[derive(Debug)]
pub struct Pending<W> {
    by_index: BTreeMap<Index, (Term, W)>,
}

impl<W> Default for Pending<W> {
    fn default() -> Self {
        Pending {
            by_index: BTreeMap::new(),
        }
    }
}

/// The fate of the proposal at an applied index.
#[derive(Debug, PartialEq, Eq)]
pub enum Fate<W> {
    /// The applied entry is the proposal: answer the waiter.
    Committed(W),
    /// Another entry took the index: fail the waiter.
    Displaced(W),
}

/// One unit of applied log content, with the waiters it settles.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<W> {
    /// Apply command `data` at `index`, then settle `fate` (if a waiter was tracked there).
    Command {
        /// Log index of the entry.
        index: Index,
        /// The proposed bytes.
        data: Vec<u8>,
        /// The waiter of a proposal at this index, if any.
        fate: Option<Fate<W>>,
    },
    /// Replace the state with snapshot `data` as of `index`, then fail `covered`: the
    /// waiters of proposals at or below `index`, whose entries were never seen here.
    Snapshot {
        /// Last log index the snapshot covers.
        index: Index,
        /// State machine bytes.
        data: Vec<u8>,
        /// Waiters to fail once the snapshot is restored, in index order.
        covered: Vec<W>,
    },
    /// A membership change applied at `index` (nothing for the state machine to run;
    /// it only keeps its applied index in step), then settle `fate`.
    Membership {
        /// Log index of the conf change entry.
        index: Index,
        /// Voters after the change, sorted.
        voters: Vec<NodeId>,
        /// The waiter of a proposal at this index, if any.
        fate: Option<Fate<W>>,
    },
}

/// One [`Output`] split for a server holding waiters `W`; see the module docs.
#[derive(Debug, PartialEq, Eq)]
pub struct Settled<W> {
    /// Encoded raft messages `(to, bytes)`, to send in order.
    pub messages: Vec<(NodeId, Vec<u8>)>,
    /// Committed log content, in log order, with the waiters each settles.
    pub applied: Vec<Step<W>>,
    /// `(ctx, read index)` of completed `read_index` calls, as in [`Output::reads`].
    pub reads: Vec<(u64, Index)>,
    /// Waiters to fail after `applied`: those of proposals the applied entries passed
    /// over, then those of every term but the one this replica leads in (all of them
    /// when it does not lead), each group in index order.
    pub failed: Vec<W>,
}

impl<W> Pending<W> {
    /// Tracks `waiter` for `proposal`; returns a waiter it displaces (a proposal at the
    /// same index from an older term, which can no longer commit).
    pub fn insert(&mut self, proposal: Proposal, waiter: W) -> Option<W> {
        self.by_index
            .insert(proposal.index, (proposal.term, waiter))
            .map(|(_, old)| old)
    }

    /// Runs `replica.advance()` and settles its output against these waiters.
    pub fn advance<S: LogStore>(&mut self, replica: &mut Replica<S>) -> Result<Settled<W>, Error> {
        Ok(self.settle(replica.advance()?))
    }

    /// Splits `output` into what a server must do, taking every waiter it settles; see
    /// the module docs.
    pub fn settle(&mut self, output: Output) -> Settled<W> {
        let Output {
            messages,
            applied,
            reads,
            leader_term,
        } = output;
        let mut failed = Vec::new();
        let applied = applied
            .into_iter()
            .map(|a| self.step(a, &mut failed))
            .collect();
        failed.extend(self.take_other_terms(leader_term));
        Settled {
            messages,
            applied,
            reads,
            failed,
        }
    }

    fn step(&mut self, applied: Applied, passed_over: &mut Vec<W>) -> Step<W> {
        if let Applied::Command { index, .. } | Applied::Membership { index, .. } = applied {
            passed_over.extend(self.take_before(index));
        }
        match applied {
            Applied::Command { index, term, data } => Step::Command {
                index,
                data,
                fate: self.take_applied(index, term),
            },
            Applied::Snapshot { index, data, .. } => Step::Snapshot {
                index,
                data,
                covered: self.take_through(index),
            },
            Applied::Membership {
                index,
                term,
                voters,
            } => Step::Membership {
                index,
                voters,
                fate: self.take_applied(index, term),
            },
        }
    }

    /// The entry at `index` with `term` applied: the fate of a proposal there, if any.
    pub fn take_applied(&mut self, index: Index, term: Term) -> Option<Fate<W>> {
        let (proposed, waiter) = self.by_index.remove(&index)?;
        Some(match proposed == term {
            true => Fate::Committed(waiter),
            false => Fate::Displaced(waiter),
        })
    }

    /// The waiters of proposals below `index`, which an entry at `index` applied past
    /// (theirs were empty), in index order. Cheap when there are none: the applied path
    /// calls it for every entry.
    fn take_before(&mut self, index: Index) -> Vec<W> {
        let mut taken = Vec::new();
        while let Some(first) = self.by_index.first_entry() {
            if *first.key() >= index {
                break;
            }
            taken.push(first.remove().1);
        }
        taken
    }

    /// The waiters of proposals of any term but `leader_term` (all when `None`), in
    /// index order. Without allocating when every proposal is of `leader_term`, as
    /// while a leader keeps leading.
    pub fn take_other_terms(&mut self, leader_term: Option<Term>) -> Vec<W> {
        let Some(leader_term) = leader_term else {
            let all = std::mem::take(&mut self.by_index);
            return all.into_values().map(|(_, w)| w).collect();
        };
        if self.by_index.values().all(|(term, _)| *term == leader_term) {
            return Vec::new();
        }
        let (kept, other) = std::mem::take(&mut self.by_index)
            .into_iter()
            .partition(|(_, (term, _))| *term == leader_term);
        self.by_index = kept;
        other.into_values().map(|(_, w)| w).collect()
    }

    /// A snapshot covered every index through `index`: their waiters, in index order.
    pub fn take_through(&mut self, index: Index) -> Vec<W> {
        self.take_before(index + 1)
    }

    /// True when some tracked waiter satisfies `f`.
    pub fn any(&self, f: impl Fn(&W) -> bool) -> bool {
        self.by_index.values().any(|(_, w)| f(w))
    }

    /// Number of tracked proposals.
    pub fn len(&self) -> usize {
        self.by_index.len()
    }

    /// True when nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.by_index.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(index: Index, term: Term) -> Proposal {
        Proposal { index, term }
    }

    fn command(index: Index, term: Term) -> Applied {
        Applied::Command {
            index,
            term,
            data: vec![index as u8],
        }
    }

    /// Each way a proposal can end settles its waiter exactly once.
    #[test]
    fn fates() {
        let mut pending = Pending::default();
        assert_eq!(pending.insert(p(5, 2), 'a'), None);
        assert_eq!(pending.insert(p(6, 2), 'b'), None);
        assert_eq!(pending.insert(p(7, 2), 'c'), None);
        assert_eq!(pending.insert(p(8, 2), 'd'), None);
        assert_eq!(pending.take_applied(5, 2), Some(Fate::Committed('a')));
        assert_eq!(pending.take_applied(6, 3), Some(Fate::Displaced('b')));
        assert_eq!(pending.take_applied(6, 3), None);
        assert!(pending.any(|&w| w == 'd'));
        assert_eq!(pending.insert(p(8, 3), 'e'), Some('d'));
        assert_eq!(pending.insert(p(9, 3), 'f'), None);
        assert_eq!(pending.take_through(8), vec!['c', 'e']);
        assert_eq!(pending.take_other_terms(Some(3)), vec![]);
        assert_eq!(pending.take_other_terms(Some(4)), vec!['f']);
        assert!(pending.is_empty());
    }

    /// An output is settled in the server's order: applied entries take their waiters
    /// first, then the proposals they passed over, then those of other terms.
    #[test]
    fn settle_orders_fates() {
        let mut pending = Pending::default();
        for (index, waiter) in [(3, 'a'), (4, 'b'), (5, 'c'), (7, 'd'), (9, 'e'), (11, 'f')] {
            pending.insert(p(index, 2), waiter);
        }
        pending.insert(p(12, 3), 'g');
        let output = Output {
            messages: vec![(2, vec![1])],
            applied: vec![
                command(3, 2),
                command(4, 3),
                Applied::Snapshot {
                    index: 5,
                    term: 3,
                    data: vec![9],
                },
                Applied::Membership {
                    index: 6,
                    term: 3,
                    voters: vec![1, 2],
                },
                // 7 was empty (a refused conf change): passed over by 8.
                command(8, 3),
            ],
            reads: vec![(1, 6)],
            leader_term: Some(2),
        };
        let settled = pending.settle(output.clone());
        assert_eq!(settled.messages, output.messages);
        assert_eq!(settled.reads, output.reads);
        assert_eq!(
            settled.applied,
            vec![
                Step::Command {
                    index: 3,
                    data: vec![3],
                    fate: Some(Fate::Committed('a')),
                },
                Step::Command {
                    index: 4,
                    data: vec![4],
                    fate: Some(Fate::Displaced('b')),
                },
                Step::Snapshot {
                    index: 5,
                    data: vec![9],
                    covered: vec!['c'],
                },
                Step::Membership {
                    index: 6,
                    voters: vec![1, 2],
                    fate: None,
                },
                Step::Command {
                    index: 8,
                    data: vec![8],
                    fate: None,
                },
            ]
        );
        assert_eq!(settled.failed, vec!['d', 'g'], "passed over, other term");
        assert_eq!(pending.len(), 2);
        let settled = pending.settle(Output::default());
        assert_eq!(settled.failed, vec!['e', 'f'], "a step-down fails the rest");
        assert!(pending.is_empty());
    }
}
