//! The `shardkv` subcommands other than `grade`: running nodes (`serve`, `local`) and
//! talking to a cluster (admin and data commands).
//!
//! Client commands share [`ClientArgs`] and one exit-code convention: 0 on success, 1
//! for `get` of an absent key, 2 for any other error (one line on stderr).

pub mod admin;
pub mod bench;
pub mod certs;
pub mod cluster;
pub mod data;
pub mod demo;
pub mod local;
pub mod logging;
pub mod serve;
pub mod workload;

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use shardkv_client::RetryPolicy;

/// The shard-master addresses `shardkv local` uses, and the client commands' default.
pub const LOCAL_MASTERS: &str = "127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002";

/// Exit code of a failed command.
pub const EXIT_ERROR: u8 = 2;

/// Options every client subcommand takes.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// The shard masters, comma-separated, in NodeId order (replica N is the Nth).
    #[arg(long, env = "SHARDKV_MASTERS", default_value = LOCAL_MASTERS, value_delimiter = ',')]
    pub masters: Vec<String>,
    /// How long the command may take in all, e.g. `500ms`, `10s`, `2m`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print machine-readable JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// For a cluster that runs mutual TLS: a directory with ca.pem, cert.pem and key.pem
    /// (`shardkv certs client`).
    #[arg(long, env = "SHARDKV_TLS_DIR")]
    pub tls_dir: Option<std::path::PathBuf>,
}

impl ClientArgs {
    /// The transport to the cluster: over mutual TLS with `--tls-dir`'s certificate.
    pub fn transport(&self) -> Result<shardkv_client::TarpcTransport, String> {
        match &self.tls_dir {
            None => Ok(shardkv_client::TarpcTransport::new()),
            Some(dir) => {
                let tls = shardkv_client::tls::Tls::load(dir)?;
                Ok(shardkv_client::TarpcTransport::with_tls(tls))
            }
        }
    }

    /// A data client for the cluster.
    pub fn client(&self) -> Result<shardkv_client::Client<shardkv_client::TarpcTransport>, String> {
        let transport = self.transport()?;
        let policy = self.policy();
        Ok(shardkv_client::Client::with_policy(
            transport,
            self.masters.clone(),
            policy,
        ))
    }

    /// The retry policy: retry until `--timeout`, each RPC at most 1 s.
    pub fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            rpc_timeout: self.timeout.min(shardkv_client::DEFAULT_RPC_TIMEOUT),
            deadline: Some(self.timeout),
            ..RetryPolicy::default()
        }
    }
}

/// Parses a duration with [`humantime::parse_duration`] (`250ms`, `10s`, `2m`, `1h 30m`,
/// `1.5s`, ...), and also a bare number of seconds (`7`).
///
/// humantime refuses a number without a unit; this parser has always read one as
/// seconds, and keeps doing so, so that scripts passing `--timeout 5` still work. Any
/// other text goes to humantime, whose message says what is wrong.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    humantime::parse_duration(text)
        .map_err(|error| format!("`{text}` is not a duration: {error} (try 500ms, 10s or 2m)"))
}

/// Runs a client future on a current-thread runtime (one command needs no more); an
/// error becomes one line on stderr and [`EXIT_ERROR`].
pub fn run_client<F>(work: F) -> ExitCode
where
    F: Future<Output = Result<ExitCode, String>>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(format!("cannot start the runtime: {error}")),
    };
    match runtime.block_on(work) {
        Ok(code) => code,
        Err(message) => fail(message),
    }
}

/// Prints `error: message` on stderr and returns [`EXIT_ERROR`].
pub fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_ERROR)
}

/// Prints `value` as one line of JSON.
pub fn print_json(value: &serde_json::Value) {
    println!("{value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Durations parse in every documented unit and refuse garbage.
    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration(" 3 s "), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        for garbage in ["soon", "", "-1s", "5 parsecs"] {
            let error = parse_duration(garbage).expect_err(garbage);
            assert!(error.contains("is not a duration"), "{error}");
        }
    }
}
