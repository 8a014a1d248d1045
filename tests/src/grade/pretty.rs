//! A readable event log of one run, one column per node, after 6.824's `dslogs`
//! pretty-printer:
//!
//! ```text
//!       time  test                    raft-0                  raft-1
//!     0.000s  sim: add host 0 "raft-0"
//!     0.512s                          role: 0 term 1 leader
//!     0.530s                                                  apply: 1 1 3
//! ```
//!
//! Lines written by a host go in its column; the simulator's `crash N`, `boot N` and
//! `add .. N ..` lines go in node `N`'s column; everything else the harness and simulator
//! write goes in the `test` column. Text wraps inside its column so the log keeps to the
//! requested width. Columns appear only for nodes that wrote something that survived the
//! filters (by node and by topic).

use std::io::{self, Write};

use labrpc_sim::{SimNode, TraceLine};

use crate::scenario::CapturedTrace;

/// Width of the time column, including its trailing gap.
const TIME_WIDTH: usize = 11;
/// Narrowest a node column gets, however many nodes share the width.
const COLUMN_WIDTH_MIN: usize = 16;

/// Which lines to show and how wide.
#[derive(Clone, Debug)]
pub struct TraceView {
    /// Show only these nodes: a name (`raft-1`), a node id, or `test`. All when empty.
    pub nodes: Vec<String>,
    /// Show only these topics. All when empty.
    pub topics: Vec<String>,
    /// Total width in characters.
    pub width: usize,
}

/// The column a line belongs in: `None` is the `test` column.
fn column_of(line: &TraceLine) -> Option<SimNode> {
    if line.node.is_some() || line.topic != "sim" {
        return line.node;
    }
    let words: Vec<&str> = line.line.split_whitespace().collect();
    let id = match words.as_slice() {
        ["crash" | "boot", id, ..] => id,
        ["add", _kind, id, ..] => id,
        _ => return None,
    };
    id.parse().ok()
}

fn column_name(trace: &CapturedTrace, column: Option<SimNode>) -> String {
    match column {
        None => "test".to_string(),
        Some(id) => trace
            .node_names
            .get(id)
            .cloned()
            .unwrap_or_else(|| format!("node {id}")),
    }
}

fn wanted(trace: &CapturedTrace, view: &TraceView, line: &TraceLine) -> bool {
    let topic_ok = view.topics.is_empty() || view.topics.contains(&line.topic);
    let column = column_of(line);
    let node_ok = view.nodes.is_empty()
        || view.nodes.iter().any(|n| {
            *n == column_name(trace, column) || column.is_some_and(|id| *n == id.to_string())
        });
    topic_ok && node_ok
}

/// `text` cut into pieces of at most `width` characters.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(width.max(1))
        .map(|c| c.iter().collect())
        .collect()
}

/// Print `trace` as `view` asks: a header of column names, then one row per line.
pub fn render(out: &mut dyn Write, trace: &CapturedTrace, view: &TraceView) -> io::Result<()> {
    let lines: Vec<&TraceLine> = trace
        .lines
        .iter()
        .filter(|l| wanted(trace, view, l))
        .collect();
    let mut columns: Vec<Option<SimNode>> = lines.iter().map(|l| column_of(l)).collect();
    columns.sort();
    columns.dedup();
    if columns.is_empty() {
        return writeln!(out, "(no trace lines; {} recorded)", trace.lines.len());
    }
    let column_width =
        (view.width.saturating_sub(TIME_WIDTH) / columns.len()).max(COLUMN_WIDTH_MIN);
    let cell = column_width - 1;
    let mut header = format!("{:>width$}", "time ", width = TIME_WIDTH);
    for &column in &columns {
        let name: String = column_name(trace, column).chars().take(cell).collect();
        header.push_str(&format!("{name:<column_width$}"));
    }
    writeln!(out, "{}", header.trim_end())?;
    for line in lines {
        let at = columns
            .iter()
            .position(|&c| c == column_of(line))
            .unwrap_or(0);
        let indent = TIME_WIDTH + at * column_width;
        let text = format!("{}: {}", line.topic, line.line);
        for (i, piece) in wrap(&text, cell).iter().enumerate() {
            let time = if i == 0 {
                format!("{:.3}s ", line.time.as_secs_f64())
            } else {
                String::new()
            };
            writeln!(
                out,
                "{time:>TIME_WIDTH$}{piece:>w$}",
                w = indent - TIME_WIDTH + piece.chars().count()
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn line(ms: u64, node: Option<SimNode>, topic: &str, text: &str) -> TraceLine {
        TraceLine {
            time: Duration::from_millis(ms),
            node,
            topic: topic.to_string(),
            line: text.to_string(),
        }
    }

    fn sample() -> CapturedTrace {
        CapturedTrace {
            lines: vec![
                line(0, None, "sim", "crash 1"),
                line(5, Some(0), "role", "0 term 1 leader"),
                line(7, None, "harness", "connect 1"),
                line(9, Some(1), "apply", "1 1 3"),
            ],
            node_names: vec!["raft-0".into(), "raft-1".into()],
        }
    }

    fn rendered(view: &TraceView) -> String {
        let mut out = Vec::new();
        render(&mut out, &sample(), view).expect("writing to a Vec");
        String::from_utf8(out).expect("utf-8")
    }

    /// Proves lines land in their node's column (simulator crash lines in the crashed
    /// node's), under a header naming the columns.
    #[test]
    fn lines_go_in_their_node_column() {
        let view = TraceView {
            nodes: vec![],
            topics: vec![],
            width: 11 + 3 * 20,
        };
        let want = [
            "      time test                raft-0              raft-1",
            "    0.000s                                         sim: crash 1",
            "    0.005s                     role: 0 term 1 lead",
            "                               er",
            "    0.007s harness: connect 1",
            "    0.009s                                         apply: 1 1 3",
        ];
        assert_eq!(rendered(&view), want.join("\n") + "\n");
    }

    /// Proves node and topic filters drop other columns and lines.
    #[test]
    fn filters_keep_only_named_nodes_and_topics() {
        let view = TraceView {
            nodes: vec!["raft-1".into(), "0".into()],
            topics: vec!["apply".into(), "role".into()],
            width: 11 + 2 * 20,
        };
        let want = [
            "      time raft-0              raft-1",
            "    0.005s role: 0 term 1 lead",
            "           er",
            "    0.009s                     apply: 1 1 3",
        ];
        assert_eq!(rendered(&view), want.join("\n") + "\n");
    }
}
