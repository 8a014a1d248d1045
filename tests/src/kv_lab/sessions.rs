//! Ours: exactly-once with no time limit. The groups' sessions last
//! [`SESSION_TIMEOUT_MS`] of quiet here, far shorter than the clients' retries, so that
//! each scenario outlives some sessions:
//!
//! - `session_expires_while_cut_off`: a client cut off right after sending an Append
//!   retries past the expiry of its session. The Append applies at most once; the client
//!   reports its outcome as unknown (`outcome unknown`) unless no attempt reached a group
//!   before the cut-off (then the refused Append is resent and applies once).
//! - `stray_duplicate_after_expiry`: an exact copy of an applied Append arrives after its
//!   session expired. It is refused (`UnknownSession`), not applied again.
//! - `sessions_across_moves`: a client writes to every shard for the first time and again
//!   after quiet spells longer than the timeout while shards move between groups. Nothing
//!   it does fails: refusals of its requests, if any, are answered by the client itself.
//!
//! The mutant that takes an unknown client's request as new
//! (`shardkv_proto::mutants::Mutation::UnknownSessionsAreNew`) fails the first two
//! (`tests/tests/kv_mutants.rs`).

use std::time::Duration;

use shardkv_client::Transport;
use shardkv_proto::kv::{GroupRequest, GroupResponse, KvError, Op, Reply, Request, Response};
use shardkv_proto::Millis;

use super::clerk::KvClerk;
use super::cluster::{server_address, KvCluster, GIDS, GROUP_SIZE};
use super::lab::KvLab;
use super::statics::SETTLE_TIMEOUT;
use super::workload::key_per_shard;
use crate::linearizability::{KvInput, KvOutput};
use crate::scenario::Outcome;
use crate::sim_transport::SimTransport;

/// How long the groups keep a quiet client's session in these scenarios.
pub const SESSION_TIMEOUT_MS: Millis = 2_000;

/// Longer than a session lasts, with room for the expiry scan (every 1/16 of it).
const PAST_EXPIRY_MS: u64 = SESSION_TIMEOUT_MS * 3 / 2;

fn cluster<L: KvLab>(seed: u64) -> KvCluster<L> {
    KvCluster::with_session_timeout(seed, false, Some(1000), Some(SESSION_TIMEOUT_MS))
}

/// A client sends an Append and is cut off from every server a seeded moment later
/// (before the Append reached the group, or after it applied but before its answer
/// came back), stays cut off past its session's expiry while another client keeps
/// writing, and is reconnected. Its Append applies at most once (the final reads and the
/// history check): it ends as "outcome unknown", or answered when it was answered before
/// the cut-off or no attempt of it was delivered before the reconnection (each failed as
/// unreachable, so the refused Append was resent).
pub fn session_expires_while_cut_off<L: KvLab>(seed: u64) -> Outcome {
    let c = cluster::<L>(seed);
    c.run("session_expires_while_cut_off", async {
        c.join(&GIDS).await?;
        c.settle(SETTLE_TIMEOUT).await?;
        let key = "cut-off";
        let mut ck = c.clerk();
        ck.put(key, "a").await?;
        let node = ck.node();
        let appending = c.sim.spawn(async move { ck.append(key, "b").await });
        c.sim
            .sleep(Duration::from_micros(c.sim.random_range(0..1500)))
            .await;
        c.sim.disconnect(node);
        keep_writing(&c, &mut c.clerk()).await?;
        c.sim.connect(node);
        match appending.await {
            Err(error) if error.contains("outcome unknown") => Ok(()),
            Ok(()) => Ok(()),
            Err(error) => Err(format!(
                "the Append retried past its session's expiry failed otherwise: {error}"
            )),
        }
    })
}

