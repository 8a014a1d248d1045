//! Deliberate bugs, compiled only with the `mutants` feature (the test suites' builds)
//! and off unless a test switches one on for its thread: each shows that a suite's
//! checks catch the bug it stands for (`tests/tests/kv_mutants.rs`). The Raft layer's
//! switch is here too (re-exported as `shardkv_raft::mutants`), so one mechanism serves
//! every crate.

use std::cell::Cell;

/// A deliberate bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutation {
    /// The host applies every entry the log hands it, also those the state's own
    /// storage holds already (a replay after a restart or a catch-up applies them again).
    ReapplyReplayed,
    /// A duplicate table takes every request of a client it does not know as new,
    /// whatever it observed: a retry or a stray duplicate arriving after its session
    /// expired applies again.
    UnknownSessionsAreNew,
}

thread_local! {
    static ACTIVE: Cell<Option<Mutation>> = const { Cell::new(None) };
}

/// Runs `f` with `mutation` on for this thread.
pub fn with<R>(mutation: Mutation, f: impl FnOnce() -> R) -> R {
    struct Off;
    impl Drop for Off {
        fn drop(&mut self) {
            ACTIVE.with(|active| active.set(None));
        }
    }
    ACTIVE.with(|active| active.set(Some(mutation)));
    let _off = Off;
    f()
}

/// True when `mutation` is on for this thread.
pub fn active(mutation: Mutation) -> bool {
    ACTIVE.with(|active| active.get() == Some(mutation))
}
