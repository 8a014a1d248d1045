//! The linearizability checker's own tests: known-good and known-bad histories (each
//! also compared with the exhaustive reference checker), partitioning by key, the step
//! budget, the reports, and property tests over histories generated from a real model.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use shardkv_tests::linearizability::exhaustive::{linearizable_exhaustive, MAX_OPERATIONS};
use shardkv_tests::linearizability::{
    check, render_html, CheckOptions, CheckResult, KvInput, KvOutput, Operation, Violation,
};

fn op(client: u64, input: KvInput, output: KvOutput, call: u64, ret: u64) -> Operation {
    Operation::done(
        client,
        input,
        Duration::from_millis(call),
        output,
        Duration::from_millis(ret),
    )
}

fn put(client: u64, key: &str, value: &str, call: u64, ret: u64) -> Operation {
    let input = KvInput::Put {
        key: key.into(),
        value: value.into(),
    };
    op(client, input, KvOutput::Done, call, ret)
}

fn append(client: u64, key: &str, value: &str, call: u64, ret: u64) -> Operation {
    let input = KvInput::Append {
        key: key.into(),
        value: value.into(),
    };
    op(client, input, KvOutput::Done, call, ret)
}

fn delete(client: u64, key: &str, call: u64, ret: u64) -> Operation {
    op(
        client,
        KvInput::Delete { key: key.into() },
        KvOutput::Done,
        call,
        ret,
    )
}

fn get(client: u64, key: &str, read: Option<&str>, call: u64, ret: u64) -> Operation {
    let output = KvOutput::Value(read.map(Vec::from));
    op(client, KvInput::Get { key: key.into() }, output, call, ret)
}

/// The same operation, with no answer.
fn unanswered(mut operation: Operation) -> Operation {
    operation.output = None;
    operation.return_time = None;
    operation
}

/// Checks `ops`, and on small histories asserts that the exhaustive checker agrees.
fn verdict(ops: &[Operation]) -> CheckResult {
    let result = check(ops, &CheckOptions::default());
    assert!(!matches!(result, CheckResult::Unknown { .. }), "{result}");
    if ops.len() <= MAX_OPERATIONS {
        assert_eq!(
            result.is_ok(),
            linearizable_exhaustive(ops),
            "the checkers disagree on {ops:#?}"
        );
    }
    result
}

fn assert_ok(ops: &[Operation]) {
    let result = verdict(ops);
    assert!(result.is_ok(), "{result}");
}

fn assert_illegal(ops: &[Operation], key: &str) -> Box<Violation> {
    match verdict(ops) {
        CheckResult::Illegal(violation) if violation.key == key.as_bytes() => violation,
        other => panic!("expected a violation on key {key}, got: {other}"),
    }
}

/// Sequential histories of every kind of request are linearizable.
#[test]
fn sequential_history_is_ok() {
    assert_ok(&[
        get(1, "k", None, 0, 1),
        put(1, "k", "a", 2, 3),
        append(2, "k", "b", 4, 5),
        get(1, "k", Some("ab"), 6, 7),
        delete(2, "k", 8, 9),
        get(1, "k", None, 10, 11),
        append(1, "k", "c", 12, 13),
        get(2, "k", Some("c"), 14, 15),
    ]);
    assert_ok(&[]);
}

/// Overlapping writes may take effect in either order, and a read may see either.
#[test]
fn concurrent_writes_in_either_order_are_ok() {
    for last in ["a", "b"] {
        assert_ok(&[
            put(1, "k", "a", 0, 10),
            put(2, "k", "b", 5, 15),
            get(3, "k", Some(last), 20, 30),
        ]);
    }
    // A read overlapping a write may see the value before or after it.
    for seen in [Some("a"), Some("b")] {
        assert_ok(&[
            put(1, "k", "a", 0, 1),
            put(2, "k", "b", 5, 15),
            get(3, "k", seen, 6, 14),
        ]);
    }
}

/// Concurrent appends land in some order, each exactly once, and reads see prefixes of it.
#[test]
fn concurrent_appends_are_ok() {
    for (first, then) in [("x", "xy"), ("y", "yx")] {
        assert_ok(&[
            append(1, "k", "x", 0, 10),
            append(2, "k", "y", 0, 10),
            get(3, "k", Some(first), 2, 8),
            get(3, "k", Some(then), 11, 12),
        ]);
    }
}

