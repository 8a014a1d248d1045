//! What every kv run ends with: the network healed, every key read back, and three
//! checks on the whole run.
//!
//! 1. **Linearizability** of every client operation ([`crate::linearizability`]), the
//!    final reads included, so "no acknowledged write lost" is part of it. On a violation
//!    the offending key's timeline is written as HTML under the system's temporary
//!    directory and the failure names its path.
//! 2. **No acknowledged write lost, no append doubled**, checked directly on the final
//!    reads: a key's last acknowledged Put (when it follows every other Put and Delete
//!    of the key in real time) begins the key's final value; every acknowledged Append
//!    issued after every Put and Delete of its key had returned appears exactly once in
//!    it; no append at all appears twice. (Written values are unique in every scenario.)
//! 3. **One owner per shard per configuration** ([`super::ownership`]).
//! 4. **Replicas agree**: those of a group at one log index hold one state
//!    ([`super::agreement`]).

use std::collections::BTreeMap;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use super::cluster::KvCluster;
use super::lab::KvLab;
use super::ownership::monitor;
use crate::linearizability::history::show_bytes;
use crate::linearizability::{check, CheckOptions, CheckResult, KvInput, KvOutput, Operation};
use crate::scenario::Outcome;

/// Virtual time a scenario body may take before it counts as stuck.
pub const SCENARIO_BUDGET: Duration = Duration::from_secs(300);

/// How long the final reads may take once the network is healed (virtual time).
pub const FINAL_READ_DEADLINE: Duration = Duration::from_secs(30);

impl<L: KvLab> KvCluster<L> {
    /// Drive `body` of scenario `name`, then heal, read back and check (see the module
    /// docs); frees the simulation after.
    pub fn run(&self, name: &str, body: impl Future<Output = Result<(), String>>) -> Outcome {
        let c = self.clone();
        let _monitor = self.sim.spawn(monitor(c.clone()));
        self.masters.run(async move {
            let fail = |e: String| {
                // The history so far may explain the failure: check it too.
                let history = check_history(&c, name).err().unwrap_or_default();
                format!("{e}\n  {}\n  {history}", c.describe())
            };
            within_budget(&c, body).await.map_err(fail)?;
            final_reads(&c).await.map_err(fail)?;
            check_history(&c, name)?;
            check_writes(&c.history.operations())?;
            if c.ownership.samples() == 0 {
                return Err("the ownership monitor never sampled a replica".to_string());
            }
            c.ownership.violation().map_or(Ok(()), Err)?;
            c.agreement.violation().map_or(Ok(()), Err)
        })
    }
}

/// Runs `body` for at most [`SCENARIO_BUDGET`] of virtual time; past it, fails naming
/// the operations still waiting for an answer (a stuck run is a failure with a
/// diagnosis, not the simulator's bare time-limit panic).
async fn within_budget<L: KvLab>(
    c: &KvCluster<L>,
    body: impl Future<Output = Result<(), String>>,
) -> Result<(), String> {
    let mut body = pin!(body);
    let mut timer = pin!(c.sim.sleep(SCENARIO_BUDGET));
    poll_fn(|cx| match body.as_mut().poll(cx) {
        Poll::Ready(result) => Poll::Ready(result),
        Poll::Pending => timer.as_mut().poll(cx).map(|()| Err(stuck(c))),
    })
    .await
}

fn stuck<L: KvLab>(c: &KvCluster<L>) -> String {
    let open: Vec<String> = (c.history.operations().iter())
        .filter(|op| op.output.is_none())
        .map(|op| op.to_string())
        .collect();
    format!(
        "scenario still running after {SCENARIO_BUDGET:?} of virtual time; operations without an answer: {}",
        open.join("; ")
    )
}

/// Heals the network and reads every key any client touched, with a fresh clerk.
async fn final_reads<L: KvLab>(c: &KvCluster<L>) -> Result<(), String> {
    c.sim.heal();
    c.sim.set_reliable(true);
    c.sim.set_long_reordering(false);
    let keys: std::collections::BTreeSet<Vec<u8>> = (c.history.operations().iter())
        .map(|op| op.input.key().to_vec())
        .collect();
    let mut ck = c.clerk_with_deadline(Some(FINAL_READ_DEADLINE));
    for key in keys {
        let key = String::from_utf8(key).map_err(|e| format!("non-UTF-8 key: {e}"))?;
        ck.get(&key).await.map_err(|e| format!("final read: {e}"))?;
    }
    Ok(())
}

/// The history of `c` is linearizable; else the HTML timeline is saved and the failure
/// names it.
pub fn check_history<L: KvLab>(c: &KvCluster<L>, name: &str) -> Result<(), String> {
    let operations = c.history.operations();
    match check(&operations, &CheckOptions::default()) {
        CheckResult::Ok => Ok(()),
        CheckResult::Unknown { key, steps } => Err(format!(
            "linearizability check gave up on key {} after {steps} steps",
            show_bytes(&key, 24)
        )),
        CheckResult::Illegal(mut violation) => {
            let file = format!("shardkv-kv-{name}-seed{}.html", c.sim.seed());
            let path = std::env::temp_dir().join(file);
            // The report names the timeline's path once it is saved.
            let unsaved = match violation.save_html(&path) {
                Ok(()) => String::new(),
                Err(e) => format!("\n  could not write {}: {e}", path.display()),
            };
            Err(format!(
                "history of {} operations is not linearizable: {violation}{unsaved}",
                operations.len()
            ))
        }
    }
}

