//! A single-threaded, deterministic async executor driven by the simulator's clock.
//!
//! Client code (tests, the client library over a simulated transport) is ordinary async
//! Rust. Tasks are `!Send` futures kept in a `BTreeMap` by task id. A waker is an `Arc`
//! holding its task id and the shared ready queue (`std::task::Wake`); waking pushes the id
//! onto the queue once (a set keeps it from being queued twice), and tasks are polled in
//! the order they were woken (FIFO), so polling order depends only on the order of events.
//!
//! `block_on` is the event loop:
//!
//! ```text
//!   loop {
//!       poll every ready task (and the main future, if woken) in FIFO order
//!       if the main future finished: return its output
//!       nothing ready: pop the next event (advances virtual time), which may wake tasks
//!       no event at all: deadlock -> panic with the seed
//!       next event beyond the time limit: panic with the seed
//!   }
//! ```
//!
//! Caveats: `block_on` is not re-entrant (calling it from inside a task panics); tasks that
//! hold a `Sim` clone keep the simulation alive (an `Rc` cycle) until `Sim::shutdown` drops
//! the unfinished tasks, which processes that create very many simulations should call.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Wake, Waker};

use crate::Sim;

type TaskId = u64;

/// The id of the future passed to `block_on`; never assigned to a spawned task.
const MAIN_TASK: TaskId = u64::MAX;

/// Polls allowed between two processed events before `block_on` declares a livelock.
const MAX_POLLS_PER_INSTANT: u64 = 10_000_000;

#[derive(Default)]
struct ReadyState {
    order: VecDeque<TaskId>,
    queued: BTreeSet<TaskId>,
}

/// Ids of woken tasks in wake order. A `Mutex` only because `Waker` must be `Send + Sync`;
/// the simulator itself never leaves its thread.
#[derive(Default)]
struct ReadyQueue(Mutex<ReadyState>);

impl ReadyQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, ReadyState> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push(&self, id: TaskId) {
        let mut state = self.lock();
        if state.queued.insert(id) {
            state.order.push_back(id);
        }
    }

    fn pop(&self) -> Option<TaskId> {
        let mut state = self.lock();
        let id = state.order.pop_front()?;
        state.queued.remove(&id);
        Some(id)
    }
}

struct TaskWaker {
    id: TaskId,
    ready: Arc<ReadyQueue>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.ready.push(self.id);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ready.push(self.id);
    }
}

struct Task {
    future: Pin<Box<dyn Future<Output = ()>>>,
    waker: Waker,
}

/// The executor's state, owned by the simulation next to (not inside) the world.
pub(crate) struct Executor {
    tasks: RefCell<BTreeMap<TaskId, Task>>,
    next_task: Cell<TaskId>,
    ready: Arc<ReadyQueue>,
    running: Cell<bool>,
}

impl Executor {
    pub(crate) fn new() -> Self {
        Executor {
            tasks: RefCell::new(BTreeMap::new()),
            next_task: Cell::new(0),
            ready: Arc::new(ReadyQueue::default()),
            running: Cell::new(false),
        }
    }

    fn waker(&self, id: TaskId) -> Waker {
        Waker::from(Arc::new(TaskWaker {
            id,
            ready: self.ready.clone(),
        }))
    }

    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()>>>) {
        let id = self.next_task.get();
        self.next_task.set(id + 1);
        let waker = self.waker(id);
        self.tasks.borrow_mut().insert(id, Task { future, waker });
        self.ready.push(id);
    }

    /// Drops every spawned task (and with them the `Sim` clones they hold).
    fn clear(&self) {
        let tasks = std::mem::take(&mut *self.tasks.borrow_mut());
        drop(tasks);
    }

    /// Polls spawned task `id` once; the task is out of the map while it runs so it can
    /// spawn others.
    fn poll_task(&self, id: TaskId) {
        let Some(mut task) = self.tasks.borrow_mut().remove(&id) else {
            return;
        };
        let mut cx = TaskContext::from_waker(&task.waker);
        if task.future.as_mut().poll(&mut cx).is_pending() {
            self.tasks.borrow_mut().insert(id, task);
        }
    }
}

