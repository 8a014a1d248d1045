//! The `LogStore` contract, one generic suite run against every backend.
//!
//! Each `contract_*` function takes a [`Harness`] that can make a fresh store and
//! "crash" one (drop it, keep only what its backend holds) and reopen it; the macro at
//! the bottom instantiates every function for `MemBackend` and for `WalBackend` in a
//! temporary directory, with its usual segments and with tiny ones (so every contract
//! also runs through segment roll-overs and cleaning).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use protobuf::Message as _;
use shardkv_raft::raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use shardkv_raft::raft::{self, GetEntriesContext, Storage};
use shardkv_raft::{
    Backend, Background, LogStore, MemBackend, OsDisk, Replica, ReplicaConfig, SnapshotData,
    SnapshotMaker, Store, StoreError, WalBackend,
};

trait Harness {
    type B: Backend;
    /// Whether `Storage::snapshot` reads the snapshot on another thread.
    const READS_IN_BACKGROUND: bool;
    fn fresh(&mut self) -> Store<Self::B>;
    fn reopen_backend(&mut self, backend: Self::B) -> Store<Self::B>;
    fn reopen(&mut self, store: Store<Self::B>) -> Store<Self::B> {
        let backend = store.into_backend();
        self.reopen_backend(backend)
    }
}

struct Mem;

impl Harness for Mem {
    type B = MemBackend;
    const READS_IN_BACKGROUND: bool = false;
    fn fresh(&mut self) -> Store<MemBackend> {
        Store::open(MemBackend::new()).unwrap()
    }
    fn reopen_backend(&mut self, backend: MemBackend) -> Store<MemBackend> {
        Store::open(backend).unwrap()
    }
}

struct Wal {
    dir: tempfile::TempDir,
    path: std::path::PathBuf,
    /// Segment size: small ones make the contract run through roll-overs and cleaning.
    segment_bytes: u64,
}

impl Wal {
    fn new() -> Self {
        Self::with_segment_bytes(shardkv_raft::SEGMENT_BYTES)
    }

    fn with_segment_bytes(segment_bytes: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        Wal {
            dir,
            path,
            segment_bytes,
        }
    }

    fn open(&self) -> WalBackend<OsDisk> {
        let disk = OsDisk::open(&self.path).unwrap();
        WalBackend::open_with_segment_bytes(disk, Background::Threads, self.segment_bytes)
            .unwrap_or_else(|error| panic!("cannot open {}: {error}", self.path.display()))
    }

    /// The names of the files in the data directory, sorted.
    fn files(&self) -> Vec<String> {
        let mut left: Vec<String> = std::fs::read_dir(&self.path)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name != "LOCK")
            .collect();
        left.sort();
        left
    }
}

impl Harness for Wal {
    type B = WalBackend<OsDisk>;
    const READS_IN_BACKGROUND: bool = true;
    fn fresh(&mut self) -> Store<WalBackend<OsDisk>> {
        assert!(self.dir.path().exists());
        Store::open(self.open()).unwrap()
    }
    /// A stop after the backend stored any snapshot still being written and synced: an
    /// interrupted compaction (snapshot stored, log not yet trimmed) is what it leaves.
    fn reopen_backend(&mut self, mut backend: WalBackend<OsDisk>) -> Store<WalBackend<OsDisk>> {
        backend.snapshot_stored(true).unwrap();
        backend.sync().unwrap();
        drop(backend);
        Store::open(self.open()).unwrap()
    }
}

/// A backend that makes and stores a snapshot started with `start_put_snapshot` only
/// when told to ([`Deferred::store_snapshot`]) or waited for, as a slow background
/// encode and write would.
#[derive(Debug, Default)]
struct Deferred {
    inner: MemBackend,
    snapshot: Option<Started>,
    /// The pending snapshot's write fails (reported once, as `WalBackend` does).
    fail: bool,
}

/// A snapshot started and not yet made.
struct Started(SnapshotMaker);

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Started(..)")
    }
}

impl Deferred {
    fn store_snapshot(&mut self) {
        if let Some(Started(make)) = self.snapshot.take() {
            self.inner.put_snapshot(&make().unwrap().concat()).unwrap();
        }
    }
}

impl Backend for Deferred {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.inner.put(key, value)
    }
    fn delete_range(&mut self, start: &[u8], end: &[u8]) -> Result<(), StoreError> {
        self.inner.delete_range(start, end)
    }
    fn scan(&self, start: &[u8], end: &[u8]) -> Result<shardkv_raft::KeyValues, StoreError> {
        self.inner.scan(start, end)
    }
    fn put_snapshot(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        assert!(
            self.snapshot.is_none(),
            "snapshot written over a pending one"
        );
        self.inner.put_snapshot(bytes)
    }
    fn start_put_snapshot(&mut self, make: SnapshotMaker) -> Result<(), StoreError> {
        assert!(self.snapshot.is_none(), "two snapshot writes at once");
        self.snapshot = Some(Started(make));
        Ok(())
    }
    fn snapshot_stored(&mut self, wait: bool) -> Result<bool, StoreError> {
        if self.fail && self.snapshot.take().is_some() {
            return Err(StoreError::Backend("no space left on device".into()));
        }
        if wait {
            self.store_snapshot();
        }
        Ok(self.snapshot.is_none())
    }
    fn get_snapshot(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get_snapshot()
    }
    fn sync(&mut self) -> Result<(), StoreError> {
        self.inner.sync()
    }
}

