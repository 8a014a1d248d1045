//! The driver: pops events, runs host callbacks outside the world's borrow, and applies
//! their effects.
//!
//! Running a host callback is a three-step dance so that no `RefCell` borrow is held while
//! foreign code runs:
//!
//! ```text
//!   borrow world: take the host object out of its slot, note its incarnation, release
//!   call the host with a fresh Context (may use any Sim clone, e.g. inside with_host)
//!   borrow world: if the host is still in the same incarnation, put it back and apply
//!                 its effects; otherwise it crashed meanwhile: drop it and its effects
//! ```

use std::rc::Rc;
use std::time::Duration;

use crate::client::CallSlot;
use crate::world::{Invoke, InvokeKind, PendingCall, Waiter};
use crate::{Context, Host, Sim, SimNode};

impl Sim {
    /// Time of the next scheduled event, if any.
    pub(crate) fn next_event_time(&self) -> Option<Duration> {
        self.world().queue.next_time()
    }

    /// Processes the next event; false if the queue is empty.
    pub(crate) fn step(&self) -> bool {
        let invoke = {
            let mut world = self.world();
            let Some((at, event)) = world.queue.pop() else {
                return false;
            };
            world.process(at, event)
        };
        if let Some(invoke) = invoke {
            self.invoke(invoke);
        }
        true
    }

    fn invoke(&self, invoke: Invoke) {
        let Invoke {
            host,
            incarnation,
            kind,
        } = invoke;
        self.run_host(host, Some(incarnation), |object, cx| match kind {
            InvokeKind::Tick => object.on_tick(cx),
            InvokeKind::Wake { token } => object.on_wake(cx, token),
            InvokeKind::Message { from, payload } => object.on_message(cx, from, payload),
            InvokeKind::Request { id, payload } => object.on_request(cx, id, payload),
            InvokeKind::Response { call, response } => object.on_response(cx, call, response),
        });
    }

    /// Runs `f` on host `id`'s object (if up, in incarnation `expect` when given, and not
    /// already running), then applies the effects it left in the context.
    pub(crate) fn run_host<R>(
        &self,
        id: SimNode,
        expect: Option<u64>,
        f: impl FnOnce(&mut dyn Host, &mut Context<'_>) -> R,
    ) -> Option<R> {
        let (mut object, incarnation, now) = {
            let mut world = self.world();
            let incarnation = world.live_incarnation(id)?;
            if expect.is_some_and(|e| e != incarnation) {
                return None;
            }
            let object = world.host_slot(id).object.take()?;
            (object, incarnation, world.now)
        };
        let mut cx = Context::new(id, now, &self.inner.call_ids);
        let result = f(object.as_mut(), &mut cx);
        let effects = cx.into_effects();
        let stale = {
            let mut world = self.world();
            if world.live_incarnation(id) == Some(incarnation) {
                world.host_slot(id).object = Some(object);
                world.apply_effects(id, incarnation, effects);
                None
            } else {
                Some(object)
            }
        };
        drop(stale);
        Some(result)
    }

    /// Starts a client endpoint's call; its outcome lands in `slot`.
    pub(crate) fn start_client_call(
        &self,
        from: SimNode,
        to: SimNode,
        payload: Vec<u8>,
        timeout: Duration,
        slot: Rc<CallSlot>,
    ) {
        let call = self.inner.call_ids.get();
        self.inner.call_ids.set(call + 1);
        let pending = PendingCall {
            caller: from,
            incarnation: 0,
            waiter: Waiter::Task(slot),
        };
        self.world().start_call(call, pending, to, payload, timeout);
    }
}
