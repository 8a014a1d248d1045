//! The kv suite catches the bugs a group's data on disk invites: each mutant below is
//! the reference with one duty dropped, and a recorded seed of a scenario on which the
//! reference passes and the mutant fails (`find_kv_mutant_seeds` finds such seeds).
//!
//! - **Live chunks**: a replica serving a follower's catch-up reads each chunk from its
//!   live state instead of the one view the copy started at, so the follower's copy
//!   mixes points. Caught by the check that replicas agree (or by linearizability).
//! - **Reapplied replays**: the host applies entries the state's storage holds already,
//!   as after a catch-up switched the data ahead of the log. Caught by the state's own
//!   refusal to apply an index twice (a panic: the run fails).
//! - **Held shards handed on empty**: a group holding a shard for an abandoned group
//!   answers the next owner's pull with no keys. Caught by the appenders' check or by
//!   linearizability.
//! - **Lost checkpoints**: the data's file is never synced, so a checkpoint is not
//!   durable when the log is compacted through it. Caught after a power failure: the
//!   replica refuses to start over data behind its compacted log (or over a database
//!   the failure tore).
//! - **Unknown sessions taken as new**: a shard takes every request of a client it does
//!   not know as new, as duplicate tables did before sessions expired by cluster time. A
//!   stray copy of an applied Append arriving after its session expired applies again
//!   (caught by the scenario's check of the copy's answer), and so does the retry of a
//!   client cut off past its session's expiry after its Append applied (caught by the
//!   appends check or by linearizability).

use std::collections::BTreeMap;

use replica_group::phase::Phase;
use shardkv_proto::kv::{MigrationReply, MigrationRequest, Request};
use shardkv_proto::{ConfigNum, ShardId};
use shardkv_raft::mutants::{self, Mutation};
use shardkv_raft::{Disk, DiskFile, Service};
use shardkv_tests::kv_lab::reference::LAB_CHUNK_BYTES;
use shardkv_tests::kv_lab::{lab_scenarios, scenarios, CallId, GroupLab, KvEffect, KvLab, KvStart};
use shardkv_tests::master_lab::{Peer, ReqId};
use shardkv_tests::scenario::{find, run_one, Scenario};
use shardkv_tests::sim_disk::LabDisk;

/// A migration request some mutant answers itself, and its answer; `None` leaves the
/// request to the reference.
type Answer = fn(&mut GroupLab, &MigrationRequest) -> Option<MigrationReply>;

/// The reference, with some migration requests answered by `A` instead.
struct Answering<A: AnswerWith> {
    inner: GroupLab,
    replies: Vec<KvEffect>,
    _answer: std::marker::PhantomData<A>,
}

/// Names a mutant's [`Answer`].
trait AnswerWith: 'static {
    const ANSWER: Answer;
}

impl<A: AnswerWith> KvLab for Answering<A> {
    fn make(start: KvStart) -> Self {
        Answering {
            inner: GroupLab::make(start),
            replies: Vec::new(),
            _answer: std::marker::PhantomData,
        }
    }
    fn on_peer_message(&mut self, from: Peer, bytes: Vec<u8>) {
        self.inner.on_peer_message(from, bytes)
    }
    fn on_request(&mut self, req_id: ReqId, request: Request) {
        self.inner.on_request(req_id, request)
    }
    fn on_migration_request(&mut self, req_id: ReqId, request: MigrationRequest) {
        match A::ANSWER(&mut self.inner, &request) {
            Some(reply) => self.replies.push(KvEffect::MigrationReply {
                req_id,
                response: Ok(reply),
            }),
            None => self.inner.on_migration_request(req_id, request),
        }
    }
    fn on_response(&mut self, call_id: CallId, reply: Option<Vec<u8>>) {
        self.inner.on_response(call_id, reply)
    }
    fn on_tick(&mut self) {
        self.inner.on_tick()
    }
    fn on_wake(&mut self, token: u64) {
        self.inner.on_wake(token)
    }
    fn take_effects(&mut self) -> Vec<KvEffect> {
        let mut effects = std::mem::take(&mut self.replies);
        effects.extend(self.inner.take_effects());
        effects
    }
    fn is_leader(&self) -> bool {
        self.inner.is_leader()
    }
    fn serving(&self) -> (ConfigNum, Vec<ShardId>) {
        self.inner.serving()
    }
    fn persisted_bytes(&self, persister: &labrpc_sim::Persister) -> usize {
        self.inner.persisted_bytes(persister)
    }
    fn state_digest(&self) -> Option<(u64, u64)> {
        self.inner.state_digest()
    }
}

/// The reference, serving catch-up chunks from its live state.
struct LiveChunks;