/// While a compaction's snapshot is still being made and stored, the store serves the
/// old snapshot and the whole log, and its backend keeps the old snapshot, the old conf
/// state record and every log record: a crash then recovers the whole old log. Once
/// the snapshot is stored, `tidy` installs it, drops the log through its index, writes
/// the conf state and retires the runs; a crash after that recovers the new snapshot
/// and the log after it. The state machine's encoder runs only when the backend makes
/// the snapshot.
#[test]
fn compaction_waits_for_its_snapshot_to_be_stored() {
    let mut store = Store::open(Deferred::default()).unwrap();
    store.set_conf_state(&voters(&[1])).unwrap();
    for index in 1..=30 {
        store.append(&entries(index..=index, 2)).unwrap();
    }
    set_commit(&mut store, 2, 30);
    let disk_before = store.backend().inner.clone();
    let encoded = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&encoded);
    let data = SnapshotData::encode_later(move || {
        flag.store(true, Ordering::SeqCst);
        b"sm@20".to_vec()
    });
    store.compact(20, data, voters(&[1, 2])).unwrap();
    store.tidy().unwrap();
    assert!(
        !encoded.load(Ordering::SeqCst),
        "encoded before the backend asked"
    );
    assert!(store.compaction_pending());
    assert_eq!(store.first_index().unwrap(), 1);
    assert!(store.snapshot(0, 1).is_err(), "no snapshot to offer yet");
    assert_eq!(read(&store, 1, 31, None).unwrap(), entries(1..=30, 2));
    assert_eq!(store.backend().inner, disk_before, "nothing written yet");

    let crashed = Store::open(store.backend().inner.clone()).unwrap();
    assert_eq!(crashed.snapshot_index(), 0);
    assert_eq!(read(&crashed, 1, 31, None).unwrap(), entries(1..=30, 2));
    assert_eq!(crashed.initial_state().unwrap().conf_state.voters, vec![1]);

    store.backend_mut().store_snapshot();
    assert!(encoded.load(Ordering::SeqCst));
    store.tidy().unwrap();
    assert!(!store.compaction_pending());
    assert_eq!(store.first_index().unwrap(), 21);
    let snapshot = store.snapshot(0, 1).unwrap();
    assert_eq!(snapshot.get_metadata().index, 20);
    assert_eq!(&snapshot.data[..], b"sm@20");
    let crashed = Store::open(store.backend().inner.clone()).unwrap();
    assert_eq!(crashed.snapshot_index(), 20);
    assert_eq!(crashed.first_index().unwrap(), 21);
    assert_eq!(read(&crashed, 21, 31, None).unwrap(), entries(21..=30, 2));
    assert_eq!(
        crashed.initial_state().unwrap().conf_state.voters,
        vec![1, 2]
    );
}

/// `Replica::flush` (a clean stop) finishes a pending compaction, where a sync leaves it
/// pending.
#[test]
fn replica_flush_finishes_a_pending_compaction() {
    let store = Store::open(Deferred::default()).unwrap();
    let mut replica = Replica::open(ReplicaConfig::new(1, vec![1]), store).unwrap();
    for _ in 0..30 {
        replica.tick();
        replica.advance().unwrap();
    }
    assert!(replica.is_leader(), "a sole voter elects itself");
    replica.propose(b"x".to_vec()).unwrap();
    replica.advance().unwrap();
    let index = replica.applied_index();
    replica.snapshot(index, b"sm".to_vec()).unwrap();
    assert!(replica.store().compaction_pending());
    replica.flush().unwrap();
    assert!(!replica.store().compaction_pending());
    assert_eq!(replica.store().snapshot_index(), index);
    assert!(replica
        .store()
        .backend()
        .inner
        .get_snapshot()
        .unwrap()
        .is_some());
}

/// Entries 1..=30 (term 2), committed through `commit`, compacted at 10 with the
/// snapshot not stored yet.
fn compacting_at_10(commit: u64) -> Store<Deferred> {
    let mut store = Store::open(Deferred::default()).unwrap();
    store.append(&entries(1..=30, 2)).unwrap();
    set_commit(&mut store, 2, commit);
    store
        .compact(10, b"sm@10".to_vec().into(), voters(&[1]))
        .unwrap();
    assert!(store.backend().snapshot.is_some());
    store
}

/// A second compaction or a conf change while a snapshot is being stored first waits
/// for it, so no later record can land before it; a sync does not (entries appended
/// meanwhile are durable on their own).
#[test]
fn writes_that_depend_on_a_pending_snapshot_wait_for_it() {
    let pending = || compacting_at_10(30);
    let stored = |store: &Store<Deferred>| {
        let snapshot: Snapshot = protobuf::Message::parse_from_bytes(
            &store.backend().inner.get_snapshot().unwrap().unwrap(),
        )
        .unwrap();
        snapshot.get_metadata().index
    };
    let mut store = pending();
    store
        .compact(20, b"sm@20".to_vec().into(), voters(&[1]))
        .unwrap();
    assert_eq!(stored(&store), 10, "the first snapshot was stored first");
    store.sync().unwrap();
    assert_eq!(stored(&store), 10, "a sync does not wait for the second");
    store.finish_compaction().unwrap();
    assert_eq!(stored(&store), 20);

    let mut store = pending();
    store.set_conf_state(&voters(&[1, 2])).unwrap();
    assert_eq!(stored(&store), 10);
    let crashed = Store::open(store.backend().inner.clone()).unwrap();
    assert_eq!(
        crashed.initial_state().unwrap().conf_state.voters,
        vec![1, 2]
    );
    assert_eq!(crashed.first_index().unwrap(), 11);
}

