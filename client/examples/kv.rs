//! A small key/value command line over [`shardkv_client::Client`] and tarpc.
//!
//! ```sh
//! cargo run -p shardkv -- local                   # in one terminal: a cluster on 127.0.0.1
//! export SHARDKV_TLS_DIR=...                      # the line `local` prints (mutual TLS)
//! cargo run -p shardkv-client --example kv -- put greeting hello
//! cargo run -p shardkv-client --example kv -- append greeting ", world"
//! cargo run -p shardkv-client --example kv -- get greeting        # hello, world
//! cargo run -p shardkv-client --example kv -- delete greeting
//! cargo run -p shardkv-client --example kv -- --masters 10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000 get k
//! ```
//!
//! The shard masters come from `--masters`, else `SHARDKV_MASTERS`, else the addresses
//! `shardkv local` uses. With `SHARDKV_TLS_DIR` set (a directory holding `ca.pem`,
//! `cert.pem` and `key.pem`), every connection is mutual TLS, as a cluster needs unless
//! its nodes run `--insecure`. One command needs no more than a current-thread tokio
//! runtime; the client's futures are `Send`, so a service may as well run them on a
//! multi-thread one (`tokio::spawn`).

use std::process::ExitCode;
use std::time::Duration;

use shardkv_client::tls::Tls;
use shardkv_client::{Client, RetryPolicy, TarpcTransport};

/// `shardkv local`'s shard masters.
const LOCAL_MASTERS: &str = "127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002";

const USAGE: &str =
    "usage: kv [--masters ADDR,...] get KEY | put KEY VALUE | append KEY VALUE | delete KEY";

/// One parsed command.
enum Command {
    Get(String),
    Put(String, String),
    Append(String, String),
    Delete(String),
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut masters = std::env::var("SHARDKV_MASTERS").unwrap_or_else(|_| LOCAL_MASTERS.into());
    if args.first().map(String::as_str) == Some("--masters") {
        if args.len() < 2 {
            return usage();
        }
        masters = args.remove(1);
        args.remove(0);
    }
    let command = match args.as_slice() {
        [op, key] if op == "get" => Command::Get(key.clone()),
        [op, key] if op == "delete" => Command::Delete(key.clone()),
        [op, key, value] if op == "put" => Command::Put(key.clone(), value.clone()),
        [op, key, value] if op == "append" => Command::Append(key.clone(), value.clone()),
        _ => return usage(),
    };
    let masters: Vec<String> = masters.split(',').map(|m| m.trim().to_string()).collect();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(format!("cannot start tokio: {error}")),
    };
    match runtime.block_on(run(masters, command)) {
        Ok(code) => code,
        Err(message) => fail(message),
    }
}

/// Runs one operation; an answer within 10 s or an error.
async fn run(masters: Vec<String>, command: Command) -> Result<ExitCode, String> {
    let policy = RetryPolicy {
        deadline: Some(Duration::from_secs(10)),
        ..RetryPolicy::default()
    };
    let transport = match std::env::var_os("SHARDKV_TLS_DIR") {
        None => TarpcTransport::new(),
        Some(dir) => TarpcTransport::with_tls(Tls::load(std::path::Path::new(&dir))?),
    };
    let client = Client::with_policy(transport, masters, policy);
    let done = match command {
        Command::Get(key) => {
            return match client.get(key).await.map_err(|e| e.to_string())? {
                Some(value) => {
                    println!("{}", String::from_utf8_lossy(&value));
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!("not found");
                    Ok(ExitCode::from(1))
                }
            };
        }
        Command::Put(key, value) => client.put(key, value).await,
        Command::Append(key, value) => client.append(key, value).await,
        Command::Delete(key) => client.delete(key).await,
    };
    done.map_err(|e| e.to_string())?;
    println!("ok");
    Ok(ExitCode::SUCCESS)
}

fn usage() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}

fn fail(message: String) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}