/// A delete overlapping a read may or may not be seen; after it returns, it is.
#[test]
fn deletes_are_ok() {
    for seen in [Some("a"), None] {
        assert_ok(&[
            put(1, "k", "a", 0, 1),
            delete(2, "k", 5, 15),
            get(3, "k", seen, 6, 14),
            get(3, "k", None, 16, 17),
        ]);
    }
    assert_ok(&[delete(1, "k", 0, 1), get(2, "k", None, 2, 3)]);
}

/// An unanswered write may take effect at any point after its call, or never.
#[test]
fn unanswered_operations_may_or_may_not_happen() {
    let lost = unanswered(put(1, "k", "b", 5, 0));
    assert_ok(&[
        put(1, "k", "a", 0, 1),
        lost.clone(),
        get(2, "k", Some("a"), 100, 101),
    ]);
    assert_ok(&[
        put(1, "k", "a", 0, 1),
        lost.clone(),
        get(2, "k", Some("b"), 100, 101),
    ]);
    let late = get(2, "k", Some("b"), 200, 201);
    assert_ok(&[
        put(1, "k", "a", 0, 1),
        lost.clone(),
        get(2, "k", Some("a"), 100, 101),
        late,
    ]);
    assert_ok(&[
        unanswered(get(1, "k", None, 0, 0)),
        unanswered(append(2, "k", "x", 0, 0)),
    ]);
    // But once seen, it cannot be undone, and it cannot take effect before its call.
    let unseen = get(2, "k", Some("a"), 300, 301);
    let history = [
        put(1, "k", "a", 0, 1),
        lost.clone(),
        get(2, "k", Some("b"), 100, 101),
        unseen,
    ];
    assert_illegal(&history, "k");
    assert_illegal(&[get(2, "k", Some("b"), 0, 4), lost], "k");
}

/// Porcupine's README examples, with its register's initial 0 written first.
#[test]
fn porcupine_register_examples() {
    let init = put(0, "x", "0", 0, 1);
    // C0: |-------- put 100 --------|   C1: |--- get 100 ---|   C2: |- get 0 -|
    let ok = [
        init.clone(),
        put(0, "x", "100", 10, 110),
        get(1, "x", Some("100"), 35, 85),
        get(2, "x", Some("0"), 40, 70),
    ];
    assert_ok(&ok);
    // C0: |------- put 200 -------|   C1: |- get 200 -|   C2 (after): |- get 0 -|
    let bad = [
        init,
        put(0, "x", "200", 10, 110),
        get(1, "x", Some("200"), 20, 40),
        get(2, "x", Some("0"), 50, 100),
    ];
    assert_illegal(&bad, "x");
}

/// A read after a completed write must not see the value it overwrote.
#[test]
fn stale_read_is_illegal() {
    let violation = assert_illegal(
        &[
            put(1, "k", "a", 0, 10),
            put(1, "k", "b", 20, 30),
            get(2, "k", Some("a"), 40, 50),
        ],
        "k",
    );
    assert_eq!(violation.partial.stuck, 2, "{violation}");
    assert_eq!(violation.partial.linearized, [0, 1], "{violation}");
}

/// An acknowledged append must show in every later read.
#[test]
fn lost_append_is_illegal() {
    for seen in ["x", "y"] {
        assert_illegal(
            &[
                append(1, "k", "x", 0, 10),
                append(2, "k", "y", 20, 30),
                get(3, "k", Some(seen), 40, 50),
            ],
            "k",
        );
    }
}

/// A read may only return a value some write produced.
#[test]
fn read_of_unwritten_value_is_illegal() {
    assert_illegal(&[get(1, "k", Some("ghost"), 0, 1)], "k");
    assert_illegal(
        &[put(1, "k", "a", 0, 10), get(2, "k", Some("ghost"), 0, 10)],
        "k",
    );
}

/// An acknowledged delete must not be ignored.
#[test]
fn ignored_delete_is_illegal() {
    assert_illegal(
        &[
            put(1, "k", "a", 0, 10),
            delete(1, "k", 20, 30),
            get(2, "k", Some("a"), 40, 50),
        ],
        "k",
    );
}

/// Two readers may not see two concurrent writes land in opposite orders.
#[test]
fn reads_seeing_opposite_orders_is_illegal() {
    assert_illegal(
        &[
            put(1, "k", "a", 0, 100),
            put(2, "k", "b", 0, 100),
            get(3, "k", Some("a"), 10, 20),
            get(3, "k", Some("b"), 30, 40),
            get(4, "k", Some("b"), 10, 20),
            get(4, "k", Some("a"), 30, 40),
        ],
        "k",
    );
}

