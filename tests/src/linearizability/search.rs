//! The search for a linearization of one key's operations: Wing & Gong's algorithm with
//! Lowe's memoization, as Porcupine implements it (`checkSingle`).
//!
//! The search walks the event list ([`Events`]) from the front. At a **call** it tries
//! to linearize that operation next: if the model accepts it from the current state, and
//! the pair (set of linearized operations, new state) has not been reached before, it
//! pushes the operation on a stack, lifts it out of the list and starts again from the
//! front. At a **return** it has found an operation that must have taken effect by now
//! but that no ordering of the operations called so far lets take effect: it backtracks,
//! popping the last linearized operation, relinking it and trying the next candidate after
//! it. An empty list means every operation is linearized (success); a return reached with
//! an empty stack means no linearization exists (a violation).
//!
//! ```text
//!   list:  head → call a → call b → ret a → call c → ret b → ret c
//!                 └ try a: legal, new (set, state)? push a, lift a, restart
//!                   ...
//!                 ret x reached: pop, unlift, try the call after the popped one
//! ```
//!
//! Memoization is what makes this practical: two orderings of the same set of operations
//! that leave the key in the same state have the same future, so the second is pruned.
//!
//! Every iteration of the loop is one step; past the step budget the search gives up and
//! the key's result is unknown. Steps, not wall-clock time, so a result never depends on
//! the machine.

use std::collections::HashSet;

use super::events::Events;
use super::history::Operation;
use super::model::{step, KvState, StateId, States, Step};

/// The longest linearizable prefix the search found before proving that none extends to
/// the whole history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partial {
    /// Indices of the operations of the prefix, in the order they were linearized.
    pub linearized: Vec<usize>,
    /// The operation whose return the search reached right after this prefix: it had to
    /// take effect by then, and no remaining operation could be linearized next.
    pub stuck: usize,
    /// The key's value after the prefix.
    pub state: KvState,
}

/// What the search concluded about one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Some ordering of the operations respects real time and the model.
    Linearizable,
    /// No ordering does; the longest prefix found.
    Illegal(Partial),
    /// The step budget ran out after this many steps.
    GaveUp {
        /// Steps taken.
        steps: u64,
    },
}

/// A set of operation indices, one bit each.
type Bitset = Vec<u64>;

/// The search's state for one key.
struct Search<'a> {
    ops: &'a [Operation],
    events: Events,
    states: States,
    /// The key's current state after the linearized operations.
    state: StateId,
    /// Which operations are linearized.
    linearized: Bitset,
    /// Every (linearized set, state) the search has reached.
    seen: HashSet<(Bitset, StateId)>,
    /// The linearized operations in order, each with the state before it.
    stack: Vec<(usize, StateId)>,
    /// The longest prefix found so far, with the operation stuck after it.
    longest: Option<(Vec<usize>, usize, StateId)>,
}

/// Searches for a linearization of `ops`, which must all touch one key, taking at most
/// `max_steps` steps.
pub fn search(ops: &[Operation], max_steps: u64) -> Outcome {
    let times: Vec<_> = ops.iter().map(|op| (op.call, op.return_time)).collect();
    let (states, initial) = States::new();
    let mut search = Search {
        ops,
        events: Events::new(&times),
        states,
        state: initial,
        linearized: vec![0; ops.len().div_ceil(64)],
        seen: HashSet::new(),
        stack: Vec::new(),
        longest: None,
    };
    search.run(max_steps)
}

impl Search<'_> {
    fn run(&mut self, max_steps: u64) -> Outcome {
        let mut steps: u64 = 0;
        let mut cursor = self.events.first();
        while let Some(node) = cursor {
            if steps >= max_steps {
                return Outcome::GaveUp { steps };
            }
            steps += 1;
            cursor = if Events::is_call(node) {
                self.try_linearize(node)
            } else if let Some(next) = self.backtrack(Events::op(node)) {
                Some(next)
            } else {
                return Outcome::Illegal(self.partial());
            };
        }
        Outcome::Linearizable
    }

    /// Tries to linearize the operation called at `node` next; returns where to go on.
    fn try_linearize(&mut self, node: usize) -> Option<usize> {
        let op = Events::op(node);
        let operation = &self.ops[op];
        let next_state = match step(
            self.states.get(self.state),
            &operation.input,
            operation.output.as_ref(),
        ) {
            Step::Illegal => return self.events.next(node),
            Step::Same => self.state,
            Step::Next(state) => self.states.intern(state),
        };
        set_bit(&mut self.linearized, op, true);
        if !self.seen.insert((self.linearized.clone(), next_state)) {
            set_bit(&mut self.linearized, op, false);
            return self.events.next(node);
        }
        self.stack.push((op, self.state));
        self.state = next_state;
        self.events.lift(op);
        self.events.first()
    }

    /// At the return of `stuck`: records the prefix if it is the longest, undoes the last
    /// linearized operation and returns the event after its call, or `None` when there is
    /// nothing left to undo.
    fn backtrack(&mut self, stuck: usize) -> Option<usize> {
        let longer = self
            .longest
            .as_ref()
            .is_none_or(|(prefix, _, _)| self.stack.len() > prefix.len());
        if longer {
            let prefix = self.stack.iter().map(|&(op, _)| op).collect();
            self.longest = Some((prefix, stuck, self.state));
        }
        let (op, before) = self.stack.pop()?;
        set_bit(&mut self.linearized, op, false);
        self.state = before;
        self.events.unlift(op);
        self.events.next(Events::call(op))
    }

    fn partial(&self) -> Partial {
        let (linearized, stuck, state) = self
            .longest
            .clone()
            .expect("a violation records its prefix");
        Partial {
            linearized,
            stuck,
            state: self.states.get(state).clone(),
        }
    }
}

fn set_bit(bits: &mut Bitset, index: usize, value: bool) {
    let (word, mask) = (index / 64, 1u64 << (index % 64));
    if value {
        bits[word] |= mask;
    } else {
        bits[word] &= !mask;
    }
}
