//! A scripted, in-memory shard master of three replicas behind [`Transport`], on a
//! virtual clock, with a tiny single-threaded `block_on`.
//!
//! Time only moves when every task is blocked: [`block_on`] polls the future, and when
//! it is pending jumps the clock to the earliest registered timer. Calls cost virtual
//! time ([`REPLY_LATENCY`], [`UNREACHABLE_LATENCY`], or the call's whole timeout), so
//! tests can assert exact times and attempt counts.
//!
//! The replicas are `m1`, `m2`, `m3` (NodeIds 1, 2, 3). Only the leader answers; the
//! others say `WrongLeader`, with the leader's id as hint when hints are on. The leader
//! applies requests with duplicate detection on `(client, seq)`, so tests can check that
//! retries take effect once. Faults are injected per call from a queue, or for every call.

#![allow(dead_code)] // Each test binary uses a different part of the fake.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use shardkv_client::{Transport, TransportError};
use shardkv_proto::{ClientId, Config, MasterError, Op, Request, Response, Seq};

/// How long a delivered request takes to be answered.
pub const REPLY_LATENCY: Duration = Duration::from_millis(2);
/// How long an undeliverable request takes to fail.
pub const UNREACHABLE_LATENCY: Duration = Duration::from_millis(5);
/// The fake cluster's shard count.
pub const NSHARDS: usize = 4;
/// The replicas' addresses; NodeId i + 1 is `MASTERS[i]`.
pub const MASTERS: [&str; 3] = ["m1", "m2", "m3"];
/// The most times [`block_on`] polls before it declares a runaway loop.
const MAX_POLLS: usize = 100_000;

/// The virtual clock and its pending timers.
#[derive(Debug, Default)]
pub struct Clock {
    now: Cell<Duration>,
    timers: RefCell<BTreeSet<Duration>>,
}

impl Clock {
    /// The current virtual time.
    pub fn now(&self) -> Duration {
        self.now.get()
    }
}

/// A future ready once the clock reaches its deadline.
pub struct Sleep {
    clock: Rc<Clock>,
    deadline: Duration,
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        if self.clock.now() >= self.deadline {
            return Poll::Ready(());
        }
        self.clock.timers.borrow_mut().insert(self.deadline);
        Poll::Pending
    }
}

/// Runs `future` to completion on the virtual clock.
///
/// # Panics
/// If the future is pending with no timer left (it would never finish), or after
/// [`MAX_POLLS`] polls (a retry loop that never ends).
pub fn block_on<F: Future>(clock: &Clock, future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..MAX_POLLS {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        let next = clock.timers.borrow_mut().pop_first();
        let next = next.expect("future pending with no timer: it can never finish");
        clock.now.set(clock.now().max(next));
    }
    panic!("still pending after {MAX_POLLS} polls at {:?}", clock.now());
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
    /// The reply decodes, but to a configuration that fails its invariant check.
    Malformed,
}

/// One call the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// When it started.
    pub at: Duration,
    /// The address called.
    pub to: String,
    /// The decoded request.
    pub request: Request,
}

/// The fake three-replica shard master.
#[derive(Debug)]
pub struct FakeMaster {
    clock: Rc<Clock>,
    /// Index of the leader in [`MASTERS`].
    pub leader: Cell<usize>,
    /// Whether followers name the leader in `WrongLeader`.
    pub hints: Cell<bool>,
    /// Faults for the next calls, one per call, in order.
    pub faults: RefCell<VecDeque<Fault>>,
    /// The fault for every call once `faults` is empty.
    pub always: RefCell<Option<Fault>>,
    /// Values `random_u64` returns, in order; then 0.
    pub random: RefCell<VecDeque<u64>>,
    configs: RefCell<Vec<Config>>,
    applied: RefCell<BTreeMap<(ClientId, Seq), Response>>,
    calls: RefCell<Vec<Call>>,
}

impl FakeMaster {
    /// A healthy master led by `m1`, with hints on; `random_u64` yields `random`.
    pub fn new(random: &[u64]) -> Self {
        FakeMaster {
            clock: Rc::default(),
            leader: Cell::new(0),
            hints: Cell::new(true),
            faults: RefCell::default(),
            always: RefCell::default(),
            random: RefCell::new(random.iter().copied().collect()),
            configs: RefCell::new(vec![Config::initial(NSHARDS)]),
            applied: RefCell::default(),
            calls: RefCell::default(),
        }
    }

