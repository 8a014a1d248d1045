//! [`Cluster`]: a local cluster's nodes as tasks of this process, each with its own stop
//! switch, so `shardkv local` can run them all and `shardkv demo` can kill one and start
//! it again from its data directory.
//!
//! A node is [`run_node`] on a tokio task. Stopping it either asks it to shut down
//! cleanly (flush, then return) or aborts its task outright, the in-process stand-in for
//! `kill -9`: the server is dropped at whatever await point it reached, keeping only what
//! raft had already synced. Either way the node's listener and connections close (see
//! [`crate::runtime::service`]), and starting it again reopens the same data directory on
//! the same address.
//!
//! # Caveats
//!
//! - Aborting a task is gentler than `kill -9`: the dropped server runs its destructors
//!   (a snapshot thread is joined, its file finished). The process tests (`server/tests/`)
//!   kill real `shardkv serve` processes with SIGKILL.

use std::time::Duration;

use shardkv_proto::GroupId;
use shardkv_raft::NodeId;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::runtime::hosted::Fatal;
use crate::runtime::{run_node, NodeSpec, Role};

/// How long a restarted node may wait for its address to be free again.
const REBIND_WAIT: Duration = Duration::from_secs(10);

/// One running node: its stop switch and its task.
struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), Fatal>>,
}

/// The nodes of a local cluster, running or stopped, in spec order.
pub struct Cluster {
    specs: Vec<NodeSpec>,
    nodes: Vec<Option<Running>>,
}

impl Cluster {
    /// Starts every node of `specs` on the current tokio runtime.
    pub fn start(specs: Vec<NodeSpec>) -> Self {
        let nodes = specs.iter().map(|spec| Some(spawn(spec.clone()))).collect();
        Cluster { specs, nodes }
    }

    /// The index of replica `id` of group `gid` (`None`: of the shard master).
    pub fn index(&self, gid: Option<GroupId>, id: NodeId) -> Option<usize> {
        self.specs.iter().position(|spec| {
            let spec_gid = match &spec.role {
                Role::Master => None,
                Role::Group { gid, .. } => Some(*gid),
            };
            spec_gid == gid && spec.id == id
        })
    }

    /// The spec of node `index`.
    pub fn spec(&self, index: usize) -> Option<&NodeSpec> {
        self.specs.get(index)
    }

    /// Aborts node `index`'s task (no clean shutdown) and waits until it is gone.
    pub async fn kill(&mut self, index: usize) -> Result<(), String> {
        let running = self.take(index)?;
        running.task.abort();
        match running.task.await {
            Err(error) if error.is_cancelled() => Ok(()),
            Err(error) => Err(format!("node task failed: {error}")),
            Ok(result) => result.map_err(|error| format!("node had stopped: {error}")),
        }
    }

    /// Starts node `index` again from its data directory, once its address is free.
    pub async fn restart(&mut self, index: usize) -> Result<(), String> {
        let spec = self.specs.get(index).ok_or("no such node")?.clone();
        if self.nodes[index].is_some() {
            return Err(format!("node {} is already running", spec.listen));
        }
        wait_until_bindable(&spec.listen).await?;
        self.nodes[index] = Some(spawn(spec));
        Ok(())
    }

    /// Asks every running node to stop cleanly (each makes what it wrote durable) and
    /// waits for them; an error names every node that failed, and how (at the stop, or
    /// earlier: a node that died of a fatal error reports it here).
    pub async fn stop(mut self) -> Result<(), String> {
        let running: Vec<(usize, Running)> = self
            .nodes
            .iter_mut()
            .enumerate()
            .filter_map(|(index, node)| Some((index, node.take()?)))
            .collect();
        for (_, node) in &running {
            let _ = node.stop.send(true);
        }
        let mut failures = Vec::new();
        for (index, node) in running {
            let listen = &self.specs[index].listen;
            match node.task.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => failures.push(format!("node {listen}: {error}")),
                Err(error) => failures.push(format!("node {listen}: its task failed: {error}")),
            }
        }
        if failures.is_empty() {
            return Ok(());
        }
        Err(format!(
            "not every node ended cleanly: {}",
            failures.join("; ")
        ))
    }

    /// Waits until a running node's task ends by itself (a fatal error, or a panic:
    /// nodes end otherwise only when asked), takes it out of the running set, and says
    /// which node it was and why it ended. Never resolves while no node runs.
    pub async fn first_exit(&mut self) -> String {
        let tasks: Vec<_> = (self.nodes.iter_mut().enumerate())
            .filter_map(|(index, node)| Some((index, &mut node.as_mut()?.task)))
            .map(|(index, task)| Box::pin(async move { (index, task.await) }))
            .collect();
        if tasks.is_empty() {
            return std::future::pending().await;
        }
        let ((index, ended), _, _) = futures::future::select_all(tasks).await;
        self.nodes[index] = None;
        let listen = &self.specs[index].listen;
        match ended {
            Ok(Ok(())) => format!("node {listen} stopped"),
            Ok(Err(error)) => format!("node {listen} stopped: {error}"),
            Err(error) => format!("node {listen} failed: {error}"),
        }
    }

    fn take(&mut self, index: usize) -> Result<Running, String> {
        self.nodes
            .get_mut(index)
            .and_then(Option::take)
            .ok_or_else(|| format!("node {index} is not running"))
    }
}

/// Runs `spec` on a new task with its own stop switch.
fn spawn(spec: NodeSpec) -> Running {
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(run_node(spec, shutdown));
    Running { stop, task }
}

/// Waits (bounded by [`REBIND_WAIT`]) until `address` can be bound, as `run_node` will.
pub async fn wait_until_bindable(address: &str) -> Result<(), String> {
    let start = tokio::time::Instant::now();
    loop {
        match tokio::net::TcpListener::bind(address).await {
            Ok(_) => return Ok(()),
            Err(error) if start.elapsed() > REBIND_WAIT => {
                return Err(format!("{address} stays busy: {error}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
