//! Bad requests get a typed error and create no configuration: every invalid Join, Leave,
//! Move, Abandon and Holder query goes through the real `Admin` to the replicated master, must come back as
//! `AdminError::Rejected` with exactly the expected `MasterError`, and must leave the
//! latest configuration (on the clerk's view and on every replica) where it was. Then
//! exactly-once at the protocol level: a retried request gets its original answer, and an
//! older one is refused as stale.

use std::collections::BTreeMap;
use std::time::Duration;

use shardkv_client::{Admin, AdminError, Transport};
use shardkv_proto::master::{MAX_ADDRESS_BYTES, MAX_GROUPS, MAX_SERVERS_PER_GROUP};
use shardkv_proto::{Config, GroupId, MasterError, Op, Request, Response};

use super::checks::{check_replicas_agree, check_same_config};
use super::clerk::group;
use super::cluster::{Cluster, AGREE_TIMEOUT, REPLICAS};
use super::lab::{MasterLab, LAB_NSHARDS};
use crate::scenario::Outcome;
use crate::sim_transport::SimTransport;

/// Sends `op` through `admin`'s typed methods.
async fn send(admin: &mut Admin<SimTransport>, op: Op) -> Result<Config, AdminError> {
    match op {
        Op::Join { groups } => admin.join(groups).await,
        Op::Leave { gids } => admin.leave(gids).await,
        Op::Move { shard, gid } => admin.move_shard(shard, gid).await,
        Op::Query { num } => admin.query(num).await,
        Op::Abandon { gid } => admin.abandon(gid).await,
        Op::Holder { shard, num } => admin.holder(shard, num).await,
    }
}

fn join_of(groups: &[(GroupId, Vec<String>)]) -> Op {
    Op::Join {
        groups: groups.iter().cloned().collect(),
    }
}

fn addresses(count: usize, len: usize) -> Vec<String> {
    (0..count).map(|i| format!("{i:0>len$}")).collect()
}

/// Every bad Join of issue 3 and `MasterError`, given members 1 and 2, with the error it
/// must get (any size limit for `RequestTooLarge`). A Join naming a good group and a bad
/// one must be refused whole.
fn join_cases() -> Vec<(&'static str, Op, MasterError)> {
    let ok = |gid: GroupId| (gid, vec![format!("s{gid}")]);
    let many_groups: Vec<_> = (100..100 + MAX_GROUPS as GroupId - 1).map(ok).collect();
    let huge_groups: Vec<_> = (100..100 + 70)
        .map(|gid| (gid, addresses(MAX_SERVERS_PER_GROUP, MAX_ADDRESS_BYTES)))
        .collect();
    vec![
        (
            "join of a present gid",
            join_of(&[ok(5), ok(1)]),
            MasterError::AlreadyJoined { gid: 1 },
        ),
        (
            "join of gid 0",
            join_of(&[ok(0), ok(5)]),
            MasterError::ReservedGroup,
        ),
        (
            "join with no servers",
            join_of(&[ok(5), (6, vec![])]),
            MasterError::NoServers { gid: 6 },
        ),
        ("join of nothing", join_of(&[]), MasterError::EmptyJoin),
        (
            "join with too many servers",
            join_of(&[(5, addresses(MAX_SERVERS_PER_GROUP + 1, 2))]),
            MasterError::TooManyServers {
                gid: 5,
                count: MAX_SERVERS_PER_GROUP + 1,
                max: MAX_SERVERS_PER_GROUP,
            },
        ),
        (
            "join with an empty address",
            join_of(&[(5, vec!["a".into(), String::new()])]),
            MasterError::BadAddress { gid: 5, index: 1 },
        ),
        (
            "join with a long address",
            join_of(&[(5, addresses(1, MAX_ADDRESS_BYTES + 1))]),
            MasterError::BadAddress { gid: 5, index: 0 },
        ),
        (
            "join past the group limit",
            join_of(&many_groups),
            MasterError::TooManyGroups {
                count: MAX_GROUPS + 1,
                max: MAX_GROUPS,
            },
        ),
        (
            "join too large to replicate",
            join_of(&huge_groups),
            MasterError::RequestTooLarge { max_bytes: 0 },
        ),
    ]
}

