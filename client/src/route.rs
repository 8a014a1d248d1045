//! `Router`: where a key/value request goes, and what to do when the cluster
//! disagrees with the client's cached configuration.
//!
//! ```text
//!   key --key_to_shard--> shard --config.shards--> gid --config.groups--> servers
//!                                                   |                        |
//!                                                   '-- leader memory -------+--> call
//!
//!   answer ----------------------------------------------------------> return it
//!   WrongGroup from the group, the shard has no owner, or every server of the group
//!   failed once (it may have left and shut down):
//!        query the latest config from the shard master; newer? retry at once
//!                                                   not newer? back off, then retry
//! ```
//!
//! The router caches the latest configuration it has seen and, per replica group of that
//! configuration, the group's servers and believed leader (`Replicas`). It fetches a
//! configuration only when it has none or the cluster says its one may be stale: a
//! group answering `WrongGroup` (it no longer owns the shard, or has not received it
//! yet), a shard with no owner, or a full round of failed attempts at a group. A configuration is only ever replaced by a newer one, and the
//! leader memory of groups that left is dropped, so the cache stays as large as one
//! configuration.
//!
//! Within a group, `call_one_round` follows leader hints (the group's NodeId
//! `i + 1` is its server `i` in the configuration) and moves on from timeouts and
//! unreachable servers, exactly as for the shard master.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use shardkv_proto::kv::Request;
use shardkv_proto::{
    Config, ConfigNum, GroupId, GroupResponse, KvError, Millis, Op, Reply, ShardId,
};

use crate::error::ClientError;
use crate::leader::Replicas;
use crate::master::MasterSession;
use crate::retry::{AttemptFailure, Progress, RetryPolicy};
use crate::service::call_one_round;
use crate::transport::Transport;

/// The reply a key/value request expects: a Get's value, or a mutation's "done".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// [`Reply::Value`].
    Value,
    /// [`Reply::Done`].
    Done,
}

/// One key/value request, its encoding (a [`shardkv_proto::GroupRequest::Kv`], made
/// when the request is stamped and resent as is) and the reply kind it expects.
#[derive(Debug, Clone)]
pub(crate) struct KvCall {
    request: Request,
    /// The encoded request, once stamped.
    bytes: Option<Vec<u8>>,
    /// The reply kind a correct answer has.
    expect: Expect,
    /// Some attempt since the request was stamped ended without telling whether it
    /// applied (`AttemptFailure::may_have_applied`: no answer, a lost connection, a
    /// bad reply, or `WrongLeader`, which a deposed leader's proposal gives).
    ambiguous: bool,
}

impl KvCall {
    /// A call of `request` (its `seen` is set when it is first sent).
    pub(crate) fn new(request: Request) -> Self {
        let expect = match request.op.is_mutation() {
            true => Expect::Done,
            false => Expect::Value,
        };
        KvCall {
            request,
            bytes: None,
            expect,
            ambiguous: false,
        }
    }

    /// Sets the request's `seen` and encodes it: before its first send, or again when
    /// no attempt so far can have applied.
    fn stamp(&mut self, seen: Millis) -> Result<Vec<u8>, ClientError> {
        self.request.seen = seen;
        self.ambiguous = false;
        let request = KvRequest::Kv(&self.request);
        bincode::serialize(&request).map_err(|e| ClientError::Encode(e.to_string()))
    }
}

/// [`shardkv_proto::GroupRequest::Kv`] over a borrowed request: the same bytes,
/// without copying the request (its value) first.
#[derive(serde::Serialize)]
enum KvRequest<'a> {
    Kv(&'a Request),
}

/// The latest clock of each shard a handle has seen in its answers, and when (on the
/// transport's clock), which its requests carry as `seen` (see
/// [`shardkv_proto::session`]); at most one entry per shard.
///
/// A request carries a shard's clock only while that reading is fresh: younger than a
/// quarter of the groups' session timeout, which every refusal states (the first write
/// to each shard is one), or than [`FRESH_BEFORE_A_REFUSAL`] until one did. A group
/// forgets a session only after a timeout of silence, so a fresh `seen` makes a refusal
/// mean that the request's attempts went on for most of a timeout. Without a fresh
/// reading a request carries 0, which no shard applies: it is refused with the shard's
/// clock, and sent again with it.
#[derive(Debug, Default)]
pub(crate) struct Clocks(Mutex<ClocksInner>);

#[derive(Debug, Default)]
struct ClocksInner {
    /// Per shard: the latest clock seen, and when.
    shards: BTreeMap<ShardId, (Millis, Duration)>,
    /// The groups' session timeout, once a refusal told it.
    timeout: Option<Millis>,
}

