//! The contract of a replica group's data on disk (`replica_group::data::Data`, redb over a
//! `Disk`), run against both disks it runs on: the operating system's files (`OsDisk`) and
//! the simulator's (`LabDisk`, whose power failures lose unsynced writes).
//!
//! - Reads see the writes not yet committed; a commit carries its applied index.
//! - Chunks read a shard in key order, within their byte budget, each key once, and
//!   nothing of another shard; deleting a shard leaves the others alone.
//! - A view is one point: writes committed after it do not show.
//! - A whole state staged from a view switches in at once: a crash or a power failure
//!   before the switch leaves the data as it was, after it the data stands at the view,
//!   durably, with the view's keys and metadata only.
//! - After a crash or a power failure the data reopens at exactly the state of some
//!   commit, at or after the last completed checkpoint (the applied index says which).
//!   Without checkpoints a power failure does lose commits, which shows the check can
//!   fail.

use std::collections::BTreeMap;
use std::sync::Arc;

use labrpc_sim::SimDisk;
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use replica_group::data::{Chunk, Data, RedbEngine, FLUSH_BYTES};
use shardkv_raft::{Background, Disk, OsDisk};
use shardkv_tests::sim_disk::LabDisk;

/// A small page cache, as the lab suites use.
const CACHE: usize = 1 << 20;

/// Opens the data on `disk`, its flushes and checkpoints run in place.
fn open(disk: &impl Disk) -> Data {
    Data::open(disk, CACHE, Background::Deferred { polls: 0 }).expect("open the data")
}

/// A fresh data directory of each kind; the OS one lives as long as the returned guard.
fn disks() -> (tempfile::TempDir, OsDisk, LabDisk) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let os = OsDisk::open(dir.path()).expect("open the directory");
    (dir, os, LabDisk(SimDisk::new()))
}

/// Every pair of `shard`, read by chunks of `budget` bytes.
fn read_shard(data: &Data, shard: usize, budget: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut pairs = Vec::new();
    let mut after = None;
    loop {
        let Chunk { pairs: more, next } = data.chunk(shard, after.as_deref(), budget).unwrap();
        let bytes: usize = more.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
        assert!(
            more.len() == 1 || bytes <= budget.saturating_add(4 * more.len()),
            "a chunk of {bytes} bytes over the budget of {budget}"
        );
        pairs.extend(more);
        match next {
            Some(key) => after = Some(key),
            None => return pairs,
        }
    }
}

fn reads_writes_and_chunks(disk: &impl Disk) {
    let mut data = open(disk);
    assert_eq!(data.applied_index(), 0);
    data.put(1, b"b", b"2").unwrap();
    data.put(1, b"a", b"1").unwrap();
    data.put(2, b"a", b"other shard").unwrap();
    data.put(u32::MAX as usize, b"z", b"last shard").unwrap();
    assert_eq!(
        data.get(1, b"a").unwrap(),
        Some(b"1".to_vec()),
        "uncommitted"
    );
    data.commit(7).unwrap();
    assert_eq!(data.applied_index(), 7);
    // A view flushes: what follows is held in memory over what the database holds, and
    // every read merges the two.
    drop(data.view().unwrap());
    data.delete(1, b"b").unwrap();
    for i in 0..100u32 {
        data.put(1, format!("k{i:03}").as_bytes(), &[i as u8; 50])
            .unwrap();
    }
    data.commit(8).unwrap();
    assert_eq!(data.get(1, b"b").unwrap(), None);
    let whole = read_shard(&data, 1, usize::MAX);
    assert_eq!(whole.len(), 101);
    assert!(whole.windows(2).all(|w| w[0].0 < w[1].0), "in key order");
    for budget in [1, 60, 200, 1000] {
        assert_eq!(read_shard(&data, 1, budget), whole, "budget {budget}");
    }
    assert_eq!(
        read_shard(&data, u32::MAX as usize, 10),
        vec![(b"z".to_vec(), b"last shard".to_vec())]
    );
    data.put_meta("state", b"meta").unwrap();
    data.commit(9).unwrap();
    assert_eq!(data.meta("state").unwrap(), Some(b"meta".to_vec()));
    drop(data.view().unwrap());
    let stored = data.stored_bytes().unwrap();
    assert!(stored >= 100 * 54, "{stored} bytes stored");
    data.delete_shard(1).unwrap();
    data.commit(10).unwrap();
    assert!(read_shard(&data, 1, 100).is_empty());
    assert_eq!(
        data.get(1, b"k000").unwrap(),
        None,
        "dropped, not yet flushed"
    );
    assert_eq!(data.get(2, b"a").unwrap(), Some(b"other shard".to_vec()));
    assert!(data.checkpoint(true).unwrap());
    let stored = data.stored_bytes().unwrap();
    assert!(stored < 100, "{stored} bytes stored after the drop");
    drop(data);
    let data = open(disk);
    assert_eq!(data.applied_index(), 10);
    assert_eq!(data.meta("state").unwrap(), Some(b"meta".to_vec()));
    assert_eq!(data.get(2, b"a").unwrap(), Some(b"other shard".to_vec()));
}