impl AnswerWith for LiveChunks {
    const ANSWER: Answer = |inner, request| {
        let MigrationRequest::PullState {
            view: Some(view),
            after,
            ..
        } = request
        else {
            return None;
        };
        let state = inner.server_mut().host_mut().state_mut();
        let (live, _) = state.view().expect("the data reads");
        let chunk = (live.stored_chunk(after.as_deref(), LAB_CHUNK_BYTES)).expect("reads");
        Some(MigrationReply::StateChunk {
            view: *view,
            after: after.clone(),
            last: chunk.next.is_none(),
            pairs: chunk.pairs.into_iter().collect(),
        })
    };
}

/// The reference, handing a shard it held for an abandoned group on to the next owner
/// empty (the shard is offered, but the previous configuration did not give it here).
struct HeldHandedOnEmpty;

impl AnswerWith for HeldHandedOnEmpty {
    const ANSWER: Answer = |inner, request| {
        let &MigrationRequest::PullShard {
            config_num, shard, ..
        } = request
        else {
            return None;
        };
        let state = inner.server().state();
        let offered = matches!(state.phase(shard), Some(Phase::Offering { .. }));
        let held = state.prev_config().shards.get(shard) != Some(&state.gid());
        (offered && held && state.config().num == config_num).then(|| MigrationReply::ShardData {
            config_num,
            shard,
            after: None,
            kv: BTreeMap::new(),
            next: None,
            sessions: Default::default(),
            clock: state.time(),
        })
    };
}

/// A disk whose files are synced once (the database's creation) and never again.
#[derive(Debug, Clone)]
struct NoSync(LabDisk);

#[derive(Debug)]
struct NoSyncFile(<LabDisk as Disk>::File, std::sync::atomic::AtomicBool);

impl Disk for NoSync {
    type File = NoSyncFile;
    fn list(&self) -> std::io::Result<Vec<String>> {
        self.0.list()
    }
    fn create(&self, name: &str) -> std::io::Result<NoSyncFile> {
        self.0
            .create(name)
            .map(|file| NoSyncFile(file, Default::default()))
    }
    fn open(&self, name: &str) -> std::io::Result<NoSyncFile> {
        self.0
            .open(name)
            .map(|file| NoSyncFile(file, Default::default()))
    }
    fn rename(&self, from: &str, to: &str) -> std::io::Result<()> {
        self.0.rename(from, to)
    }
    fn remove(&self, name: &str) -> std::io::Result<()> {
        self.0.remove(name)
    }
    fn sync_dir(&self) -> std::io::Result<()> {
        self.0.sync_dir()
    }
    fn describe(&self, name: &str) -> String {
        self.0.describe(name)
    }
}

impl DiskFile for NoSyncFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.0.write_at(offset, data)
    }
    fn size(&self) -> std::io::Result<u64> {
        self.0.size()
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        match self.1.swap(true, std::sync::atomic::Ordering::Relaxed) {
            false => self.0.sync_data(),
            true => Ok(()),
        }
    }
}

/// The reference over a data disk that never syncs.
struct LostCheckpoints(GroupLab);

impl KvLab for LostCheckpoints {
    fn make(start: KvStart) -> Self {
        LostCheckpoints(GroupLab::make_with_data_disk(start, NoSync))
    }
    fn on_peer_message(&mut self, from: Peer, bytes: Vec<u8>) {
        self.0.on_peer_message(from, bytes)
    }
    fn on_request(&mut self, req_id: ReqId, request: Request) {
        self.0.on_request(req_id, request)
    }
    fn on_migration_request(&mut self, req_id: ReqId, request: MigrationRequest) {
        self.0.on_migration_request(req_id, request)
    }
    fn on_response(&mut self, call_id: CallId, reply: Option<Vec<u8>>) {
        self.0.on_response(call_id, reply)
    }
    fn on_tick(&mut self) {
        self.0.on_tick()
    }
    fn on_wake(&mut self, token: u64) {
        self.0.on_wake(token)
    }
    fn take_effects(&mut self) -> Vec<KvEffect> {
        self.0.take_effects()
    }
    fn is_leader(&self) -> bool {
        self.0.is_leader()
    }
    fn serving(&self) -> (ConfigNum, Vec<ShardId>) {
        self.0.serving()
    }
    fn persisted_bytes(&self, persister: &labrpc_sim::Persister) -> usize {
        self.0.persisted_bytes(persister)
    }
    fn state_digest(&self) -> Option<(u64, u64)> {
        self.0.state_digest()
    }
}

/// The scenario `name` run against lab `L`.
fn scenario_of<L: KvLab>(name: &str) -> Scenario {
    find(&lab_scenarios::<L>(), name)
}