/// The oldest reading of a shard's clock a request carries while the groups' session
/// timeout is unknown: short, since a timeout can be (the session scenarios run 2 s).
pub(crate) const FRESH_BEFORE_A_REFUSAL: Duration = Duration::from_secs(1);

impl Clocks {
    fn lock(&self) -> std::sync::MutexGuard<'_, ClocksInner> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The `seen` a request to `shard` sent at `now` carries: the latest clock of it
    /// seen, if fresh, else 0.
    fn seen(&self, shard: ShardId, now: Duration) -> Millis {
        let clocks = self.lock();
        let quarter = clocks.timeout.map(|t| Duration::from_millis(t / 4));
        let fresh = quarter.unwrap_or(FRESH_BEFORE_A_REFUSAL);
        match clocks.shards.get(&shard) {
            Some(&(clock, at)) if now.saturating_sub(at) < fresh => clock,
            _ => 0,
        }
    }

    /// `shard`'s clock read `clock` in an answer received at `now` (0: the answer had
    /// none).
    fn saw(&self, shard: ShardId, clock: Millis, now: Duration) {
        if clock == 0 {
            return;
        }
        let mut clocks = self.lock();
        let latest = clocks.shards.entry(shard).or_default();
        if clock >= latest.0 {
            *latest = (clock, now);
        }
    }

    /// The groups' session timeout is `timeout`.
    fn learn_timeout(&self, timeout: Millis) {
        self.lock().timeout = Some(timeout);
    }
}

/// What the router reaches the cluster with, lent by the client for one operation.
#[derive(Debug)]
pub(crate) struct Link<'a, T> {
    /// The transport.
    pub(crate) transport: &'a T,
    /// The retry policy (its deadline is the caller's business).
    pub(crate) policy: &'a RetryPolicy,
    /// The session for configuration queries, shared by a handle's operations: a query
    /// runs on a copy under a number of its own and writes back what it learned of the
    /// leader.
    pub(crate) master: &'a Mutex<MasterSession>,
    /// The shards' clocks the handle has seen.
    pub(crate) clocks: &'a Clocks,
}

/// How one group ended a request's retry loop (with the shard's clock, 0 for none).
enum GroupAnswer {
    /// The answer, of the expected kind.
    Reply(Reply, Millis),
    /// A final refusal.
    Rejected(KvError, Millis),
    /// The group does not serve the key's shard now.
    WrongGroup,
    /// The shard does not know the request's session and could not tell that it never
    /// applied: the shard's clock and the group's session timeout.
    UnknownSession(Millis, Millis),
}

/// The configuration cache and leader memory of one data client. See the module docs.
/// Cheap to clone (the configuration is shared): each operation routes with a copy and
/// merges it back ([`Router::absorb`]).
#[derive(Debug, Default, Clone)]
pub(crate) struct Router {
    config: Option<Arc<Config>>,
    groups: BTreeMap<GroupId, Replicas>,
}

impl Router {
    /// The cached configuration, if one was fetched.
    pub(crate) fn config(&self) -> Option<Arc<Config>> {
        self.config.clone()
    }

    /// Takes what `other`, a copy an operation routed with, learned: its configuration
    /// and leader memory when the configuration is newer than this one's, its leader
    /// memory when it is the same (the latest operation to end wins), nothing when
    /// older.
    pub(crate) fn absorb(&mut self, other: Router) {
        let num = |router: &Router| router.config.as_ref().map(|config| config.num);
        match num(&other).cmp(&num(self)) {
            std::cmp::Ordering::Greater => *self = other,
            std::cmp::Ordering::Equal => self.groups.extend(other.groups),
            std::cmp::Ordering::Less => {}
        }
    }

