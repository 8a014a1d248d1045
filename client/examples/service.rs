//! A web service on a multi-thread tokio runtime whose request handlers share one
//! [`shardkv_client::Client`]: the handle is `Clone + Send + Sync`, its clones share its
//! connections, and the operations of many handlers run at once (each under a session
//! of its own, so every write still applies exactly once).
//!
//! ```sh
//! cargo run -p shardkv -- local                   # in one terminal: a cluster on 127.0.0.1
//! export SHARDKV_TLS_DIR=...                      # the line `local` prints (mutual TLS)
//! cargo run -p shardkv-client --example service   # listens on 127.0.0.1:8080
//! curl -X PUT --data hello localhost:8080/kv/greeting
//! curl localhost:8080/kv/greeting                 # hello
//! curl -X POST localhost:8080/visits/home         # counts one visit, exactly once
//! curl localhost:8080/kv/visits:home              # one 'x' per visit
//! curl -X DELETE localhost:8080/kv/greeting
//! ```
//!
//! The shard masters come from `SHARDKV_MASTERS` (comma-separated), else the addresses
//! `shardkv local` uses; the listening address from the first argument.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use shardkv_client::tls::Tls;
use shardkv_client::{Client, ClientError, KvError, TarpcTransport};

/// `shardkv local`'s shard masters.
const LOCAL_MASTERS: &str = "127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002";

/// The handle every handler gets a clone of.
type Kv = Client<TarpcTransport>;

/// What a handler answers: a body, or a status with a message.
type Answer = Result<Vec<u8>, (StatusCode, String)>;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen = std::env::args().nth(1).unwrap_or("127.0.0.1:8080".into());
    let masters = std::env::var("SHARDKV_MASTERS").unwrap_or(LOCAL_MASTERS.into());
    let mut builder = Client::builder(masters.split(',').map(str::trim))
        .timeout(Duration::from_secs(5))
        .connections_per_node(4);
    if let Some(dir) = std::env::var_os("SHARDKV_TLS_DIR") {
        builder = builder.tls(Tls::load(std::path::Path::new(&dir))?);
    }
    // Fails here, not at the first request, when no shard master answers.
    let client: Kv = builder.build().await?;
    let app = Router::new()
        .route("/kv/{key}", get(read).put(write).delete(remove))
        .route("/visits/{page}", post(visit))
        .with_state(client);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on {listen}");
    axum::serve(listener, app).await?;
    Ok(())
}

async fn read(State(kv): State<Kv>, Path(key): Path<String>) -> Answer {
    match kv.get(key).await.map_err(status)? {
        Some(value) => Ok(value),
        None => Err((StatusCode::NOT_FOUND, "no such key\n".into())),
    }
}

async fn write(State(kv): State<Kv>, Path(key): Path<String>, value: Bytes) -> Answer {
    kv.put(key, value.to_vec()).await.map_err(status)?;
    Ok(Vec::new())
}

async fn remove(State(kv): State<Kv>, Path(key): Path<String>) -> Answer {
    kv.delete(key).await.map_err(status)?;
    Ok(Vec::new())
}

/// One visit of `page`: an Append, applied once however often the client retries it.
async fn visit(State(kv): State<Kv>, Path(page): Path<String>) -> Answer {
    kv.append(format!("visits:{page}"), "x")
        .await
        .map_err(status)?;
    Ok(Vec::new())
}

/// The HTTP status that tells a caller what a client error means for it.
fn status(error: ClientError) -> (StatusCode, String) {
    let code = match &error {
        ClientError::Rejected(KvError::KeyTooLarge { .. } | KvError::ValueTooLarge { .. }) => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        ClientError::Rejected(KvError::NoSpace) => StatusCode::INSUFFICIENT_STORAGE,
        ClientError::Rejected(_) => StatusCode::BAD_REQUEST,
        // The write may or may not have applied: a gateway timeout says just that.
        ClientError::Timeout { .. } | ClientError::OutcomeUnknown { .. } => {
            StatusCode::GATEWAY_TIMEOUT
        }
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    (code, format!("{error}\n"))
}
