//! The benchmark's clients: loading the keys, then closed loops of operations on client
//! threads (each a current-thread runtime), sharing connections as planned.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use shardkv_client::tls::Tls;
use shardkv_client::{Client, RetryPolicy, TarpcTransport};

use super::report::Measured;
use super::BenchOp;
use crate::runtime::timeline::{self, Waypoint};

/// How long one operation may take before it counts as an error.
const OPERATION_DEADLINE: Duration = Duration::from_secs(10);

/// The workload's shape, shared by every client.
#[derive(Debug, Clone)]
pub(super) struct Shape {
    pub(super) op: BenchOp,
    pub(super) key_size: usize,
    pub(super) keys: u64,
    /// Bytes per value.
    pub(super) value_size: usize,
    /// Random bytes the values are cut from ([`Shape::value`]).
    pub(super) pool: Arc<Vec<u8>>,
    /// The clients' certificate, for a cluster that runs mutual TLS.
    pub(super) tls: Option<Tls>,
}

impl Shape {
    /// A transport of the clients' own (one connection per node).
    pub(super) fn transport(&self) -> TarpcTransport {
        match &self.tls {
            None => TarpcTransport::new(),
            Some(tls) => TarpcTransport::with_tls(tls.clone()),
        }
    }

    pub(super) fn key(&self, n: u64) -> Vec<u8> {
        format!("{n:0>width$}", width = self.key_size).into_bytes()
    }

    /// The value of key `n`: `value_size` random bytes from a place in the pool drawn
    /// from `n`, so that neither one value nor neighbouring keys' values compress (an
    /// engine that compresses would otherwise store a fraction of what a user's data
    /// takes), and every write of a key writes the same value (read-backs can check it).
    pub(super) fn value(&self, n: u64) -> Vec<u8> {
        let places = (self.pool.len() - self.value_size) as u64 + 1;
        let at = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16) % places;
        self.pool[at as usize..][..self.value_size].to_vec()
    }
}

/// The random bytes values of `value_size` are cut from: 8 MiB more than one value.
pub(super) fn value_pool(value_size: usize) -> Arc<Vec<u8>> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0x00be_7c40);
    let mut pool = vec![0; value_size + (8 << 20)];
    rng.fill(&mut pool[..]);
    Arc::new(pool)
}

/// Runs each thread's clients of `plan` for `duration`; their numbers, merged.
pub(super) fn run(
    masters: &[String],
    shape: &Shape,
    plan: Vec<(Vec<u32>, usize)>,
    duration: Duration,
) -> Result<Measured, String> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = plan
            .into_iter()
            .map(|(ids, conns)| {
                scope.spawn(move || run_thread(masters, shape, &ids, conns, duration))
            })
            .collect();
        let mut all = Measured::new()?;
        for handle in handles {
            let measured = handle
                .join()
                .map_err(|_| "a client thread panicked".to_string())??;
            all.merge(measured)?;
        }
        Ok(all)
    })
}

/// Clients that load the keys, and the connections to each node they share: many
/// requests in flight on each connection, which the replicas take in batches (one raft
/// Ready and one sync for all that arrived together).
const LOAD_CLIENTS: u64 = 256;
const LOAD_CONNS: usize = 8;

/// Writes every key once, [`LOAD_CLIENTS`] at a time over [`LOAD_CONNS`] connections.
pub(super) fn load(masters: &[String], shape: &Shape) -> Result<(), String> {
    let runtime = current_thread()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let transports: Vec<TarpcTransport> = (0..LOAD_CONNS).map(|_| shape.transport()).collect();
        let clients = LOAD_CLIENTS.min(shape.keys);
        let tasks: Vec<_> = (0..clients)
            .zip(transports.iter().cycle())
            .map(|(c, transport)| {
                let client = Client::with_policy(transport.clone(), masters.to_vec(), policy());
                let shape = shape.clone();
                tokio::task::spawn_local(async move {
                    for n in (c..shape.keys).step_by(clients as usize) {
                        client
                            .put(shape.key(n), shape.value(n))
                            .await
                            .map_err(|error| format!("loading key {n}: {error}"))?;
                    }
                    Ok::<(), String>(())
                })
            })
            .collect();
        for task in tasks {
            task.await
                .map_err(|error| format!("load task failed: {error}"))??;
        }
        Ok(())
    })
}

/// Which clients each thread runs (thread t: clients t, t + threads, ...) and over how
/// many connections: `conns` (default: one per client) spread as evenly as the clients
/// are, at least one per thread and at most one per client.
pub(super) fn thread_plan(
    clients: u32,
    threads: u16,
    conns: Option<u32>,
) -> Vec<(Vec<u32>, usize)> {
    let threads = u32::from(threads).min(clients).max(1);
    let conns = conns.unwrap_or(clients);
    (0..threads)
        .map(|t| {
            let ids: Vec<u32> = (t..clients).step_by(threads as usize).collect();
            let share = conns / threads + u32::from(t < conns % threads);
            let conns = (share as usize).clamp(1, ids.len().max(1));
            (ids, conns)
        })
        .collect()
}

