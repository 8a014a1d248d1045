//! [`Pool`]: the idle sessions of a handle ([`crate::Client`], [`crate::Admin`]).
//!
//! A duplicate table remembers one request per client id, so a session (a client id and
//! its next sequence number) may have one operation outstanding. A handle whose clones
//! run operations at once gives each a session of its own: an idle one from the pool,
//! or a new one when every one is busy; the operation gives it back when it ends.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// The most idle sessions a pool keeps; a session given back past it is dropped (its
/// id is never used again).
pub(crate) const MAX_IDLE_SESSIONS: usize = 1024;

/// Idle sessions of type `S`.
#[derive(Debug)]
pub(crate) struct Pool<S> {
    idle: Mutex<Vec<S>>,
}

impl<S> Pool<S> {
    /// A pool holding `first`.
    pub(crate) fn new(first: S) -> Self {
        Pool {
            idle: Mutex::new(vec![first]),
        }
    }

    /// The session given back last, or `make()` when none is idle.
    pub(crate) fn take(&self, make: impl FnOnce() -> S) -> S {
        let idle = lock(&self.idle).pop();
        idle.unwrap_or_else(make)
    }

    /// Keeps `session` for a later operation, unless the pool is full.
    pub(crate) fn give_back(&self, session: S) {
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE_SESSIONS {
            idle.push(session);
        }
    }
}

/// `mutex`'s guard; a panic elsewhere while it was held leaves the data usable (every
/// change made under the client's locks is a single assignment or push).
pub(crate) fn lock<X>(mutex: &Mutex<X>) -> MutexGuard<'_, X> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