/// Handle to a spawned task; a future of the task's output. Dropping it detaches the task.
pub struct JoinHandle<T> {
    state: Rc<RefCell<JoinState<T>>>,
}

struct JoinState<T> {
    output: Option<T>,
    finished: bool,
    waker: Option<Waker>,
}

impl<T> JoinHandle<T> {
    /// Whether the task has run to completion.
    pub fn is_finished(&self) -> bool {
        self.state.borrow().finished
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<T> {
        let mut state = self.state.borrow_mut();
        match state.output.take() {
            Some(output) => Poll::Ready(output),
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Sim {
    /// Spawns `fut` as a task polled by `block_on`; tasks run in wake order.
    pub fn spawn<F: Future + 'static>(&self, fut: F) -> JoinHandle<F::Output> {
        let state = Rc::new(RefCell::new(JoinState {
            output: None,
            finished: false,
            waker: None,
        }));
        let done = state.clone();
        self.inner.exec.spawn(Box::pin(async move {
            let output = fut.await;
            let waker = {
                let mut done = done.borrow_mut();
                done.output = Some(output);
                done.finished = true;
                done.waker.take()
            };
            if let Some(waker) = waker {
                waker.wake();
            }
        }));
        JoinHandle { state }
    }

    /// Drops every spawned task that has not finished, breaking the `Rc` cycle between
    /// tasks and the `Sim` clones they hold, so the whole simulation is freed once the
    /// last handle goes. Call it when a run is over (graders run thousands of them).
    pub fn shutdown(&self) {
        self.inner.exec.clear();
    }

    /// Sets the virtual time after which `block_on` panics (default 600 s).
    pub fn set_time_limit(&self, limit: std::time::Duration) {
        self.world().time_limit = limit;
    }

    /// Runs the simulation until `fut` completes and returns its output. Spawned tasks and
    /// hosts make progress meanwhile. Panics, naming the seed, if nothing can make progress
    /// (deadlock), if virtual time would pass the time limit, or if called re-entrantly.
    /// While any host is up its ticks keep time moving, so a stuck run with hosts ends at
    /// the time limit rather than as a deadlock.
    pub fn block_on<F: Future>(&self, fut: F) -> F::Output {
        let exec = &self.inner.exec;
        assert!(
            !exec.running.replace(true),
            "labrpc-sim: block_on called inside block_on ({})",
            self.replay_hint()
        );
        let _running = RunningGuard(&exec.running);
        let mut fut = pin!(fut);
        let main_waker = exec.waker(MAIN_TASK);
        exec.ready.push(MAIN_TASK);
        let mut polls_this_instant = 0u64;
        loop {
            while let Some(id) = exec.ready.pop() {
                polls_this_instant += 1;
                self.check_livelock(polls_this_instant);
                if id != MAIN_TASK {
                    exec.poll_task(id);
                    continue;
                }
                if let Poll::Ready(output) =
                    fut.as_mut().poll(&mut TaskContext::from_waker(&main_waker))
                {
                    return output;
                }
            }
            self.advance();
            polls_this_instant = 0;
        }
    }

    /// Processes the next event, panicking on deadlock or when passing the time limit.
    fn advance(&self) {
        let Some(at) = self.next_event_time() else {
            panic!(
                "labrpc-sim: deadlock at {:?}: block_on's future is pending and no event is scheduled ({})",
                self.now(),
                self.replay_hint()
            );
        };
        let limit = self.world().time_limit;
        if at > limit {
            panic!(
                "labrpc-sim: virtual time limit {limit:?} passed (next event at {at:?}) ({})",
                self.replay_hint()
            );
        }
        self.step();
    }

    fn check_livelock(&self, polls: u64) {
        if polls > MAX_POLLS_PER_INSTANT {
            panic!(
                "labrpc-sim: livelock at {:?}: {polls} polls without an event being processed ({})",
                self.now(),
                self.replay_hint()
            );
        }
    }
}

struct RunningGuard<'a>(&'a Cell<bool>);

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}