/// The bad Leaves, Moves, Abandons and Holder queries, given members 1 and 2.
fn leave_and_move_cases() -> Vec<(&'static str, Op, MasterError)> {
    vec![
        (
            "leave of an unknown gid",
            Op::Leave { gids: vec![1, 7] },
            MasterError::UnknownGroup { gid: 7 },
        ),
        (
            "leave of gid 0",
            Op::Leave { gids: vec![0] },
            MasterError::ReservedGroup,
        ),
        (
            "leave of nothing",
            Op::Leave { gids: vec![] },
            MasterError::EmptyLeave,
        ),
        (
            "leave listing a gid twice",
            Op::Leave { gids: vec![2, 2] },
            MasterError::DuplicateGroup { gid: 2 },
        ),
        (
            "move to an unknown gid",
            Op::Move { shard: 0, gid: 7 },
            MasterError::UnknownGroup { gid: 7 },
        ),
        (
            "move to gid 0",
            Op::Move { shard: 0, gid: 0 },
            MasterError::ReservedGroup,
        ),
        (
            "abandon of a member",
            Op::Abandon { gid: 2 },
            MasterError::StillMember { gid: 2 },
        ),
        (
            "abandon of a gid that never joined",
            Op::Abandon { gid: 7 },
            MasterError::UnknownGroup { gid: 7 },
        ),
        (
            "abandon of gid 0",
            Op::Abandon { gid: 0 },
            MasterError::ReservedGroup,
        ),
        (
            "holder of a shard out of range",
            Op::Holder {
                shard: LAB_NSHARDS,
                num: 1,
            },
            MasterError::ShardOutOfRange {
                shard: LAB_NSHARDS,
                nshards: LAB_NSHARDS,
            },
        ),
        (
            "move of a shard out of range",
            Op::Move {
                shard: LAB_NSHARDS,
                gid: 1,
            },
            MasterError::ShardOutOfRange {
                shard: LAB_NSHARDS,
                nshards: LAB_NSHARDS,
            },
        ),
    ]
}

/// `got` is `want`; the size limit of `RequestTooLarge` is the implementation's choice.
fn same_error(got: &MasterError, want: &MasterError) -> bool {
    match (got, want) {
        (MasterError::RequestTooLarge { .. }, MasterError::RequestTooLarge { .. }) => true,
        _ => got == want,
    }
}

/// Every bad request is rejected with its typed error and creates no configuration.
pub fn bad_requests<L: MasterLab>(seed: u64) -> Outcome {
    let c = Cluster::<L>::new(seed, false);
    c.run(async {
        let mut ck = c.clerk();
        ck.join(group(1, &["a"])).await?;
        let base = ck.join(group(2, &["b"])).await?;
        for (what, op, want) in join_cases().into_iter().chain(leave_and_move_cases()) {
            match send(ck.admin(), op).await {
                Err(AdminError::Rejected(got)) if same_error(&got, &want) => {}
                other => return Err(format!("{what}: got {other:?}, wanted Rejected({want:?})")),
            }
            let latest = ck.latest().await?;
            check_same_config(&latest, &base)
                .map_err(|e| format!("{what} changed the configuration: {e}"))?;
        }
        check_replicas_agree(&c, &base, AGREE_TIMEOUT).await?;
        exactly_once(&c, &base).await
    })
}

/// Sends `request` raw (bypassing `Admin`'s numbering) until some replica answers
/// other than `WrongLeader`.
async fn raw<L: MasterLab>(
    c: &Cluster<L>,
    transport: &SimTransport,
    request: &Request,
) -> Result<Response, String> {
    let bytes = bincode::serialize(request).map_err(|e| e.to_string())?;
    for attempt in 0..100 {
        let to = c.masters()[attempt % REPLICAS].clone();
        if let Ok(reply) = transport
            .call(&to, bytes.clone(), Duration::from_secs(1))
            .await
        {
            let response: Response =
                bincode::deserialize(&reply).map_err(|e| format!("bad reply: {e}"))?;
            if !matches!(response, Err(MasterError::WrongLeader { .. })) {
                return Ok(response);
            }
        }
        transport.sleep(Duration::from_millis(20)).await;
    }
    Err(format!("no answer to {request:?} in 100 attempts"))
}

/// A request sent twice with one `(client, seq)` takes effect once and gets the same
/// answer twice; an older sequence number is refused as stale; neither adds a config.
async fn exactly_once<L: MasterLab>(c: &Cluster<L>, base: &Config) -> Result<(), String> {
    let transport = c.transport("raw");
    let join = |seq| Request {
        client: 4242,
        seq,
        op: Op::Join {
            groups: BTreeMap::from([(9, vec!["n".to_string()])]),
        },
    };
    let first = raw(c, &transport, &join(2)).await?;
    let again = raw(c, &transport, &join(2)).await?;
    if first != again || first.as_ref().map(|cfg| cfg.num) != Ok(base.num + 1) {
        return Err(format!(
            "retried join answered {again:?} after {first:?}, wanted config {} twice",
            base.num + 1
        ));
    }
    let stale = raw(c, &transport, &join(1)).await?;
    if stale
        != Err(MasterError::StaleRequest {
            client: 4242,
            seq: 1,
            last: 2,
        })
    {
        return Err(format!(
            "older request answered {stale:?}, wanted StaleRequest"
        ));
    }
    let latest = raw(
        c,
        &transport,
        &Request {
            client: 4242,
            seq: 3,
            op: Op::Query { num: None },
        },
    )
    .await?;
    if latest != first {
        return Err(format!(
            "latest is {latest:?}, wanted the single join's {first:?}"
        ));
    }
    Ok(())
}
