//! Keeps the code references of `docs/architecture.md` true.
//!
//! Under the heading `## The Put path` (until the next `## ` heading, fenced code blocks
//! skipped, a list item's wrapped lines read as one), every backticked path ending in
//! `.rs` followed by backticked items, e.g.
//!
//! ```text
//! - `raft/src/host.rs` `Host::propose`, `Service::drive`: ...
//! ```
//!
//! is a reference: the file must exist (relative to the workspace root), its text must
//! hold `fn propose` (the last segment after `::`, as a whole word), and, when a `Type::`
//! prefix is given, the word `Type`. Items follow their path, or the previous item,
//! separated only by spaces, commas, `+` or `and`; a backticked name further on in the
//! prose (`Effect::Reply` in a sentence) is not a reference. The section must hold at
//! least [`MIN_REFERENCES`] references, so an emptied section cannot pass.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The document, relative to the workspace root.
const DOC: &str = "docs/architecture.md";

/// The heading of the checked section.
const SECTION: &str = "## The Put path";

/// The fewest references the section may hold.
const MIN_REFERENCES: usize = 10;

/// What checking a document found.
#[derive(Debug, Default)]
struct Report {
    /// `(file, item)` references checked, in document order.
    checked: Vec<(String, String)>,
    /// One line per reference that does not hold (or per problem with the section).
    problems: Vec<String>,
}

/// The workspace root: the parent of this package's directory.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent directory")
        .to_path_buf()
}

/// The logical lines of the section under `heading` (up to the next `## ` heading),
/// each with the number (1-based) of its first line: a list item or a paragraph with
/// its wrapped continuation lines joined, so that a reference broken across a line
/// break is still read. Fenced code blocks are left out. `None` when the heading is
/// missing.
fn section(markdown: &str, heading: &str) -> Option<Vec<(usize, String)>> {
    let mut lines = markdown.lines().enumerate();
    lines.find(|(_, line)| line.trim_end() == heading)?;
    let mut fenced = false;
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut open = false;
    for (number, line) in lines {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            fenced = !fenced;
            open = false;
            continue;
        }
        if fenced {
            continue;
        }
        if line.starts_with("## ") {
            break;
        }
        if trimmed.is_empty() {
            open = false;
            continue;
        }
        match out.last_mut() {
            Some((_, logical)) if open && !starts_block(trimmed) => {
                logical.push(' ');
                logical.push_str(trimmed);
            }
            _ => out.push((number + 1, trimmed.to_string())),
        }
        open = true;
    }
    Some(out)
}

/// True when a line begins a block of its own: a list item, a heading, a table row.
fn starts_block(trimmed: &str) -> bool {
    let numbered = trimmed
        .split_once(". ")
        .is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    numbered
        || ["- ", "* ", "+ ", "#", "|"]
            .iter()
            .any(|m| trimmed.starts_with(m))
}

/// The backticked spans of `line`, each with the text between it and the span before.
fn spans(line: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = line;
    let mut gap_start = rest;
    while let Some(open) = rest.find('`') {
        let Some(close) = rest[open + 1..].find('`') else {
            break;
        };
        let gap = &gap_start[..gap_start.len() - rest.len() + open];
        let span = &rest[open + 1..open + 1 + close];
        out.push((gap, span));
        rest = &rest[open + 1 + close + 1..];
        gap_start = rest;
    }
    out
}

fn is_ident(word: &str) -> bool {
    let mut chars = word.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The segments of an item like `Type::method` or `function` (a trailing `()` allowed),
/// or `None` when the span is not one.
fn item_segments(span: &str) -> Option<Vec<&str>> {
    let span = span.strip_suffix("()").unwrap_or(span);
    let segments: Vec<&str> = span.split("::").collect();
    segments.iter().all(|s| is_ident(s)).then_some(segments)
}

/// True when only separators stand between two spans of one reference.
fn joins(gap: &str) -> bool {
    let gap = gap.trim_matches(|c: char| c.is_whitespace() || c == ',' || c == '+');
    gap.is_empty() || gap == "and"
}

/// `(file, item)` references of one line (see the module docs).
fn references(line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut file: Option<&str> = None;
    for (gap, span) in spans(line) {
        if span.ends_with(".rs") && !span.contains(char::is_whitespace) {
            file = Some(span);
            continue;
        }
        match (file, item_segments(span)) {
            (Some(path), Some(_)) if joins(gap) => out.push((path.to_string(), span.to_string())),
            _ => file = None,
        }
    }
    out
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// True when `text` holds `word` with no identifier character on either side.
fn has_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(is_ident_char) && !after.is_some_and(is_ident_char)
    })
}

