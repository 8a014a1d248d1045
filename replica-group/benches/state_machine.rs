//! Benchmarks of the replica group's state machine: [`GroupState::apply`] of client
//! entries, and reading the whole state out for a follower's catch-up.
//!
//! - `apply/{get,put,append,delete}`: one committed `Entry::Kv` applied, and committed to
//!   the group's data (in memory, as one Ready's applies are), to a group that
//!   serves every shard and holds 10,000 keys of 8 bytes with 256-byte values, keys taken
//!   in a fixed shuffled order. Requests come from 64 clients in turn, so each shard's
//!   duplicate table holds up to 64 sessions. Only the applies are timed: the entries are
//!   built beforehand, and after each full pass over the key space Append and Delete
//!   restore every value with untimed Puts, so every op sees the same state shape. With
//!   the lab's 10 shards and the default 256 (entries 1 ms apart: an apply that crosses
//!   1/16 of the session timeout scans each shard for expired sessions).
//! - `catch_up/copy`: the whole state of a group serving the default 256 shards and
//!   holding 10,000 or 100,000 such keys, read from one view in 1 MiB chunks and staged
//!   into another replica's data, then switched to; throughput in stored bytes.
//!
//! Run with `cargo bench -p replica-group --bench state_machine`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use replica_group::data::Data;
use replica_group::{Entry, GroupState, Op, Outcome, Phase, Replicated, Request};
use shardkv_proto::kv::MIGRATION_CHUNK_BYTES;
use shardkv_proto::{Config, GroupId, DEFAULT_NSHARDS, LAB_NSHARDS};

/// The benchmarked group.
const GID: GroupId = 100;
/// Every key is this long ("k0000000" ..).
const KEY_BYTES: usize = 8;
/// Every stored value, and every appended suffix, is this long.
const VALUE_BYTES: usize = 256;
/// The key space of the apply benchmarks.
const APPLY_KEYS: usize = 10_000;
/// The key counts of the catch-up benchmarks.
const SNAPSHOT_KEYS: [usize; 2] = [10_000, 100_000];
/// Clients taking turns to send requests.
const CLIENTS: u64 = 64;

/// The key numbered `i`: exactly [`KEY_BYTES`] bytes.
fn key(i: usize) -> Vec<u8> {
    let key = format!("k{i:07}").into_bytes();
    assert_eq!(key.len(), KEY_BYTES, "key {i} has the benchmarked length");
    key
}

/// A value of [`VALUE_BYTES`] bytes, different from key to key.
fn value(i: usize) -> Vec<u8> {
    vec![b'a' + (i % 26) as u8; VALUE_BYTES]
}

/// `0..n` in a fixed shuffled order (seeded), so consecutive applies touch unrelated
/// shards and map positions, as real traffic does.
fn shuffled(n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(0x5EED));
    order
}

/// Configuration 1 of a cluster of `nshards` shards, every shard owned by [`GID`].
fn owner_of_all(nshards: usize) -> Config {
    Config {
        num: 1,
        shards: vec![GID; nshards],
        groups: BTreeMap::from([(GID, vec![format!("g{GID}-0")])]),
    }
}

/// The client operations benchmarked.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Get,
    Put,
    Append,
    Delete,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Get, Kind::Put, Kind::Append, Kind::Delete];

    fn name(self) -> &'static str {
        match self {
            Kind::Get => "get",
            Kind::Put => "put",
            Kind::Append => "append",
            Kind::Delete => "delete",
        }
    }

    /// This operation on key number `i`.
    fn op(self, i: usize) -> Op {
        let key = key(i);
        match self {
            Kind::Get => Op::Get { key },
            Kind::Put => Op::Put {
                key,
                value: value(i),
            },
            Kind::Append => Op::Append {
                key,
                value: value(i),
            },
            Kind::Delete => Op::Delete { key },
        }
    }

    /// True when a pass over the key space changes the data's shape (longer values,
    /// missing keys), so it must be restored before the next pass.
    fn reshapes(self) -> bool {
        matches!(self, Kind::Append | Kind::Delete)
    }
}

/// A group state serving every shard, with the log index and request count to go on.
struct Fixture {
    state: GroupState,
    next_index: u64,
    requests: u64,
}

impl Fixture {
    /// A state of `nshards` shards that adopted [`owner_of_all`] and holds `keys` keys.
    fn new(nshards: usize, keys: usize) -> Self {
        let mut fixture = Fixture {
            state: GroupState::new(GID, nshards, Data::in_memory()).expect("a new state"),
            next_index: 1,
            requests: 0,
        };
        let outcome = fixture.apply(Entry::Config(owner_of_all(nshards)));
        assert_eq!(outcome, Outcome::Internal);
        assert!(
            fixture
                .state
                .shards()
                .all(|phase| matches!(phase, Phase::Serving(_))),
            "group {GID} serves all {nshards} shards after configuration 1"
        );
        fixture.put_all(keys);
        assert_eq!(
            fixture.state.data_bytes().expect("the data reads"),
            keys * (KEY_BYTES + VALUE_BYTES),
            "{keys} keys stored"
        );
        fixture
    }