/// How a mutant is run: its scenario and the seed.
type RunMutant = fn(&str, u64) -> Result<(), String>;

fn live_chunks(name: &str, seed: u64) -> Result<(), String> {
    run_one(&scenario_of::<Answering<LiveChunks>>(name), seed).result
}

fn held_handed_on_empty(name: &str, seed: u64) -> Result<(), String> {
    run_one(&scenario_of::<Answering<HeldHandedOnEmpty>>(name), seed).result
}

fn reapplied_replays(name: &str, seed: u64) -> Result<(), String> {
    mutants::with(Mutation::ReapplyReplayed, || {
        run_one(&find(&scenarios(), name), seed).result
    })
}

fn lost_checkpoints(name: &str, seed: u64) -> Result<(), String> {
    run_one(&scenario_of::<LostCheckpoints>(name), seed).result
}

fn unknown_sessions_new(name: &str, seed: u64) -> Result<(), String> {
    mutants::with(Mutation::UnknownSessionsAreNew, || {
        run_one(&find(&scenarios(), name), seed).result
    })
}

/// Fails unless the reference passes scenario `name` with `seed` and `mutant` fails it
/// with a message containing one of `expected`.
fn assert_caught(mutant: RunMutant, name: &str, seed: u64, expected: &[&str]) {
    let reference = run_one(&find(&scenarios(), name), seed).result;
    reference.unwrap_or_else(|error| panic!("the reference fails {name} seed {seed}: {error}"));
    match mutant(name, seed) {
        Ok(()) => panic!("{name} seed {seed} no longer catches the mutant"),
        Err(error) => assert!(
            expected.iter().any(|e| error.contains(e)),
            "{name} seed {seed}: {error}"
        ),
    }
}

#[test]
fn catch_up_chunks_from_the_live_state_are_caught() {
    assert_caught(
        live_chunks,
        "partition_in_group",
        1,
        &["hold different states", "not linearizable"],
    );
}

#[test]
fn replays_applied_again_are_caught() {
    assert_caught(
        reapplied_replays,
        "power_fail_one_replica",
        1,
        &["apply at index"],
    );
}

#[test]
fn a_log_compacted_past_a_lost_checkpoint_is_caught() {
    // The replica refuses to start: its data is behind its compacted log, or (the
    // database's own later writes torn by the power failure) does not open at all.
    let refused = ["checkpoint was lost", "open the data"];
    assert_caught(lost_checkpoints, "power_fail_one_replica", 1, &refused);
}

#[test]
fn a_stray_copy_of_an_expired_session_applied_again_is_caught() {
    assert_caught(
        unknown_sessions_new,
        "stray_duplicate_after_expiry",
        1,
        &["stray copy after expiry answered Ok"],
    );
}

#[test]
fn a_retry_past_the_session_expiry_taken_as_new_is_caught() {
    assert_caught(
        unknown_sessions_new,
        "session_expires_while_cut_off",
        1,
        &[
            "not with an unknown outcome",
            "appears 2 times",
            "not linearizable",
        ],
    );
}

#[test]
fn a_held_shard_handed_on_empty_is_caught() {
    // The appender of the moved shard's key finds its appends gone.
    assert_caught(
        held_handed_on_empty,
        "abandon_dead_group",
        1,
        &["not linearizable", "final value"],
    );
}

/// Prints, for each mutant, the first seed in 1..=30 of each likely scenario that
/// catches it: how the seeds above were found (run with `--ignored --nocapture`).
#[test]
#[ignore]
fn find_kv_mutant_seeds() {
    let mutants: [(&str, RunMutant, &[&str]); 5] = [
        (
            "live chunks",
            live_chunks,
            &[
                "partition_in_group",
                "unreliable3",
                "power_fail_during_catch_up",
            ],
        ),
        (
            "reapplied replays",
            reapplied_replays,
            &["unreliable3", "power_fail_one_replica"],
        ),
        (
            "lost checkpoints",
            lost_checkpoints,
            &[
                "power_fail_one_replica",
                "power_fail_minority",
                "power_fail_whole_group",
            ],
        ),
        (
            "held shards handed on empty",
            held_handed_on_empty,
            &["abandon_dead_group"],
        ),
        (
            "unknown sessions taken as new",
            unknown_sessions_new,
            &[
                "stray_duplicate_after_expiry",
                "session_expires_while_cut_off",
            ],
        ),
    ];
    for (mutant, run, names) in mutants {
        for name in names {
            let seed = (1..=30).find(|&seed| run(name, seed).is_err());
            println!("{mutant}: {name} first caught by seed {seed:?}");
        }
    }
}
