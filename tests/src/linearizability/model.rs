//! The sequential specification of one key, which the search replays operations against.
//!
//! Because every request touches one key, the store is the product of independent
//! one-key registers and the checker runs one search per key (Porcupine's
//! "partitioning"). A key's state is its value, or `None` when it is absent:
//!
//! | request          | next state                     | legal output             |
//! |------------------|--------------------------------|--------------------------|
//! | `get`            | unchanged                      | the current value/absent |
//! | `put(v)`         | `Some(v)`                      | `ok`                     |
//! | `append(v)`      | `Some(current ++ v)`           | `ok`                     |
//! | `delete`         | `None`                         | `ok`                     |
//!
//! An operation without an answer has no output to check: any step is legal.
//!
//! States are interned ([`States`]) so the search's memo table and stack hold small ids
//! instead of copies of values.

use std::collections::HashMap;

use super::history::{KvInput, KvOutput};

/// One key's value, or `None` when the key is absent (never written, or deleted).
pub type KvState = Option<Vec<u8>>;

/// The outcome of applying one operation to a state.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// The output contradicts the state: the operation cannot take effect here.
    Illegal,
    /// Legal, and the state does not change (a get).
    Same,
    /// Legal, and the key moves to this state.
    Next(KvState),
}

/// Applies `input`, answered with `output` (`None`: no answer), to the key's `state`.
pub fn step(state: &KvState, input: &KvInput, output: Option<&KvOutput>) -> Step {
    match (input, output) {
        (KvInput::Get { .. }, None) => Step::Same,
        (KvInput::Get { .. }, Some(KvOutput::Value(read))) if read == state => Step::Same,
        (KvInput::Get { .. }, Some(_)) => Step::Illegal,
        (_, Some(KvOutput::Value(_))) => Step::Illegal,
        (KvInput::Put { value, .. }, _) => Step::Next(Some(value.clone())),
        (KvInput::Append { value, .. }, _) => {
            let mut next = state.clone().unwrap_or_default();
            next.extend_from_slice(value);
            Step::Next(Some(next))
        }
        (KvInput::Delete { .. }, _) => Step::Next(None),
    }
}

/// A small id standing for one interned [`KvState`].
pub type StateId = u32;

/// Interned states: each distinct value is stored once and named by a [`StateId`].
#[derive(Debug, Default)]
pub struct States {
    values: Vec<KvState>,
    ids: HashMap<KvState, StateId>,
}

impl States {
    /// A table holding only the initial state (absent), whose id is returned too.
    pub fn new() -> (States, StateId) {
        let mut states = States::default();
        let initial = states.intern(None);
        (states, initial)
    }

    /// The id of `state`, adding it to the table if it is new.
    pub fn intern(&mut self, state: KvState) -> StateId {
        if let Some(&id) = self.ids.get(&state) {
            return id;
        }
        let id = StateId::try_from(self.values.len()).expect("fewer than 2^32 distinct states");
        self.values.push(state.clone());
        self.ids.insert(state, id);
        id
    }

    /// The state named `id`.
    pub fn get(&self, id: StateId) -> &KvState {
        &self.values[id as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Vec<u8> {
        b"k".to_vec()
    }

    /// The step function follows the table of the module docs, row by row.
    #[test]
    fn step_follows_the_specification() {
        let ab = Some(b"ab".to_vec());
        let get = KvInput::Get { key: key() };
        let append = KvInput::Append {
            key: key(),
            value: b"c".to_vec(),
        };
        let put = KvInput::Put {
            key: key(),
            value: b"x".to_vec(),
        };
        let delete = KvInput::Delete { key: key() };
        let done = Some(&KvOutput::Done);
        let read = |v: &KvState| KvOutput::Value(v.clone());
        assert_eq!(step(&ab, &get, Some(&read(&ab))), Step::Same);
        assert_eq!(step(&ab, &get, Some(&read(&None))), Step::Illegal);
        assert_eq!(step(&None, &get, Some(&read(&None))), Step::Same);
        assert_eq!(step(&ab, &get, None), Step::Same);
        assert_eq!(step(&ab, &append, done), Step::Next(Some(b"abc".to_vec())));
        assert_eq!(step(&None, &append, None), Step::Next(Some(b"c".to_vec())));
        assert_eq!(step(&ab, &put, done), Step::Next(Some(b"x".to_vec())));
        assert_eq!(step(&ab, &delete, done), Step::Next(None));
        assert_eq!(step(&ab, &put, Some(&read(&ab))), Step::Illegal);
    }

    /// Interning gives equal states equal ids and different states different ids.
    #[test]
    fn interning_names_each_state_once() {
        let (mut states, initial) = States::new();
        assert_eq!(states.intern(None), initial);
        let a = states.intern(Some(b"a".to_vec()));
        assert_ne!(a, initial);
        assert_eq!(states.intern(Some(b"a".to_vec())), a);
        assert_eq!(states.get(a), &Some(b"a".to_vec()));
    }
}
