//! The seam between the simulator and a sans-IO server: the [`Host`] trait (events in) and
//! the [`Context`] (effects out).
//!
//! ```text
//!   simulator event queue
//!        |  message / request / response / tick / wake
//!        v
//!   Host::on_*(&mut self, cx, ..)  --- cx.send/reply/call/wake_after/trace --->  Vec<Effect>
//!                                                                                        |
//!   simulator applies the effects, in order, after the callback returns  <--------------+
//! ```
//!
//! A host never sees the simulator itself: while a callback runs, the host object has been
//! taken out of the simulator and the simulator is not borrowed, and everything the host
//! wants done is recorded in its `Context` and applied afterwards. This keeps hosts honest
//! (they cannot read the clock except through `cx.now()`, cannot block, cannot draw random
//! numbers) and keeps the simulator free of re-entrancy.
//!
//! The one thing a context does immediately is hand out a [`CallId`], because the host needs
//! it to match the later [`Host::on_response`]; call ids come from one simulator-wide
//! counter, so they are unique across hosts and incarnations.
//!
//! A wake ([`Context::wake_after`]) is how a host models work that completes later, such
//! as a disk write that takes time: the host picks a token, and [`Host::on_wake`] brings it
//! back after a delay drawn from the simulation's RNG, unless the host crashed, lost power
//! or restarted in between. Wakes are not messages: they never touch the network and do not
//! count as RPCs.

use std::any::Any;
use std::cell::Cell;
use std::fmt::Display;
use std::ops::Range;
use std::time::Duration;

use crate::{CallId, RequestId, SimNode};

/// A sans-IO server hosted by the simulator.
///
/// Implementations must be deterministic: no clock, no I/O, no unseeded randomness and no
/// iteration over `HashMap`/`HashSet` whose order reaches an effect.
pub trait Host: Any {
    /// One-way message from peer `from` (sent with [`Context::send`]).
    fn on_message(&mut self, cx: &mut Context<'_>, from: SimNode, payload: Vec<u8>);

    /// A request (from a client endpoint or another host's [`Context::call`]); answer it,
    /// now or later, with [`Context::reply`] and this `id`.
    fn on_request(&mut self, cx: &mut Context<'_>, id: RequestId, payload: Vec<u8>) {
        let _ = (cx, id, payload);
    }

    /// Outcome of an earlier [`Context::call`]: `Some(reply)`, or `None` when the call timed
    /// out, its target was unreachable, or the network dropped it.
    fn on_response(&mut self, cx: &mut Context<'_>, call: CallId, response: Option<Vec<u8>>) {
        let _ = (cx, call, response);
    }

    /// One tick of logical time, scheduled by the simulator at jittered intervals.
    fn on_tick(&mut self, cx: &mut Context<'_>);

    /// A wake asked for with [`Context::wake_after`], carrying its `token`. Only the
    /// incarnation that asked for it gets it: a crash, power failure or restart in between
    /// cancels it.
    fn on_wake(&mut self, cx: &mut Context<'_>, token: u64) {
        let _ = (cx, token);
    }
}

/// One thing a host asked for during a callback, applied by the simulator afterwards.
#[derive(Debug)]
pub(crate) enum Effect {
    Send {
        to: SimNode,
        payload: Vec<u8>,
    },
    Reply {
        id: RequestId,
        payload: Vec<u8>,
    },
    Call {
        call: CallId,
        to: SimNode,
        payload: Vec<u8>,
        timeout: Duration,
    },
    Wake {
        delay: Range<Duration>,
        token: u64,
    },
    Trace {
        topic: String,
        line: String,
    },
}

/// Effects sink handed to a host for the duration of one event.
pub struct Context<'a> {
    me: SimNode,
    now: Duration,
    call_ids: &'a Cell<CallId>,
    effects: Vec<Effect>,
}

impl<'a> Context<'a> {
    pub(crate) fn new(me: SimNode, now: Duration, call_ids: &'a Cell<CallId>) -> Self {
        Context {
            me,
            now,
            call_ids,
            effects: Vec::new(),
        }
    }

    pub(crate) fn into_effects(self) -> Vec<Effect> {
        self.effects
    }

    /// The id of the host this event is for.
    pub fn me(&self) -> SimNode {
        self.me
    }

    /// Virtual time since the simulation started.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Sends a one-way message to host `to`. It may be delayed, reordered or dropped, and is
    /// silently lost if `to` is down, unreachable or a client endpoint.
    pub fn send(&mut self, to: SimNode, payload: Vec<u8>) {
        self.effects.push(Effect::Send { to, payload });
    }

    /// Answers request `id`. Unknown or stale ids (from before a crash) are ignored.
    pub fn reply(&mut self, id: RequestId, payload: Vec<u8>) {
        self.effects.push(Effect::Reply { id, payload });
    }

    /// Calls host `to`; the outcome arrives later through [`Host::on_response`] with the
    /// returned id, at the latest after `timeout`. Forgotten if this host crashes first.
    pub fn call(&mut self, to: SimNode, payload: Vec<u8>, timeout: Duration) -> CallId {
        let call = self.call_ids.get();
        self.call_ids.set(call + 1);
        self.effects.push(Effect::Call {
            call,
            to,
            payload,
            timeout,
        });
        call
    }

    /// Asks for [`Host::on_wake`] with `token` after a delay drawn uniformly (in whole
    /// nanoseconds) from `delay` by the simulation's RNG when this callback's effects are
    /// applied; an empty or inverted range means exactly `delay.start`. Cancelled if this
    /// host crashes, loses power or restarts first. Tokens are the host's own: the simulator
    /// neither interprets nor deduplicates them.
    pub fn wake_after(&mut self, delay: Range<Duration>, token: u64) {
        self.effects.push(Effect::Wake { delay, token });
    }

    /// Writes a readable trace line; it is hashed into the run's digest.
    pub fn trace(&mut self, topic: &str, line: impl Display) {
        self.effects.push(Effect::Trace {
            topic: topic.to_string(),
            line: line.to_string(),
        });
    }
}

/// Downcasts a host object to its concrete type.
pub(crate) fn downcast_mut<H: Host>(host: &mut dyn Host) -> Option<&mut H> {
    let any: &mut dyn Any = host;
    any.downcast_mut::<H>()
}