    /// The virtual clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Queues faults for the next calls.
    pub fn inject(&self, faults: impl IntoIterator<Item = Fault>) {
        self.faults.borrow_mut().extend(faults);
    }

    /// Every call received so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    /// The addresses called so far, in order.
    pub fn targets(&self) -> Vec<String> {
        self.calls.borrow().iter().map(|c| c.to.clone()).collect()
    }

    /// Every configuration created so far, 0 first.
    pub fn configs(&self) -> Vec<Config> {
        self.configs.borrow().clone()
    }

    /// Records the call, decides its outcome and how long it takes.
    fn serve(
        &self,
        to: &str,
        bytes: &[u8],
        timeout: Duration,
    ) -> (Duration, Result<Vec<u8>, TransportError>) {
        let request: Request =
            bincode::deserialize(bytes).expect("the client sent an undecodable request");
        self.calls.borrow_mut().push(Call {
            at: self.clock.now(),
            to: to.to_string(),
            request: request.clone(),
        });
        let fault = self
            .faults
            .borrow_mut()
            .pop_front()
            .or_else(|| self.always.borrow().clone());
        let reply = |response: &Response| Ok(bincode::serialize(response).expect("encode"));
        match fault {
            Some(Fault::Timeout) => return (timeout, Err(TransportError::Timeout)),
            Some(Fault::Unreachable) => {
                return (UNREACHABLE_LATENCY, Err(TransportError::Unreachable))
            }
            Some(Fault::Garbage(bytes)) => return (REPLY_LATENCY, Ok(bytes)),
            Some(Fault::Malformed) => {
                let mut bad = Config::initial(NSHARDS);
                bad.shards[0] = 42; // owned by a group that is not a member
                return (REPLY_LATENCY, reply(&Ok(bad)));
            }
            Some(Fault::LoseReply) | None => {}
        }
        let Some(index) = MASTERS.iter().position(|&m| m == to) else {
            return (UNREACHABLE_LATENCY, Err(TransportError::Unreachable));
        };
        let response = if index == self.leader.get() {
            self.apply(&request)
        } else {
            let hint = self.hints.get().then(|| self.leader.get() as u64 + 1);
            Err(MasterError::WrongLeader { hint })
        };
        if fault == Some(Fault::LoseReply) {
            return (timeout, Err(TransportError::Timeout));
        }
        (REPLY_LATENCY, reply(&response))
    }

    /// Applies `request` at the leader, once per `(client, seq)`.
    fn apply(&self, request: &Request) -> Response {
        let configs = self.configs.borrow();
        if let Op::Query { num } = request.op {
            let latest = configs.len() - 1;
            let num = num.map_or(latest, |n| (n as usize).min(latest));
            return Ok(configs[num].clone());
        }
        let key = (request.client, request.seq);
        if let Some(answer) = self.applied.borrow().get(&key) {
            return answer.clone();
        }
        let answer = execute(configs.last().expect("config 0 exists"), &request.op);
        drop(configs);
        if let Ok(config) = &answer {
            self.configs.borrow_mut().push(config.clone());
        }
        self.applied.borrow_mut().insert(key, answer.clone());
        answer
    }
}

/// The configuration after `op` (naive round-robin placement; the fake is no rebalancer).
fn execute(latest: &Config, op: &Op) -> Response {
    let mut next = latest.clone();
    next.num += 1;
    match op {
        Op::Join { groups } => {
            if groups.contains_key(&0) {
                return Err(MasterError::ReservedGroup);
            }
            next.groups.extend(groups.clone());
        }
        Op::Leave { gids } => {
            for gid in gids {
                next.groups
                    .remove(gid)
                    .ok_or(MasterError::UnknownGroup { gid: *gid })?;
            }
        }
        Op::Move { shard, gid } => {
            if !next.groups.contains_key(gid) {
                return Err(MasterError::UnknownGroup { gid: *gid });
            }
            next.shards[*shard] = *gid;
            return Ok(next);
        }
        Op::Query { .. } => unreachable!("queries do not execute"),
    }
    let gids: Vec<_> = next.groups.keys().copied().collect();
    for (shard, owner) in next.shards.iter_mut().enumerate() {
        *owner = if gids.is_empty() {
            0
        } else {
            gids[shard % gids.len()]
        };
    }
    Ok(next)
}

impl Transport for FakeMaster {
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
        Sleep {
            clock: self.clock.clone(),
            deadline: self.clock.now() + d,
        }
    }

    fn random_u64(&self) -> u64 {
        self.random.borrow_mut().pop_front().unwrap_or(0)
    }
}