    /// Sends `call` to the group serving its key until it answers, refreshing the
    /// configuration as the cluster demands. Unbounded: the caller races it against
    /// its deadline.
    ///
    /// The request is stamped with the key's shard's latest clock the handle has seen
    /// just before it is first sent (0 without a fresh one). A group that refuses it as
    /// of an unknown session gets it again, stamped with the clock of the refusal, when
    /// no attempt so far can have applied (every attempt carried 0, or each was refused
    /// or never proposed); otherwise the outcome is unknown
    /// ([`ClientError::OutcomeUnknown`]).
    pub(crate) async fn send<T: Transport>(
        &mut self,
        link: &mut Link<'_, T>,
        call: &mut KvCall,
        progress: &mut Progress,
    ) -> Result<Reply, ClientError> {
        let expect = call.expect;
        let (transport, policy) = (link.transport, link.policy);
        loop {
            let Some(config) = &self.config else {
                self.refresh(link, progress).await?;
                continue;
            };
            let num = config.num;
            let shard = config.shard_of_key(call.request.op.key());
            let owner = config.owner(shard);
            let servers = owner.and_then(|gid| Some((gid, config.servers(gid)?)));
            let Some((gid, servers)) = servers else {
                progress.last_failure = Some(AttemptFailure::NoOwner { shard, config: num });
                self.maybe_back_off(link, progress, num).await?;
                continue;
            };
            let bytes = match call.bytes.take() {
                Some(bytes) => bytes,
                None => call.stamp(link.clocks.seen(shard, transport.now()))?,
            };
            let replicas = group_replicas(&mut self.groups, gid, servers, transport);
            let decode = |reply: &[u8]| decode(reply, expect);
            replicas.start_operation();
            let before = progress.ambiguous;
            let answer = call_one_round(transport, replicas, policy, &bytes, progress, decode);
            let answer = answer.await;
            call.bytes = Some(bytes);
            call.ambiguous |= progress.ambiguous > before;
            match answer {
                Some(GroupAnswer::Reply(reply, clock)) => {
                    link.clocks.saw(shard, clock, transport.now());
                    return Ok(reply);
                }
                Some(GroupAnswer::Rejected(error, clock)) => {
                    link.clocks.saw(shard, clock, transport.now());
                    return Err(ClientError::Rejected(error));
                }
                Some(GroupAnswer::UnknownSession(clock, timeout)) => {
                    link.clocks.saw(shard, clock, transport.now());
                    link.clocks.learn_timeout(timeout);
                    // A request sent without a reading never applies: only one with a
                    // reading and an attempt that may have applied has an unknown fate.
                    if call.ambiguous && call.request.seen != 0 {
                        let attempts = progress.attempts;
                        return Err(ClientError::OutcomeUnknown { attempts });
                    }
                    if clock == 0 {
                        // A shard without a clock cannot be given a reading that proves
                        // anything: a server fault, not worth retrying.
                        let error = KvError::UnknownSession { clock, timeout };
                        return Err(ClientError::Rejected(error));
                    }
                    // No attempt can have applied: the request starts over, stamped with
                    // the refusal's clock.
                    tracing::debug!(gid, shard, clock, "unknown session: stamped again");
                    call.bytes = Some(call.stamp(clock)?);
                }
                Some(GroupAnswer::WrongGroup) => {
                    tracing::debug!(gid, shard, config = num, "wrong group");
                    progress.last_failure = Some(AttemptFailure::WrongGroup { gid });
                    self.maybe_back_off(link, progress, num).await?;
                }
                // Every server of the group failed once: the group may have left and
                // shut down, so ask the master before trying it again.
                None => self.maybe_back_off(link, progress, num).await?,
            }
        }
    }

    /// After configuration `stale` misrouted a request: fetches the latest, and backs
    /// off when the shard master has nothing newer (the group is still receiving the
    /// shard, or no group owns it yet), so the client neither spins nor waits needlessly.
    async fn maybe_back_off<T: Transport>(
        &mut self,
        link: &mut Link<'_, T>,
        progress: &mut Progress,
        stale: ConfigNum,
    ) -> Result<(), ClientError> {
        self.refresh(link, progress).await?;
        if self.config.as_ref().is_some_and(|c| c.num <= stale) {
            link.transport.sleep(progress.next_delay()).await;
        }
        Ok(())
    }

    /// Queries the latest configuration and adopts it if it is newer than the cached
    /// one, dropping the leader memory of groups it no longer lists.
    pub(crate) async fn refresh<T: Transport>(
        &mut self,
        link: &mut Link<'_, T>,
        progress: &mut Progress,
    ) -> Result<(), ClientError> {
        let query = Op::Query { num: None };
        let shared = || link.master.lock().unwrap_or_else(PoisonError::into_inner);
        let mut master = shared().reserve();
        let answer = (master.request(link.transport, link.policy, query, progress)).await;
        shared().learn_leader(&master);
        let latest = answer?;
        if self.config.as_ref().is_some_and(|c| c.num >= latest.num) {
            return Ok(());
        }
        tracing::debug!(config = latest.num, "new configuration");
        self.groups.retain(|gid, _| latest.groups.contains_key(gid));
        self.config = Some(Arc::new(latest));
        Ok(())
    }
}

/// Group `gid`'s replicas at `servers`: the remembered ones (and their leader) when the
/// group still lists the same servers, else fresh ones starting at a random server.
fn group_replicas<'a, T: Transport>(
    groups: &'a mut BTreeMap<GroupId, Replicas>,
    gid: GroupId,
    servers: &[String],
    transport: &T,
) -> &'a mut Replicas {
    let stale = groups.get(&gid).is_some_and(|r| r.servers() != servers);
    if stale {
        groups.remove(&gid);
    }
    groups.entry(gid).or_insert_with(|| {
        // A checked configuration lists at least one server per member group.
        Replicas::new(servers.to_vec(), || transport.random_u64())
            .expect("a member group has servers (Config::check)")
    })
}

