//! A real cluster of `shardkv serve` processes on loopback, for the process tests.
//!
//! Ports are chosen free by binding port 0 first. Every process is killed when its
//! [`Node`] drops, so a failing test leaves nothing behind.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_shardkv");

/// A free loopback address (bound, then released).
pub fn free_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    let address = listener.local_addr().expect("local address");
    format!("127.0.0.1:{}", address.port())
}

/// One `shardkv serve` process and how to start it again.
pub struct Node {
    pub args: Vec<String>,
    pub address: String,
    child: Option<Child>,
}

impl Node {
    /// Starts `shardkv serve` with `args`.
    pub fn start(args: Vec<String>, address: String) -> Self {
        let mut node = Node {
            args,
            address,
            child: None,
        };
        node.restart();
        node
    }

    /// Starts the process again (after [`Node::kill`]).
    pub fn restart(&mut self) {
        let child = Command::new(BIN)
            .arg("serve")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn shardkv serve");
        self.child = Some(child);
    }

    /// `kill -9`: no chance to flush anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A replicated service's processes (the shard master or one group).
pub struct Service {
    pub nodes: Vec<Node>,
}

impl Service {
    /// Starts `replicas` replicas of a master (`gid` None) or of group `gid`.
    pub fn start(dir: &Path, gid: Option<u64>, replicas: usize, masters: &[String]) -> Self {
        let addresses: Vec<String> = (0..replicas).map(|_| free_address()).collect();
        let peers: Vec<String> = addresses
            .iter()
            .enumerate()
            .map(|(i, address)| format!("{}={address}", i + 1))
            .collect();
        let nodes = addresses
            .iter()
            .enumerate()
            .map(|(i, address)| {
                let name = gid.map_or_else(|| "master".to_string(), |gid| format!("group-{gid}"));
                let data: PathBuf = dir.join(format!("{name}-{}", i + 1));
                let mut args = vec![
                    "--id".to_string(),
                    (i + 1).to_string(),
                    "--listen".into(),
                    address.clone(),
                    "--peers".into(),
                    peers.join(","),
                    "--data-dir".into(),
                    data.display().to_string(),
                ];
                match gid {
                    None => args.extend(["--role".into(), "master".into()]),
                    Some(gid) => args.extend([
                        "--role".into(),
                        "group".into(),
                        "--gid".into(),
                        gid.to_string(),
                        "--masters".into(),
                        masters.join(","),
                    ]),
                }
                Node::start(args, address.clone())
            })
            .collect();
        Service { nodes }
    }

    /// The replicas' addresses, in raft id order.
    pub fn addresses(&self) -> Vec<String> {
        self.nodes.iter().map(|node| node.address.clone()).collect()
    }
}

/// Runs a `shardkv` client subcommand against `masters`.
pub fn shardkv(masters: &[String], args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--masters")
        .arg(masters.join(","))
        .stdin(Stdio::null())
        .output()
        .expect("run shardkv")
}

/// Runs a client subcommand until it succeeds or `within` passes; returns the last run.
pub fn shardkv_until_ok(masters: &[String], args: &[&str], within: Duration) -> Output {
    let start = Instant::now();
    loop {
        let output = shardkv(masters, args);
        if output.status.success() || start.elapsed() > within {
            return output;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Stdout as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Stderr as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
