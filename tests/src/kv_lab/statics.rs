//! 6.824 `TestStaticShards` and a stricter form of its rejection property: data really
//! is sharded (with one group down, exactly the other groups' keys are served), and a
//! group never answers for a shard it does not own.

use std::time::Duration;

use shardkv_client::Transport;
use shardkv_proto::kv::{GroupRequest, GroupResponse, Op, Request};
use shardkv_proto::{Config, GroupId};

use super::cluster::{server_address, KvCluster, GIDS, GROUP_SIZE};
use super::lab::KvLab;
use super::workload::{check_all, key_per_shard, keys, put_all, shard_of};
use crate::scenario::Outcome;

/// How long a clerk of the static test waits for a Get before giving up.
const GET_DEADLINE: Duration = Duration::from_secs(2);
/// How long migrations may take to finish in these scenarios.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Put ten keys over groups 100 and 101, shut 101 down: one clerk per key reads at once,
/// and exactly the keys of 100's shards answer within 2 s; after 101 restarts, all do.
pub fn static_shards<L: KvLab>(seed: u64) -> Outcome {
    let c = KvCluster::<L>::new(seed, false, None);
    c.run("static_shards", async {
        let mut ck = c.clerk();
        c.join(&GIDS[..2]).await?;
        let ka = keys(10);
        let va = put_all(&c, &mut ck, &ka, 20).await?;
        check_all(&mut ck, &ka, &va).await?;
        let config = c.settle(SETTLE_TIMEOUT).await?;
        let down = (ka.iter()).filter(|key| config.shards[shard_of(key)] == GIDS[1]).count();
        if down == 0 || down == ka.len() {
            return Err(format!("group {} owns {down} of the keys: {:?}", GIDS[1], config.shards));
        }
        c.shutdown_group(GIDS[1]);
        let tasks: Vec<_> = (ka.iter())
            .map(|key| {
                let mut ck1 = c.clerk_with_deadline(Some(GET_DEADLINE));
                let key = key.clone();
                c.sim.spawn(async move { ck1.get(&key).await })
            })
            .collect();
        let mut served = Vec::new();
        for ((key, value), task) in ka.iter().zip(&va).zip(tasks) {
            match task.await {
                Ok(got) if got.as_deref() == Some(value.as_bytes()) => served.push(key.clone()),
                Ok(got) => return Err(format!("get({key:?}) read {got:?}, wanted {value:?}")),
                Err(_) => {}
            }
        }
        let expected: Vec<String> = (ka.iter())
            .filter(|key| config.shards[shard_of(key)] != GIDS[1])
            .cloned()
            .collect();
        if served != expected {
            return Err(format!("with group {} down, keys {served:?} were served; expected exactly {expected:?} (shards {:?})", GIDS[1], config.shards));
        }
        c.start_group(GIDS[1]);
        check_all(&mut ck, &ka, &va).await
    })
}

/// Join 100, then 101, then 102, then leave 100: after each change settles, every
/// replica of every group (joined or not) is asked to Get and Put a key of every shard
/// its group does not own, and never answers with success; the keys keep their values.
pub fn rejection<L: KvLab>(seed: u64) -> Outcome {
    let c = KvCluster::<L>::new(seed, false, None);
    c.run("rejection", async {
        let mut ck = c.clerk();
        let ka = key_per_shard();
        let transport = c.transport("prober");
        c.join(&GIDS[..1]).await?;
        let va = put_all(&c, &mut ck, &ka, 8).await?;
        for step in 0..3 {
            match step {
                0 => c.join(&GIDS[1..2]).await?,
                1 => c.join(&GIDS[2..]).await?,
                _ => c.leave(&GIDS[..1]).await?,
            }
            let config = c.settle(SETTLE_TIMEOUT).await?;
            probe_non_owners(&transport, &config, &ka).await?;
            check_all(&mut ck, &ka, &va).await?;
        }
        Ok(())
    })
}

/// Asks every replica of every group for a key of every shard `config` does not give
/// its group; any successful answer is an error.
async fn probe_non_owners<T: Transport>(
    transport: &T,
    config: &Config,
    keys: &[String],
) -> Result<(), String> {
    for gid in GIDS {
        for me in 0..GROUP_SIZE {
            for (shard, key) in keys.iter().enumerate() {
                if config.shards[shard] == gid {
                    continue;
                }
                let ops = [
                    Op::Get {
                        key: key.as_bytes().to_vec(),
                    },
                    Op::Put {
                        key: key.as_bytes().to_vec(),
                        value: b"rogue".to_vec(),
                    },
                ];
                for (seq, op) in (1..).zip(ops) {
                    probe(transport, gid, me, seq, op, config).await?;
                }
            }
        }
    }
    Ok(())
}

async fn probe<T: Transport>(
    transport: &T,
    gid: GroupId,
    me: usize,
    seq: u64,
    op: Op,
    config: &Config,
) -> Result<(), String> {
    let request = Request {
        client: 7_000_000 + gid * 10 + me as u64,
        seq,
        seen: 0,
        op,
    };
    let what = format!("{:?} to {gid}/{me} in config {}", request.op, config.num);
    let bytes = bincode::serialize(&GroupRequest::Kv(request)).expect("a request encodes");
    let address = server_address(gid, me);
    let Ok(reply) = transport
        .call(&address, bytes, Duration::from_secs(1))
        .await
    else {
        return Ok(());
    };
    match bincode::deserialize::<GroupResponse>(&reply) {
        Ok(GroupResponse::Kv(Err(_), _)) => Ok(()),
        other => Err(format!(
            "{what} (shards {:?}) answered {other:?}",
            config.shards
        )),
    }
}
