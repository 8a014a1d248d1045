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
    /// Its group (`None`: a master).
    gid: Option<u64>,
    child: Child,
    /// Killed on purpose and not started again: `stop` leaves it be.
    killed: bool,
    /// How it was started, to start it again.
    args: Vec<String>,
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
    /// Bytes of the files in its data directory (its log file left out), MiB.
    pub(super) disk_mib: f64,
}

impl Processes {
    /// Starts one `shardkv serve` per spec, each with a page cache of `cache_mb`.
    pub(super) fn start(specs: &[NodeSpec], cache_mb: u64) -> Result<Self, String> {
        let mut processes = Processes {
            replicas: Vec::new(),
        };
        for spec in specs {
            let (name, mut args) = serve_args(spec);
            args.extend(["--cache-mb".to_string(), cache_mb.to_string()]);
            let child = spawn(&name, &args, &spec.data_dir, &[])?;
            processes.replicas.push(Replica {
                name,
                gid: match &spec.role {
                    crate::runtime::Role::Group { gid, .. } => Some(*gid),
                    crate::runtime::Role::Master => None,
                },
                child,
                killed: false,
                args,
                data_dir: spec.data_dir.clone(),
            });
        }
        Ok(processes)
    }

    /// The first group's id and its replicas' names.
    pub(super) fn first_group(&self) -> Option<(u64, Vec<String>)> {
        let gid = self.replicas.iter().find_map(|replica| replica.gid)?;
        let names = (self.replicas.iter())
            .filter(|replica| replica.gid == Some(gid))
            .map(|replica| replica.name.clone())
            .collect();
        Some((gid, names))
    }

    fn replica(&mut self, name: &str) -> Result<&mut Replica, String> {
        (self.replicas.iter_mut())
            .find(|replica| replica.name == name)
            .ok_or_else(|| format!("no replica {name}"))
    }

    /// Kills replica `name` with SIGKILL (a crash: nothing flushed, nothing synced) and
    /// waits for it to be gone.
    pub(super) fn kill(&mut self, name: &str) -> Result<(), String> {
        let replica = self.replica(name)?;
        replica.killed = true;
        let _ = replica.child.kill();
        (replica.child.wait())
            .map(drop)
            .map_err(|error| format!("cannot wait for {name}: {error}"))
    }

    /// Starts the stopped replica `name` again as it was started, with `env` added; its
    /// log starts anew.
    pub(super) fn respawn(&mut self, name: &str, env: &[(&str, &str)]) -> Result<(), String> {
        let replica = self.replica(name)?;
        if !replica.killed {
            return Err(format!(
                "{name} is running: kill it before starting it again"
            ));
        }
        replica.child = spawn(name, &replica.args, &replica.data_dir, env)?;
        replica.killed = false;
        Ok(())
    }

    /// Removes everything in the stopped replica `name`'s data directory.
    pub(super) fn empty_data_dir(&mut self, name: &str) -> Result<(), String> {
        let dir = self.replica(name)?.data_dir.clone();
        std::fs::remove_dir_all(&dir)
            .and_then(|()| std::fs::create_dir_all(&dir))
            .map_err(|error| format!("cannot empty {}: {error}", dir.display()))
    }

    /// Where replica `name` logs.
    pub(super) fn log_path(&mut self, name: &str) -> Result<PathBuf, String> {
        Ok(self.replica(name)?.data_dir.join(LOG_FILE))
    }

    /// Replica `name`'s memory and disk now.
    pub(super) fn usage_of(&self, name: &str) -> Result<Usage, String> {
        (self.replicas.iter())
            .find(|replica| replica.name == name)
            .map(usage)
            .ok_or_else(|| format!("no replica {name}"))
    }

    /// Each replica's memory and disk now.
    pub(super) fn usage(&self) -> Vec<Usage> {
        self.replicas.iter().map(usage).collect()
    }

    /// Stops every replica with SIGTERM and waits; an error names those that exited with
    /// a failure or had to be killed. Replicas killed on purpose are left as they are.
    pub(super) fn stop(mut self) -> Result<(), String> {
        self.replicas.retain(|replica| !replica.killed);
        for replica in &self.replicas {
            // SIGTERM through kill(1): no unsafe code, no dependency for one signal.
            let _ = Command::new("kill")
                .args(["-TERM", &replica.child.id().to_string()])
                .stderr(Stdio::null())
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

/// Each replica's log (its stderr), in its data directory.
const LOG_FILE: &str = "serve.log";

/// Starts `shardkv serve` (this program) with `args` and `env`, logging into `data_dir`.
fn spawn(
    name: &str,
    args: &[String],
    data_dir: &Path,
    env: &[(&str, &str)],
) -> Result<Child, String> {
    let exe = std::env::current_exe()
        .map_err(|error| format!("cannot find this program to run replicas: {error}"))?;
    std::fs::create_dir_all(data_dir)
        .map_err(|error| format!("cannot create {}: {error}", data_dir.display()))?;
    let log = std::fs::File::create(data_dir.join(LOG_FILE))
        .map_err(|error| format!("cannot create {name}'s log: {error}"))?;
    Command::new(exe)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|error| format!("cannot start {name}: {error}"))
}

/// A replica's memory and disk now.
fn usage(replica: &Replica) -> Usage {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", replica.child.id())).unwrap_or_default();
    Usage {
        name: replica.name.clone(),
        peak_rss_mib: status_kib(&status, "VmHWM:") / 1024.0,
        rss_mib: status_kib(&status, "VmRSS:") / 1024.0,
        disk_mib: dir_bytes(&replica.data_dir)
            .saturating_sub(file_bytes(&replica.data_dir.join(LOG_FILE))) as f64
            / (1 << 20) as f64,
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
    // The benchmark's own cluster on loopback, compared with plaintext etcd (`--tls`
    // measures TLS in one process).
    args.push("--insecure".into());
    (name, args)
}

/// The value in KiB of the `/proc/PID/status` line starting with `field`.
fn status_kib(status: &str, field: &str) -> f64 {
    (status.lines())
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0)
}

/// The bytes of the file at `path` (0 if there is none).
fn file_bytes(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |meta| meta.len())
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
