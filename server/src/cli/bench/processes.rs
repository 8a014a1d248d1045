//! `shardkv bench --processes`: the local cluster as one `shardkv serve` process per
//! replica (this binary, re-executed), as a deployment runs it, so each replica's memory
//! and disk can be measured on its own; the standalone bench hosts every replica in its
//! own process, where they share one heap.
//!
//! Each child's peak resident memory (`VmHWM` of `/proc/PID/status`) and the bytes its
//! data directory holds are read after the run, before the children are stopped with
//! SIGTERM (a clean stop: a child that does not exit within [`STOP_WAIT`] is killed and
//! reported).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::runtime::NodeSpec;

/// How long a child may take to stop after SIGTERM.
const STOP_WAIT: Duration = Duration::from_secs(30);

/// One replica's process.
struct Replica {
    name: String,
    child: Child,
    data_dir: PathBuf,
}

/// The running replicas.
pub(super) struct Processes {
    replicas: Vec<Replica>,
}

/// What one replica used.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct Usage {
    /// The replica, as `master-ID` or `group-GID-ID`.
    pub(super) name: String,
    /// Peak resident memory, MiB.
    pub(super) peak_rss_mib: f64,
    /// Resident memory when read, MiB.
    pub(super) rss_mib: f64,
    /// Bytes of the files in its data directory, MiB.
    pub(super) disk_mib: f64,
}

impl Processes {
    /// Starts one `shardkv serve` per spec, each with a page cache of `cache_mb`.
    pub(super) fn start(specs: &[NodeSpec], cache_mb: u64) -> Result<Self, String> {
        let exe = std::env::current_exe()
            .map_err(|error| format!("cannot find this program to run replicas: {error}"))?;
        let mut processes = Processes {
            replicas: Vec::new(),
        };
        for spec in specs {
            let (name, mut args) = serve_args(spec);
            args.extend(["--cache-mb".to_string(), cache_mb.to_string()]);
            std::fs::create_dir_all(&spec.data_dir)
                .map_err(|error| format!("cannot create {}: {error}", spec.data_dir.display()))?;
            let log = std::fs::File::create(spec.data_dir.join("serve.log"))
                .map_err(|error| format!("cannot create {name}'s log: {error}"))?;
            let child = Command::new(&exe)
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .map_err(|error| format!("cannot start {name}: {error}"))?;
            processes.replicas.push(Replica {
                name,
                child,
                data_dir: spec.data_dir.clone(),
            });
        }
        Ok(processes)
    }

    /// Each replica's memory and disk now.
    pub(super) fn usage(&self) -> Vec<Usage> {
        self.replicas
            .iter()
            .map(|replica| {
                let status =
                    std::fs::read_to_string(format!("/proc/{}/status", replica.child.id()))
                        .unwrap_or_default();
                Usage {
                    name: replica.name.clone(),
                    peak_rss_mib: status_kib(&status, "VmHWM:") / 1024.0,
                    rss_mib: status_kib(&status, "VmRSS:") / 1024.0,
                    disk_mib: dir_bytes(&replica.data_dir) as f64 / (1 << 20) as f64,
                }
            })
            .collect()
    }

    /// Stops every replica with SIGTERM and waits; an error names those that exited with
    /// a failure or had to be killed.
    pub(super) fn stop(mut self) -> Result<(), String> {
        for replica in &self.replicas {
            // SIGTERM through kill(1): no unsafe code, no dependency for one signal.
            let _ = Command::new("kill")
                .args(["-TERM", &replica.child.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + STOP_WAIT;
        let mut failed = Vec::new();
        for replica in &mut self.replicas {
            loop {
                match replica.child.try_wait() {
                    Ok(Some(status)) if status.success() => break,
                    Ok(Some(status)) => {
                        failed.push(format!("{} exited with {status}", replica.name));
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Ok(None) | Err(_) => {
                        let _ = replica.child.kill();
                        let _ = replica.child.wait();
                        failed.push(format!("{} did not stop and was killed", replica.name));
                        break;
                    }
                }
            }
        }
        self.replicas.clear();
        match failed.is_empty() {
            true => Ok(()),
            false => Err(failed.join("; ")),
        }
    }
}

impl Drop for Processes {
    /// Replicas left running (an error before `stop`) are killed.
    fn drop(&mut self) {
        for replica in &mut self.replicas {
            let _ = replica.child.kill();
            let _ = replica.child.wait();
        }
    }
}

/// The name and `shardkv serve` arguments of `spec`.
fn serve_args(spec: &NodeSpec) -> (String, Vec<String>) {
    let peers = (spec.peers.iter())
        .map(|(id, address)| format!("{id}={address}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut args = vec!["serve".to_string()];
    let name = match &spec.role {
        crate::runtime::Role::Master => {
            args.extend(["--role".into(), "master".into()]);
            format!("master-{}", spec.id)
        }
        crate::runtime::Role::Group { gid, masters } => {
            args.extend(["--role".into(), "group".into()]);
            args.extend(["--gid".into(), gid.to_string()]);
            args.extend(["--masters".into(), masters.join(",")]);
            format!("group-{gid}-{}", spec.id)
        }
    };
    args.extend(["--id".into(), spec.id.to_string()]);
    args.extend(["--listen".into(), spec.listen.clone()]);
    args.extend(["--peers".into(), peers]);
    args.extend(["--data-dir".into(), spec.data_dir.display().to_string()]);
    (name, args)
}

/// The value in KiB of the `/proc/PID/status` line starting with `field`.
fn status_kib(status: &str, field: &str) -> f64 {
    (status.lines())
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0)
}

/// The bytes of every file under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The status fields parse as `/proc` writes them; a missing one reads 0.
    #[test]
    fn status_fields_parse() {
        let status = "Name:\tshardkv\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n";
        assert_eq!(status_kib(status, "VmHWM:"), 204_800.0);
        assert_eq!(status_kib(status, "VmRSS:"), 102_400.0);
        assert_eq!(status_kib(status, "VmSwap:"), 0.0);
    }
}
