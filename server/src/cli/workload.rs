//! The demo's workload: concurrent clients writing and reading, each remembering what
//! the cluster acknowledged.
//!
//! Each client owns its keys (`client-C-key-K`), so what a key must hold is known
//! exactly: it replays a cycle of eight steps per key, a Put, five Appends and two Gets.
//! After every acknowledged write the client records the value the key must now hold; a
//! Get must return exactly that (anything else is an anomaly: a lost, doubled or stale
//! write). A write that fails (its deadline passed, so its outcome is unknown) makes the
//! key *uncertain*: the client stops using it and the final check skips it.
//!
//! Clients run on the current [`tokio::task::LocalSet`] (their state is shared through
//! `Rc`s), each over its own connections.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use shardkv_client::tls::Tls;
use shardkv_client::{Client, RetryPolicy};
use tokio::task::JoinHandle;

/// Keys per client.
const KEYS_PER_CLIENT: u64 = 16;

/// Steps per key before the client moves to the next one.
const STEPS_PER_KEY: u64 = 8;

/// How long one operation may take (elections and shard moves included).
pub const OPERATION_DEADLINE: Duration = Duration::from_secs(20);

/// The workload's running totals, shared by its clients.
#[derive(Debug, Default)]
pub struct Counters {
    /// Acknowledged Puts and Appends.
    pub writes: Cell<u64>,
    /// Answered Gets.
    pub reads: Cell<u64>,
    /// Operations that failed (deadline passed).
    pub failed: Cell<u64>,
    /// Gets that did not return what the client had been acknowledged.
    pub anomalies: RefCell<Vec<String>>,
}

impl Counters {
    /// Acknowledged writes plus answered reads.
    pub fn ops(&self) -> u64 {
        self.writes.get() + self.reads.get()
    }
}

/// What the clients were acknowledged.
#[derive(Debug, Default)]
pub struct Acked {
    /// Each certain key and the value it must hold.
    pub values: BTreeMap<String, Vec<u8>>,
    /// Keys whose last write has an unknown outcome.
    pub uncertain: BTreeSet<String>,
}

/// Running clients.
pub struct Workload {
    stop: Rc<Cell<bool>>,
    /// The shared totals.
    pub counters: Rc<Counters>,
    clients: Vec<JoinHandle<Acked>>,
}

impl Workload {
    /// Starts `clients` clients of the cluster at `masters` on the current `LocalSet`,
    /// each with connections of its own (over mutual TLS with `tls`, if given).
    pub fn start(masters: &[String], clients: u16, tls: Option<&Tls>) -> Self {
        let stop = Rc::new(Cell::new(false));
        let counters = Rc::new(Counters::default());
        let clients = (0..clients)
            .map(|index| {
                let policy = RetryPolicy {
                    deadline: Some(OPERATION_DEADLINE),
                    ..RetryPolicy::default()
                };
                let client = Client::with_policy(transport(tls), masters.to_vec(), policy);
                tokio::task::spawn_local(run_client(index, client, stop.clone(), counters.clone()))
            })
            .collect();
        Workload {
            stop,
            counters,
            clients,
        }
    }

    /// Waits (polling, at most `limit`) until `more` operations have completed since
    /// the call; fails if none completes at all.
    pub async fn wait_progress(&self, more: u64, limit: Duration) -> Result<u64, String> {
        let (start_ops, start) = (self.counters.ops(), tokio::time::Instant::now());
        while self.counters.ops() < start_ops + more && start.elapsed() < limit {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        match self.counters.ops() - start_ops {
            0 => Err(format!("no operation completed within {limit:?}")),
            done => Ok(done),
        }
    }

    /// Stops the clients after their current operation and merges what they were
    /// acknowledged.
    pub async fn finish(self) -> Result<Acked, String> {
        self.stop.set(true);
        let mut all = Acked::default();
        for client in self.clients {
            let acked = client
                .await
                .map_err(|error| format!("client task failed: {error}"))?;
            all.values.extend(acked.values);
            all.uncertain.extend(acked.uncertain);
        }
        Ok(all)
    }
}

/// One client's loop: the eight-step cycle over its keys until `stop`.
async fn run_client(
    index: u16,
    mut client: Client<shardkv_client::TarpcTransport>,
    stop: Rc<Cell<bool>>,
    counters: Rc<Counters>,
) -> Acked {
    let mut acked = Acked::default();
    let mut step: u64 = 0;
    while !stop.get() && (acked.uncertain.len() as u64) < KEYS_PER_CLIENT {
        let key = format!(
            "client-{index}-key-{}",
            (step / STEPS_PER_KEY) % KEYS_PER_CLIENT
        );
        let phase = step % STEPS_PER_KEY;
        step += 1;
        if acked.uncertain.contains(&key) {
            continue;
        }
        if phase == 3 || phase == 7 {
            read(&mut client, &key, &acked, &counters).await;
            continue;
        }
        let piece = format!("{index}.{step};");
        let (written, value) = if phase == 0 {
            (
                client.put(key.clone(), piece.clone()).await,
                piece.into_bytes(),
            )
        } else {
            let mut value = acked.values.get(&key).cloned().unwrap_or_default();
            value.extend_from_slice(piece.as_bytes());
            (client.append(key.clone(), piece).await, value)
        };
        match written {
            Ok(()) => {
                counters.writes.set(counters.writes.get() + 1);
                acked.values.insert(key, value);
            }
            Err(_) => {
                counters.failed.set(counters.failed.get() + 1);
                acked.values.remove(&key);
                acked.uncertain.insert(key);
            }
        }
    }
    acked
}

/// A Get, checked against what the client was acknowledged for `key`.
async fn read(
    client: &mut Client<shardkv_client::TarpcTransport>,
    key: &str,
    acked: &Acked,
    counters: &Counters,
) {
    match client.get(key).await {
        Ok(value) => {
            counters.reads.set(counters.reads.get() + 1);
            let expected = acked.values.get(key);
            if value.as_ref() != expected {
                counters.anomalies.borrow_mut().push(format!(
                    "get {key}: {:?}, acknowledged {:?}",
                    value.map(|v| String::from_utf8_lossy(&v).into_owned()),
                    expected.map(|v| String::from_utf8_lossy(v).into_owned()),
                ));
            }
        }
        Err(_) => counters.failed.set(counters.failed.get() + 1),
    }
}

/// Reads every certain key back through a fresh client (over mutual TLS with `tls`, if
/// given); returns the mismatches.
pub async fn verify(masters: &[String], acked: &Acked, tls: Option<&Tls>) -> Vec<String> {
    let policy = RetryPolicy {
        deadline: Some(OPERATION_DEADLINE),
        ..RetryPolicy::default()
    };
    let client = Client::with_policy(transport(tls), masters.to_vec(), policy);
    let mut lost = Vec::new();
    for (key, expected) in &acked.values {
        match client.get(key.as_str()).await {
            Ok(Some(value)) if &value == expected => {}
            Ok(value) => lost.push(format!(
                "{key}: read {:?}, acknowledged {:?}",
                value.map(|v| String::from_utf8_lossy(&v).into_owned()),
                String::from_utf8_lossy(expected)
            )),
            Err(error) => lost.push(format!("{key}: cannot read it back: {error}")),
        }
    }
    lost
}

/// A transport with connections of its own, over mutual TLS with `tls` if given.
pub fn transport(tls: Option<&Tls>) -> shardkv_client::TarpcTransport {
    match tls {
        None => shardkv_client::TarpcTransport::new(),
        Some(tls) => shardkv_client::TarpcTransport::with_tls(tls.clone()),
    }
}