/// A truncation of the log and the install of a leader's snapshot wait for a pending
/// snapshot too (the truncated run is rewritten from the already compacted cache).
#[test]
fn truncation_and_install_wait_for_a_pending_snapshot() {
    let pending = || compacting_at_10(20);
    let mut store = pending();
    store.append(&entries(25..=26, 3)).unwrap();
    assert!(
        store.backend().snapshot.is_none(),
        "stored before the truncation"
    );
    let crashed = Store::open(store.backend().inner.clone()).unwrap();
    assert_eq!(crashed.snapshot_index(), 10);
    let mut expected = entries(11..=24, 2);
    expected.extend(entries(25..=26, 3));
    assert_eq!(read(&crashed, 11, 27, None).unwrap(), expected);

    let mut store = pending();
    store
        .apply_snapshot(leader_snapshot(40, 4, b"leader-state"))
        .unwrap();
    let crashed = Store::open(store.backend().inner.clone()).unwrap();
    assert_eq!(crashed.snapshot_index(), 40);
    assert_eq!(&crashed.snapshot(0, 1).unwrap().data[..], b"leader-state");
}

/// When the backend cannot store a compaction's snapshot, the compaction's records are
/// never written and every later write that would follow them fails, so the backend
/// still holds a state that opens: the old snapshot and the whole log.
#[test]
fn a_failed_snapshot_write_stops_the_store() {
    let mut store = Store::open(Deferred {
        fail: true,
        ..Deferred::default()
    })
    .unwrap();
    store.append(&entries(1..=30, 2)).unwrap();
    set_commit(&mut store, 2, 30);
    let compacted = store.compact(20, b"sm@20".to_vec().into(), voters(&[1]));
    assert!(
        compacted.is_err() || store.tidy().is_err(),
        "the failure is reported"
    );
    assert!(store.tidy().is_err(), "the failure sticks");
    assert!(store.sync().is_err());
    assert!(
        store.append(&entries(31..=31, 2)).is_ok(),
        "appends are not ordered after it"
    );
    let crashed = Store::open(store.backend().inner.clone()).unwrap();
    assert_eq!(crashed.snapshot_index(), 0);
    assert_eq!(read(&crashed, 1, 32, None).unwrap(), entries(1..=31, 2));
}

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: format!("cmd-{index}-{term}").into_bytes().into(),
        ..Entry::default()
    }
}

fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    range.map(|index| entry(index, term)).collect()
}

fn voters(ids: &[u64]) -> ConfState {
    ConfState {
        voters: ids.to_vec(),
        ..ConfState::default()
    }
}

fn read(store: &impl Storage, low: u64, high: u64, max: Option<u64>) -> raft::Result<Vec<Entry>> {
    store.entries(low, high, max, GetEntriesContext::empty(false))
}

fn is_compacted(result: raft::Result<impl std::fmt::Debug>) -> bool {
    matches!(
        result,
        Err(raft::Error::Store(raft::StorageError::Compacted))
    )
}

fn is_unavailable(result: raft::Result<impl std::fmt::Debug>) -> bool {
    matches!(
        result,
        Err(raft::Error::Store(raft::StorageError::Unavailable))
    )
}

/// An empty store is uninitialized, truncated at 0, and has no snapshot to offer.
fn contract_empty<H: Harness>(h: &mut H) {
    let store = h.fresh();
    assert!(store.is_empty());
    assert!(!store.initial_state().unwrap().initialized());
    assert_eq!(
        (store.first_index().unwrap(), store.last_index().unwrap()),
        (1, 0)
    );
    assert_eq!(store.term(0).unwrap(), 0);
    assert!(is_unavailable(store.term(1)));
    assert!(store.snapshot(0, 2).is_err());
    assert_eq!(store.raft_state_bytes(), 0);
}

/// Appended entries read back in order within bounds, with `max_size` honoured and
/// out-of-range requests answered `Compacted` / `Unavailable`.
fn contract_append_and_bounds<H: Harness>(h: &mut H) {
    let mut store = h.fresh();
    store.append(&entries(1..=5, 1)).unwrap();
    assert_eq!(
        (store.first_index().unwrap(), store.last_index().unwrap()),
        (1, 5)
    );
    assert_eq!(read(&store, 1, 6, None).unwrap(), entries(1..=5, 1));
    assert_eq!(read(&store, 2, 4, None).unwrap(), entries(2..=3, 1));
    assert_eq!(read(&store, 3, 3, None).unwrap(), vec![]);
    let one = u64::from(entry(1, 1).compute_size());
    assert_eq!(
        read(&store, 1, 6, Some(0)).unwrap().len(),
        1,
        "always at least one entry"
    );
    assert_eq!(read(&store, 1, 6, Some(2 * one)).unwrap().len(), 2);
    assert!(is_unavailable(read(&store, 1, 7, None)));
    assert!(is_compacted(read(&store, 0, 3, None)));
    assert_eq!(store.term(3).unwrap(), 1);
    assert!(is_unavailable(store.term(6)));
}

