//! `shardkv local`: a whole cluster on 127.0.0.1 in one process, until Ctrl-C.
//!
//! Three shard-master replicas listen on `--base-port` and the two ports after it; group
//! `g` (gid `100 + g`) has its replicas on `base + 100 + 10 g + r`. The layout is a pure
//! function of the options, so a restart with the same `--data-dir` finds every replica
//! at its old address and resumes its data; groups that already joined are not joined
//! again.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use shardkv_client::tls::Tls;
use shardkv_client::{Admin, GroupId, RetryPolicy, TarpcTransport};
use shardkv_raft::NodeId;

use super::cluster::Cluster;
use crate::runtime::{Limits, NodeSpec, Role};

/// Options of `shardkv local`.
#[derive(Args, Debug, Clone)]
pub struct LocalArgs {
    /// How many replica groups (gids 100, 101, ...).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=50))]
    pub groups: u16,
    /// Replicas per group.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=9))]
    pub replicas: u16,
    /// Keep the data here (restart resumes it); default: a temporary directory removed
    /// on exit.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The first shard master's port.
    #[arg(long, default_value_t = 7000)]
    pub base_port: u16,
    /// Plaintext instead of mutual TLS (by default the cluster makes a CA and
    /// certificates in its data directory, and prints where the clients' is).
    #[arg(long)]
    pub insecure: bool,
}

/// The addresses and data directories of a local cluster.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The shard masters, in NodeId order.
    pub masters: Vec<String>,
    /// Each group's replicas, in NodeId order.
    pub groups: BTreeMap<GroupId, Vec<String>>,
    /// The root of every replica's data directory.
    pub data_dir: PathBuf,
}

impl Layout {
    /// The layout for these sizes on 127.0.0.1.
    pub fn new(
        groups: u16,
        replicas: u16,
        base_port: u16,
        data_dir: PathBuf,
    ) -> Result<Self, String> {
        let port = |offset: u32| -> Result<String, String> {
            u16::try_from(u32::from(base_port) + offset)
                .map(|port| format!("127.0.0.1:{port}"))
                .map_err(|_| format!("--base-port {base_port} leaves no room for the cluster"))
        };
        let masters = (0..3).map(port).collect::<Result<Vec<_>, _>>()?;
        let mut layout = BTreeMap::new();
        for g in 0..u32::from(groups) {
            let servers = (0..u32::from(replicas))
                .map(|r| port(100 + 10 * g + r))
                .collect::<Result<Vec<_>, _>>()?;
            layout.insert(100 + GroupId::from(g), servers);
        }
        Ok(Layout {
            masters,
            groups: layout,
            data_dir,
        })
    }

    /// A layout of these sizes whose every address is free, on one of the blocks of
    /// ports from 17000 to 57000 in steps of 1000 (for the demo and the benchmark, which
    /// must not collide with a `shardkv local` on the default ports). The search starts
    /// at a block picked by the process id and wraps around, so that processes started
    /// together (tests run in parallel) rarely try the same block at once: a block is
    /// free when checked, and taken only when the nodes bind it.
    pub async fn free(groups: u16, replicas: u16, data_dir: PathBuf) -> Result<Self, String> {
        const BLOCKS: u32 = 41;
        let first = std::process::id() % BLOCKS;
        for block in (0..BLOCKS).map(|i| (first + i) % BLOCKS) {
            let base_port = 17_000 + 1000 * block as u16;
            let layout = Layout::new(groups, replicas, base_port, data_dir.clone())?;
            let mut free = true;
            for address in layout
                .masters
                .iter()
                .chain(layout.groups.values().flatten())
            {
                if tokio::net::TcpListener::bind(address.as_str())
                    .await
                    .is_err()
                {
                    free = false;
                    break;
                }
            }
            if free {
                return Ok(layout);
            }
        }
        Err("no free block of ports between 17000 and 58000".into())
    }

    /// Every node's spec, each node's connections limited to its share of the process's
    /// open files ([`Limits::for_process`]).
    pub fn specs(&self) -> Vec<NodeSpec> {
        let mut specs = service_specs(Role::Master, &self.masters, self.data_dir.join("master"));
        for (&gid, servers) in &self.groups {
            let role = Role::Group {
                gid,
                masters: self.masters.clone(),
            };
            specs.extend(service_specs(
                role,
                servers,
                self.data_dir.join(format!("group-{gid}")),
            ));
        }
        let limits = Limits::for_process(specs.len());
        for spec in &mut specs {
            spec.limits = limits;
        }
        specs
    }
}

