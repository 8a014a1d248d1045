//! The linearizability checker: does a recorded history of client operations on the
//! key/value store admit an order that respects real time and the sequential
//! specification? Porcupine's algorithm, for shardkv's `get`/`put`/`append`/`delete`.
//!
//! # What it checks
//!
//! A history is **linearizable** when each operation can be given one instant between
//! its call and its return at which it takes effect, such that replaying the operations in
//! the order of those instants on a sequential store gives every answer the clients saw.
//! An operation whose client never got an answer ([`Operation::output`] is `None`) may
//! have taken effect at any instant after its call, or never; its return is at +infinity
//! and its output unconstrained.
//!
//! # How
//!
//! ```text
//!  History ──operations()──▶ check ──partition by key──▶ per key: search ──▶ Outcome
//!  (clients begin/end)                                    (events, model)      │
//!                                   CheckResult::{Ok, Illegal(Violation), Unknown}
//!                                        Violation ──save_html──▶ timeline page
//! ```
//!
//! 1. **Record** ([`history`]): client tasks share a [`History`] and call
//!    [`History::begin`] / [`History::end`] with virtual times.
//! 2. **Partition** ([`checker`]): every request touches one key and keys are independent
//!    registers, so the history is linearizable exactly when each key's sub-history is
//!    (linearizability is local, Herlihy & Wing). Unanswered gets are dropped: they change
//!    nothing and constrain nothing.
//! 3. **Search** ([`search`]): per key, Wing & Gong's backtracking search over the call
//!    and return events ([`events`], which also states the tie rule: a call at the instant
//!    of a return comes after it), with Lowe's memoization of (linearized set, state)
//!    against the one-key model ([`model`]). A step budget per key, counted in loop
//!    iterations and never in wall-clock time, turns a search too long into
//!    [`CheckResult::Unknown`].
//! 4. **Report**: a [`Violation`] names the key, the longest linearizable prefix found and
//!    the operation that could not come next; its `Display` is a text report, and
//!    [`html`] draws the key's operations on a timeline.
//!
//! [`exhaustive`] is a second, naive checker for histories of a few operations, against
//! which the tests compare this one.
//!
//! # Use in a scenario
//!
//! ```
//! use std::time::Duration;
//! use shardkv_tests::linearizability::{check, CheckOptions, CheckResult, History, KvInput, KvOutput};
//!
//! let history = History::new();
//! let recorder = history.clone(); // one clone per client task
//! let op = recorder.begin(1, KvInput::Put { key: b"k".to_vec(), value: b"v".to_vec() }, Duration::ZERO);
//! recorder.end(op, KvOutput::Done, Duration::from_millis(3));
//! match check(&history.operations(), &CheckOptions::default()) {
//!     CheckResult::Illegal(mut violation) => {
//!         let path = std::env::temp_dir().join("shardkv-linearizability.html");
//!         let _ = violation.save_html(&path); // the report says whether it was written
//!         panic!("seed 17: {violation}");
//!     }
//!     result => assert!(result.is_ok(), "{result}"),
//! }
//! ```
//!
//! # Caveats
//!
//! - The tie rule assumes every message takes positive virtual time (labrpc-sim's
//!   `min_latency` is 100 µs by default); with zero latency, a return and a call at one
//!   instant could be concurrent and the checker could report a false violation.
//! - Only one violation is reported: the first illegal key in byte order, and for it one
//!   longest prefix (Porcupine's visualization shows one per operation).
//! - Worst-case exponential, like every exact checker: many concurrent writes whose
//!   order no read pins down can exhaust the step budget ([`CheckResult::Unknown`]).
//! - Operations touching several keys (transactions) are outside the model.

pub mod checker;
pub mod events;
pub mod exhaustive;
pub mod history;
pub mod html;
pub mod model;
pub mod search;

pub use checker::{check, CheckOptions, CheckResult, Violation};
pub use history::{ClientId, History, KvInput, KvOutput, OpId, Operation};
pub use html::{render_html, write_html};
pub use search::Partial;
