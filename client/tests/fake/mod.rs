//! A scripted, in-memory shardkv cluster behind [`Transport`], on the simulator's virtual
//! clock and executor (`labrpc_sim::Sim` with no hosts): a shard master of three replicas
//! and, once a test scripts a configuration naming them, replica groups of three
//! replicas each.
//!
//! Time only moves when every task is blocked (`Sim::block_on`). Calls cost virtual
//! time ([`REPLY_LATENCY`], [`UNREACHABLE_LATENCY`], or the call's whole timeout), so
//! tests can assert exact times and attempt counts.
//!
//! The master replicas are `m1`, `m2`, `m3` (NodeIds 1, 2, 3); group `gid`'s are
//! `g{gid}-1` .. `g{gid}-3`. Only a leader answers; the others say `WrongLeader`, with the
//! leader's id as hint when hints are on. Leaders apply requests with duplicate detection
//! on `(client, seq)`, so tests can check that retries take effect once (see
//! [`master`] and [`group`]). Faults are injected per call from a queue (one for master
//! calls, one for group calls), or for every call.

#![allow(dead_code)] // Each test binary uses a different part of the fake.

pub mod group;
pub mod master;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use labrpc_sim::Sim;

use shardkv_client::{RetryPolicy, Transport, TransportError};
use shardkv_proto::kv::{self, Reply};
use shardkv_proto::{
    ClientId, Config, GroupId, GroupRequest, GroupResponse, MasterError, Request, Response, Seq,
};

use group::{group_servers, FakeGroups};
use master::MasterState;

/// How long a delivered request takes to be answered.
pub const REPLY_LATENCY: Duration = Duration::from_millis(2);
/// How long an undeliverable request takes to fail.
pub const UNREACHABLE_LATENCY: Duration = Duration::from_millis(5);
/// The fake cluster's shard count.
pub const NSHARDS: usize = 4;
/// The replicas' addresses; NodeId i + 1 is `MASTERS[i]`.
pub const MASTERS: [&str; 3] = ["m1", "m2", "m3"];
/// The client id tests hand out first (`FakeCluster::new(&[CLIENT, 0])` also starts the
/// client at `m1`).
pub const CLIENT: ClientId = 77;

/// `n` milliseconds.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The master addresses, as a client is given them.
pub fn masters() -> Vec<String> {
    MASTERS.iter().map(|m| m.to_string()).collect()
}

/// The default retry policy with `deadline`.
pub fn policy(deadline: Option<Duration>) -> RetryPolicy {
    RetryPolicy {
        deadline,
        ..RetryPolicy::default()
    }
}

/// A fault injected into one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// No reply: the call fails with `Timeout` after its whole timeout; not applied.
    Timeout,
    /// The request is not delivered: `Unreachable` after [`UNREACHABLE_LATENCY`].
    Unreachable,
    /// The leader applies the request but the reply is lost: `Timeout`.
    LoseReply,
    /// The reply is these bytes instead of a response.
    Garbage(Vec<u8>),
    /// The reply decodes, but is wrong: a configuration failing its invariant check
    /// from the master; an answer of the other kind (a value for a write, "done" for a
    /// read) from a group.
    Malformed,
}

/// Every kind of bad reply a test may inject: undecodable bytes of several sizes, and
/// a well-formed but wrong answer.
pub fn bad_replies() -> [Fault; 4] {
    [
        Fault::Garbage(vec![]),
        Fault::Garbage(vec![0xff; 3]),
        Fault::Garbage(vec![0; 4096]),
        Fault::Malformed,
    ]
}

/// A call as it reaches the fake: where to, the bytes, the fault to inject, the timeout.
struct Incoming<'a> {
    to: &'a str,
    bytes: &'a [u8],
    fault: Option<Fault>,
    timeout: Duration,
}

/// How long a call takes and what it returns.
type Served = (Duration, Result<Vec<u8>, TransportError>);

/// One call the fake shard master received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// When it started.
    pub at: Duration,
    /// The address called.
    pub to: String,
    /// The decoded request.
    pub request: Request,
}

/// One call a fake replica group received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvCall {
    /// When it started.
    pub at: Duration,
    /// The address called.
    pub to: String,
    /// The decoded request.
    pub request: kv::Request,
    /// Its encoding, as received.
    pub bytes: Vec<u8>,
}

