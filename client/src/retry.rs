//! Retry policy: per-call timeouts, bounded exponential backoff, overall deadlines.
//!
//! A client operation is a loop of *attempts* (one RPC each) grouped into *rounds*.
//! A round ends after as many consecutive failed attempts as there are servers to try
//! (the [`crate::leader`] cursor counts them); between rounds the client sleeps a
//! backoff drawn between half a bound and the bound, the bound starting at
//! [`RetryPolicy::backoff_initial`] and doubling up to [`RetryPolicy::backoff_max`]:
//!
//! ```text
//!   attempt attempt attempt | sleep 5-10ms | attempt attempt attempt | sleep 10-20ms | ...
//!   \------ round 1 ------/                 \------ round 2 ------/   ... capped at 500ms
//! ```
//!
//! Within a round the client moves on at once, so failing over to a new leader costs
//! no sleep; the backoff only paces a client that has tried everyone and failed, so a
//! cluster without a leader is not hammered.
//!
//! The loop stops at the first definitive answer, or when the caller's overall
//! deadline ([`RetryPolicy::deadline`]) passes: the whole operation is raced against a
//! [`crate::Transport::sleep`] of that length, and an in-flight call is dropped when
//! the sleep wins. The default deadline is [`DEFAULT_DEADLINE`] (30 s); with
//! `deadline: None` the loop retries until it gets an answer, as 6.824's clerk does, and
//! the backoff keeps that from spinning.
//!
//! Caveats:
//! - The deadline covers one operation, not a session; each operation starts a fresh
//!   backoff.
//! - The jitter is drawn from the operation's session (client id and sequence number),
//!   not from a global source: clients that failed together come back at different
//!   times, and a simulator run stays reproducible from its seed.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use futures::future::{select, Either};
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use shardkv_proto::{ConfigNum, GroupId, NodeId, ShardId};

use crate::transport::{Transport, TransportError};

/// The default per-call RPC timeout: 1 s.
///
/// A shard-master request commits through Raft before it is answered, which takes a
/// few heartbeat intervals on a healthy cluster (tens of milliseconds) and longer under
/// load. One second leaves a wide margin for that while keeping the failover from a
/// crashed leader, which costs one timeout, short enough for an operator's command.
pub const DEFAULT_RPC_TIMEOUT: Duration = Duration::from_secs(1);

/// The default first backoff between rounds: 10 ms.
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_millis(10);

/// The default longest backoff between rounds: 500 ms (about one Raft election).
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_millis(500);

/// The default overall deadline of one operation: 30 s, long enough to ride out a
/// leader election, a configuration change and a replica's restart, short enough that a
/// caller hears of a cluster that cannot answer.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);

/// The shortest sleep between rounds, whatever the policy says, so that a
/// transport failing instantly cannot make the retry loop spin.
pub const BACKOFF_FLOOR: Duration = Duration::from_millis(1);

/// How a client times its attempts and when it gives up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// How long one RPC may take before it counts as failed. Default
    /// [`DEFAULT_RPC_TIMEOUT`].
    pub rpc_timeout: Duration,
    /// The bound of the sleep after the first failed round (the sleep is drawn between
    /// half of it and all of it). Default [`DEFAULT_BACKOFF_INITIAL`]; raised to
    /// [`BACKOFF_FLOOR`] if smaller.
    pub backoff_initial: Duration,
    /// The bound of the longest sleep between rounds. Default [`DEFAULT_BACKOFF_MAX`]; raised to
    /// `backoff_initial` if smaller.
    pub backoff_max: Duration,
    /// How long one operation may take in all before it fails with a timeout error.
    /// Default [`DEFAULT_DEADLINE`]; `None` retries until an answer comes, like 6.824's
    /// clerk.
    pub deadline: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            rpc_timeout: DEFAULT_RPC_TIMEOUT,
            backoff_initial: DEFAULT_BACKOFF_INITIAL,
            backoff_max: DEFAULT_BACKOFF_MAX,
            deadline: Some(DEFAULT_DEADLINE),
        }
    }
}