/// A call at the instant of a return comes after it; a zero-length operation is
/// concurrent with the calls at its instant.
#[test]
fn ties_follow_the_documented_rule() {
    assert_illegal(&[put(1, "k", "a", 0, 10), get(2, "k", None, 10, 20)], "k");
    assert_ok(&[put(1, "k", "a", 10, 10), get(2, "k", None, 10, 20)]);
}

/// Keys are checked independently: the verdict names the bad key whatever the others
/// hold, and operations on other keys neither hide nor cause a violation.
#[test]
fn keys_are_checked_independently() {
    let good = [
        put(1, "a", "1", 0, 10),
        get(2, "a", Some("1"), 20, 30),
        append(3, "c", "z", 0, 50),
    ];
    let bad = [put(1, "b", "1", 0, 10), get(2, "b", None, 20, 30)];
    assert_ok(&good);
    let mut mixed: Vec<Operation> = good.iter().chain(&bad).cloned().collect();
    let violation = assert_illegal(&mixed, "b");
    assert_eq!(
        violation.operations, bad,
        "only the bad key's operations are reported"
    );
    mixed.reverse();
    assert_illegal(&mixed, "b");
    // A read of "b" returning what was written to "a" is wrong on "b" alone.
    assert_illegal(&[put(1, "a", "v", 0, 1), get(1, "b", Some("v"), 2, 3)], "b");
}

/// A pathological history exhausts the step budget and yields Unknown, not a guess;
/// a smaller instance of the same shape is decided within it.
#[test]
fn step_budget_yields_unknown() {
    let history = |appends: u64| -> Vec<Operation> {
        let mut ops: Vec<Operation> = (0..appends)
            .map(|c| append(c, "k", &format!("<{c}>"), 0, 100))
            .collect();
        ops.push(get(99, "k", Some("never"), 200, 300));
        ops
    };
    let options = CheckOptions {
        max_steps_per_key: 100_000,
    };
    assert_eq!(
        check(&history(12), &options),
        CheckResult::Unknown {
            key: b"k".to_vec(),
            steps: 100_000
        }
    );
    assert!(check(&history(5), &options).is_illegal());
    // Unknown on one key does not mask a violation on another.
    let mut both = history(12);
    both.extend([put(1, "j", "1", 0, 10), get(2, "j", None, 20, 30)]);
    assert!(check(&both, &options).is_illegal());
}

/// Memoization prunes orders that reach the same (linearized set, state): ten
/// concurrent puts of one value have 10! orders but only 2^10 sets, so an impossible read
/// after them is decided well within a budget the orders would exhaust.
#[test]
fn memoization_prunes_equivalent_orders() {
    let mut ops: Vec<Operation> = (0..10).map(|c| put(c, "k", "v", 0, 100)).collect();
    ops.push(get(99, "k", Some("never"), 200, 300));
    assert!(check(
        &ops,
        &CheckOptions {
            max_steps_per_key: 100_000
        }
    )
    .is_illegal());
}

/// The HTML page and the text report name the key and the failing operation.
#[test]
fn reports_name_the_key_and_the_failing_operation() {
    let history = [
        put(1, "acct<7>", "a", 0, 10),
        put(1, "acct<7>", "b", 20, 30),
        get(2, "acct<7>", Some("a"), 40, 50),
    ];
    let mut violation = assert_illegal(&history, "acct<7>");
    let html = render_html(&violation);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("acct&lt;7&gt;"), "the key is shown, escaped");
    assert!(
        html.contains("class=\"op stuck\"") && html.contains("get → &quot;a&quot;"),
        "the failing get is marked"
    );
    assert_eq!(
        html.matches("class=\"op lin\"").count(),
        2,
        "the two puts form the prefix"
    );
    let path =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("linearizability/stale-read.html");
    violation.save_html(&path).expect("write the page");
    assert_eq!(std::fs::read_to_string(&path).expect("read it back"), html);
    let report = violation.to_string();
    for needle in [
        "key \"acct<7>\"",
        "#2 client 2 get(\"acct<7>\") -> \"a\" [40ms, 50ms]",
        &path.display().to_string(),
    ] {
        assert!(
            report.contains(needle),
            "report lacks {needle:?}:\n{report}"
        );
    }
}

/// One planned request of a generated history: which, and how it shows up in time.
#[derive(Clone, Debug)]
struct Planned {
    key: usize,
    kind: usize,
    value: usize,
    before: u64,
    after: u64,
    answered: bool,
    applied: bool,
}