/// Appending over an existing suffix replaces it, also on disk.
fn contract_truncate_conflict<H: Harness>(h: &mut H) {
    let mut store = h.fresh();
    store.append(&entries(1..=5, 1)).unwrap();
    store.append(&entries(3..=4, 2)).unwrap();
    assert_eq!(store.last_index().unwrap(), 4);
    assert_eq!(store.term(3).unwrap(), 2);
    assert!(is_unavailable(store.term(5)));
    let bytes = store.raft_state_bytes();
    store.append(&entries(5..=6, 2)).unwrap();
    let store = h.reopen(store);
    assert_eq!(store.last_index().unwrap(), 6);
    let mut expected = entries(1..=2, 1);
    expected.extend(entries(3..=6, 2));
    assert_eq!(read(&store, 1, 7, None).unwrap(), expected);
    assert!(store.raft_state_bytes() > bytes);
}

/// Hard state and conf state survive a reopen and shape `initial_state`.
fn contract_hard_and_conf_state<H: Harness>(h: &mut H) {
    let mut store = h.fresh();
    store.append(&entries(1..=3, 2)).unwrap();
    let hs = HardState {
        term: 2,
        vote: 3,
        commit: 2,
        ..HardState::default()
    };
    store.set_hard_state(&hs).unwrap();
    store.set_conf_state(&voters(&[3, 1, 2])).unwrap();
    store.sync().unwrap();
    let store = h.reopen(store);
    let state = store.initial_state().unwrap();
    assert_eq!(state.hard_state, hs);
    assert_eq!(
        state.conf_state.voters,
        vec![1, 2, 3],
        "voters stored sorted"
    );
    assert!(state.initialized());
}

/// Compaction keeps the snapshot (with data and conf state), drops the log through its
/// index, shrinks `raft_state_bytes`, and refuses indices it cannot cover. (It may
/// finish in the background; the next `sync` waits for it.)
fn contract_compact<H: Harness>(h: &mut H) {
    let mut store = h.fresh();
    store.append(&entries(1..=10, 3)).unwrap();
    store
        .set_hard_state(&HardState {
            term: 3,
            commit: 8,
            ..HardState::default()
        })
        .unwrap();
    let before = store.raft_state_bytes();
    assert!(matches!(
        store.compact(9, b"sm".to_vec().into(), voters(&[1])),
        Err(StoreError::Unavailable {
            index: 9,
            last_index: 8
        })
    ));
    store
        .compact(5, b"sm@5".to_vec().into(), voters(&[1, 2, 3]))
        .unwrap();
    store.finish_compaction().unwrap();
    store.sync().unwrap();
    assert!(!store.compaction_pending());
    assert!(store.raft_state_bytes() < before);
    assert_eq!(
        (store.first_index().unwrap(), store.last_index().unwrap()),
        (6, 10)
    );
    assert_eq!(store.term(5).unwrap(), 3);
    assert!(is_compacted(store.term(4)));
    assert!(is_compacted(read(&store, 5, 7, None)));
    store
        .compact(3, b"older".to_vec().into(), voters(&[1]))
        .unwrap();
    let store = h.reopen(store);
    let snapshot = offered(&store).unwrap();
    assert_eq!(
        (snapshot.get_metadata().index, snapshot.get_metadata().term),
        (5, 3)
    );
    assert_eq!(&snapshot.data[..], b"sm@5");
    assert_eq!(
        snapshot.get_metadata().get_conf_state().voters,
        vec![1, 2, 3]
    );
    assert!(
        store.snapshot(6, 2).is_err(),
        "a snapshot older than requested is unavailable"
    );
    assert_eq!(
        store.initial_state().unwrap().conf_state.voters,
        vec![1, 2, 3]
    );
    assert_eq!(read(&store, 6, 11, None).unwrap(), entries(6..=10, 3));
}

fn leader_snapshot(index: u64, term: u64, data: &[u8]) -> Snapshot {
    let mut snapshot = Snapshot {
        data: data.to_vec().into(),
        ..Snapshot::default()
    };
    let meta = snapshot.mut_metadata();
    meta.index = index;
    meta.term = term;
    meta.set_conf_state(voters(&[1, 2, 4]));
    snapshot
}

/// Installing a leader's snapshot replaces the log and raises commit and term; an older
/// snapshot is refused; the log then continues after it.
fn contract_apply_snapshot<H: Harness>(h: &mut H) {
    let mut store = h.fresh();
    store.append(&entries(1..=5, 1)).unwrap();
    store
        .set_hard_state(&HardState {
            term: 1,
            commit: 3,
            ..HardState::default()
        })
        .unwrap();
    store
        .apply_snapshot(leader_snapshot(10, 4, b"leader-state"))
        .unwrap();
    assert_eq!(
        (store.first_index().unwrap(), store.last_index().unwrap()),
        (11, 10)
    );
    assert_eq!(store.term(10).unwrap(), 4);
    assert!(is_compacted(store.term(5)));
    assert_eq!(store.hard_state().commit, 10);
    assert_eq!(store.hard_state().term, 4);
    assert!(matches!(
        store.apply_snapshot(leader_snapshot(10, 4, b"again")),
        Err(StoreError::SnapshotOutOfDate {
            index: 10,
            installed: 10
        })
    ));
    store.append(&entries(11..=12, 4)).unwrap();
    store.sync().unwrap();
    let store = h.reopen(store);
    assert_eq!(
        store.initial_state().unwrap().conf_state.voters,
        vec![1, 2, 4]
    );
    assert_eq!(&offered(&store).unwrap().data[..], b"leader-state");
    assert_eq!(read(&store, 11, 13, None).unwrap(), entries(11..=12, 4));
}

