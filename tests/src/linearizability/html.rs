//! The HTML timeline of a violation, in the manner of Porcupine's visualization: one row
//! per client, one bar per operation from its call to its return, the longest
//! linearizable prefix in green numbered in linearization order, the operation that could
//! not be linearized in red, and a dashed line at its return, the instant by which it had
//! to take effect.
//!
//! The page is one self-contained file: inline CSS, no script, no external resource, so it
//! opens from a CI artifact as well as from disk. Hovering a bar shows its full
//! description. Below the timeline, the prefix step by step with the key's value after
//! each step, and every operation in a table.

use std::fmt::Write as _;
use std::io;
use std::path::Path;
use std::time::Duration;

use super::checker::Violation;
use super::history::{show_bytes, KvInput, KvOutput, Operation};
use super::model::{step, KvState, Step};

/// Writes [`render_html`]'s page for `violation` to `path`, creating its directory.
pub fn write_html(path: &Path, violation: &Violation) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, render_html(violation))
}

/// The self-contained HTML page showing `violation` on a timeline.
pub fn render_html(violation: &Violation) -> String {
    let key = escape(&show_bytes(&violation.key, 64));
    let stuck = &violation.operations[violation.partial.stuck];
    let mut page = String::new();
    page.push_str("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\n");
    let _ = writeln!(
        page,
        "<title>not linearizable: key {key}</title>\n<style>{STYLE}</style>"
    );
    page.push_str("</head><body>\n");
    let _ = writeln!(page, "<h1>Not linearizable: key <code>{key}</code></h1>");
    let _ = writeln!(
        page,
        "<p>{} operations on the key. The longest linearizable prefix has {} (green, numbered \
         in order); after it, <span class=\"stuck-text\">{}</span> had to take effect before \
         it returned (dashed line), and no operation could come next.</p>",
        violation.operations.len(),
        violation.partial.linearized.len(),
        escape(&stuck.to_string())
    );
    page.push_str(&timeline(violation));
    page.push_str(&prefix_steps(violation));
    page.push_str(&operation_table(violation));
    page.push_str("</body></html>\n");
    page
}