/// The specs of one service's replicas (NodeId `i + 1` at `addresses[i]`).
fn service_specs(role: Role, addresses: &[String], dir: PathBuf) -> Vec<NodeSpec> {
    let peers: BTreeMap<NodeId, String> = (1..).zip(addresses.iter().cloned()).collect();
    peers
        .iter()
        .map(|(&id, address)| {
            let data_dir = dir.join(format!("replica-{id}"));
            NodeSpec::new(role.clone(), id, address.clone(), peers.clone(), data_dir)
        })
        .collect()
}

/// Joins every group of `layout` that is not yet a member.
pub async fn join_missing(
    layout: &Layout,
    policy: RetryPolicy,
    transport: TarpcTransport,
) -> Result<(), String> {
    let admin = Admin::with_policy(transport, layout.masters.clone(), policy);
    let latest = admin.query(None).await.map_err(|error| error.to_string())?;
    let missing: BTreeMap<GroupId, Vec<String>> = layout
        .groups
        .iter()
        .filter(|(gid, _)| !latest.groups.contains_key(gid))
        .map(|(&gid, servers)| (gid, servers.clone()))
        .collect();
    if !missing.is_empty() {
        admin
            .join(missing)
            .await
            .map_err(|error| error.to_string())?;
    }
    Ok(())
}

/// `dir`, or a fresh temporary directory (removed when the returned guard drops).
pub fn data_dir_or_temp(
    dir: Option<PathBuf>,
) -> Result<(Option<tempfile::TempDir>, PathBuf), String> {
    match dir {
        Some(dir) => Ok((None, dir)),
        None => {
            let temp = tempfile::Builder::new()
                .prefix("shardkv-")
                .tempdir()
                .map_err(|error| format!("cannot create a temporary directory: {error}"))?;
            let path = temp.path().to_path_buf();
            Ok((Some(temp), path))
        }
    }
}

/// Runs `shardkv local`.
pub fn run(args: LocalArgs) -> ExitCode {
    super::logging::init("warn");
    let (temp, data_dir) = match data_dir_or_temp(args.data_dir.clone()) {
        Ok(dirs) => dirs,
        Err(message) => return super::fail(message),
    };
    let layout = match Layout::new(args.groups, args.replicas, args.base_port, data_dir) {
        Ok(layout) => layout,
        Err(message) => return super::fail(message),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => return super::fail(format!("cannot start the runtime: {error}")),
    };
    let code = runtime.block_on(serve_local(layout, args.insecure));
    drop(temp);
    code
}

/// Starts every node, joins the groups, prints the masters, and serves until a signal,
/// or until a node stops by itself (a fatal error or a panic): then the whole cluster
/// stops, and the exit code and message say which node and why.
async fn serve_local(layout: Layout, insecure: bool) -> ExitCode {
    let mut specs = layout.specs();
    let clients_tls = match insecure {
        true => None,
        false => match super::certs::certify(&layout.data_dir.join("tls"), &mut specs) {
            Ok(dir) => Some(dir),
            Err(message) => return super::fail(format!("cannot make certificates: {message}")),
        },
    };
    let transport = match &clients_tls {
        None => Ok(TarpcTransport::new()),
        Some(dir) => Tls::load(dir).map(TarpcTransport::with_tls),
    };
    let transport = match transport {
        Ok(transport) => transport,
        Err(message) => return super::fail(message),
    };
    let mut cluster = Cluster::start(specs);
    let policy = RetryPolicy {
        deadline: Some(std::time::Duration::from_secs(30)),
        ..RetryPolicy::default()
    };
    let joined = tokio::task::LocalSet::new()
        .run_until(join_missing(&layout, policy, transport))
        .await;
    let code = match joined {
        Ok(()) => {
            println!("{}", layout.masters.join(","));
            eprintln!(
                "shardkv local: 3 masters, {} groups; data in {}; Ctrl-C to stop",
                layout.groups.len(),
                layout.data_dir.display()
            );
            match &clients_tls {
                Some(dir) => eprintln!(
                    "mutual TLS: for the client commands, export SHARDKV_TLS_DIR={}",
                    dir.display()
                ),
                None => {
                    eprintln!("plaintext (--insecure): anyone who reaches the ports is trusted")
                }
            }
            tokio::select! {
                () = super::serve::wait_for_signal() => ExitCode::SUCCESS,
                why = cluster.first_exit() => {
                    super::fail(format!("{why}; stopping the whole cluster"))
                }
            }
        }
        Err(message) => super::fail(format!("cannot join the groups: {message}")),
    };
    match cluster.stop().await {
        Ok(()) => code,
        Err(message) => super::fail(message),
    }
}