/// A group's reply: an answer of the expected kind, a final refusal, or `WrongGroup`;
/// `WrongLeader` and anything malformed are failed attempts.
fn decode(reply: &[u8], expect: Expect) -> Result<GroupAnswer, AttemptFailure> {
    let response: GroupResponse =
        bincode::deserialize(reply).map_err(|e| AttemptFailure::BadReply(e.to_string()))?;
    let GroupResponse::Kv(response, clock) = response else {
        return Err(AttemptFailure::BadReply("a migration reply".into()));
    };
    match response {
        Ok(reply) => match (&reply, expect) {
            (Reply::Value(_), Expect::Value) | (Reply::Done, Expect::Done) => {
                Ok(GroupAnswer::Reply(reply, clock))
            }
            _ => Err(AttemptFailure::BadReply(format!(
                "{reply:?} answers a request expecting {expect:?}"
            ))),
        },
        Err(KvError::WrongLeader { hint }) => Err(AttemptFailure::WrongLeader { hint }),
        Err(KvError::NotLeader { hint }) => Err(AttemptFailure::NotLeader { hint }),
        Err(KvError::WrongGroup) => Ok(GroupAnswer::WrongGroup),
        Err(KvError::UnknownSession { clock, timeout }) => {
            Ok(GroupAnswer::UnknownSession(clock, timeout))
        }
        Err(error) => Ok(GroupAnswer::Rejected(error, clock)),
    }
}

#[cfg(test)]
mod tests {
    use shardkv_proto::GroupRequest;

    use super::*;

    /// A borrowed request encodes exactly as the owned `GroupRequest::Kv` a server
    /// decodes.
    #[test]
    fn borrowed_requests_encode_as_group_requests() {
        let request = Request {
            client: 7,
            seq: 3,
            seen: 99,
            op: shardkv_proto::kv::Op::Append {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            },
        };
        let owned = bincode::serialize(&GroupRequest::Kv(request.clone())).expect("encodes");
        let borrowed = bincode::serialize(&KvRequest::Kv(&request)).expect("encodes");
        assert_eq!(borrowed, owned);
    }

    fn encode(response: GroupResponse) -> Vec<u8> {
        bincode::serialize(&response).expect("encode")
    }

    /// Answers of the expected kind pass, the other kind and foreign or undecodable
    /// replies are bad, leaders and groups are told apart, and the rest is final.
    #[test]
    fn decode_sorts_replies() {
        let value = encode(GroupResponse::Kv(Ok(Reply::Value(Some(b"v".to_vec()))), 5));
        let done = encode(GroupResponse::Kv(Ok(Reply::Done), 5));
        let migration = encode(GroupResponse::Migration(Err(KvError::WrongGroup)));
        let leader = encode(GroupResponse::Kv(
            Err(KvError::WrongLeader { hint: Some(2) }),
            0,
        ));
        let group = encode(GroupResponse::Kv(Err(KvError::WrongGroup), 0));
        let too_large = KvError::ValueTooLarge { len: 9, max: 8 };
        let rejected = encode(GroupResponse::Kv(Err(too_large.clone()), 5));
        let unknown = encode(GroupResponse::Kv(
            Err(KvError::UnknownSession {
                clock: 7,
                timeout: 9,
            }),
            7,
        ));

        assert!(matches!(
            decode(&value, Expect::Value),
            Ok(GroupAnswer::Reply(Reply::Value(Some(_)), 5))
        ));
        assert!(matches!(
            decode(&done, Expect::Done),
            Ok(GroupAnswer::Reply(Reply::Done, 5))
        ));
        for (bytes, expect) in [
            (&value, Expect::Done),
            (&done, Expect::Value),
            (&migration, Expect::Done),
            (&vec![0xff; 3], Expect::Value),
        ] {
            let result = decode(bytes, expect);
            assert!(
                matches!(result, Err(AttemptFailure::BadReply(_))),
                "{bytes:?} for {expect:?}"
            );
        }
        assert!(matches!(
            decode(&leader, Expect::Done),
            Err(AttemptFailure::WrongLeader { hint: Some(2) })
        ));
        assert!(matches!(
            decode(&group, Expect::Done),
            Ok(GroupAnswer::WrongGroup)
        ));
        assert!(matches!(
            decode(&rejected, Expect::Done),
            Ok(GroupAnswer::Rejected(error, 5)) if error == too_large
        ));
        assert!(matches!(
            decode(&unknown, Expect::Done),
            Ok(GroupAnswer::UnknownSession(7, 9))
        ));
    }
}
