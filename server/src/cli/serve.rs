//! `shardkv serve`: run one replica until SIGTERM or Ctrl-C.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use shardkv_proto::GroupId;
use shardkv_raft::NodeId;
use tokio::sync::watch;

use shardkv_client::tls::{Identity, Tls};

use super::parse_duration;
use crate::runtime::{run_node, Limits, NodeSpec, Role};

/// Which service the node is a replica of.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleArg {
    /// A shard-master replica.
    Master,
    /// A replica-group replica (needs --gid and --masters).
    Group,
}

/// Options of `shardkv serve`.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// master or group.
    #[arg(long, value_enum)]
    pub role: RoleArg,
    /// The group id (role group only; non-zero).
    #[arg(long)]
    pub gid: Option<GroupId>,
    /// This replica's raft id (1, 2, ...; unique in its service).
    #[arg(long)]
    pub id: NodeId,
    /// The address to listen on, e.g. 127.0.0.1:7000.
    #[arg(long)]
    pub listen: String,
    /// Every replica of the service as ID=ADDR, comma-separated (this one may be listed).
    /// Fixed at first boot. For a group, list them in the order given to `join`.
    #[arg(long, value_delimiter = ',', value_parser = parse_peer)]
    pub peers: Vec<(NodeId, String)>,
    /// The directory for this replica's data (created if missing).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The shard masters, comma-separated in NodeId order (role group only).
    #[arg(long, value_delimiter = ',')]
    pub masters: Vec<String>,
    /// A group replica's page cache for its keys and values, in MiB (the writes it holds
    /// between flushes, up to 64 MiB, and its raft log since the last checkpoint, about
    /// 32 MiB, come on top).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub cache_mb: u64,
    /// The most connections served at once (clients' and peers' together); more are
    /// closed as they are accepted. Default: 1024, or fewer when the open-files limit
    /// (raised to its hard limit at start) leaves less room.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub max_connections: Option<u64>,
    /// With TLS, the most connections served at once per identity a certificate names
    /// (a peer needs two; a client process one per node).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub max_connections_per_identity: u64,
    /// How long a new connection has to send its first whole request (or a peer its
    /// hello) before it is closed.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,
    /// How long a connection may send no whole request, with none of its requests in
    /// flight, before it is closed (clients dial again on their next call).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Mutual TLS on every connection: a directory with ca.pem, cert.pem and key.pem
    /// (`shardkv certs node`), the certificate naming this replica. Without it the node
    /// speaks plaintext to anyone who can reach it. (Not read from `SHARDKV_TLS_DIR`,
    /// which names the client commands' certificate.)
    #[arg(long)]
    pub tls_dir: Option<PathBuf>,
    /// Serve plaintext, to anyone who can reach the port, with no --tls-dir (for a
    /// trusted network only).
    #[arg(long, conflicts_with = "tls_dir")]
    pub insecure: bool,
    /// Free space to keep on the data directory's file system, in MiB: below it a group
    /// replica refuses client writes (reads go on) until twice as much is free; 0 turns
    /// the check off.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(0..=1 << 40))]
    pub reserve_mb: u64,
}

/// Parses `N=ADDR`.
fn parse_peer(text: &str) -> Result<(NodeId, String), String> {
    let (id, address) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not ID=ADDR"))?;
    let id: NodeId = id
        .trim()
        .parse()
        .map_err(|_| format!("`{id}` is not a replica id"))?;
    if id == 0 || address.is_empty() {
        return Err(format!(
            "`{text}`: ids start at 1 and addresses are not empty"
        ));
    }
    Ok((id, address.trim().to_string()))
}

impl ServeArgs {
    /// The node spec, or why these options do not make one.
    pub fn spec(&self) -> Result<NodeSpec, String> {
        if self.id == 0 {
            return Err("--id must be at least 1".into());
        }
        let role = match (self.role, self.gid) {
            (RoleArg::Master, None) => Role::Master,
            (RoleArg::Master, Some(_)) => return Err("--gid is for --role group".into()),
            (RoleArg::Group, None) | (RoleArg::Group, Some(0)) => {
                return Err("--role group needs --gid (non-zero)".into())
            }
            (RoleArg::Group, Some(gid)) if self.masters.is_empty() => {
                return Err(format!("group {gid} needs --masters"))
            }
            (RoleArg::Group, Some(gid)) => Role::Group {
                gid,
                masters: self.masters.clone(),
            },
        };
        let mut peers: BTreeMap<NodeId, String> = self.peers.iter().cloned().collect();
        peers.entry(self.id).or_insert_with(|| self.listen.clone());
        let mut spec = NodeSpec::new(
            role,
            self.id,
            self.listen.clone(),
            peers,
            self.data_dir.clone(),
        );
        spec.cache_bytes = usize::try_from(self.cache_mb << 20).map_err(|_| {
            format!(
                "--cache-mb {} is more than this machine addresses",
                self.cache_mb
            )
        })?;
        let mut limits = Limits::for_process(1);
        if let Some(connections) = self.max_connections {
            limits.connections = usize::try_from(connections).unwrap_or(usize::MAX);
        }
        limits.per_identity =
            usize::try_from(self.max_connections_per_identity).unwrap_or(usize::MAX);
        if self.handshake_timeout.is_zero() || self.idle_timeout.is_zero() {
            return Err("--handshake-timeout and --idle-timeout must be more than 0".into());
        }
        const DAY: Duration = Duration::from_secs(24 * 3600);
        if self.handshake_timeout > DAY || self.idle_timeout > 30 * DAY {
            return Err("--handshake-timeout is at most 1 day, --idle-timeout 30 days".into());
        }
        limits.handshake = self.handshake_timeout;
        limits.idle = self.idle_timeout;
        spec.limits = limits;
        spec.reserve_bytes = self.reserve_mb << 20;
        if self.tls_dir.is_none() && !self.insecure {
            return Err(
                "serve needs --tls-dir DIR (a certificate from `shardkv certs node`) \
                        for mutual TLS, or --insecure to serve plaintext to anyone who can \
                        reach it"
                    .into(),
            );
        }
        if let Some(dir) = &self.tls_dir {
            let tls = Tls::load(dir)?;
            let me = Identity::Replica(spec.replica());
            if *tls.identity() != me {
                return Err(format!(
                    "the certificate in {} names {}, not this node ({me})",
                    dir.display(),
                    tls.identity()
                ));
            }
            spec.tls = Some(tls);
        }
        Ok(spec)
    }
}

/// Runs `shardkv serve`.
pub fn run(args: ServeArgs) -> ExitCode {
    super::logging::init("warn");
    let spec = match args.spec() {
        Ok(spec) => spec,
        Err(message) => return super::fail(message),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => return super::fail(format!("cannot start the runtime: {error}")),
    };
    runtime.block_on(async {
        let (stop, shutdown) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            let _ = stop.send(true);
        });
        let id = spec.id;
        tracing::info!(id, listen = %spec.listen, "serving");
        match run_node(spec, shutdown).await {
            Ok(()) => {
                tracing::info!(id, "stopped cleanly, everything written flushed");
                ExitCode::SUCCESS
            }
            Err(error) => super::fail(error),
        }
    })
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