/// Reopening restores every piece of state, byte counts included.
fn contract_reopen_restores_everything<H: Harness>(h: &mut H) {
    let mut store = h.fresh();
    store.set_conf_state(&voters(&[1, 2, 3])).unwrap();
    store.append(&entries(1..=20, 1)).unwrap();
    store.append(&entries(15..=25, 2)).unwrap();
    store
        .set_hard_state(&HardState {
            term: 2,
            vote: 1,
            commit: 18,
            ..HardState::default()
        })
        .unwrap();
    store
        .compact(12, b"twelve".to_vec().into(), voters(&[1, 2, 3]))
        .unwrap();
    store.finish_compaction().unwrap();
    store.sync().unwrap();
    let (hs, bytes) = (store.hard_state().clone(), store.raft_state_bytes());
    let log = read(&store, 13, 26, None).unwrap();
    let store = h.reopen(store);
    assert_eq!(store.hard_state(), &hs);
    assert_eq!(store.raft_state_bytes(), bytes);
    assert_eq!(read(&store, 13, 26, None).unwrap(), log);
    assert_eq!(store.snapshot_index(), 12);
    assert_eq!(
        (store.first_index().unwrap(), store.last_index().unwrap()),
        (13, 25)
    );
}

/// A crash between writing a leader's snapshot and trimming the log leaves stale entries
/// that disagree with the snapshot: open drops them instead of serving them.
fn contract_interrupted_install_recovers<H: Harness>(h: &mut H) {
    let mut store = h.fresh();
    store.append(&entries(1..=15, 1)).unwrap();
    store
        .set_hard_state(&HardState {
            term: 1,
            commit: 3,
            ..HardState::default()
        })
        .unwrap();
    let mut backend = store.into_backend();
    let snapshot = leader_snapshot(10, 2, b"s");
    backend
        .put_snapshot(&snapshot.write_to_bytes().unwrap())
        .unwrap();
    let store = h.reopen_backend(backend);
    assert_eq!(
        (store.first_index().unwrap(), store.last_index().unwrap()),
        (11, 10)
    );
    assert_eq!(store.hard_state().commit, 10);
    assert_eq!(
        store.initial_state().unwrap().conf_state.voters,
        vec![1, 2, 4]
    );
    let store = h.reopen(store);
    assert_eq!(store.last_index().unwrap(), 10);
}

/// The snapshot `Storage::snapshot` offers a follower, once any read in the background
/// (the write-ahead log reads its file on a thread of its own) is done.
fn offered<B: shardkv_raft::Backend>(store: &Store<B>) -> Result<Snapshot, StoreError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match store.offer_snapshot() {
            Ok(None) if std::time::Instant::now() < deadline => std::thread::yield_now(),
            Ok(None) => panic!("the snapshot read never finished"),
            Ok(Some(snapshot)) => return Ok(snapshot),
            Err(error) => return Err(error),
        }
    }
}

fn set_commit<B: shardkv_raft::Backend>(store: &mut Store<B>, term: u64, commit: u64) {
    let hs = HardState {
        term,
        commit,
        ..HardState::default()
    };
    store.set_hard_state(&hs).unwrap();
}

/// Each append is stored as one run of entries: a conflicting append that truncates
/// inside a run, compaction through the middle of a run, and a truncation at the first
/// index after compaction all read back exactly after a crash.
fn contract_runs_split_by_truncate_and_compaction<H: Harness>(h: &mut H) {
    let mut store = h.fresh();
    store.append(&entries(1..=10, 1)).unwrap();
    store.append(&entries(11..=20, 1)).unwrap();
    store.append(&entries(6..=8, 2)).unwrap();
    let mut store = h.reopen(store);
    let mut expected = entries(1..=5, 1);
    expected.extend(entries(6..=8, 2));
    assert_eq!(read(&store, 1, 9, None).unwrap(), expected);
    assert_eq!(store.last_index().unwrap(), 8);

    store.append(&entries(9..=15, 2)).unwrap();
    set_commit(&mut store, 2, 7);
    store
        .compact(7, b"sm@7".to_vec().into(), voters(&[1]))
        .unwrap();
    let mut store = h.reopen(store);
    assert_eq!(
        (store.first_index().unwrap(), store.last_index().unwrap()),
        (8, 15)
    );
    let mut expected = entries(8..=8, 2);
    expected.extend(entries(9..=15, 2));
    assert_eq!(read(&store, 8, 16, None).unwrap(), expected);

    store.append(&entries(8..=9, 3)).unwrap();
    let mut store = h.reopen(store);
    assert_eq!(read(&store, 8, 10, None).unwrap(), entries(8..=9, 3));
    assert_eq!(store.last_index().unwrap(), 9);

    set_commit(&mut store, 3, 9);
    store
        .compact(9, b"sm@9".to_vec().into(), voters(&[1]))
        .unwrap();
    let store = h.reopen(store);
    assert_eq!(
        (store.first_index().unwrap(), store.last_index().unwrap()),
        (10, 9)
    );
    assert_eq!(store.raft_state_bytes(), {
        let fresh = h.reopen(store);
        fresh.raft_state_bytes()
    });
}

