//! What the scenarios' clients do: keys spread over the shards, unique values, and
//! appenders that append unique markers to their own key until told to stop (6.824's
//! `ff` goroutines), each knowing the value its key must end with.

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use labrpc_sim::JoinHandle;
use shardkv_proto::{key_to_shard, GroupId, ShardId};

use super::clerk::KvClerk;
use super::cluster::KvCluster;
use super::lab::{KvLab, LAB_NSHARDS};

/// 6.824's keys: `"0"`, `"1"`, ... `n - 1`.
pub fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}

/// The shard of `key`.
pub fn shard_of(key: &str) -> ShardId {
    key_to_shard(key.as_bytes(), LAB_NSHARDS)
}

/// One key in each shard, by shard (the lab's `ka[shard]` for single-digit keys).
pub fn key_per_shard() -> Vec<String> {
    (0..LAB_NSHARDS)
        .map(|shard| {
            (0..)
                .map(|j| format!("k{j}"))
                .find(|key| shard_of(key) == shard)
                .expect("every shard has a key")
        })
        .collect()
}

/// A random printable string of `len` characters, from the simulator's RNG (6.824
/// `randstring`).
pub fn random_string<L: KvLab>(c: &KvCluster<L>, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..len)
        .map(|_| ALPHABET[c.sim.random_range(0..ALPHABET.len() as u64) as usize] as char)
        .collect()
}

/// Puts a fresh random value of `len` characters under every key; returns the values.
pub async fn put_all<L: KvLab>(
    c: &KvCluster<L>,
    ck: &mut KvClerk,
    keys: &[String],
    len: usize,
) -> Result<Vec<String>, String> {
    let mut values = Vec::with_capacity(keys.len());
    for key in keys {
        let value = random_string(c, len);
        ck.put(key, &value).await?;
        values.push(value);
    }
    Ok(values)
}

/// Every key reads its value.
pub async fn check_all(ck: &mut KvClerk, keys: &[String], values: &[String]) -> Result<(), String> {
    for (key, value) in keys.iter().zip(values) {
        ck.check(key, value).await?;
    }
    Ok(())
}

/// Every key reads its value, then gets a unique marker appended (6.824's check-then-
/// append loop); `values` follow.
pub async fn check_and_append(
    ck: &mut KvClerk,
    keys: &[String],
    values: &mut [String],
    round: usize,
) -> Result<(), String> {
    for (i, (key, value)) in keys.iter().zip(values.iter_mut()).enumerate() {
        ck.check(key, value).await?;
        let marker = format!("x{i}.{round}y");
        ck.append(key, &marker).await?;
        value.push_str(&marker);
    }
    Ok(())
}

/// One appender per key, each with its own clerk, appending `x{i}.{n}y` to key `i` and
/// pausing `pause_ms` between appends, until [`Appenders::stop`].
pub struct Appenders {
    stop: Rc<Cell<bool>>,
    tasks: Vec<JoinHandle<Result<String, String>>>,
}

impl Appenders {
    /// Starts the appenders; key `i` currently holds `values[i]`.
    pub fn start<L: KvLab>(
        c: &KvCluster<L>,
        keys: &[String],
        values: &[String],
        pause_ms: u64,
    ) -> Self {
        let stop = Rc::new(Cell::new(false));
        let tasks = keys
            .iter()
            .zip(values)
            .enumerate()
            .map(|(i, (key, value))| {
                let (mut ck, stop, c) = (c.clerk(), stop.clone(), c.clone());
                let (key, mut value) = (key.clone(), value.clone());
                c.sim.clone().spawn(async move {
                    for n in 0.. {
                        if stop.get() {
                            break;
                        }
                        let marker = format!("x{i}.{n}y");
                        ck.append(&key, &marker).await?;
                        value.push_str(&marker);
                        c.sim.sleep(Duration::from_millis(pause_ms)).await;
                    }
                    Ok(value)
                })
            })
            .collect();
        Appenders { stop, tasks }
    }

    /// Stops the appenders, waits for their last appends, and checks that every key
    /// reads exactly what its appender wrote (6.824's final `check` loop).
    pub async fn stop(self, ck: &mut KvClerk, keys: &[String]) -> Result<Vec<String>, String> {
        self.stop.set(true);
        let mut values = Vec::with_capacity(self.tasks.len());
        for (i, task) in self.tasks.into_iter().enumerate() {
            values.push(task.await.map_err(|e| format!("appender {i}: {e}"))?);
        }
        check_all(ck, keys, &values).await?;
        Ok(values)
    }
}

/// Clients issuing random operations on random keys (6.824 `TestUnreliable3`): half
/// appends, a tenth puts, a twentieth deletes, the rest gets; values are unique markers.
/// Only the linearizability checker judges them.
pub struct RandomClients {
    stop: Rc<Cell<bool>>,
    tasks: Vec<JoinHandle<Result<(), String>>>,
}

impl RandomClients {
    /// Starts `clients` clients over `keys`.
    pub fn start<L: KvLab>(c: &KvCluster<L>, clients: usize, keys: &[String]) -> Self {
        let stop = Rc::new(Cell::new(false));
        let tasks = (0..clients)
            .map(|i| {
                let (mut ck, stop, c) = (c.clerk(), stop.clone(), c.clone());
                let keys = keys.to_vec();
                c.sim.clone().spawn(async move {
                    for n in 0.. {
                        if stop.get() {
                            return Ok(());
                        }
                        let key = &keys[c.sim.random_range(0..keys.len() as u64) as usize];
                        let value = format!("r{i}.{n}z");
                        match c.sim.random_range(0..1000) {
                            0..500 => ck.append(key, &value).await?,
                            500..600 => ck.put(key, &value).await?,
                            600..650 => ck.delete(key).await?,
                            _ => ck.get(key).await.map(|_| ())?,
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        RandomClients { stop, tasks }
    }

    /// Stops the clients and waits for their last operations.
    pub async fn stop(self) -> Result<(), String> {
        self.stop.set(true);
        for (i, task) in self.tasks.into_iter().enumerate() {
            task.await.map_err(|e| format!("client {i}: {e}"))?;
        }
        Ok(())
    }
}

/// The shape of most concurrent scenarios: join `gids`, put ten keys with values of
/// `len` characters, run one appender per key (pausing `pause_ms`) through `during`,
/// then stop them and check every key. Returns the keys and their final values.
pub async fn appends_during<L, F>(
    c: &KvCluster<L>,
    gids: &[GroupId],
    len: usize,
    pause_ms: u64,
    during: F,
) -> Result<(Vec<String>, Vec<String>), String>
where
    L: KvLab,
    F: Future<Output = Result<(), String>>,
{
    let mut ck = c.clerk();
    c.join(gids).await?;
    let ka = keys(10);
    let va = put_all(c, &mut ck, &ka, len).await?;
    let appenders = Appenders::start(c, &ka, &va, pause_ms);
    during.await?;
    let va = appenders.stop(&mut ck, &ka).await?;
    Ok((ka, va))
}