/// Checks every reference of the section [`SECTION`] of `markdown` against the files
/// under `root`.
fn check(markdown: &str, root: &Path) -> Report {
    let mut report = Report::default();
    let Some(lines) = section(markdown, SECTION) else {
        report.problems.push(format!("no `{SECTION}` heading"));
        return report;
    };
    let mut files: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (number, line) in lines {
        for (path, item) in references(&line) {
            let text = files
                .entry(path.clone())
                .or_insert_with(|| std::fs::read_to_string(root.join(&path)).ok());
            let segments = item_segments(&item).expect("references hold items");
            let function = segments[segments.len() - 1];
            let owner = segments.len().checked_sub(2).map(|i| segments[i]);
            let mut missing = Vec::new();
            match text {
                None => missing.push("the file does not exist".to_string()),
                Some(text) => {
                    if !has_word(text, &format!("fn {function}")) {
                        missing.push(format!("no `fn {function}`"));
                    }
                    if let Some(owner) = owner.filter(|owner| !has_word(text, owner)) {
                        missing.push(format!("no `{owner}`"));
                    }
                }
            }
            if !missing.is_empty() {
                report.problems.push(format!(
                    "{DOC}:{number}: `{path}` `{item}`: {}",
                    missing.join(", ")
                ));
            }
            report.checked.push((path, item));
        }
    }
    report
}

/// The document's Put path names files and functions that exist, and enough of them.
#[test]
fn put_path_references_hold() {
    let root = workspace_root();
    let markdown = std::fs::read_to_string(root.join(DOC))
        .unwrap_or_else(|error| panic!("cannot read {DOC}: {error}"));
    let report = check(&markdown, &root);
    println!(
        "{} references checked under `{SECTION}`",
        report.checked.len()
    );
    assert!(
        report.problems.is_empty(),
        "{} of {} references under `{SECTION}` in {DOC} do not hold:\n  {}",
        report.problems.len(),
        report.checked.len(),
        report.problems.join("\n  ")
    );
    assert!(
        report.checked.len() >= MIN_REFERENCES,
        "only {} references under `{SECTION}` in {DOC} (at least {MIN_REFERENCES} expected): {:?}",
        report.checked.len(),
        report.checked
    );
}

/// The checker has teeth: a function, a file or a type that does not exist is reported,
/// a name that is only a prefix of a real function does not pass, a reference wrapped
/// across lines is read, prose, code blocks and other sections are not checked, and a
/// missing heading is a problem.
#[test]
fn checker_reports_what_does_not_exist() {
    let markdown = "\
# Doc

## The Put path

- `raft/src/host.rs` `Host::propose`, `Service::drive`: both exist.
- `raft/src/host.rs` `Host::propose_and_forget`: no such function.
- `raft/src/host.rs` `Host::prop`: only a prefix of `propose`.
- `raft/src/nowhere.rs` `anything`: no such file.
- `raft/src/host.rs` `Nobody::propose`: no such type; then prose naming `Effect::Reply`.
- A reference wrapped onto the next line, `raft/src/host.rs`
  `Host::vanished`, is read whole.

```text
`raft/src/host.rs` `in_a_code_block`
```

## Next

- `raft/src/host.rs` `not_in_the_section`
";
    let report = check(markdown, &workspace_root());
    let checked: Vec<&str> = report.checked.iter().map(|(_, i)| i.as_str()).collect();
    assert_eq!(
        checked,
        [
            "Host::propose",
            "Service::drive",
            "Host::propose_and_forget",
            "Host::prop",
            "anything",
            "Nobody::propose",
            "Host::vanished"
        ]
    );
    let problems = report.problems.join("\n");
    assert_eq!(report.problems.len(), 5, "{problems}");
    for expected in [
        "`Host::propose_and_forget`: no `fn propose_and_forget`",
        "`Host::prop`: no `fn prop`",
        "`raft/src/nowhere.rs` `anything`: the file does not exist",
        "`Nobody::propose`: no `Nobody`",
        ":10: `raft/src/host.rs` `Host::vanished`: no `fn vanished`",
    ] {
        assert!(
            problems.contains(expected),
            "{expected:?} not in:\n{problems}"
        );
    }

    let emptied = "## The Put path\n\nNothing here.\n\n## Next\n";
    let report = check(emptied, &workspace_root());
    assert!(report.checked.len() < MIN_REFERENCES && report.problems.is_empty());

    let report = check("# No such section\n", &workspace_root());
    assert_eq!(report.problems, ["no `## The Put path` heading"]);
}