/// Why one attempt (one RPC to one server) brought no usable answer. Reported as the
/// last failure when an operation times out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttemptFailure {
    /// The transport produced no reply.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The server answered that it is not the leader (and may have proposed the request
    /// before it lost the lead).
    #[error("not the leader (hint: {hint:?})")]
    WrongLeader {
        /// The server it believes leads, if any.
        hint: Option<NodeId>,
    },
    /// The server answered that it is not the leader and did not propose the request.
    #[error("not the leader, request not proposed (hint: {hint:?})")]
    NotLeader {
        /// The server it believes leads, if any.
        hint: Option<NodeId>,
    },
    /// The reply did not decode, or decoded to something malformed (a configuration
    /// failing its invariant check, an answer of the wrong kind). Treated as a lost reply.
    #[error("bad reply: {0}")]
    BadReply(String),
    /// The replica group asked does not serve the key's shard now (the client's
    /// configuration is stale, or the group is still receiving the shard). The client
    /// re-queries the shard master and tries again.
    #[error("group {gid} does not serve the key's shard now")]
    WrongGroup {
        /// The group that refused.
        gid: GroupId,
    },
    /// The latest configuration the client has assigns the key's shard to no group (no
    /// group has joined yet, or all have left). The client waits for a newer one.
    #[error("shard {shard} has no owner in configuration {config}")]
    NoOwner {
        /// The key's shard.
        shard: ShardId,
        /// The configuration consulted.
        config: ConfigNum,
    },
}

impl AttemptFailure {
    /// The leader hint this failure carries, if any.
    pub(crate) fn leader_hint(&self) -> Option<NodeId> {
        match self {
            AttemptFailure::WrongLeader { hint } | AttemptFailure::NotLeader { hint } => *hint,
            _ => None,
        }
    }

    /// Whether the attempt may have taken effect: false only when the request certainly
    /// did not reach a state machine (not delivered, or refused before any proposal).
    pub(crate) fn may_have_applied(&self) -> bool {
        !matches!(
            self,
            AttemptFailure::Transport(TransportError::Unreachable)
                | AttemptFailure::NotLeader { .. }
                | AttemptFailure::WrongGroup { .. }
                | AttemptFailure::NoOwner { .. }
        )
    }
}

/// What one operation's retry loops have done so far, across every service it calls,
/// and the backoff they share; read after a deadline cut the operation short.
#[derive(Debug)]
pub(crate) struct Progress {
    /// How many RPCs were started.
    pub(crate) attempts: u64,
    /// How many of them failed in a way that may have taken effect
    /// ([`AttemptFailure::may_have_applied`]).
    pub(crate) ambiguous: u64,
    /// Why the most recent finished attempt failed, if any did.
    pub(crate) last_failure: Option<AttemptFailure>,
    backoff: Backoff,
}

impl Progress {
    /// A fresh operation under `policy`: no attempts, the first backoff next, its
    /// sleeps drawn from `seed`.
    pub(crate) fn new(policy: &RetryPolicy, seed: u64) -> Self {
        Progress {
            attempts: 0,
            ambiguous: 0,
            last_failure: None,
            backoff: Backoff::new(policy, seed),
        }
    }

    /// The backoff sleep to take now (see [`Backoff::next_delay`]).
    pub(crate) fn next_delay(&mut self) -> Duration {
        self.backoff.next_delay()
    }

    /// The account of an operation cut short by `deadline`, for its timeout error.
    pub(crate) fn expire(self, deadline: Option<Duration>) -> Expired {
        let deadline = deadline.unwrap_or_default();
        tracing::debug!(attempts = self.attempts, ?deadline, "deadline passed");
        Expired {
            deadline,
            attempts: self.attempts,
            last_failure: self.last_failure,
        }
    }
}

/// What a timeout error reports about an operation whose deadline passed.
#[derive(Debug)]
pub(crate) struct Expired {
    /// The deadline that passed.
    pub(crate) deadline: Duration,
    /// How many RPCs were started.
    pub(crate) attempts: u64,
    /// Why the most recent finished attempt failed, if any finished.
    pub(crate) last_failure: Option<AttemptFailure>,
}

