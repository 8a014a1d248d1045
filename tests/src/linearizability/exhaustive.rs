//! A reference checker for tiny histories: tries every order of the operations, on the
//! whole store at once, without partitioning, event lists or memoization.
//!
//! It exists to test [`super::check`]: the two share only the one-key step function
//! ([`super::model::step`], tested on its own) and the definition of real-time order,
//! which this file states directly instead of through sorted events:
//!
//! > `a` must precede `b` when `a` returned before `b` was called, or at the instant `b`
//! > was called unless `a` also returned at the instant it was called.
//!
//! It is exponential in the number of operations and refuses more than
//! [`MAX_OPERATIONS`].

use std::collections::BTreeMap;

use super::history::Operation;
use super::model::{step, Step};

/// The most operations [`linearizable_exhaustive`] accepts (9! orders is still quick).
pub const MAX_OPERATIONS: usize = 9;

/// Whether real time forces `a` to take effect before `b`.
pub fn precedes(a: &Operation, b: &Operation) -> bool {
    match a.return_time {
        None => false,
        Some(ret) => ret < b.call || (ret == b.call && a.call < ret),
    }
}

/// Whether some order of `operations` respects real time and the key/value model.
pub fn linearizable_exhaustive(operations: &[Operation]) -> bool {
    assert!(
        operations.len() <= MAX_OPERATIONS,
        "{} operations: the exhaustive checker takes at most {MAX_OPERATIONS}",
        operations.len()
    );
    let mut done = vec![false; operations.len()];
    extend(operations, &mut done, &mut BTreeMap::new())
}

/// Whether the order built so far (the `done` operations, which left the store as
/// `store`) extends to all of them.
fn extend(ops: &[Operation], done: &mut [bool], store: &mut BTreeMap<Vec<u8>, Vec<u8>>) -> bool {
    if done.iter().all(|&d| d) {
        return true;
    }
    for i in 0..ops.len() {
        let blocked = (0..ops.len()).any(|j| !done[j] && j != i && precedes(&ops[j], &ops[i]));
        if done[i] || blocked {
            continue;
        }
        let key = ops[i].input.key().to_vec();
        let before = store.get(&key).cloned();
        match step(&before, &ops[i].input, ops[i].output.as_ref()) {
            Step::Illegal => continue,
            Step::Same => {}
            Step::Next(Some(value)) => {
                store.insert(key.clone(), value);
            }
            Step::Next(None) => {
                store.remove(&key);
            }
        }
        done[i] = true;
        if extend(ops, done, store) {
            return true;
        }
        done[i] = false;
        match before {
            Some(value) => {
                store.insert(key, value);
            }
            None => {
                store.remove(&key);
            }
        }
    }
    false
}