/// An Append is sent straight to its group and applied; after its session expired, the
/// same bytes arrive again. The copy must be refused as of an unknown session, and the
/// key must hold the appended value once.
pub fn stray_duplicate_after_expiry<L: KvLab>(seed: u64) -> Outcome {
    let c = cluster::<L>(seed);
    c.run("stray_duplicate_after_expiry", async {
        c.join(&GIDS).await?;
        c.settle(SETTLE_TIMEOUT).await?;
        let key = "stray";
        let mut ck = c.clerk();
        ck.put(key, "a").await?;
        let raw = Raw::new(&c, key).await?;
        let (_, clock) = raw
            .send(&request(0, 0, Op::Get { key: key.into() }))
            .await?;
        let client = 9_000_000 + c.sim.random_range(0..1000);
        let value = b"s".to_vec();
        let append = request(
            client,
            1,
            Op::Append {
                key: key.into(),
                value,
            },
        );
        let append = Request {
            seen: clock,
            ..append
        };
        let input = KvInput::Append {
            key: key.into(),
            value: b"s".to_vec(),
        };
        let op = c.history.begin(client, input, c.sim.now());
        let (first, _) = raw.send(&append).await?;
        if first != Ok(Reply::Done) {
            return Err(format!("the Append answered {first:?}"));
        }
        c.history.end(op, KvOutput::Done, c.sim.now());
        keep_writing(&c, &mut ck).await?;
        let (stray, _) = raw.send(&append).await?;
        if !matches!(stray, Err(KvError::UnknownSession { .. })) {
            return Err(format!("the stray copy after expiry answered {stray:?}"));
        }
        // The first copy is part of the history, so the checks know the key's value.
        ck.check(key, "as").await
    })
}

/// A client appends to every shard (its first request to each), then goes quiet past
/// the session timeout between rounds while groups join and leave, so that its next
/// requests meet shards that moved and shards that forgot it. Every operation succeeds.
pub fn sessions_across_moves<L: KvLab>(seed: u64) -> Outcome {
    let c = cluster::<L>(seed);
    c.run("sessions_across_moves", async {
        c.join(&GIDS[..1]).await?;
        let keys = key_per_shard();
        let mut ck = c.clerk();
        for round in 0..4 {
            for key in &keys {
                ck.append(key, &format!("{round}.")).await?;
            }
            match round % 2 {
                0 => c.join(&GIDS[1..]).await?,
                _ => c.leave(&GIDS[1..]).await?,
            }
            c.sleep_ms(PAST_EXPIRY_MS).await;
        }
        for key in &keys {
            ck.check(key, "0.1.2.3.").await?;
        }
        Ok(())
    })
}

/// Appends unique markers to key `busy` every 100 ms until the sessions heard before
/// have expired, so the groups go on applying meanwhile.
async fn keep_writing<L: KvLab>(c: &KvCluster<L>, ck: &mut KvClerk) -> Result<(), String> {
    let until = c.sim.now() + Duration::from_millis(PAST_EXPIRY_MS);
    for i in 0.. {
        if c.sim.now() >= until {
            break;
        }
        ck.append("busy", &format!("x{i}y")).await?;
        c.sleep_ms(100).await;
    }
    Ok(())
}

fn request(client: u64, seq: u64, op: Op) -> Request {
    Request {
        client,
        seq,
        seen: 0,
        op,
    }
}

/// Requests sent straight to the group serving one key, bypassing the client library.
struct Raw {
    transport: SimTransport,
    servers: Vec<String>,
}

impl Raw {
    async fn new<L: KvLab>(c: &KvCluster<L>, key: &str) -> Result<Raw, String> {
        let config = c.latest_config().await?;
        let gid = config
            .group_of_key(key.as_bytes())
            .ok_or_else(|| format!("no group serves {key:?}"))?;
        let servers = (0..GROUP_SIZE).map(|me| server_address(gid, me)).collect();
        let transport = c.transport("raw");
        Ok(Raw { transport, servers })
    }

    /// `request`'s answer from the group's leader, and the shard's clock with it.
    async fn send(&self, request: &Request) -> Result<(Response, Millis), String> {
        let bytes = bincode::serialize(&GroupRequest::Kv(request.clone()))
            .map_err(|e| format!("encode: {e}"))?;
        for attempt in 0..100 {
            let server = &self.servers[attempt % self.servers.len()];
            let reply = self
                .transport
                .call(server, bytes.clone(), Duration::from_secs(1))
                .await;
            match reply.map(|reply| bincode::deserialize::<GroupResponse>(&reply)) {
                Ok(Ok(GroupResponse::Kv(
                    Err(KvError::WrongLeader { .. } | KvError::NotLeader { .. }),
                    _,
                ))) => {}
                Ok(Ok(GroupResponse::Kv(response, clock))) => return Ok((response, clock)),
                Ok(other) => return Err(format!("{server} answered {other:?}")),
                Err(_) => {}
            }
            self.transport.sleep(Duration::from_millis(100)).await;
        }
        Err("no leader answered in 100 attempts".into())
    }
}
