//! Scheduled events and the queue that orders them.
//!
//! The queue is a `BTreeMap` keyed by `(virtual time, sequence number)`: events at the same
//! instant run in the order they were scheduled, so ties never depend on hashing, memory
//! addresses or anything else outside the seed.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Weak;
use std::task::Waker;
use std::time::Duration;

use crate::{CallId, SimNode};

/// Where a sleeping task leaves its waker; the timer event holds it weakly so a dropped
/// `Sleep` costs nothing when its time comes.
pub(crate) type TimerSlot = RefCell<Option<Waker>>;

/// Something that happens at a point of virtual time.
pub(crate) enum Event {
    /// Host `host` ticks, if it is still in incarnation `incarnation`.
    Tick { host: SimNode, incarnation: u64 },
    /// Host `host` gets the wake `token` it asked for, if it is still in incarnation
    /// `incarnation`.
    Wake {
        host: SimNode,
        incarnation: u64,
        token: u64,
    },
    /// A one-way message arrives at `to`.
    Message {
        from: SimNode,
        to: SimNode,
        payload: Vec<u8>,
    },
    /// The request of call `call` arrives at host `to`.
    Request {
        call: CallId,
        from: SimNode,
        to: SimNode,
        payload: Vec<u8>,
    },
    /// The reply to call `call` arrives back at `to`, the caller.
    Reply {
        call: CallId,
        from: SimNode,
        to: SimNode,
        payload: Vec<u8>,
    },
    /// Call `call` fails as unreachable (the request was dropped or could not be delivered).
    CallFailed { call: CallId },
    /// Call `call` reaches its deadline.
    CallTimeout { call: CallId },
    /// A `Sleep` deadline.
    Timer(Weak<TimerSlot>),
}

impl Event {
    /// The fields folded into the digest: a kind tag, two ids and a payload.
    pub(crate) fn digest_fields(&self) -> (u8, u64, u64, &[u8]) {
        match self {
            Event::Tick { host, incarnation } => (b'k', *host as u64, *incarnation, &[]),
            // The incarnation is left out: whether the wake is delivered follows from the
            // crash and boot lines already in the digest.
            Event::Wake { host, token, .. } => (b'u', *host as u64, *token, &[]),
            Event::Message { from, to, payload } => (b'm', *from as u64, *to as u64, payload),
            Event::Request {
                call, to, payload, ..
            } => (b'q', *call, *to as u64, payload),
            Event::Reply {
                call,
                from,
                payload,
                ..
            } => (b'r', *call, *from as u64, payload),
            Event::CallFailed { call } => (b'f', *call, 0, &[]),
            Event::CallTimeout { call } => (b'o', *call, 0, &[]),
            Event::Timer(_) => (b's', 0, 0, &[]),
        }
    }
}

/// Pending events in `(time, seq)` order.
pub(crate) struct EventQueue {
    events: BTreeMap<(Duration, u64), Event>,
    next_seq: u64,
}

impl EventQueue {
    pub(crate) fn new() -> Self {
        EventQueue {
            events: BTreeMap::new(),
            next_seq: 0,
        }
    }

    /// Schedules `event` at `at`, after every event already scheduled for that instant.
    pub(crate) fn push(&mut self, at: Duration, event: Event) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.events.insert((at, seq), event);
    }

    /// Removes and returns the earliest event.
    pub(crate) fn pop(&mut self) -> Option<(Duration, Event)> {
        self.events.pop_first().map(|((at, _), event)| (at, event))
    }

    /// Time of the earliest event.
    pub(crate) fn next_time(&self) -> Option<Duration> {
        self.events.first_key_value().map(|((at, _), _)| *at)
    }
}
