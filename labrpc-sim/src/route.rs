//! How packets move: sending, delivering, dropping, and deciding the outcome of calls.
//!
//! ```text
//!  caller                          network                          host
//!  ------ start_call ----> [drop? 10% unreliable / unreachable] --> CallFailed after 0..100 ms
//!                          [latency (+0..27 ms)] -- Request --> on_request(id) (if reachable)
//!  resolve(Ok) <-- Reply -- [drop? 10%] [latency (+reordering)] <-- cx.reply(id)
//!  resolve(Err(Timeout)) <-- CallTimeout at start + timeout (whichever resolves first wins)
//! ```
//!
//! A call is decided exactly once: the first of reply, failure and timeout to arrive removes
//! it from the book of pending calls, and later arrivals find nothing and are ignored. A
//! reply that is dropped leaves the caller to time out, as on a real network. Each
//! processed event and each drop is folded into the digest.

use std::time::Duration;

use crate::event::Event;
use crate::host::Effect;
use crate::world::{Invoke, InvokeKind, PendingCall, PendingRequest, Waiter, World};
use crate::{CallId, RequestId, RpcError, SimNode};

// Drop reasons folded into the digest.
const DROP_MESSAGE: u8 = 1;
const DROP_REQUEST: u8 = 2;
const DROP_REPLY: u8 = 3;
const DROP_STALE: u8 = 4;

impl World {
    /// Processes one event popped at time `at`; returns the host callback it calls for.
    pub(crate) fn process(&mut self, at: Duration, event: Event) -> Option<Invoke> {
        self.now = at;
        let (kind, a, b, payload) = event.digest_fields();
        self.trace.event(at, kind, a, b, payload);
        match event {
            Event::Tick { host, incarnation } => self.tick(host, incarnation),
            Event::Wake {
                host,
                incarnation,
                token,
            } => self.wake(host, incarnation, token),
            Event::Message { from, to, payload } => self.deliver_message(from, to, payload),
            Event::Request {
                call,
                from,
                to,
                payload,
            } => self.deliver_request(call, from, to, payload),
            Event::Reply {
                call,
                from,
                to,
                payload,
            } => self.deliver_reply(call, from, to, payload),
            Event::CallFailed { call } => self.resolve(call, Err(RpcError::Unreachable)),
            Event::CallTimeout { call } => self.resolve(call, Err(RpcError::Timeout)),
            Event::Timer(slot) => {
                let waker = slot.upgrade().and_then(|slot| slot.borrow_mut().take());
                if let Some(waker) = waker {
                    waker.wake();
                }
                None
            }
        }
    }

