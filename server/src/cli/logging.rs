//! `tracing` for the binary: quiet by default, `RUST_LOG` to open up.

use tracing_subscriber::EnvFilter;

/// Installs a stderr subscriber filtered by `RUST_LOG`, else by `default` (`warn` for
/// nodes; `off` for client commands, whose stderr carries their one-line errors).
pub fn init(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