#[test]
fn reads_writes_and_chunks_on_both_disks() {
    let (_dir, os, sim) = disks();
    reads_writes_and_chunks(&os);
    reads_writes_and_chunks(&sim);
}

fn a_view_is_one_point(disk: &impl Disk) {
    let mut data = open(disk);
    data.put(3, b"k", b"old").unwrap();
    data.commit(1).unwrap();
    let view = data.view().unwrap();
    data.put(3, b"k", b"new").unwrap();
    data.put(3, b"j", b"added").unwrap();
    data.commit(2).unwrap();
    assert_eq!(view.applied_index(), 1);
    assert_eq!(
        view.chunk(3, None, 1 << 20).unwrap().pairs,
        vec![(b"k".to_vec(), b"old".to_vec())]
    );
    assert_eq!(data.get(3, b"k").unwrap(), Some(b"new".to_vec()));
}

#[test]
fn a_view_is_one_point_on_both_disks() {
    let (_dir, os, sim) = disks();
    a_view_is_one_point(&os);
    a_view_is_one_point(&sim);
}

/// Commits past `FLUSH_BYTES` want a flush; reads then merge what the database
/// holds with what is held since, deletions included, on both disks.
fn size_flushes_merge(disk: &impl Disk) {
    let mut data = open(disk);
    let mut model = BTreeMap::new();
    let value = vec![7u8; 64 << 10];
    let mut index = 0;
    for i in 0..(2 * FLUSH_BYTES / value.len()) {
        let key = format!("k{:04}", i % 50).into_bytes();
        if i % 7 == 3 {
            data.delete(0, &key).unwrap();
            model.remove(&key);
        } else {
            let value = [&value[..], &i.to_be_bytes()[..]].concat();
            data.put(0, &key, &value).unwrap();
            model.insert(key, value);
        }
        index += 1;
        data.commit(index).unwrap();
        if data.wants_flush() {
            data.flush().unwrap();
        }
        let want: Vec<_> = model.clone().into_iter().collect();
        if i % 20 == 0 {
            assert_eq!(
                read_shard(&data, 0, 200 << 10),
                want,
                "after commit {index}"
            );
        }
    }
    assert!(data.checkpoint(true).unwrap());
    drop(data);
    let data = open(disk);
    assert_eq!(data.applied_index(), index);
    assert_eq!(
        read_shard(&data, 0, 1 << 20),
        model.into_iter().collect::<Vec<_>>()
    );
}

#[test]
fn size_flushes_merge_on_both_disks() {
    let (_dir, os, sim) = disks();
    size_flushes_merge(&os);
    size_flushes_merge(&sim);
}

/// The data of one shard after each commit, by applied index.
type History = BTreeMap<u64, BTreeMap<Vec<u8>, Vec<u8>>>;

/// How a round ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Crash,
    Power,
}