/// The sleeps between rounds: each drawn between half a bound and the bound, the bound
/// `initial`, doubling, capped at `max` ("equal jitter"): clients that failed together
/// (a leader's crash, a group's move) do not all come back at the same instant.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    bound: Duration,
    max: Duration,
    /// The draws: seeded by the caller (from its session), so the simulator's runs stay
    /// reproducible and draw nothing from its world.
    jitter: Xoshiro256PlusPlus,
}

impl Backoff {
    /// A fresh backoff for one operation under `policy`, its sleeps drawn from `seed`.
    pub(crate) fn new(policy: &RetryPolicy, seed: u64) -> Self {
        let initial = policy.backoff_initial.max(BACKOFF_FLOOR);
        Backoff {
            bound: initial,
            max: policy.backoff_max.max(initial),
            jitter: Xoshiro256PlusPlus::seed_from_u64(seed),
        }
    }

    /// The sleep to take now, at least [`BACKOFF_FLOOR`]; the following one's bound
    /// doubles, up to the cap.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let bound = self.bound;
        self.bound = self.bound.saturating_mul(2).min(self.max);
        let half = bound / 2;
        let extra = self
            .jitter
            .random_range(0..=(bound - half).as_nanos() as u64);
        (half + Duration::from_nanos(extra)).max(BACKOFF_FLOOR)
    }
}

/// Runs `work` to completion, or until `deadline` passes on the transport's clock:
/// `None` when the deadline won (the work is dropped, cancelling any call in flight).
/// Without a deadline the work runs to completion.
pub(crate) async fn within_deadline<T, W>(
    transport: &T,
    deadline: Option<Duration>,
    work: W,
) -> Option<W::Output>
where
    T: Transport,
    W: Future,
{
    match deadline {
        None => Some(work.await),
        // `select` polls its first future first, so work that is ready at the same poll
        // as the timer wins; the loser is dropped on return, cancelling a call in flight.
        Some(deadline) => match select(pin!(work), pin!(transport.sleep(deadline))).await {
            Either::Left((output, _timer)) => Some(output),
            Either::Right(((), _work)) => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Each sleep of the default backoff is between half its bound and the bound, the
    /// bound doubling from 10 ms to its 500 ms cap; the draws differ by seed.
    #[test]
    fn backoff_doubles_to_cap_with_jitter() {
        let bounds = [10, 20, 40, 80, 160, 320, 500, 500, 500].map(ms);
        let delays = |seed| {
            let mut backoff = Backoff::new(&RetryPolicy::default(), seed);
            (0..9).map(|_| backoff.next_delay()).collect::<Vec<_>>()
        };
        for seed in 0..50 {
            for (delay, bound) in delays(seed).into_iter().zip(bounds) {
                assert!(
                    bound / 2 <= delay && delay <= bound,
                    "{delay:?} for {bound:?}"
                );
            }
        }
        assert_ne!(delays(1), delays(2), "jitter");
        assert_eq!(delays(3), delays(3), "drawn from the seed only");
    }

    /// Degenerate policies are repaired: a zero initial backoff cannot spin, and a cap
    /// below the initial value does not shrink the sleep's bound.
    #[test]
    fn backoff_repairs_degenerate_policies() {
        let cases = [
            ((0, 0), [1, 1, 1]),
            ((0, 3), [1, 2, 3]),
            ((50, 10), [50, 50, 50]),
        ];
        for ((initial, max), bounds) in cases {
            let policy = RetryPolicy {
                backoff_initial: ms(initial),
                backoff_max: ms(max),
                ..RetryPolicy::default()
            };
            let mut backoff = Backoff::new(&policy, 7);
            for bound in bounds.map(ms) {
                let delay = backoff.next_delay();
                assert!(
                    BACKOFF_FLOOR <= delay && delay <= bound,
                    "policy {initial}/{max} ms: {delay:?} for {bound:?}"
                );
            }
        }
    }
}
