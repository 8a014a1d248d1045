//! Benchmarks of key→shard→group routing, the work every client request and every applied
//! entry does: [`key_to_shard`] (FNV-1a 64 then `mod nshards`), [`Config::shard_of_key`]
//! and [`Config::group_of_key`] (the same plus one owner lookup).
//!
//! Keys of 8 and 64 bytes, with the lab's 10 shards and the default 256. Throughput is in
//! key bytes hashed per second. Run with `cargo bench -p shardkv-proto --bench routing`.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shardkv_proto::{key_to_shard, Config, GroupId, DEFAULT_NSHARDS, LAB_NSHARDS};

/// Key lengths benchmarked, in bytes.
const KEY_LENS_BYTES: [usize; 2] = [8, 64];

/// Shard counts benchmarked: the lab suites' and a real cluster's default.
const NSHARDS: [usize; 2] = [LAB_NSHARDS, DEFAULT_NSHARDS];

/// Member groups of the benchmarked configuration; shards go to them round robin.
const GROUPS: u64 = 4;

/// A configuration with `nshards` shards spread round robin over [`GROUPS`] groups, so
/// every shard has an owner and `group_of_key` always answers `Some`.
fn config(nshards: usize) -> Config {
    let groups: BTreeMap<GroupId, Vec<String>> = (1..=GROUPS)
        .map(|gid| (gid, vec![format!("g{gid}-0")]))
        .collect();
    Config {
        num: 1,
        shards: (0..nshards as u64).map(|s| 1 + s % GROUPS).collect(),
        groups,
    }
}

/// A printable key of exactly `len` bytes.
fn key(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

fn routing(c: &mut Criterion) {
    let mut group = c.benchmark_group("routing");
    for len in KEY_LENS_BYTES {
        group.throughput(Throughput::Bytes(len as u64));
        let key = key(len);
        for nshards in NSHARDS {
            let config = config(nshards);
            assert!(config.check().is_ok(), "benchmark config is valid");
            let param = format!("key={len}B/nshards={nshards}");
            group.bench_with_input(BenchmarkId::new("key_to_shard", &param), &key, |b, key| {
                b.iter(|| key_to_shard(black_box(key.as_slice()), black_box(nshards)))
            });
            group.bench_with_input(BenchmarkId::new("shard_of_key", &param), &key, |b, key| {
                b.iter(|| black_box(&config).shard_of_key(black_box(key.as_slice())))
            });
            group.bench_with_input(BenchmarkId::new("group_of_key", &param), &key, |b, key| {
                b.iter(|| black_box(&config).group_of_key(black_box(key.as_slice())))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