/// Compaction (finished by a sync) retires the runs it empties and `tidy` deletes them a few per call, while
/// reads and a reopen (partway through) see only the log after the snapshot.
fn contract_tidy_deletes_retired_runs<H: Harness>(h: &mut H) {
    let records = |store: &Store<H::B>| store.backend().scan(b"", &[0xff; 16]).unwrap().len();
    let mut store = h.fresh();
    for index in 1..=30 {
        store.append(&entries(index..=index, 2)).unwrap();
    }
    set_commit(&mut store, 2, 30);
    let before = records(&store);
    store
        .compact(28, b"sm@28".to_vec().into(), voters(&[1]))
        .unwrap();
    // The write-ahead log stores the snapshot on a thread of its own: wait for it.
    store.finish_compaction().unwrap();
    store.sync().unwrap();
    assert_eq!(
        records(&store),
        before + 1,
        "conf state added, runs only retired"
    );
    store.tidy().unwrap();
    let after_one = records(&store);
    assert!(after_one < before + 1, "one tidy deletes some runs");
    assert!(
        after_one > before + 1 - 28,
        "one tidy does not delete them all"
    );
    let mut store = h.reopen(store);
    assert_eq!(
        (store.first_index().unwrap(), store.last_index().unwrap()),
        (29, 30)
    );
    for _ in 0..28 {
        store.tidy().unwrap();
    }
    // Runs 29 and 30, the hard state and the conf state.
    assert_eq!(records(&store), 4);
    assert_eq!(read(&store, 29, 31, None).unwrap(), entries(29..=30, 2));
}

