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

    /// The session given back last, or `make()` when none is idle, lent until the
    /// lease is dropped: however the operation ends (an answer, its deadline, or its
    /// future dropped by the caller), the session comes back. That is safe because a
    /// session's number is taken before its request is sent, so a copy of the request
    /// still in the network is older than anything the session sends next.
    pub(crate) fn lease(&self, make: impl FnOnce() -> S) -> Lease<'_, S> {
        let idle = lock(&self.idle).pop();
        Lease {
            pool: self,
            session: Some(idle.unwrap_or_else(make)),
        }
    }

    /// Keeps `session` for a later operation, unless the pool is full.
    pub(crate) fn give_back(&self, session: S) {
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE_SESSIONS {
            idle.push(session);
        }
    }
}

/// A session lent by a [`Pool`], given back when dropped.
#[derive(Debug)]
pub(crate) struct Lease<'a, S> {
    pool: &'a Pool<S>,
    /// Always `Some` until dropped.
    session: Option<S>,
}

impl<S> std::ops::Deref for Lease<'_, S> {
    type Target = S;
    fn deref(&self) -> &S {
        self.session
            .as_ref()
            .expect("a lease holds its session until dropped")
    }
}

impl<S> std::ops::DerefMut for Lease<'_, S> {
    fn deref_mut(&mut self) -> &mut S {
        self.session
            .as_mut()
            .expect("a lease holds its session until dropped")
    }
}

impl<S> Drop for Lease<'_, S> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.pool.give_back(session);
        }
    }
}

/// `mutex`'s guard; a panic elsewhere while it was held leaves the data usable (every
/// change made under the client's locks is a single assignment or push).
pub(crate) fn lock<X>(mutex: &Mutex<X>) -> MutexGuard<'_, X> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