/// The fake cluster: a three-replica shard master and the replica groups its
/// configurations name.
#[derive(Debug)]
pub struct FakeCluster {
    sim: Sim,
    /// Index of the master leader in [`MASTERS`].
    pub leader: Cell<usize>,
    /// Whether master followers name the leader in `WrongLeader`.
    pub hints: Cell<bool>,
    /// Faults for the next calls to the master, one per call, in order.
    pub faults: RefCell<VecDeque<Fault>>,
    /// Faults for the next calls to any group, one per call, in order.
    pub group_faults: RefCell<VecDeque<Fault>>,
    /// The fault for every call once the call's queue is empty.
    pub always: RefCell<Option<Fault>>,
    /// Values `random_u64` returns, in order; then 0.
    pub random: RefCell<VecDeque<u64>>,
    master: MasterState,
    groups: FakeGroups,
    calls: RefCell<Vec<Call>>,
    kv_calls: RefCell<Vec<KvCall>>,
    targets: RefCell<Vec<String>>,
}

impl FakeCluster {
    /// A healthy cluster in configuration 0, its master led by `m1` with hints on;
    /// `random_u64` yields `random`.
    pub fn new(random: &[u64]) -> Self {
        FakeCluster {
            sim: Sim::new(0),
            leader: Cell::new(0),
            hints: Cell::new(true),
            faults: RefCell::default(),
            group_faults: RefCell::default(),
            always: RefCell::default(),
            random: RefCell::new(random.iter().copied().collect()),
            master: MasterState::new(NSHARDS),
            groups: FakeGroups::default(),
            calls: RefCell::default(),
            kv_calls: RefCell::default(),
            targets: RefCell::default(),
        }
    }

    /// The simulator whose clock and executor the fake runs on: `block_on` a client's
    /// future, read `now`.
    pub fn sim(&self) -> &Sim {
        &self.sim
    }

    /// Queues faults for the next calls to the master.
    pub fn inject(&self, faults: impl IntoIterator<Item = Fault>) {
        self.faults.borrow_mut().extend(faults);
    }

    /// Queues faults for the next calls to any group.
    pub fn inject_group(&self, faults: impl IntoIterator<Item = Fault>) {
        self.group_faults.borrow_mut().extend(faults);
    }

    /// Every call the master received so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    /// Every call the groups received so far.
    pub fn kv_calls(&self) -> Vec<KvCall> {
        self.kv_calls.borrow().clone()
    }

    /// The `(client, seq)` of every call the master received.
    pub fn master_ids(&self) -> Vec<(ClientId, Seq)> {
        let calls = self.calls.borrow();
        calls
            .iter()
            .map(|c| (c.request.client, c.request.seq))
            .collect()
    }

    /// The `(client, seq)` of every call the groups received.
    pub fn kv_ids(&self) -> Vec<(ClientId, Seq)> {
        let calls = self.kv_calls.borrow();
        calls
            .iter()
            .map(|c| (c.request.client, c.request.seq))
            .collect()
    }

    /// The addresses called so far (master and groups), in order.
    pub fn targets(&self) -> Vec<String> {
        self.targets.borrow().clone()
    }

    /// Every configuration created so far, 0 first.
    pub fn configs(&self) -> Vec<Config> {
        self.master.configs()
    }

    /// Scripts the next configuration: shard `s` goes to `shards[s]` (0 for none), and
    /// every group named gets replicas [`group_servers`]. Returns it.
    pub fn push_config(&self, shards: [GroupId; NSHARDS]) -> Config {
        let mut config = Config::initial(NSHARDS);
        config.shards = shards.to_vec();
        for gid in shards.into_iter().filter(|&gid| gid != 0) {
            config.groups.insert(gid, group_servers(gid));
        }
        let config = self.master.push(config);
        self.groups.add(&config);
        config
    }

    /// The fake groups, to script leaders and installs or read the stored data.
    pub fn groups(&self) -> &FakeGroups {
        &self.groups
    }

