//! Helpers to build requests and drive a [`ShardMaster`] entry by entry.

use std::collections::BTreeMap;

use shardmaster::Replicated;
use shardmaster::{Config, GroupId, Op, Request, Response, Seq, ShardMaster};

/// Drives one state machine with consecutive log indices.
pub struct Driver {
    /// The state machine under test.
    pub master: ShardMaster,
    /// The index of the next entry.
    pub next_index: u64,
    next_seq: Seq,
}

impl Driver {
    /// A driver over a fresh state machine with `nshards` shards.
    pub fn new(nshards: usize) -> Self {
        Driver::over(ShardMaster::new(nshards))
    }

    /// A driver over `master`, continuing after its applied index.
    pub fn over(master: ShardMaster) -> Self {
        let next_index = master.applied_index() + 1;
        Driver {
            master,
            next_index,
            next_seq: 1,
        }
    }

    /// Applies `request` at the next index.
    pub fn apply(&mut self, request: &Request) -> Response {
        let index = self.next_index;
        self.next_index += 1;
        // One millisecond of cluster time per entry.
        self.master.apply(index, index, request)
    }

    /// Applies `op` as a fresh request of client 1 (a new seq each time).
    pub fn op(&mut self, op: Op) -> Response {
        let request = Request {
            client: 1,
            seq: self.next_seq,
            op,
        };
        self.next_seq += 1;
        self.apply(&request)
    }

    /// Joins `gids`, each with servers named after it; panics if it fails.
    pub fn join(&mut self, gids: &[GroupId]) -> Config {
        self.op(join_op(gids)).expect("join succeeds")
    }

    /// `gids` leave; panics if it fails.
    pub fn leave(&mut self, gids: &[GroupId]) -> Config {
        self.op(Op::Leave {
            gids: gids.to_vec(),
        })
        .expect("leave succeeds")
    }

    /// Queries configuration `num`.
    pub fn query(&mut self, num: Option<u64>) -> Config {
        self.op(Op::Query { num }).expect("query succeeds")
    }
}

/// The servers the helpers give group `gid`.
pub fn servers(gid: GroupId) -> Vec<String> {
    (0..3).map(|i| format!("server-{gid}-{i}")).collect()
}

/// A Join of `gids` with [`servers`].
pub fn join_op(gids: &[GroupId]) -> Op {
    Op::Join {
        groups: gids
            .iter()
            .map(|&gid| (gid, servers(gid)))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// How many shards change owner between `a` and `b`.
pub fn moved(a: &[GroupId], b: &[GroupId]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x != y).count()
}
