//! The retry loop every request to a replicated service runs, shared by the shard
//! master's clients ([`crate::Admin`], and the [`crate::Client`]'s configuration
//! queries) and the replica groups' (the [`crate::Client`]'s reads and writes).
//!
//! One request, already encoded, is sent to the believed leader until a reply ends the
//! loop. What ends it is the caller's business: a `decode` function turns reply bytes
//! into an answer (success, a final rejection, or anything else the caller must act on,
//! such as a replica group's "wrong group") or into an [`AttemptFailure`], after which
//! the loop moves on:
//!
//! ```text
//!   +--> call(current server, bytes, rpc_timeout) --reply--> decode --Ok(answer)--> return
//!   |        | timeout / unreachable                            | Err(WrongLeader{hint})
//!   |        v                                                  v Err(BadReply)
//!   '---- replicas.failed(hint): hinted server or the next; after a full round, back off
//! ```
//!
//! The loop is unbounded by itself: the caller races the whole operation against its
//! deadline (see [`crate::retry`]), which drops the loop and any call in flight. Every
//! retry resends the identical bytes, so a request carrying `(client, seq)` takes
//! effect at most once however many copies reach the servers. It counts the failures
//! after which the request may have taken effect (`Progress::ambiguous`), for the data
//! client's handling of refusals.
//!
//! The loop logs without naming the request; callers run it inside a span that does
//! (`shard_master{client seq}`, `kv{client seq}`).

use crate::leader::{Next, Replicas};
use crate::retry::{AttemptFailure, Progress, RetryPolicy};
use crate::transport::Transport;

/// Sends `request` to `replicas` until `decode` accepts a reply, counting attempts and
/// failures in `progress` and backing off between rounds with its backoff.
pub(crate) async fn call_until_answer<T, A>(
    transport: &T,
    replicas: &mut Replicas,
    policy: &RetryPolicy,
    request: &[u8],
    progress: &mut Progress,
    decode: impl Fn(&[u8]) -> Result<A, AttemptFailure>,
) -> A
where
    T: Transport,
{
    replicas.start_operation();
    loop {
        if let Some(answer) =
            call_one_round(transport, replicas, policy, request, progress, &decode).await
        {
            return answer;
        }
        transport.sleep(progress.next_delay()).await;
    }
}

/// Like [`call_until_answer`], but gives up with `None` after one full round of failed
/// attempts (every server tried once, hints followed) instead of backing off, so the
/// caller can reconsider where the request should go: the data client asks the shard
/// master whether the group it tried still owns the shard (a group that left may be
/// gone for good), as 6.824's clerk re-queries after each pass over a group.
pub(crate) async fn call_one_round<T, A>(
    transport: &T,
    replicas: &mut Replicas,
    policy: &RetryPolicy,
    request: &[u8],
    progress: &mut Progress,
    decode: impl Fn(&[u8]) -> Result<A, AttemptFailure>,
) -> Option<A>
where
    T: Transport,
{
    loop {
        let server = replicas.current();
        progress.attempts += 1;
        let reply = transport
            .call(server, request.to_vec(), policy.rpc_timeout)
            .await;
        let failure = match reply.map_err(AttemptFailure::from).and_then(|r| decode(&r)) {
            Ok(answer) => return Some(answer),
            Err(failure) => failure,
        };
        if let AttemptFailure::BadReply(why) = &failure {
            tracing::warn!(server, why = why.as_str(), "bad reply");
        } else {
            tracing::debug!(server, attempt = progress.attempts, %failure, "attempt failed");
        }
        let hint = failure.leader_hint();
        progress.ambiguous += u64::from(failure.may_have_applied());
        progress.last_failure = Some(failure);
        if replicas.failed(hint) == Next::BackOff {
            return None;
        }
    }
}