/// How rounds of [`fail_and_reopen`] ended.
#[derive(Debug, Default)]
struct Reopened {
    /// Rounds that lost commits.
    lost: usize,
    /// Rounds that reopened past the last checkpoint.
    ahead: usize,
}

/// Rounds of random commits and checkpoints on the simulator's disk, each ended by
/// `failure` and a reopen that must find the state of a commit at or after the last
/// checkpoint. With `keep`, the engine keeps some of its non-durable writes (as the
/// simulator's replicas run it) and the rounds flush now and then.
fn fail_and_reopen(seed: u64, failure: Failure, checkpoints: bool, keep: bool) -> Reopened {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let disk = SimDisk::new();
    let mut history: History = BTreeMap::from([(0, BTreeMap::new())]);
    let mut durable = 0;
    let mut reopened = Reopened::default();
    for _round in 0..4 {
        let mut data = match keep {
            false => open(&LabDisk(disk.clone())),
            true => {
                let engine = RedbEngine::open(&LabDisk(disk.clone()), CACHE).unwrap();
                let engine = Arc::new(engine.keeping_some(rng.random()));
                Data::with_engine(engine, Background::Deferred { polls: 0 }).unwrap()
            }
        };
        let applied = data.applied_index();
        assert!(
            applied >= durable,
            "seed {seed}: reopened at {applied}, checkpoint at {durable}"
        );
        let mut state = history[&applied].clone();
        assert_eq!(
            read_shard(&data, 0, 1 << 20),
            state.clone().into_iter().collect::<Vec<_>>(),
            "seed {seed}: state at {applied}"
        );
        reopened.lost += usize::from(applied < *history.keys().last().unwrap());
        reopened.ahead += usize::from(applied > durable);
        history.retain(|&index, _| index <= applied);
        let mut index = applied;
        for _ in 0..rng.random_range(1..12) {
            for _ in 0..rng.random_range(1..20) {
                let key = format!("k{}", rng.random_range(0..40)).into_bytes();
                match rng.random_range(0..4) {
                    0 => {
                        data.delete(0, &key).unwrap();
                        state.remove(&key);
                    }
                    _ => {
                        let value = vec![rng.random_range(0..=255u8); rng.random_range(1..3000)];
                        data.put(0, &key, &value).unwrap();
                        state.insert(key, value);
                    }
                }
            }
            index += 1;
            data.commit(index).unwrap();
            history.insert(index, state.clone());
            if checkpoints && rng.random_range(0..3) == 0 {
                data.checkpoint(true).unwrap();
                durable = data.durable_index();
                assert_eq!(durable, index);
            } else if keep && rng.random_bool(0.5) {
                data.flush().unwrap();
            }
        }
        match failure {
            Failure::Crash => disk.crash(),
            Failure::Power => disk.power_fail(&mut rng),
        }
        drop(data);
    }
    reopened
}

#[test]
fn a_crash_reopens_at_a_commit_after_the_checkpoint() {
    for seed in 0..20 {
        fail_and_reopen(seed, Failure::Crash, true, false);
    }
}

#[test]
fn a_power_failure_reopens_at_a_commit_after_the_checkpoint() {
    for seed in 0..20 {
        fail_and_reopen(seed, Failure::Power, true, false);
    }
}

/// As the simulator's replicas run the engine: a crash keeps some writes past the last
/// checkpoint, and the data reopens at exactly the state of one of those commits.
#[test]
fn kept_writes_reopen_at_a_commit_past_the_checkpoint() {
    let mut ahead = 0;
    for seed in 0..20 {
        for failure in [Failure::Crash, Failure::Power] {
            ahead += fail_and_reopen(seed, failure, true, true).ahead;
        }
    }
    assert!(ahead > 0, "no crash kept a write past its checkpoint");
}

/// The check above can fail: without checkpoints, power failures lose commits.
#[test]
fn without_checkpoints_commits_are_lost() {
    let lost: usize = (0..5)
        .map(|seed| fail_and_reopen(seed, Failure::Power, false, false).lost)
        .sum();
    assert!(lost > 0, "no power failure lost an uncheckpointed commit");
}

