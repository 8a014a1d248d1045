//! Client endpoints: how test code and client libraries call simulated hosts.
//!
//! A [`ClientEnd`] is labrpc's `ClientEnd` made async: a node of its own (so it can be
//! disconnected or partitioned like a server) whose `call` sends a request to a host and
//! awaits the first of three outcomes, all in virtual time:
//!
//! - the host's reply arrives: `Ok(reply)`;
//! - the deadline passes: `Err(RpcError::Timeout)`, exactly `timeout` after the call began;
//! - the request could not be delivered (target down or unreachable, or dropped by an
//!   unreliable network): `Err(RpcError::Unreachable)` after a short delay, 0..100 ms, or
//!   0..7 s with long delays.
//!
//! A lost *reply* is indistinguishable from a slow host, so it surfaces as a timeout.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use crate::{Sim, SimNode};

/// Why a call returned no reply. Both kinds are retryable: the request may or may not have
/// been executed, so retries must be idempotent or deduplicated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcError {
    /// No reply within the call's timeout (the request or the reply may have been lost, or
    /// the host may not have answered).
    Timeout,
    /// The request never reached the host: it was down, unreachable, or the request was
    /// dropped.
    Unreachable,
}

impl RpcError {
    /// Whether retrying (possibly elsewhere) may succeed; true for every simulated error.
    pub fn is_retryable(&self) -> bool {
        true
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpcError::Timeout => write!(f, "rpc timed out"),
            RpcError::Unreachable => write!(f, "rpc target unreachable"),
        }
    }
}

impl std::error::Error for RpcError {}

/// A client's handle for calling hosts, like labrpc's `ClientEnd`.
#[derive(Clone)]
pub struct ClientEnd {
    sim: Sim,
    id: SimNode,
}

impl fmt::Debug for ClientEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientEnd").field("id", &self.id).finish()
    }
}

impl ClientEnd {
    pub(crate) fn new(sim: Sim, id: SimNode) -> Self {
        ClientEnd { sim, id }
    }

    /// This endpoint's node id (for connect/disconnect/partition).
    pub fn id(&self) -> SimNode {
        self.id
    }

    /// Calls host `to`: `Ok(reply)`, `Err(RpcError::Timeout)` after `timeout`, or
    /// `Err(RpcError::Unreachable)` after a short delay when `to` is unreachable, down, or
    /// the request was dropped. The call starts when the future is first polled.
    pub async fn call(
        &self,
        to: SimNode,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, RpcError> {
        let slot = Rc::new(CallSlot::default());
        self.sim
            .start_client_call(self.id, to, payload, timeout, slot.clone());
        CallFuture { slot }.await
    }
}

/// Where the simulator leaves a client call's outcome for the awaiting task.
#[derive(Default)]
pub(crate) struct CallSlot {
    state: RefCell<CallState>,
}

#[derive(Default)]
struct CallState {
    outcome: Option<Result<Vec<u8>, RpcError>>,
    waker: Option<Waker>,
}

impl CallSlot {
    /// Stores the outcome and wakes the task awaiting it.
    pub(crate) fn resolve(&self, outcome: Result<Vec<u8>, RpcError>) {
        let waker = {
            let mut state = self.state.borrow_mut();
            state.outcome = Some(outcome);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

struct CallFuture {
    slot: Rc<CallSlot>,
}

impl Future for CallFuture {
    type Output = Result<Vec<u8>, RpcError>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let mut state = self.slot.state.borrow_mut();
        match state.outcome.take() {
            Some(outcome) => Poll::Ready(outcome),
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