const STYLE: &str = "
body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
code { background: #f3f3f3; padding: 0 .2em; }
.timeline { position: relative; border: 1px solid #ccc; margin: 1em 0; }
.row { display: flex; border-top: 1px solid #eee; }
.row:first-child { border-top: none; }
.client { width: 8em; flex: none; padding: 4px; font-weight: bold; background: #fafafa; }
.lanes { position: relative; flex: 1; }
.lane { position: relative; height: 26px; }
.op { position: absolute; top: 3px; height: 20px; box-sizing: border-box; overflow: hidden;
      white-space: nowrap; text-overflow: ellipsis; font-size: 12px; line-height: 18px;
      padding: 0 3px; border: 1px solid #888; border-radius: 3px; background: #e4e4e4;
      min-width: 3px; }
.op:hover { overflow: visible; z-index: 2; background: #fff; }
.op.lin { background: #c8ecc8; border-color: #3a3; }
.op.stuck { background: #f6c0c0; border: 2px solid #c00; font-weight: bold; }
.op.pending { border-style: dashed; background: repeating-linear-gradient(45deg, #eee,
      #eee 6px, #fff 6px, #fff 12px); }
.op.lin.pending { background: repeating-linear-gradient(45deg, #c8ecc8, #c8ecc8 6px,
      #fff 6px, #fff 12px); }
.order { font-weight: bold; color: #161; margin-right: 3px; }
.deadline { position: absolute; top: 0; bottom: 0; border-left: 2px dashed #c00; z-index: 1; }
.axis { display: flex; margin-left: 8em; font-size: 11px; color: #666; position: relative;
        height: 1.4em; }
.tick { position: absolute; transform: translateX(-50%); }
.stuck-text { color: #c00; font-weight: bold; }
table { border-collapse: collapse; font-size: 12px; }
td, th { border: 1px solid #ddd; padding: 2px 6px; text-align: left; }
tr.lin td { background: #eef9ee; } tr.stuck td { background: #fbe3e3; font-weight: bold; }
";

/// Maps virtual times to percentages of the timeline's width; unanswered operations run
/// to the right edge, past the last finite time.
struct Scale {
    start: Duration,
    span: Duration,
}

impl Scale {
    fn new(operations: &[Operation]) -> Scale {
        let start = operations
            .iter()
            .map(|op| op.call)
            .min()
            .unwrap_or_default();
        let end = operations
            .iter()
            .flat_map(|op| [Some(op.call), op.return_time])
            .flatten()
            .max();
        let span = end
            .unwrap_or_default()
            .saturating_sub(start)
            .max(Duration::from_nanos(1));
        // Leave 8% on the right for the open ends of unanswered operations.
        Scale {
            start,
            span: span.mul_f64(1.08),
        }
    }

    fn percent(&self, time: Option<Duration>) -> f64 {
        time.map_or(100.0, |t| {
            100.0 * (t - self.start).as_secs_f64() / self.span.as_secs_f64()
        })
    }
}

/// The timeline: an axis, then one row per client with as many lanes as its operations
/// overlap (a client that gave up on a request may issue the next one).
fn timeline(violation: &Violation) -> String {
    let ops = &violation.operations;
    let scale = Scale::new(ops);
    let mut html = String::from("<div class=\"axis\">");
    for i in 0..=4 {
        let at = scale.start + scale.span.mul_f64(f64::from(i) / 4.0);
        let _ = write!(
            html,
            "<span class=\"tick\" style=\"left:{}%\">{at:?}</span>",
            i * 25
        );
    }
    html.push_str("</div>\n<div class=\"timeline\">\n");
    let mut clients: Vec<_> = ops.iter().map(|op| op.client).collect();
    clients.sort_unstable();
    clients.dedup();
    let deadline = scale.percent(ops[violation.partial.stuck].return_time);
    for client in clients {
        let _ = write!(
            html,
            "<div class=\"row\"><div class=\"client\">client {client}</div><div class=\"lanes\">"
        );
        let _ = write!(
            html,
            "<div class=\"deadline\" style=\"left:{deadline:.3}%\"></div>"
        );
        for lane in lanes(ops, client) {
            html.push_str("<div class=\"lane\">");
            for i in lane {
                html.push_str(&bar(violation, &scale, i));
            }
            html.push_str("</div>");
        }
        html.push_str("</div></div>\n");
    }
    html.push_str("</div>\n");
    html
}

/// `client`'s operations by call time, spread over the fewest lanes in which none overlap.
fn lanes(ops: &[Operation], client: u64) -> Vec<Vec<usize>> {
    let mut mine: Vec<usize> = (0..ops.len())
        .filter(|&i| ops[i].client == client)
        .collect();
    mine.sort_by_key(|&i| (ops[i].call, i));
    let mut lanes: Vec<(Option<Duration>, Vec<usize>)> = Vec::new();
    for i in mine {
        let free = lanes
            .iter()
            .position(|(end, _)| end.is_some_and(|end| end <= ops[i].call));
        match free {
            Some(lane) => {
                lanes[lane].0 = ops[i].return_time;
                lanes[lane].1.push(i);
            }
            None => lanes.push((ops[i].return_time, vec![i])),
        }
    }
    lanes.into_iter().map(|(_, lane)| lane).collect()
}

/// One operation's bar.
fn bar(violation: &Violation, scale: &Scale, i: usize) -> String {
    let op = &violation.operations[i];
    let order = violation.partial.linearized.iter().position(|&j| j == i);
    let mut class = String::from("op");
    if order.is_some() {
        class.push_str(" lin");
    }
    if i == violation.partial.stuck {
        class.push_str(" stuck");
    }
    if op.output.is_none() {
        class.push_str(" pending");
    }
    let (left, right) = (scale.percent(Some(op.call)), scale.percent(op.return_time));
    let badge = order.map_or(String::new(), |n| {
        format!("<span class=\"order\">{}</span>", n + 1)
    });
    let title = match order {
        Some(n) => format!("#{i} {op} (linearized {} of the prefix)", n + 1),
        None => format!("#{i} {op}"),
    };
    format!(
        "<div class=\"{class}\" style=\"left:{left:.3}%;width:{:.3}%\" title=\"{}\">{badge}{}</div>",
        right - left,
        escape(&title),
        escape(&label(op))
    )
}

/// A bar's short label: the request without its key (every bar has the same), and the
/// answer.
fn label(op: &Operation) -> String {
    let value = |v: &[u8]| show_bytes(v, 16);
    let request = match &op.input {
        KvInput::Get { .. } => "get".to_string(),
        KvInput::Put { value: v, .. } => format!("put {}", value(v)),
        KvInput::Append { value: v, .. } => format!("append {}", value(v)),
        KvInput::Delete { .. } => "delete".to_string(),
    };
    match &op.output {
        Some(KvOutput::Value(Some(v))) => format!("{request} → {}", value(v)),
        Some(KvOutput::Value(None)) => format!("{request} → absent"),
        Some(KvOutput::Done) => request,
        None => format!("{request} (no answer)"),
    }
}

/// The prefix step by step, with the key's value after each operation.
fn prefix_steps(violation: &Violation) -> String {
    let mut html = String::from("<h2>Longest linearizable prefix</h2>\n<ol>\n");
    let mut state: KvState = None;
    for &i in &violation.partial.linearized {
        let op = &violation.operations[i];
        if let Step::Next(next) = step(&state, &op.input, op.output.as_ref()) {
            state = next;
        }
        let _ = writeln!(
            html,
            "<li>#{i} {} &mdash; then the key is {}</li>",
            escape(&op.to_string()),
            show_state(&state)
        );
    }
    let stuck = violation.partial.stuck;
    let text = escape(&violation.operations[stuck].to_string());
    let _ = writeln!(
        html,
        "</ol>\n<p class=\"stuck-text\">Could not linearize next: #{stuck} {text}</p>"
    );
    html
}

/// Every operation on the key in a table, by call time.
fn operation_table(violation: &Violation) -> String {
    let ops = &violation.operations;
    let mut by_call: Vec<usize> = (0..ops.len()).collect();
    by_call.sort_by_key(|&i| (ops[i].call, i));
    let mut html = String::from("<h2>All operations on the key</h2>\n<table>\n");
    html.push_str("<tr><th>#</th><th>client</th><th>request</th><th>answer</th><th>call</th><th>return</th></tr>\n");
    for i in by_call {
        let op = &ops[i];
        let class = if i == violation.partial.stuck {
            "stuck"
        } else if violation.partial.linearized.contains(&i) {
            "lin"
        } else {
            ""
        };
        let answer = op
            .output
            .as_ref()
            .map_or("(no answer)".to_string(), ToString::to_string);
        let ret = op.return_time.map_or("∞".to_string(), |t| format!("{t:?}"));
        let _ = writeln!(
            html,
            "<tr class=\"{class}\"><td>{i}</td><td>{}</td><td>{}</td><td>{}</td><td>{:?}</td><td>{ret}</td></tr>",
            op.client,
            escape(&op.input.to_string()),
            escape(&answer),
            op.call
        );
    }
    html.push_str("</table>\n");
    html
}

fn show_state(state: &KvState) -> String {
    state.as_deref().map_or("absent".to_string(), |v| {
        format!("<code>{}</code>", escape(&show_bytes(v, 64)))
    })
}

/// Escapes text for HTML content and double-quoted attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