/// Stages `from`'s view into `to` in chunks of `budget` bytes, checking each chunk's
/// budget; returns the view's applied index and metadata.
fn stage_view(from: &mut Data, to: &mut Data, budget: usize) -> (u64, Vec<u8>) {
    let view = from.view().unwrap();
    to.stage_begin().unwrap();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let chunk = view.stored_chunk(after.as_deref(), budget).unwrap();
        assert!(
            chunk.pairs.len() == 1
                || chunk
                    .pairs
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>()
                    <= budget
        );
        to.stage(&chunk.pairs).unwrap();
        match chunk.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    (view.applied_index(), view.meta("state").unwrap().unwrap())
}

/// `background`: how the staging data runs its flushes; a flush of its own writes is
/// still under way when the copy ends (deferred, or on its thread), and must not land
/// over the switched state.
fn staging_switches_at_once(disk: &impl Disk, sim: Option<&SimDisk>, background: Background) {
    let mut source = Data::in_memory();
    for i in 0..200u32 {
        source
            .put(
                (i % 3) as usize,
                format!("k{i:03}").as_bytes(),
                &[i as u8; 40],
            )
            .unwrap();
    }
    source.put_meta("state", b"the source's").unwrap();
    source.commit(50).unwrap();
    let mut data = Data::open(disk, CACHE, background).unwrap();
    data.put(0, b"mine", b"before").unwrap();
    data.put_meta("state", b"mine").unwrap();
    data.commit(5).unwrap();
    assert!(data.checkpoint(true).unwrap());
    let (applied, meta) = stage_view(&mut source, &mut data, 500);
    // Writes of the old state, being flushed when the switch comes; the key is in the
    // copy too, with another value.
    let old_writes = |data: &mut Data| {
        data.put(0, b"k000", b"old state").unwrap();
        data.commit(6).unwrap();
        data.flush().unwrap();
    };
    old_writes(&mut data);
    // The live data goes on meanwhile, untouched by the staging.
    assert_eq!(data.get(0, b"mine").unwrap(), Some(b"before".to_vec()));
    assert_eq!(data.get(0, b"k000").unwrap(), Some(b"old state".to_vec()));
    if let Some(sim) = sim {
        // Staged and not switched: a power failure keeps the data as it was.
        sim.power_fail(&mut Xoshiro256PlusPlus::seed_from_u64(7));
        drop(data);
        data = Data::open(disk, CACHE, background).unwrap();
        assert_eq!(data.applied_index(), 5);
        assert_eq!(data.get(0, b"mine").unwrap(), Some(b"before".to_vec()));
        assert_eq!(data.get(0, b"k000").unwrap(), None);
        stage_view(&mut source, &mut data, 500);
        old_writes(&mut data);
    }
    data.stage_finish(&[("state", &meta)], applied).unwrap();
    let check = |data: &Data| {
        assert_eq!(data.applied_index(), 50);
        assert_eq!(data.meta("state").unwrap(), Some(b"the source's".to_vec()));
        assert_eq!(data.get(0, b"mine").unwrap(), None, "only the view's keys");
        for shard in 0..3 {
            assert_eq!(
                read_shard(data, shard, 1 << 20),
                read_shard(&source, shard, 1 << 20),
                "shard {shard}"
            );
        }
    };
    check(&data);
    if let Some(sim) = sim {
        sim.power_fail(&mut Xoshiro256PlusPlus::seed_from_u64(8));
    }
    drop(data);
    check(&open(disk));
    // A second catch-up switches back to the table the first one left (fjall keeps the
    // two tables as two keyspaces and a pointer), over a reopen.
    let mut data = open(disk);
    source.delete_shard(1).unwrap();
    source.put(2, b"second", b"catch-up").unwrap();
    source.commit(60).unwrap();
    let (applied, meta) = stage_view(&mut source, &mut data, 500);
    data.stage_finish(&[("state", &meta)], applied).unwrap();
    let check = |data: &Data| {
        assert_eq!(data.applied_index(), 60);
        assert_eq!(data.get(2, b"second").unwrap(), Some(b"catch-up".to_vec()));
        assert!(read_shard(data, 1, 1 << 20).is_empty(), "shard 1 dropped");
        assert_eq!(
            read_shard(data, 0, 1 << 20),
            read_shard(&source, 0, 1 << 20)
        );
    };
    check(&data);
    drop(data);
    check(&open(disk));
}

