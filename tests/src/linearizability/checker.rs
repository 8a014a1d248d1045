//! The checker's entry point: partition a history by key, search each key, and report
//! the first violation in a form a person can read.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::history::{show_bytes, KvInput, Operation};
use super::search::{search, Outcome, Partial};

/// Limits of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckOptions {
    /// Steps the search may take on one key before it gives up and the result is
    /// [`CheckResult::Unknown`]. Per key, so a key's result never depends on the others.
    pub max_steps_per_key: u64,
}

impl Default for CheckOptions {
    /// Two million steps: a budget no well-behaved lab history comes near (a key with
    /// 2,000 overlapping operations takes about 10 ms) and that a pathological one
    /// exhausts in a few seconds of a test build.
    fn default() -> CheckOptions {
        CheckOptions {
            max_steps_per_key: 2_000_000,
        }
    }
}

/// The verdict on a whole history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckResult {
    /// Every key's operations are linearizable.
    Ok,
    /// Some key's are not: the first such key in byte order.
    Illegal(Box<Violation>),
    /// No key is illegal, but the search on this key (the first in byte order) ran out of
    /// steps, so the history may or may not be linearizable.
    Unknown {
        /// The key whose search gave up.
        key: Vec<u8>,
        /// The steps it took.
        steps: u64,
    },
}

impl CheckResult {
    /// Whether the history is known to be linearizable.
    pub fn is_ok(&self) -> bool {
        matches!(self, CheckResult::Ok)
    }

    /// Whether the history is known not to be linearizable.
    pub fn is_illegal(&self) -> bool {
        matches!(self, CheckResult::Illegal(_))
    }
}

/// A key whose operations admit no linearization, with the longest linearizable prefix
/// the search found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The key.
    pub key: Vec<u8>,
    /// The operations on the key that the search considered, in history order (gets that
    /// never got an answer are left out: they constrain nothing).
    pub operations: Vec<Operation>,
    /// The longest prefix, indexing [`Violation::operations`].
    pub partial: Partial,
    /// Where the HTML timeline was written, once [`Violation::save_html`] has.
    pub html_path: Option<PathBuf>,
}

impl Violation {
    /// Writes the HTML timeline of this violation to `path` and remembers the path for
    /// the text report.
    pub fn save_html(&mut self, path: &Path) -> io::Result<()> {
        super::html::write_html(path, self)?;
        self.html_path = Some(path.to_path_buf());
        Ok(())
    }
}

/// Checks that `operations` are linearizable against the key/value model.
pub fn check(operations: &[Operation], options: &CheckOptions) -> CheckResult {
    let mut unknown = None;
    for (key, ops) in partition(operations) {
        match search(&ops, options.max_steps_per_key) {
            Outcome::Linearizable => {}
            Outcome::Illegal(partial) => {
                let violation = Violation {
                    key,
                    operations: ops,
                    partial,
                    html_path: None,
                };
                return CheckResult::Illegal(Box::new(violation));
            }
            Outcome::GaveUp { steps } => {
                unknown.get_or_insert(CheckResult::Unknown { key, steps });
            }
        }
    }
    unknown.unwrap_or(CheckResult::Ok)
}

/// The operations of each key, in history order and keys in byte order, without the
/// unanswered gets. Panics on a malformed operation (a harness bug).
fn partition(operations: &[Operation]) -> BTreeMap<Vec<u8>, Vec<Operation>> {
    let mut by_key: BTreeMap<Vec<u8>, Vec<Operation>> = BTreeMap::new();
    for operation in operations {
        operation.assert_well_formed();
        let unanswered_get =
            matches!(operation.input, KvInput::Get { .. }) && operation.output.is_none();
        if !unanswered_get {
            by_key
                .entry(operation.input.key().to_vec())
                .or_default()
                .push(operation.clone());
        }
    }
    by_key
}

/// How many operations around the stuck one the text report lists.
const REPORT_WINDOW: usize = 20;

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (ops, partial) = (&self.operations, &self.partial);
        let key = show_bytes(&self.key, 64);
        writeln!(
            f,
            "history is not linearizable on key {key} ({} operations on it)",
            ops.len()
        )?;
        let value = partial
            .state
            .as_deref()
            .map_or("absent".to_string(), |v| show_bytes(v, 64));
        let prefix = &partial.linearized;
        writeln!(
            f,
            "  longest linearizable prefix: {} operations, after which the key is {value}",
            prefix.len()
        )?;
        let shown = prefix.len().saturating_sub(REPORT_WINDOW);
        if shown > 0 {
            writeln!(f, "    ... {shown} earlier")?;
        }
        for &i in &prefix[shown..] {
            writeln!(f, "    #{i} {}", ops[i])?;
        }
        writeln!(f, "  then #{} {}", partial.stuck, ops[partial.stuck])?;
        writeln!(
            f,
            "  had to take effect before it returned, and no operation on the key could come next"
        )?;
        write_neighbourhood(f, ops, partial)?;
        match &self.html_path {
            Some(path) => write!(f, "  timeline: {}", path.display()),
            None => write!(f, "  (no HTML timeline written)"),
        }
    }
}

/// Lists the operations around the stuck one by call time, marking the prefix's (`✓`)
/// and the stuck one (`✗`).
fn write_neighbourhood(
    f: &mut fmt::Formatter<'_>,
    ops: &[Operation],
    partial: &Partial,
) -> fmt::Result {
    let mut by_call: Vec<usize> = (0..ops.len()).collect();
    by_call.sort_by_key(|&i| (ops[i].call, i));
    let at = by_call
        .iter()
        .position(|&i| i == partial.stuck)
        .unwrap_or(0);
    let (from, to) = (
        at.saturating_sub(REPORT_WINDOW),
        (at + REPORT_WINDOW + 1).min(ops.len()),
    );
    writeln!(
        f,
        "  operations on the key by call time ({} to {} of {}):",
        from + 1,
        to,
        ops.len()
    )?;
    for &i in &by_call[from..to] {
        let mark = if i == partial.stuck {
            '✗'
        } else if partial.linearized.contains(&i) {
            '✓'
        } else {
            ' '
        };
        writeln!(f, "    {mark} #{i} {}", ops[i])?;
    }
    Ok(())
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckResult::Ok => write!(f, "history is linearizable"),
            CheckResult::Illegal(violation) => violation.fmt(f),
            CheckResult::Unknown { key, steps } => write!(
                f,
                "linearizability unknown: the search on key {} gave up after {steps} steps \
                 (raise CheckOptions::max_steps_per_key)",
                show_bytes(key, 64)
            ),
        }
    }
}