/// The direct check on writes (item 2 of the module docs), against the last answered
/// read of each key.
pub fn check_writes(operations: &[Operation]) -> Result<(), String> {
    let mut by_key: BTreeMap<&[u8], Vec<&Operation>> = BTreeMap::new();
    for op in operations {
        by_key.entry(op.input.key()).or_default().push(op);
    }
    for (key, ops) in by_key {
        let last_read = ops.iter().rev().find_map(|op| match &op.output {
            Some(KvOutput::Value(value)) => Some(value.clone().unwrap_or_default()),
            _ => None,
        });
        if let Some(last_read) = last_read {
            check_key_writes(&ops, &last_read).map_err(|e| {
                let (key, read) = (show_bytes(key, 24), show_bytes(&last_read, 200));
                format!("key {key}, final value {read}: {e}")
            })?;
        }
    }
    Ok(())
}

/// One key's writes against its final value `last_read`: the last acknowledged Put
/// (when every other Put and Delete returned before it was called) is the value's
/// prefix; every acknowledged Append called after every Put and Delete returned
/// appears once; no Append appears twice.
fn check_key_writes(ops: &[&Operation], last_read: &[u8]) -> Result<(), String> {
    let overwrites: Vec<&&Operation> = (ops.iter())
        .filter(|op| matches!(op.input, KvInput::Put { .. } | KvInput::Delete { .. }))
        .collect();
    let returned = |op: &Operation| op.return_time.unwrap_or(Duration::MAX);
    if let Some(last) = overwrites.iter().max_by_key(|op| op.call) {
        let alone = (overwrites.iter())
            .all(|other| std::ptr::eq(**other, **last) || returned(other) < last.call);
        if let (KvInput::Put { value, .. }, true, true) =
            (&last.input, alone, last.output.is_some())
        {
            if !last_read.starts_with(value) {
                return Err(format!("the last write {last} is not its prefix"));
            }
        }
    }
    let overwritten_until = (overwrites.iter()).map(|op| returned(op)).max();
    for op in ops {
        let KvInput::Append { value, .. } = &op.input else {
            continue;
        };
        let seen = occurrences(last_read, value);
        let must = op.output.is_some() && overwritten_until.is_none_or(|t| op.call > t);
        if seen > 1 || (must && seen != 1) {
            return Err(format!("{op} appears {seen} times"));
        }
    }
    Ok(())
}

/// How many times `needle` occurs in `haystack`, overlapping occurrences included.
fn occurrences(haystack: &[u8], needle: &[u8]) -> usize {
    if needle.is_empty() || needle.len() > haystack.len() {
        return 0;
    }
    let finder = memchr::memmem::Finder::new(needle);
    let (mut count, mut from) = (0, 0);
    while let Some(at) = haystack.get(from..).and_then(|rest| finder.find(rest)) {
        count += 1;
        from += at + 1;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn occurrences_count_overlapping_matches() {
        assert_eq!(occurrences(b"aaaaa", b"aaa"), 3);
        assert_eq!(occurrences(b"x1y x2y x1y", b"x1y"), 2);
        assert_eq!(occurrences(b"x1y", b"x1y x"), 0);
        assert_eq!(occurrences(b"abc", b""), 0);
    }

    fn op(input: KvInput, call: u64, output: Option<KvOutput>, ret: u64) -> Operation {
        let ms = Duration::from_millis;
        match output {
            Some(output) => Operation::done(1, input, ms(call), output, ms(ret)),
            None => Operation::pending(1, input, ms(call)),
        }
    }

    fn append(value: &str) -> KvInput {
        KvInput::Append {
            key: b"k".to_vec(),
            value: value.as_bytes().to_vec(),
        }
    }

    /// A lost acknowledged put or append and a doubled append are caught; an
    /// unacknowledged append may be missing.
    #[test]
    fn lost_and_doubled_appends() {
        let read = |v: &str| {
            let get = KvInput::Get { key: b"k".to_vec() };
            op(
                get,
                10,
                Some(KvOutput::Value(Some(v.as_bytes().to_vec()))),
                11,
            )
        };
        let a = op(append("x1y"), 1, Some(KvOutput::Done), 2);
        let b = op(append("x2y"), 3, None, 0);
        assert_eq!(check_writes(&[a.clone(), b.clone(), read("x1y")]), Ok(()));
        let put = |v: &str| KvInput::Put {
            key: b"k".to_vec(),
            value: v.as_bytes().to_vec(),
        };
        let p = op(put("p"), 0, Some(KvOutput::Done), 1);
        assert_eq!(check_writes(&[p.clone(), a.clone(), read("px1y")]), Ok(()));
        assert!(check_writes(&[p, a.clone(), read("qx1y")]).is_err());
        assert!(check_writes(&[a.clone(), b.clone(), read("x2y")]).is_err());
        assert!(check_writes(&[a, b, read("x1yx2yx2y")]).is_err());
    }
}