#[test]
fn staging_switches_at_once_on_both_disks() {
    for background in [
        Background::Deferred { polls: 0 },
        Background::Deferred { polls: 50 },
        Background::Threads,
    ] {
        let (_dir, os, sim) = disks();
        staging_switches_at_once(&os, None, background);
        staging_switches_at_once(&sim, Some(&sim.0), background);
    }
}

/// Random writes, shard drops, commits, flushes and checkpoints, with the flushes and
/// checkpoints running in the background (deferred by `polls` polls, or on threads):
/// every read, of one key or of a shard by chunks, and the metadata, matches a model at
/// every step, while jobs are under way too; the durable index only grows, and never
/// passes the applied index.
fn background_jobs_keep_reads_whole(disk: &impl Disk, background: Background, seed: u64) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut data = Data::open(disk, CACHE, background).unwrap();
    let mut model: BTreeMap<(usize, Vec<u8>), Vec<u8>> = BTreeMap::new();
    let mut meta = None;
    let mut durable = data.durable_index();
    for index in 1..=400u64 {
        for _ in 0..rng.random_range(1..8) {
            let shard = rng.random_range(0..3usize);
            let key = format!("k{}", rng.random_range(0..30)).into_bytes();
            match rng.random_range(0..20) {
                0 => {
                    data.delete_shard(shard).unwrap();
                    model.retain(|(s, _), _| *s != shard);
                }
                1..=4 => {
                    data.delete(shard, &key).unwrap();
                    model.remove(&(shard, key));
                }
                5 => {
                    let bytes = index.to_be_bytes().to_vec();
                    data.put_meta("state", &bytes).unwrap();
                    meta = Some(bytes);
                }
                _ => {
                    let value = vec![rng.random_range(0..=255u8); rng.random_range(1..400)];
                    data.put(shard, &key, &value).unwrap();
                    model.insert((shard, key), value);
                }
            }
        }
        data.commit(index).unwrap();
        match rng.random_range(0..10) {
            0 => data.flush().unwrap(),
            1 => drop(data.checkpoint(false).unwrap()),
            2 if rng.random_range(0..5) == 0 => assert!(data.checkpoint(true).unwrap()),
            _ => {}
        }
        assert!(data.durable_index() >= durable && data.durable_index() <= index);
        durable = data.durable_index();
        for shard in 0..3 {
            let want: Vec<_> = (model.iter())
                .filter(|((s, _), _)| *s == shard)
                .map(|((_, k), v)| (k.clone(), v.clone()))
                .collect();
            assert_eq!(
                read_shard(&data, shard, 700),
                want,
                "seed {seed} index {index}"
            );
            for (key, value) in want.iter().take(3) {
                assert_eq!(data.get(shard, key).unwrap().as_ref(), Some(value));
            }
        }
        assert_eq!(data.get(1, b"absent").unwrap(), None);
        assert_eq!(
            data.meta("state").unwrap(),
            meta,
            "seed {seed} index {index}"
        );
    }
    assert!(data.checkpoint(true).unwrap());
    assert_eq!(data.durable_index(), 400);
    drop(data);
    let data = open(disk);
    assert_eq!(data.applied_index(), 400);
    for shard in 0..3 {
        let want: Vec<_> = (model.iter())
            .filter(|((s, _), _)| *s == shard)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(read_shard(&data, shard, 1 << 20), want);
    }
}

#[test]
fn background_jobs_keep_reads_whole_on_both_disks() {
    for seed in 0..4 {
        let (_dir, os, sim) = disks();
        background_jobs_keep_reads_whole(&os, Background::Threads, seed);
        background_jobs_keep_reads_whole(&sim, Background::Deferred { polls: 3 }, seed);
    }
}
