//! What the checker reads: one [`Operation`] per client request, with its virtual call and
//! return times, recorded by a [`History`] that client tasks share.
//!
//! A client task calls [`History::begin`] just before it sends a request and
//! [`History::end`] when it holds the final answer. A task that gives up (its deadline
//! passed, the scenario ended) simply drops the [`OpId`]: the operation stays open, with
//! no output and no return time, and the checker lets it take effect at any point after
//! its call, or never.
//!
//! The recorder is an `Rc<RefCell<..>>` because the simulator runs every task on one
//! thread; cloning it is cheap and every clone appends to the same history.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

pub use shardkv_proto::ClientId;

/// A request as the client issued it. Keys and values are bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvInput {
    /// Read the key's value, or learn that it is absent.
    Get {
        /// The key read.
        key: Vec<u8>,
    },
    /// Overwrite the key's value.
    Put {
        /// The key written.
        key: Vec<u8>,
        /// Its new value.
        value: Vec<u8>,
    },
    /// Append to the key's value; a put when the key is absent.
    Append {
        /// The key appended to.
        key: Vec<u8>,
        /// The bytes appended.
        value: Vec<u8>,
    },
    /// Remove the key; silent when it is absent.
    Delete {
        /// The key removed.
        key: Vec<u8>,
    },
}

impl KvInput {
    /// The one key the request touches: the checker partitions the history by it.
    pub fn key(&self) -> &[u8] {
        match self {
            KvInput::Get { key }
            | KvInput::Put { key, .. }
            | KvInput::Append { key, .. }
            | KvInput::Delete { key } => key,
        }
    }

    /// Whether `output` is the kind of answer this request gets (a value for a get, a
    /// plain acknowledgement for the others).
    pub fn matches(&self, output: &KvOutput) -> bool {
        matches!(
            (self, output),
            (KvInput::Get { .. }, KvOutput::Value(_))
                | (
                    KvInput::Put { .. } | KvInput::Append { .. } | KvInput::Delete { .. },
                    KvOutput::Done
                )
        )
    }
}

/// The answer a client received.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvOutput {
    /// A get's answer: the value, or `None` when the key was absent.
    Value(Option<Vec<u8>>),
    /// A put's, append's or delete's acknowledgement.
    Done,
}

/// One client request and what became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// The client that issued it; one row of the HTML timeline per client.
    pub client: ClientId,
    /// The request.
    pub input: KvInput,
    /// Virtual time at which the client issued it.
    pub call: Duration,
    /// The answer, or `None` when the client never got one: the request may or may not
    /// have taken effect, and if it did, its output is unknown.
    pub output: Option<KvOutput>,
    /// Virtual time at which the answer arrived; `None` (read as +infinity) exactly when
    /// `output` is `None`.
    pub return_time: Option<Duration>,
}

impl Operation {
    /// A completed operation: called at `call`, answered `output` at `return_time`.
    pub fn done(
        client: ClientId,
        input: KvInput,
        call: Duration,
        output: KvOutput,
        return_time: Duration,
    ) -> Operation {
        let output = Some(output);
        let return_time = Some(return_time);
        Operation {
            client,
            input,
            call,
            output,
            return_time,
        }
    }

    /// An operation that never got an answer.
    pub fn pending(client: ClientId, input: KvInput, call: Duration) -> Operation {
        Operation {
            client,
            input,
            call,
            output: None,
            return_time: None,
        }
    }

    /// Panics unless the operation is well formed: an output exactly when there is a
    /// return time, of the kind the input gets, no earlier than the call. A malformed
    /// operation is a bug of the recording harness, not of the servers.
    pub fn assert_well_formed(&self) {
        assert!(
            self.output.is_some() == self.return_time.is_some(),
            "operation {self}: output and return time must be both present or both absent"
        );
        if let Some(output) = &self.output {
            assert!(
                self.input.matches(output),
                "operation {self}: output {output:?} does not fit"
            );
        }
        if let Some(ret) = self.return_time {
            assert!(
                ret >= self.call,
                "operation {self}: returns before its call"
            );
        }
    }
}

/// Formats bytes for people: as a quoted string when they are printable UTF-8, as hex
/// otherwise; long values are cut to `max_chars` characters with a `…` marker.
pub fn show_bytes(bytes: &[u8], max_chars: usize) -> String {
    let text = match std::str::from_utf8(bytes) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => format!("{s:?}"),
        _ => format!(
            "0x{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    };
    if text.chars().count() <= max_chars {
        return text;
    }
    let cut: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    format!("{cut}…")
}

/// How many characters of a value a one-line description shows.
const SHOWN_CHARS: usize = 24;

impl fmt::Display for KvInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = |key: &[u8]| show_bytes(key, SHOWN_CHARS);
        let v = |value: &[u8]| show_bytes(value, SHOWN_CHARS);
        match self {
            KvInput::Get { key } => write!(f, "get({})", k(key)),
            KvInput::Put { key, value } => write!(f, "put({}, {})", k(key), v(value)),
            KvInput::Append { key, value } => write!(f, "append({}, {})", k(key), v(value)),
            KvInput::Delete { key } => write!(f, "delete({})", k(key)),
        }
    }
}

impl fmt::Display for KvOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvOutput::Value(Some(value)) => f.write_str(&show_bytes(value, SHOWN_CHARS)),
            KvOutput::Value(None) => f.write_str("absent"),
            KvOutput::Done => f.write_str("ok"),
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client {} {}", self.client, self.input)?;
        match (&self.output, self.return_time) {
            (Some(output), Some(ret)) => write!(f, " -> {output} [{:?}, {ret:?}]", self.call),
            _ => write!(f, " -> (no answer) [{:?}, ∞)", self.call),
        }
    }
}

/// The handle of an operation begun and not yet ended. Not `Clone`: an operation ends
/// at most once. Dropping it leaves the operation without an answer.
#[derive(Debug)]
#[must_use = "end the operation with History::end, or drop the id if it got no answer"]
pub struct OpId(usize);

/// The shared recorder of a run's operations, cheap to clone into client tasks.
#[derive(Clone, Debug, Default)]
pub struct History {
    operations: Rc<RefCell<Vec<Operation>>>,
}

impl History {
    /// An empty history.
    pub fn new() -> History {
        History::default()
    }

    /// Records that `client` issues `input` at virtual time `now`.
    pub fn begin(&self, client: ClientId, input: KvInput, now: Duration) -> OpId {
        let mut operations = self.operations.borrow_mut();
        operations.push(Operation::pending(client, input, now));
        OpId(operations.len() - 1)
    }

    /// Records that the operation `op` got its final answer `output` at virtual time `now`.
    pub fn end(&self, op: OpId, output: KvOutput, now: Duration) {
        let mut operations = self.operations.borrow_mut();
        let operation = &mut operations[op.0];
        operation.output = Some(output);
        operation.return_time = Some(now);
        operation.assert_well_formed();
    }

    /// A copy of every operation recorded so far, in the order they began.
    pub fn operations(&self) -> Vec<Operation> {
        self.operations.borrow().clone()
    }

    /// How many operations have begun.
    pub fn len(&self) -> usize {
        self.operations.borrow().len()
    }

    /// Whether no operation has begun.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
