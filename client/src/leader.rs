//! Which server to try next: leader memory, leader hints, and round counting.
//!
//! A replicated service (the shard master, or one replica group) answers only at its
//! leader. The client keeps a `LeaderCursor` per service: the index of the server it
//! believes leads. It starts at a random server (so that many short-lived clients, such
//! as command-line invocations, do not all probe the same dead server first) and, after
//! a success, stays on the server that answered.
//!
//! After a failed attempt the cursor moves as [`shardkv_proto::leader::next_server`]
//! says, the rule the replica groups' own calls follow too:
//!
//! - to the hinted server, when the server said "not the leader, try node N" and N
//!   names a server in the list other than the one just tried;
//! - otherwise to the next server in the list, wrapping around.
//!
//! # Node ids and addresses
//!
//! Leader hints are Raft [`NodeId`]s, and the client knows servers by address. The
//! convention, shared with the servers, is that **NodeId `i + 1` is `servers[i]`**: the
//! shard master started with `--id 1` listens at the first address of the masters list,
//! and so on (Raft reserves id 0 for "none"). A hint of 0 or past the end of the list
//! is ignored and the cursor moves on as if there were no hint.
//!
//! # Rounds
//!
//! The cursor counts consecutive failures; after as many failures as there are servers
//! it reports that a round is over and the caller should back off (see
//! [`crate::retry`]). Hints count too, so two servers pointing at each other with stale
//! hints cannot keep the client busy without pause.

use std::sync::Arc;

use shardkv_proto::leader::next_server;
use shardkv_proto::NodeId;

/// Re-exported for the crate's public API; defined next to [`next_server`] in
/// `shardkv-proto`, which the servers share.
pub use shardkv_proto::leader::node_index;

/// What the caller should do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Try [`LeaderCursor::current`] at once.
    RetryNow,
    /// A round is over: sleep the backoff, then try [`LeaderCursor::current`].
    BackOff,
}

/// The believed leader of one replicated service, and the failures of the current round.
#[derive(Debug, Clone)]
pub(crate) struct LeaderCursor {
    servers: usize,
    current: usize,
    failures_in_round: usize,
}

impl LeaderCursor {
    /// A cursor over `servers` servers, starting at index `random % servers`.
    ///
    /// # Panics
    /// If `servers` is 0 (callers check for an empty list first and report it).
    pub(crate) fn new(servers: usize, random: u64) -> Self {
        assert!(servers > 0, "a leader cursor needs at least one server");
        // The remainder is below `servers`, a usize, so the cast back cannot truncate.
        let current = (random % servers as u64) as usize;
        LeaderCursor {
            servers,
            current,
            failures_in_round: 0,
        }
    }

    /// The index of the server to try next.
    pub(crate) fn current(&self) -> usize {
        self.current
    }

    /// Starts a new operation: its first round begins with no failures counted.
    pub(crate) fn start_operation(&mut self) {
        self.failures_in_round = 0;
    }

    /// Notes that the attempt at [`Self::current`] failed, with the server's leader hint
    /// if it gave one, moves to the next server to try, and says whether to back off.
    pub(crate) fn failed(&mut self, hint: Option<NodeId>) -> Next {
        self.current = next_server(self.current, self.servers, hint);
        self.failures_in_round += 1;
        if self.failures_in_round >= self.servers {
            self.failures_in_round = 0;
            Next::BackOff
        } else {
            Next::RetryNow
        }
    }
}

/// The servers of one replicated service (the shard master, or one replica group) and
/// the cursor over them: everything the retry loop needs to pick its next server. Cheap
/// to clone (the list is shared), as every operation of a shared handle does.
#[derive(Debug, Clone)]
pub(crate) struct Replicas {
    servers: Arc<[String]>,
    cursor: LeaderCursor,
}

impl Replicas {
    /// The service at `servers` (`servers[i]` has NodeId `i + 1`), starting at a server
    /// drawn from `random`, which is called only for a non-empty list; `None` for an
    /// empty one.
    pub(crate) fn new(servers: Vec<String>, random: impl FnOnce() -> u64) -> Option<Self> {
        if servers.is_empty() {
            return None;
        }
        let cursor = LeaderCursor::new(servers.len(), random());
        let servers = servers.into();
        Some(Replicas { servers, cursor })
    }

    /// Every server, in NodeId order.
    pub(crate) fn servers(&self) -> &[String] {
        &self.servers
    }

    /// The address of the server to try next.
    pub(crate) fn current(&self) -> &str {
        &self.servers[self.cursor.current()]
    }

    /// See [`LeaderCursor::start_operation`].
    pub(crate) fn start_operation(&mut self) {
        self.cursor.start_operation();
    }

    /// See [`LeaderCursor::failed`].
    pub(crate) fn failed(&mut self, hint: Option<NodeId>) -> Next {
        self.cursor.failed(hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cursor starts at a random position reduced modulo the list length.
    #[test]
    fn starts_at_random_position() {
        assert_eq!(LeaderCursor::new(3, 0).current(), 0);
        assert_eq!(LeaderCursor::new(3, 7).current(), 1);
        assert_eq!(LeaderCursor::new(1, u64::MAX).current(), 0);
    }

    /// Usable hints are followed, useless ones (self, 0, out of range) fall back to the
    /// next server, and every third failure of three servers ends a round.
    #[test]
    fn follows_hints_and_counts_rounds() {
        let mut cursor = LeaderCursor::new(3, 0);
        let steps = [
            // (hint, expected current after, expected next)
            (Some(3), 2, Next::RetryNow),
            (Some(3), 0, Next::RetryNow),
            (Some(0), 1, Next::BackOff),
            (Some(9), 2, Next::RetryNow),
            (None, 0, Next::RetryNow),
            (Some(2), 1, Next::BackOff),
        ];
        for (step, (hint, current, next)) in steps.into_iter().enumerate() {
            assert_eq!(cursor.failed(hint), next, "step {step}");
            assert_eq!(cursor.current(), current, "step {step}");
        }
    }

    /// An empty service has no replicas and draws no random number; a non-empty one
    /// starts where the random number says.
    #[test]
    fn replicas_of_a_service() {
        let none = Replicas::new(Vec::new(), || panic!("drew a number for no servers"));
        assert!(none.is_none());
        let servers = vec!["a".to_string(), "b".to_string()];
        let replicas = Replicas::new(servers.clone(), || 3).expect("two servers");
        assert_eq!(replicas.current(), "b");
        assert_eq!(replicas.servers(), servers.as_slice());
    }

    /// A new operation starts a fresh round but keeps the remembered leader.
    #[test]
    fn start_operation_resets_round_only() {
        let mut cursor = LeaderCursor::new(3, 0);
        cursor.failed(None);
        cursor.failed(None);
        cursor.start_operation();
        assert_eq!(cursor.current(), 2);
        assert_eq!(cursor.failed(None), Next::RetryNow);
        assert_eq!(cursor.failed(None), Next::RetryNow);
        assert_eq!(cursor.failed(None), Next::BackOff);
    }
}
