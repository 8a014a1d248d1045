//! slog loggers for raft-rs, which logs through slog rather than `tracing`.
//!
//! [`tracing_logger`] forwards raft-rs's records into `tracing` (via `tracing-slog`), so
//! they obey the subscriber's filter: quiet by default, `RUST_LOG=raft=debug` to open
//! up. [`discard_logger`] drops everything, for benchmarks and very long simulations.

use crate::NodeId;

/// A logger that drops every record.
pub fn discard_logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

/// A logger that forwards raft-rs's records to `tracing`, tagged with the node id.
pub fn tracing_logger(node: NodeId) -> slog::Logger {
    slog::Logger::root(tracing_slog::TracingSlogDrain, slog::o!("node" => node))
}