    /// Applies the effects host `me` (in incarnation `incarnation`) emitted, in order.
    pub(crate) fn apply_effects(&mut self, me: SimNode, incarnation: u64, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Send { to, payload } => self.send_message(me, to, payload),
                Effect::Reply { id, payload } => self.send_reply(me, incarnation, id, payload),
                Effect::Call {
                    call,
                    to,
                    payload,
                    timeout,
                } => {
                    let pending = PendingCall {
                        caller: me,
                        incarnation,
                        waiter: Waiter::Host,
                    };
                    self.start_call(call, pending, to, payload, timeout);
                }
                Effect::Wake { delay, token } => self.schedule_wake(me, incarnation, delay, token),
                Effect::Trace { topic, line } => self.trace.line(self.now, Some(me), &topic, line),
            }
        }
    }

    /// Starts call `call`: books it, schedules its deadline, and sends its request (or its
    /// failure, if the target is unreachable or the network drops the request).
    pub(crate) fn start_call(
        &mut self,
        call: CallId,
        pending: PendingCall,
        to: SimNode,
        payload: Vec<u8>,
        timeout: Duration,
    ) {
        let from = pending.caller;
        self.total_bytes += payload.len() as u64;
        self.calls.insert(call, pending);
        self.schedule(timeout, Event::CallTimeout { call });
        let deliverable = self.host_up(to) && self.reachable(from, to);
        if !deliverable || self.net.drop_request(&mut self.rng) {
            self.note_drop(DROP_REQUEST, call, to as u64);
            let delay = self.net.unreachable_delay(&mut self.rng);
            self.schedule(delay, Event::CallFailed { call });
            return;
        }
        let delay = self.net.request_delay(&mut self.rng, &self.config);
        self.schedule(
            delay,
            Event::Request {
                call,
                from,
                to,
                payload,
            },
        );
    }

    fn send_message(&mut self, from: SimNode, to: SimNode, payload: Vec<u8>) {
        self.total_bytes += payload.len() as u64;
        let deliverable = self.host_up(to) && self.reachable(from, to);
        if !deliverable || self.net.drop_request(&mut self.rng) {
            self.note_drop(DROP_MESSAGE, from as u64, to as u64);
            return;
        }
        let delay = self.net.message_delay(&mut self.rng, &self.config);
        self.schedule(delay, Event::Message { from, to, payload });
    }

    fn send_reply(&mut self, me: SimNode, incarnation: u64, id: RequestId, payload: Vec<u8>) {
        let ours = matches!(self.requests.get(&id), Some(r) if r.host == me && r.incarnation == incarnation);
        let Some(request) = self.requests.remove(&id).filter(|_| ours) else {
            return;
        };
        self.total_bytes += payload.len() as u64;
        if self.net.drop_reply(&mut self.rng) {
            self.note_drop(DROP_REPLY, request.call, me as u64);
            return;
        }
        let delay = self.net.reply_delay(&mut self.rng, &self.config);
        let reply = Event::Reply {
            call: request.call,
            from: me,
            to: request.caller,
            payload,
        };
        self.schedule(delay, reply);
    }

    fn tick(&mut self, host: SimNode, incarnation: u64) -> Option<Invoke> {
        if self.live_incarnation(host) != Some(incarnation) {
            return None;
        }
        self.schedule_tick(host, incarnation);
        Some(Invoke {
            host,
            incarnation,
            kind: InvokeKind::Tick,
        })
    }

    /// A wake is delivered like a tick: only to the incarnation that asked for it, and
    /// without counting as an RPC.
    fn wake(&mut self, host: SimNode, incarnation: u64, token: u64) -> Option<Invoke> {
        if self.live_incarnation(host) != Some(incarnation) {
            return None;
        }
        Some(Invoke {
            host,
            incarnation,
            kind: InvokeKind::Wake { token },
        })
    }

    fn deliver_message(&mut self, from: SimNode, to: SimNode, payload: Vec<u8>) -> Option<Invoke> {
        let incarnation = self
            .live_incarnation(to)
            .filter(|_| self.reachable(from, to));
        let Some(incarnation) = incarnation else {
            self.note_drop(DROP_MESSAGE, from as u64, to as u64);
            return None;
        };
        self.nodes[to].rpc_count += 1;
        Some(Invoke {
            host: to,
            incarnation,
            kind: InvokeKind::Message { from, payload },
        })
    }

    fn deliver_request(
        &mut self,
        call: CallId,
        from: SimNode,
        to: SimNode,
        payload: Vec<u8>,
    ) -> Option<Invoke> {
        let incarnation = self
            .live_incarnation(to)
            .filter(|_| self.reachable(from, to));
        let Some(incarnation) = incarnation else {
            self.note_drop(DROP_REQUEST, call, to as u64);
            let delay = self.net.unreachable_delay(&mut self.rng);
            self.schedule(delay, Event::CallFailed { call });
            return None;
        };
        let id = self.next_request_id;
        self.next_request_id += 1;
        self.requests.insert(
            id,
            PendingRequest {
                host: to,
                incarnation,
                call,
                caller: from,
            },
        );
        self.nodes[to].rpc_count += 1;
        Some(Invoke {
            host: to,
            incarnation,
            kind: InvokeKind::Request { id, payload },
        })
    }

    fn deliver_reply(
        &mut self,
        call: CallId,
        from: SimNode,
        to: SimNode,
        payload: Vec<u8>,
    ) -> Option<Invoke> {
        if !self.calls.contains_key(&call) {
            self.note_drop(DROP_STALE, call, from as u64);
            return None;
        }
        if !self.reachable(from, to) {
            self.note_drop(DROP_REPLY, call, from as u64);
            return None;
        }
        self.resolve(call, Ok(payload))
    }

    /// Decides call `call` with `outcome`, if it is still pending: wakes the awaiting task,
    /// or returns the `on_response` callback for the calling host.
    fn resolve(&mut self, call: CallId, outcome: Result<Vec<u8>, RpcError>) -> Option<Invoke> {
        let pending = self.calls.remove(&call)?;
        match pending.waiter {
            Waiter::Task(slot) => {
                slot.resolve(outcome);
                None
            }
            Waiter::Host => {
                let host = pending.caller;
                if self.live_incarnation(host) != Some(pending.incarnation) {
                    return None;
                }
                let kind = InvokeKind::Response {
                    call,
                    response: outcome.ok(),
                };
                Some(Invoke {
                    host,
                    incarnation: pending.incarnation,
                    kind,
                })
            }
        }
    }
}
