//! `shardkv get | put | append | delete`: read and write keys.
//!
//! `get` prints the value alone on stdout (exit 0); for an absent key, nothing on stdout,
//! `not found` on stderr, exit 1. Keys and values are taken as given on the command line
//! (UTF-8); values are printed as bytes.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;

use super::{print_json, run_client, ClientArgs};

/// Options of `shardkv get` and `shardkv delete`.
#[derive(Args, Debug, Clone)]
pub struct KeyArgs {
    /// The key.
    pub key: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Options of `shardkv put` and `shardkv append`.
#[derive(Args, Debug, Clone)]
pub struct KeyValueArgs {
    /// The key.
    pub key: String,
    /// The value (put) or the bytes to append (append).
    pub value: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Which write.
#[derive(Debug, Clone, Copy)]
pub enum WriteKind {
    /// Replace the value.
    Put,
    /// Append to the value.
    Append,
}

/// Runs `shardkv get`.
pub fn get(args: KeyArgs) -> ExitCode {
    super::logging::init("off");
    let client = match args.client.client() {
        Ok(client) => client,
        Err(message) => return super::fail(message),
    };
    let (key, json) = (args.key, args.client.json);
    run_client(async move {
        let value = client
            .get(key.clone())
            .await
            .map_err(|error| error.to_string())?;
        match (value, json) {
            (Some(value), false) => {
                let mut stdout = std::io::stdout();
                stdout
                    .write_all(&value)
                    .and_then(|()| stdout.write_all(b"\n"))
                    .map_err(|error| format!("cannot write the value: {error}"))?;
                Ok(ExitCode::SUCCESS)
            }
            (Some(value), true) => {
                let value = String::from_utf8_lossy(&value);
                print_json(&serde_json::json!({ "key": key, "value": value }));
                Ok(ExitCode::SUCCESS)
            }
            (None, _) => {
                eprintln!("not found");
                Ok(ExitCode::from(1))
            }
        }
    })
}

/// Runs `shardkv put` or `shardkv append`.
pub fn write(args: KeyValueArgs, kind: WriteKind) -> ExitCode {
    super::logging::init("off");
    let client = match args.client.client() {
        Ok(client) => client,
        Err(message) => return super::fail(message),
    };
    let (key, value) = (args.key, args.value);
    let json = args.client.json;
    run_client(async move {
        let done = match kind {
            WriteKind::Put => client.put(key.clone(), value).await,
            WriteKind::Append => client.append(key.clone(), value).await,
        };
        done.map_err(|error| error.to_string())?;
        report(json, &key);
        Ok(ExitCode::SUCCESS)
    })
}

/// Runs `shardkv delete`.
pub fn delete(args: KeyArgs) -> ExitCode {
    super::logging::init("off");
    let client = match args.client.client() {
        Ok(client) => client,
        Err(message) => return super::fail(message),
    };
    let (key, json) = (args.key, args.client.json);
    run_client(async move {
        client
            .delete(key.clone())
            .await
            .map_err(|error| error.to_string())?;
        report(json, &key);
        Ok(ExitCode::SUCCESS)
    })
}

/// A write's confirmation: nothing in text mode, `{"key", "ok": true}` in JSON.
fn report(json: bool, key: &str) {
    if json {
        print_json(&serde_json::json!({ "key": key, "ok": true }));
    }
}