    fn apply(&mut self, entry: Entry) -> Outcome {
        let index = self.next_index;
        self.next_index += 1;
        apply_one(&mut self.state, index, entry)
    }

    /// The next client request: request `n` is client `n % CLIENTS`'s, numbered so each
    /// client's sequence numbers increase and no mutation is a duplicate.
    fn request(&mut self, op: Op) -> Entry {
        let n = self.requests;
        self.requests += 1;
        Entry::Kv(Request {
            client: n % CLIENTS + 1,
            seq: n / CLIENTS + 1,
            seen: 1,
            op,
        })
    }

    /// Puts keys `0..keys` with their [`VALUE_BYTES`]-byte values.
    fn put_all(&mut self, keys: usize) {
        for i in 0..keys {
            let entry = self.request(Kind::Put.op(i));
            let outcome = self.apply(entry);
            assert!(is_ok(&outcome), "put of key {i} answered {outcome:?}");
        }
    }
}

/// Applies `entry` at `index` and commits it.
fn apply_one(state: &mut GroupState, index: u64, entry: Entry) -> Outcome {
    // Every entry at the index's time: the clock moves, sessions stay young.
    let outcome = (state.apply(index, index, entry)).expect("the data takes the entry");
    state.commit().expect("the data commits");
    outcome
}

fn is_ok(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Kv(Ok(_), _))
}

/// Applies `iters` `kind` entries on the keys of `order`, going on from `*cursor`; returns
/// the time spent in `apply` alone.
fn timed_applies(
    fixture: &mut Fixture,
    order: &[usize],
    cursor: &mut usize,
    iters: u64,
    kind: Kind,
) -> Duration {
    let mut total = Duration::ZERO;
    let mut remaining = iters;
    while remaining > 0 {
        let pass_left = (order.len() - *cursor) as u64;
        let n = remaining.min(pass_left) as usize;
        let entries: Vec<Entry> = order[*cursor..*cursor + n]
            .iter()
            .map(|&i| fixture.request(kind.op(i)))
            .collect();
        let first = fixture.next_index;
        let mut ok = 0;
        let start = Instant::now();
        for (index, entry) in (first..).zip(entries) {
            ok += usize::from(is_ok(&black_box(apply_one(
                &mut fixture.state,
                index,
                entry,
            ))));
        }
        total += start.elapsed();
        assert_eq!(ok, n, "every {kind:?} succeeded");
        fixture.next_index = first + n as u64;
        remaining -= n as u64;
        *cursor += n;
        if *cursor == order.len() {
            *cursor = 0;
            if kind.reshapes() {
                fixture.put_all(order.len());
            }
        }
    }
    total
}

fn apply(c: &mut Criterion) {
    let order = shuffled(APPLY_KEYS);
    let mut group = c.benchmark_group("apply");
    group.throughput(Throughput::Elements(1));
    for nshards in [LAB_NSHARDS, DEFAULT_NSHARDS] {
        for kind in Kind::ALL {
            let mut fixture = Fixture::new(nshards, APPLY_KEYS);
            let mut cursor = 0;
            let id = BenchmarkId::new(kind.name(), format!("nshards={nshards}"));
            group.bench_function(id, |b| {
                b.iter_custom(|iters| timed_applies(&mut fixture, &order, &mut cursor, iters, kind))
            });
        }
    }
    group.finish();
}

fn catch_up(c: &mut Criterion) {
    let mut group = c.benchmark_group("catch_up");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    for keys in SNAPSHOT_KEYS {
        let mut state = Fixture::new(DEFAULT_NSHARDS, keys).state;
        let bytes = state.stored_bytes().expect("the data reads");
        let mut other = Data::in_memory();
        group.throughput(Throughput::Bytes(bytes));
        let param = format!("keys={keys}");
        group.bench_function(BenchmarkId::new("copy", &param), |b| {
            b.iter(|| {
                let (view, meta) = state.view().expect("a view");
                other.stage_begin().expect("stages");
                let mut after: Option<Vec<u8>> = None;
                loop {
                    let chunk = view
                        .stored_chunk(after.as_deref(), MIGRATION_CHUNK_BYTES)
                        .expect("reads");
                    other.stage(&chunk.pairs).expect("stages");
                    match chunk.next {
                        Some(next) => after = Some(next),
                        None => break,
                    }
                }
                let applied = view.applied_index();
                other
                    .stage_finish(&[("group", &meta)], applied)
                    .expect("switches");
                black_box(other.applied_index())
            })
        });
        assert_eq!(other.stored_bytes().expect("reads"), bytes, "copied whole");
    }
    group.finish();
}

criterion_group!(benches, apply, catch_up);
criterion_main!(benches);
