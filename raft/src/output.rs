//! What one `Replica::advance` hands back to its driver.
//!
//! ```text
//!   advance() ──► Output { messages ──► network (in order, any time: persistence is done)
//!                          applied  ──► state machine (in log order, snapshot first)
//!                          reads    ──► serve once applied >= index
//!                          leader_term ──► proposals of other terms will not commit }
//! ```

use crate::{Index, NodeId, Term};

/// Everything the driver must do after one `Replica::advance`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// Encoded raft messages `(to, bytes)`, to send in order. Everything they promise is
    /// already durable, so they may go out at once.
    pub messages: Vec<(NodeId, Vec<u8>)>,
    /// Committed log content, in log order, for the state machine. After a restart (or
    /// when the leader sends one) an [`Applied::Snapshot`] comes first.
    pub applied: Vec<Applied>,
    /// `(ctx, read index)` of completed `read_index` calls: a read for `ctx` may be
    /// served once the state machine has applied `read index`.
    pub reads: Vec<(u64, Index)>,
    /// The term this replica leads in after the advance; `None` when it does not lead.
    /// A proposal of any other term may or may not commit (the next leader may hold it):
    /// [`crate::Pending`] fails its waiter, and callers dedupe retried requests.
    pub leader_term: Option<Term>,
}

impl Output {
    /// True when there is nothing to do (the leader term asks for nothing by itself).
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.applied.is_empty() && self.reads.is_empty()
    }
}

/// One unit of committed log content for the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// A normal, non-empty entry: apply `data`. (Leader no-op entries are not reported.)
    Command {
        /// Log index of the entry.
        index: Index,
        /// Term of the entry; with `index` it identifies a `Proposal`.
        term: Term,
        /// The proposed bytes.
        data: Vec<u8>,
    },
    /// The state machine must replace its whole state with `data`, the state as of
    /// `index` (a restart restoring the local snapshot, or a snapshot from the leader).
    Snapshot {
        /// Last log index the snapshot covers.
        index: Index,
        /// Term of that entry.
        term: Term,
        /// State machine bytes given to `Replica::snapshot`.
        data: Vec<u8>,
    },
    /// A membership change applied; `voters` is the new (incoming) voter set, sorted.
    /// A joint change applies twice: entering the joint configuration, then leaving it.
    Membership {
        /// Log index of the conf change entry.
        index: Index,
        /// Term of the entry.
        term: Term,
        /// Voters after the change, sorted.
        voters: Vec<NodeId>,
    },
}

impl Applied {
    /// Log index this item brings the state machine to.
    pub fn index(&self) -> Index {
        match self {
            Applied::Command { index, .. }
            | Applied::Snapshot { index, .. }
            | Applied::Membership { index, .. } => *index,
        }
    }
}