/// The store keeps a snapshot's metadata and size, not its data: a follower's copy is
/// read back from the backend, which must hold that very snapshot. When it does not, the
/// read is `Corrupt` and raft-rs is told to retry later (any other error panics it).
fn contract_snapshot_data_is_read_back<H: Harness>(h: &mut H) {
    let mut store = h.fresh();
    store.append(&entries(1..=10, 3)).unwrap();
    set_commit(&mut store, 3, 10);
    store
        .compact(5, vec![7; 300].into(), voters(&[1, 2, 3]))
        .unwrap();
    // Once the pending snapshot is stored the store installs it, so the store and the
    // backend name the same snapshot.
    store.finish_compaction().unwrap();
    store.sync().unwrap();
    assert_eq!(store.snapshot_index(), 5);
    assert_eq!(store.snapshot_bytes(), 300);
    assert_eq!(offered(&store).unwrap().data.to_vec(), vec![7; 300]);
    assert_eq!(store.latest_snapshot().unwrap().data.to_vec(), vec![7; 300]);
    let other = leader_snapshot(5, 2, b"another");
    store
        .backend_mut()
        .put_snapshot(&other.write_to_bytes().unwrap())
        .unwrap();
    assert!(matches!(
        store.latest_snapshot(),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(offered(&store), Err(StoreError::Corrupt { .. })));
    assert_eq!(
        store.snapshot(5, 2),
        Err(raft::Error::Store(
            raft::StorageError::SnapshotTemporarilyUnavailable
        ))
    );
    assert_eq!(store.snapshot_index(), 5, "the store's own record stands");
}

/// `Storage::snapshot` reads a snapshot file on a thread of its own: the first ask
/// starts the read and answers "temporarily unavailable" (raft-rs asks again), a later
/// one hands the snapshot over; nothing is kept, and a read for a snapshot replaced
/// meanwhile is not served. A backend read at once answers at once.
fn contract_offered_snapshot_is_read_off_the_caller<H: Harness>(h: &mut H) {
    let mut store = h.fresh();
    store.append(&entries(1..=10, 2)).unwrap();
    set_commit(&mut store, 2, 10);
    store
        .compact(5, b"five".to_vec().into(), voters(&[1]))
        .unwrap();
    store.finish_compaction().unwrap();
    let unavailable = Err(raft::Error::Store(
        raft::StorageError::SnapshotTemporarilyUnavailable,
    ));
    let first = store.snapshot(0, 1);
    if H::READS_IN_BACKGROUND {
        assert_eq!(first, unavailable, "the read runs elsewhere");
        assert_eq!(&offered(&store).unwrap().data[..], b"five");
        assert_eq!(
            store.snapshot(0, 1),
            unavailable,
            "nothing kept: read again"
        );
    } else {
        assert_eq!(&first.unwrap().data[..], b"five");
    }
    store
        .compact(8, b"eight".to_vec().into(), voters(&[1]))
        .unwrap();
    store.finish_compaction().unwrap();
    let snapshot = offered(&store).unwrap();
    assert_eq!(snapshot.get_metadata().index, 8);
    assert_eq!(&snapshot.data[..], b"eight");
}

/// A reopened store hands its opening replica the snapshot it read when it opened,
/// rather than reading it again; later calls read the backend.
fn contract_restore_hands_over_the_opened_snapshot<H: Harness>(h: &mut H) {
    let mut store = h.fresh();
    store.append(&entries(1..=10, 3)).unwrap();
    set_commit(&mut store, 3, 10);
    store
        .compact(5, b"sm@5".to_vec().into(), voters(&[1]))
        .unwrap();
    store.sync().unwrap();
    let mut store = h.reopen(store);
    let other = leader_snapshot(5, 3, b"another");
    store
        .backend_mut()
        .put_snapshot(&other.write_to_bytes().unwrap())
        .unwrap();
    let restored = store.restore_snapshot().unwrap();
    assert_eq!(restored.get_metadata().index, 5);
    assert_eq!(&restored.data[..], b"sm@5", "read when the store opened");
    assert!(matches!(
        store.restore_snapshot(),
        Err(StoreError::Corrupt { .. })
    ));
}

macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {
        mod mem {
            $(#[test] fn $name() { super::$name(&mut super::Mem); })*
        }
        mod wal {
            $(#[test] fn $name() { super::$name(&mut super::Wal::new()); })*
        }
        mod wal_small_segments {
            $(#[test] fn $name() { super::$name(&mut super::Wal::with_segment_bytes(512)); })*
        }
    };
}

contract_tests!(
    contract_empty,
    contract_append_and_bounds,
    contract_truncate_conflict,
    contract_hard_and_conf_state,
    contract_compact,
    contract_apply_snapshot,
    contract_reopen_restores_everything,
    contract_tidy_deletes_retired_runs,
    contract_interrupted_install_recovers,
    contract_runs_split_by_truncate_and_compaction,
    contract_snapshot_data_is_read_back,
    contract_restore_hands_over_the_opened_snapshot,
    contract_offered_snapshot_is_read_off_the_caller,
);

/// Freeing compacted entries on the background thread changes nothing a store shows:
/// two stores fed the same writes, one with `set_background_drop(true)`, end with the
/// same log, the same size and the same bytes in their backends.
#[test]
fn background_drop_compacts_like_the_foreground() {
    let [foreground, background] = [false, true].map(|on| {
        let mut store = Store::open(MemBackend::new()).unwrap();
        store.set_background_drop(on);
        for batch in 0..10 {
            let first = batch * 10 + 1;
            store.append(&entries(first..=first + 9, 2)).unwrap();
        }
        store
            .set_hard_state(&HardState {
                term: 2,
                commit: 90,
                ..HardState::default()
            })
            .unwrap();
        store
            .compact(45, b"sm@45".to_vec().into(), voters(&[1]))
            .unwrap();
        store
            .compact(80, b"sm@80".to_vec().into(), voters(&[1]))
            .unwrap();
        store
    });
    for store in [&foreground, &background] {
        assert_eq!(
            (store.first_index().unwrap(), store.last_index().unwrap()),
            (81, 100)
        );
        assert_eq!(read(store, 81, 101, None).unwrap(), entries(81..=100, 2));
    }
    assert_eq!(foreground.raft_state_bytes(), background.raft_state_bytes());
    assert_eq!(foreground.into_backend(), background.into_backend());
}

/// The log keeps snapshots as files: a reopen reads the recorded one and deletes the
/// rest (an unfinished write, a file whose record never became durable).
#[test]
fn wal_snapshot_files_survive_reopen_and_strays_go() {
    let mut h = Wal::new();
    let mut store = h.fresh();
    store.append(&entries(1..=10, 1)).unwrap();
    set_commit(&mut store, 1, 10);
    store
        .compact(8, b"sm@8".to_vec().into(), voters(&[1]))
        .unwrap();
    store.finish_compaction().unwrap();
    store.sync().unwrap();
    std::fs::write(h.path.join("snap-00000000000000000097.snap"), b"old").unwrap();
    std::fs::write(h.path.join("snap-00000000000000000098.tmp"), b"unfinished").unwrap();
    let store = h.reopen(store);
    assert_eq!(store.snapshot_index(), 8);
    assert_eq!(&offered(&store).unwrap().data[..], b"sm@8");
    let snapshots: Vec<String> = (h.files().into_iter())
        .filter(|name| name.starts_with("snap-"))
        .collect();
    assert_eq!(snapshots, ["snap-00000000000000000001.snap"]);
}

/// A snapshot file numbered with the last u64 (put there by hand: shardkv never gets
/// near it) makes the open fail as corrupt rather than overflow the next file's number.
#[test]
fn wal_refuses_a_snapshot_file_with_the_last_number() {
    let mut h = Wal::new();
    let store = h.fresh();
    drop(store);
    std::fs::write(h.path.join(format!("snap-{}.snap", u64::MAX)), b"stray").unwrap();
    let disk = OsDisk::open(&h.path).unwrap();
    match WalBackend::open(disk, Background::Threads) {
        Err(StoreError::Corrupt { what, .. }) => assert!(what.contains("snapshot files"), "{what}"),
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(_) => panic!("opened"),
    }
}

/// A data directory written by the sled-based store of earlier versions is refused with
/// a clear error, not read as an empty log.
#[test]
fn wal_refuses_a_sled_data_directory() {
    let h = Wal::new();
    std::fs::create_dir_all(&h.path).unwrap();
    std::fs::write(h.path.join("conf"), b"segment_size: 524288").unwrap();
    std::fs::write(h.path.join("db"), b"sled").unwrap();
    let disk = OsDisk::open(&h.path).unwrap();
    match WalBackend::open(disk, Background::Threads) {
        Err(StoreError::Backend(reason)) => assert!(reason.contains("sled"), "{reason}"),
        Err(other) => panic!("expected a backend error, got {other}"),
        Ok(_) => panic!("opened"),
    }
}

/// A store in a new directory holding entries 1..=30 (term 2), all committed.
fn wal_with_30_committed() -> (Wal, Store<WalBackend<OsDisk>>) {
    let h = Wal::new();
    let mut store = Store::open(h.open()).unwrap();
    store.append(&entries(1..=30, 2)).unwrap();
    set_commit(&mut store, 2, 30);
    (h, store)
}

/// [`wal_with_30_committed`], compacting at 20 with a 16 MiB snapshot (long enough to
/// still be writing when the test goes on).
fn wal_compacting_16_mib_at_20() -> (Wal, Store<WalBackend<OsDisk>>) {
    let (h, mut store) = wal_with_30_committed();
    store
        .compact(20, vec![7; 16 << 20].into(), voters(&[1]))
        .unwrap();
    (h, store)
}

/// Dropping a store waits for its snapshot thread, so the file is complete and the
/// directory can be opened again at once.
#[test]
fn wal_drop_waits_for_the_snapshot_thread() {
    let (h, store) = wal_compacting_16_mib_at_20();
    drop(store);
    assert!(
        h.files()
            .contains(&"snap-00000000000000000001.snap".to_string()),
        "the snapshot file was finished before the drop returned"
    );
    let store = Store::open(h.open()).unwrap();
    assert!(matches!(store.snapshot_index(), 0 | 20));
}

/// Finishing the compaction and syncing before a clean stop (what `Replica::flush`
/// does) keeps the pending snapshot: the store reopens from it, not from the old one
/// and its log.
#[test]
fn wal_sync_before_stop_keeps_the_pending_snapshot() {
    let (h, mut store) = wal_compacting_16_mib_at_20();
    store.finish_compaction().unwrap();
    store.sync().unwrap();
    drop(store);
    let store = Store::open(h.open()).unwrap();
    assert_eq!(store.snapshot_index(), 20);
    assert_eq!(store.first_index().unwrap(), 21);
}

/// The log encodes a snapshot given as `SnapshotData::encode_later` on its snapshot
/// thread, not on the thread that compacts (a replica's driver), and the compaction
/// holds the encoded bytes once it settles.
#[test]
fn wal_encodes_snapshots_on_its_snapshot_thread() {
    let (_h, mut store) = wal_with_30_committed();
    let (sender, receiver) = std::sync::mpsc::channel();
    let data = SnapshotData::encode_later(move || {
        let thread = std::thread::current().name().map(str::to_owned);
        sender.send(thread).unwrap();
        b"sm@20".to_vec()
    });
    store.compact(20, data, voters(&[1])).unwrap();
    store.finish_compaction().unwrap();
    store.sync().unwrap();
    assert_eq!(
        receiver.recv().unwrap().as_deref(),
        Some("shardkv-snapshot")
    );
    assert_eq!(&offered(&store).unwrap().data[..], b"sm@20");
    assert_eq!(store.first_index().unwrap(), 21);
}

/// Once a newer snapshot is recorded and that record synced, the older files go: the
/// sync job that covers the record removes them.
#[test]
fn wal_old_snapshot_files_are_deleted() {
    let (h, mut store) = wal_with_30_committed();
    for index in [5, 8, 12] {
        store
            .compact(index, vec![index as u8; 100].into(), voters(&[1]))
            .unwrap();
        store.finish_compaction().unwrap();
        store.sync().unwrap();
    }
    let snapshots: Vec<String> = (h.files().into_iter())
        .filter(|name| name.starts_with("snap-"))
        .collect();
    assert_eq!(snapshots, ["snap-00000000000000000003.snap"]);
}

/// With small segments, compaction lets the log clean its old segments: after many
/// appends and compactions only a few segment files are left, and a reopen reads back
/// exactly the log after the last snapshot.
#[test]
fn wal_cleans_old_segments() {
    let mut h = Wal::with_segment_bytes(4096);
    let mut store = h.fresh();
    for round in 0..50u64 {
        let first = round * 20 + 1;
        store.append(&entries(first..=first + 19, 1)).unwrap();
        set_commit(&mut store, 1, first + 19);
        store
            .compact(first + 9, vec![round as u8; 200].into(), voters(&[1]))
            .unwrap();
        store.finish_compaction().unwrap();
        store.tidy().unwrap();
        store.sync().unwrap();
    }
    for _ in 0..8 {
        store.tidy().unwrap();
        store.sync().unwrap();
    }
    let segments = (h.files().into_iter())
        .filter(|name| name.starts_with("wal-"))
        .count();
    assert!(segments <= 4, "{segments} segments left: {:?}", h.files());
    let store = h.reopen(store);
    assert_eq!(store.first_index().unwrap(), 991);
    assert_eq!(store.last_index().unwrap(), 1000);
    assert_eq!(&offered(&store).unwrap().data[..], &[49u8; 200][..]);
}