/// One thread's clients, each a closed loop until `duration` has passed, sharing
/// `conns` connections to each node.
fn run_thread(
    masters: &[String],
    shape: &Shape,
    ids: &[u32],
    conns: usize,
    duration: Duration,
) -> Result<Measured, String> {
    let runtime = current_thread()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let until = Instant::now() + duration;
        let transports: Vec<TarpcTransport> = (0..conns).map(|_| shape.transport()).collect();
        let tasks: Vec<_> = ids
            .iter()
            .zip(transports.iter().cycle())
            .map(|(&id, transport)| {
                let client = Client::with_policy(transport.clone(), masters.to_vec(), policy());
                tokio::task::spawn_local(run_client(client, shape.clone(), id, until))
            })
            .collect();
        merge_all(tasks).await
    })
}

/// Every client a clone of one handle over `conns` connections to each node, as tasks
/// of one runtime: a current-thread one (the tasks in a `LocalSet`, as the per-client
/// clients run) for `--threads 1`, else a multi-thread one with `args.threads` workers;
/// their numbers, merged.
pub(super) fn run_shared(
    masters: &[String],
    shape: &Shape,
    args: &super::BenchArgs,
    conns: u32,
    duration: Duration,
) -> Result<Measured, String> {
    let start = || {
        let transport = shape.transport().connections_per_node(conns as usize);
        let client = Client::with_policy(transport, masters.to_vec(), policy());
        let until = Instant::now() + duration;
        (0..args.clients).map(move |id| run_client(client.clone(), shape.clone(), id, until))
    };
    if args.threads == 1 {
        let runtime = current_thread()?;
        let local = tokio::task::LocalSet::new();
        return local.block_on(&runtime, async {
            merge_all(start().map(tokio::task::spawn_local).collect()).await
        });
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::from(args.threads))
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))?;
    runtime.block_on(async { merge_all(start().map(tokio::spawn).collect()).await })
}

/// The client tasks' numbers, merged, once every one has ended.
async fn merge_all(
    tasks: Vec<tokio::task::JoinHandle<Result<Measured, String>>>,
) -> Result<Measured, String> {
    let mut all = Measured::new()?;
    for task in tasks {
        let measured = task
            .await
            .map_err(|error| format!("client task failed: {error}"))??;
        all.merge(measured)?;
    }
    Ok(all)
}

/// One client: operations one at a time on random keys until `until`.
async fn run_client(
    client: Client<shardkv_client::TarpcTransport>,
    shape: Shape,
    id: u32,
    until: Instant,
) -> Result<Measured, String> {
    let mut measured = Measured::new()?;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(u64::from(id));
    while Instant::now() < until {
        let n = rng.random_range(0..shape.keys);
        let key = shape.key(n);
        let read = match shape.op {
            BenchOp::Get => true,
            BenchOp::Mixed => rng.random_bool(0.5),
            BenchOp::Put | BenchOp::Append => false,
        };
        let start = Instant::now();
        timeline::mark(Waypoint::ClientSend, 0);
        let outcome = match (read, shape.op) {
            (true, _) => client.get(key).await.map(drop),
            (false, BenchOp::Append) => client.append(key, shape.value(n)).await,
            (false, _) => client.put(key, shape.value(n)).await,
        };
        if Instant::now() > until {
            // Finished after the measured window: neither counted nor timed.
            break;
        }
        timeline::mark(Waypoint::ClientDone, 0);
        match outcome {
            Ok(()) => {
                let micros = start.elapsed().as_micros().max(1);
                measured.latencies.saturating_record(micros as u64);
            }
            Err(error) => measured.error(error),
        }
    }
    Ok(measured)
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        deadline: Some(OPERATION_DEADLINE),
        ..RetryPolicy::default()
    }
}

fn current_thread() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> Shape {
        Shape {
            op: BenchOp::Put,
            key_size: 8,
            keys: 10_000,
            value_size: 1024,
            pool: value_pool(1024),
            tls: None,
        }
    }

    /// Keys are zero-padded to the key size and distinct.
    #[test]
    fn keys_have_the_key_size() {
        let shape = shape();
        assert_eq!(shape.key(42), b"00000042");
        assert_eq!(shape.key(9_999).len(), 8);
    }

    /// Values have the value size, one per key, and differ from key to key.
    #[test]
    fn values_are_per_key_and_random() {
        let shape = shape();
        assert_eq!(shape.value(7), shape.value(7));
        assert_eq!(shape.value(7).len(), 1024);
        assert_ne!(shape.value(7), shape.value(8));
        let distinct: std::collections::BTreeSet<u8> = shape.value(7).into_iter().collect();
        assert!(distinct.len() > 200, "{} distinct bytes", distinct.len());
    }

    /// Connections go to threads as evenly as their clients, one per client by default,
    /// never more than a thread's clients nor fewer than one.
    #[test]
    fn connections_follow_the_clients() {
        let plan = |clients, threads, conns| -> Vec<(usize, usize)> {
            thread_plan(clients, threads, conns)
                .into_iter()
                .map(|(ids, conns)| (ids.len(), conns))
                .collect()
        };
        assert_eq!(plan(10, 4, None), [(3, 3), (3, 3), (2, 2), (2, 2)]);
        assert_eq!(plan(64, 1, Some(1)), [(64, 1)]);
        assert_eq!(plan(10, 4, Some(6)), [(3, 2), (3, 2), (2, 1), (2, 1)]);
        assert_eq!(plan(4, 4, Some(1)), [(1, 1); 4]);
        assert_eq!(plan(3, 8, Some(100)), [(1, 1); 3]);
        assert_eq!(thread_plan(5, 2, None)[1].0, [1, 3]);
    }
}