fn planned() -> impl Strategy<Value = Planned> {
    (
        0..3usize,
        0..4usize,
        0..4usize,
        0..=25u64,
        0..=25u64,
        prop::bool::weighted(0.9),
        any::<bool>(),
    )
        .prop_map(
            |(key, kind, value, before, after, answered, applied)| Planned {
                key,
                kind,
                value,
                before,
                after,
                answered,
                applied,
            },
        )
}

/// Runs the plan against a real store: request `j` takes effect at `30 + 10 j` ms,
/// inside an interval jittered around that instant. Unanswered requests take effect or
/// not as planned. The result is linearizable by construction.
fn realize(plan: &[Planned]) -> Vec<Operation> {
    let mut store: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut ops = Vec::new();
    for (j, p) in plan.iter().enumerate() {
        let key = ["a", "b", "c"][p.key].as_bytes().to_vec();
        let value = ["w", "x", "y", "z"][p.value].as_bytes().to_vec();
        let at = 30 + 10 * j as u64;
        let (input, output) = match p.kind {
            0 => (
                KvInput::Get { key: key.clone() },
                KvOutput::Value(store.get(&key).cloned()),
            ),
            1 => (
                KvInput::Put {
                    key: key.clone(),
                    value: value.clone(),
                },
                KvOutput::Done,
            ),
            2 => (
                KvInput::Append {
                    key: key.clone(),
                    value: value.clone(),
                },
                KvOutput::Done,
            ),
            _ => (KvInput::Delete { key: key.clone() }, KvOutput::Done),
        };
        if p.answered || p.applied {
            match &input {
                KvInput::Get { .. } => {}
                KvInput::Put { .. } => {
                    store.insert(key, value);
                }
                KvInput::Append { .. } => store.entry(key).or_default().extend_from_slice(&value),
                KvInput::Delete { .. } => {
                    store.remove(&key);
                }
            }
        }
        let mut operation = op(j as u64 % 3, input, output, at - p.before, at + p.after);
        if !p.answered {
            operation = unanswered(operation);
        }
        ops.push(operation);
    }
    ops
}

/// Indices of the answered gets of `ops`.
fn answered_gets(ops: &[Operation]) -> Vec<usize> {
    (0..ops.len())
        .filter(|&i| matches!(ops[i].input, KvInput::Get { .. }) && ops[i].output.is_some())
        .collect()
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        rng_seed: RngSeed::Fixed(0x5eed),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// Histories produced by a real store with jittered intervals always check Ok.
    #[test]
    fn generated_histories_are_ok(plan in prop::collection::vec(planned(), 0..60)) {
        let ops = realize(&plan);
        let result = check(&ops, &CheckOptions::default());
        prop_assert!(result.is_ok(), "{}", result);
    }

    /// A read corrupted to a value no write produced is always a violation on its key.
    #[test]
    fn a_corrupted_read_is_illegal(plan in prop::collection::vec(planned(), 1..60), pick in any::<prop::sample::Index>()) {
        let mut ops = realize(&plan);
        let gets = answered_gets(&ops);
        prop_assume!(!gets.is_empty());
        let target = gets[pick.index(gets.len())];
        ops[target].output = Some(KvOutput::Value(Some(b"#".to_vec())));
        match check(&ops, &CheckOptions::default()) {
            CheckResult::Illegal(violation) => prop_assert_eq!(violation.key.as_slice(), ops[target].input.key()),
            other => prop_assert!(false, "expected a violation, got {}", other),
        }
    }

    /// A read corrupted to a plausible value is a violation exactly when the exhaustive
    /// checker says so (the corruption may go unnoticed: another order may explain it).
    #[test]
    fn a_plausibly_corrupted_read_matches_the_exhaustive_checker(
        plan in prop::collection::vec(planned(), 1..=MAX_OPERATIONS),
        pick in any::<prop::sample::Index>(),
        read in prop::option::of(prop::sample::select(vec!["w", "x", "wx", "y", "z"])),
    ) {
        let mut ops = realize(&plan);
        let gets = answered_gets(&ops);
        if !gets.is_empty() {
            ops[gets[pick.index(gets.len())]].output = Some(KvOutput::Value(read.map(Vec::from)));
        }
        let result = check(&ops, &CheckOptions::default());
        prop_assert_eq!(result.is_ok(), linearizable_exhaustive(&ops), "{}", result);
    }
}