    /// Records the call, decides its outcome and how long it takes.
    fn serve(&self, to: &str, bytes: &[u8], timeout: Duration) -> Served {
        self.targets.borrow_mut().push(to.to_string());
        let incoming = |fault| Incoming {
            to,
            bytes,
            fault,
            timeout,
        };
        if let Some(index) = MASTERS.iter().position(|&m| m == to) {
            let fault = next_fault(&self.faults, &self.always);
            return self.serve_master(index, incoming(fault));
        }
        if let Some((gid, index)) = self.groups.locate(to) {
            let fault = next_fault(&self.group_faults, &self.always);
            return self.serve_group((gid, index), incoming(fault));
        }
        (UNREACHABLE_LATENCY, Err(TransportError::Unreachable))
    }

    fn serve_master(&self, index: usize, call: Incoming<'_>) -> Served {
        let request: Request =
            bincode::deserialize(call.bytes).expect("the client sent an undecodable request");
        self.calls.borrow_mut().push(Call {
            at: self.sim.now(),
            to: call.to.to_string(),
            request: request.clone(),
        });
        let malformed = || {
            let mut bad = Config::initial(NSHARDS);
            bad.shards[0] = 42; // owned by a group that is not a member
            encode::<Response>(&Ok(bad))
        };
        let apply = || {
            let response = if index == self.leader.get() {
                self.master.apply(&request)
            } else {
                let hint = self.hints.get().then(|| self.leader.get() as u64 + 1);
                Err(MasterError::WrongLeader { hint })
            };
            encode(&response)
        };
        outcome(call.fault, call.timeout, malformed, apply)
    }

    fn serve_group(&self, (gid, index): (GroupId, usize), call: Incoming<'_>) -> Served {
        let request: GroupRequest =
            bincode::deserialize(call.bytes).expect("the client sent an undecodable request");
        let GroupRequest::Kv(request) = request else {
            panic!("a client sent a migration request");
        };
        self.kv_calls.borrow_mut().push(KvCall {
            at: self.sim.now(),
            to: call.to.to_string(),
            request: request.clone(),
            bytes: call.bytes.to_vec(),
        });
        let malformed = || {
            let wrong = if request.op.is_mutation() {
                Reply::Value(None)
            } else {
                Reply::Done
            };
            encode(&GroupResponse::Kv(Ok(wrong), 0))
        };
        let apply = || {
            let latest = self.master.latest();
            let response = self.groups.serve(gid, index, &request, &latest);
            encode(&GroupResponse::Kv(response, 1))
        };
        outcome(call.fault, call.timeout, malformed, apply)
    }
}

/// The next fault from `queue`, else the standing one.
fn next_fault(queue: &RefCell<VecDeque<Fault>>, always: &RefCell<Option<Fault>>) -> Option<Fault> {
    let next = queue.borrow_mut().pop_front();
    next.or_else(|| always.borrow().clone())
}

/// A call's latency and result under `fault`; `apply` runs the request at the server
/// (when it is delivered) and `malformed` builds a well-formed but wrong reply.
fn outcome(
    fault: Option<Fault>,
    timeout: Duration,
    malformed: impl FnOnce() -> Vec<u8>,
    apply: impl FnOnce() -> Vec<u8>,
) -> Served {
    match fault {
        Some(Fault::Timeout) => (timeout, Err(TransportError::Timeout)),
        Some(Fault::Unreachable) => (UNREACHABLE_LATENCY, Err(TransportError::Unreachable)),
        Some(Fault::Garbage(bytes)) => (REPLY_LATENCY, Ok(bytes)),
        Some(Fault::Malformed) => (REPLY_LATENCY, Ok(malformed())),
        Some(Fault::LoseReply) => {
            apply();
            (timeout, Err(TransportError::Timeout))
        }
        None => (REPLY_LATENCY, Ok(apply())),
    }
}

fn encode<M: serde::Serialize>(message: &M) -> Vec<u8> {
    bincode::serialize(message).expect("encode")
}

impl Transport for FakeCluster {
    fn call(
        &self,
        to: &str,
        request: Vec<u8>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<u8>, TransportError>> {
        let (latency, outcome) = self.serve(to, &request, timeout);
        let done = self.sleep(latency);
        async move {
            done.await;
            outcome
        }
    }

    fn sleep(&self, d: Duration) -> impl Future<Output = ()> {
        self.sim.sleep(d)
    }

    fn now(&self) -> Duration {
        self.sim.now()
    }

    fn random_u64(&self) -> u64 {
        self.random.borrow_mut().pop_front().unwrap_or(0)
    }
}
