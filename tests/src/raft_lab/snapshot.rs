//! Part `raft-snapshot` (6.824 2D): the harness snapshots the test state machine every
//! [`SNAPSHOT_INTERVAL`] applied indices; peers must compact their logs, bring lagging or
//! restarted peers up to date with snapshots, and restart from snapshot plus log.
//!
//! Log size bound: as 6.824 (`MAXLOGSIZE`), a run fails when any persister's raft state
//! (log entries, hard state and conf state; snapshots excluded) reaches 2000 bytes. Our
//! entries cost ~35 bytes (a ~19-byte decimal command plus protobuf and key framing), so the
//! bound allows ~50 uncompacted entries; the reference peers stay at or below 346 bytes
//! over 50 seeds of every snapshot scenario (a snapshot every 10 indices leaves ≤ 10
//! entries), and a log that is never compacted passes the bound within the first few rounds.

use super::cluster::{Cluster, ClusterOptions};
use super::host::SNAPSHOT_INTERVAL;
use super::lab::RaftLab;
use crate::scenario::Outcome;

/// Largest persisted raft state allowed after compaction (see the module docs).
pub const LOG_BYTES_MAX: usize = 2000;

/// Rounds of the snapshot-install scenarios (6.824: 30).
pub const SNAPSHOT_ROUNDS: usize = 30;

/// Snapshots without failures (6.824 `TestSnapshotBasic2D`).
pub fn snapshot_basic<L: RaftLab>(seed: u64) -> Outcome {
    snap_common::<L>(seed, false, true, false)
}

/// A reconnected follower catches up by snapshot (6.824 `TestSnapshotInstall2D`).
pub fn snapshot_install<L: RaftLab>(seed: u64) -> Outcome {
    snap_common::<L>(seed, true, true, false)
}

/// Snapshot install on a lossy network (6.824 `TestSnapshotInstallUnreliable2D`).
pub fn snapshot_install_unreliable<L: RaftLab>(seed: u64) -> Outcome {
    snap_common::<L>(seed, true, false, false)
}

/// A restarted follower catches up by snapshot (6.824 `TestSnapshotInstallCrash2D`).
pub fn snapshot_install_crash<L: RaftLab>(seed: u64) -> Outcome {
    snap_common::<L>(seed, false, true, true)
}

/// Restart and snapshot install on a lossy network (6.824
/// `TestSnapshotInstallUnCrash2D`).
pub fn snapshot_install_unreliable_crash<L: RaftLab>(seed: u64) -> Outcome {
    snap_common::<L>(seed, false, false, true)
}

fn log_size_ok<L: RaftLab>(c: &Cluster<L>) -> Result<(), String> {
    let size = c.log_size();
    if size >= LOG_BYTES_MAX {
        return Err(format!(
            "log size too large: {size} bytes >= {LOG_BYTES_MAX}"
        ));
    }
    Ok(())
}

/// 6.824 `snapcommon`: rounds of commands started at the leader (or, one round in three, at
/// a follower, which refuses them), with a victim disconnected or crashed meanwhile.
fn snap_common<L: RaftLab>(seed: u64, disconnect: bool, reliable: bool, crash: bool) -> Outcome {
    let servers = 3;
    let options = ClusterOptions {
        unreliable: !reliable,
        snapshots: true,
    };
    let c = Cluster::<L>::new(seed, servers, options);
    c.run(async {
        c.one(c.random_command(), servers, true).await?;
        let mut leader1 = c.check_one_leader().await?;
        for round in 0..SNAPSHOT_ROUNDS {
            let (sender, victim) = if round % 3 == 1 {
                ((leader1 + 1) % servers, leader1)
            } else {
                (leader1, (leader1 + 1) % servers)
            };
            if disconnect {
                c.disconnect(victim);
                c.one(c.random_command(), servers - 1, true).await?;
            }
            if crash {
                c.crash1(victim);
                c.one(c.random_command(), servers - 1, true).await?;
            }
            // Perhaps send enough to get a snapshot.
            let nn = SNAPSHOT_INTERVAL / 2 + c.random(SNAPSHOT_INTERVAL);
            for _ in 0..nn {
                c.start(sender, c.random_command());
            }
            // Let applier threads catch up with the starts.
            if !disconnect && !crash {
                // Make sure all followers have caught up, so that an InstallSnapshot RPC
                // isn't required for snapshot_basic.
                c.one(c.random_command(), servers, true).await?;
            } else {
                c.one(c.random_command(), servers - 1, true).await?;
            }
            log_size_ok(&c)?;
            if disconnect {
                // Reconnect a follower, who may be behind and need a snapshot to catch up.
                c.connect(victim);
                c.one(c.random_command(), servers, true).await?;
                leader1 = c.check_one_leader().await?;
            }
            if crash {
                c.start1(victim);
                c.connect(victim);
                c.one(c.random_command(), servers, true).await?;
                leader1 = c.check_one_leader().await?;
            }
        }
        Ok(())
    })
}

/// Crash and restart all peers after each burst of commands: they come back from snapshot
/// plus log and indices keep growing (6.824 `TestSnapshotAllCrash2D`).
pub fn snapshot_all_crash<L: RaftLab>(seed: u64) -> Outcome {
    let servers = 3;
    let options = ClusterOptions {
        snapshots: true,
        ..ClusterOptions::default()
    };
    let c = Cluster::<L>::new(seed, servers, options);
    c.run(async {
        c.one(c.random_command(), servers, true).await?;
        for _ in 0..5 {
            // Perhaps enough to get a snapshot.
            let nn = SNAPSHOT_INTERVAL / 2 + c.random(SNAPSHOT_INTERVAL);
            for _ in 0..nn {
                c.one(c.random_command(), servers, true).await?;
            }
            let index1 = c.one(c.random_command(), servers, true).await?;
            restart_all(&c);
            let index2 = c.one(c.random_command(), servers, true).await?;
            if index2 < index1 + 1 {
                return Err(format!("index decreased from {index1} to {index2}"));
            }
            log_size_ok(&c)?;
        }
        Ok(())
    })
}

/// A snapshot, a restart of all, one more command, another restart: the restarted peers
/// must start from the snapshot correctly (6.824 `TestSnapshotInit2D`).
pub fn snapshot_init<L: RaftLab>(seed: u64) -> Outcome {
    let servers = 3;
    let options = ClusterOptions {
        snapshots: true,
        ..ClusterOptions::default()
    };
    let c = Cluster::<L>::new(seed, servers, options);
    c.run(async {
        c.one(c.random_command(), servers, true).await?;
        // Enough ops to make a snapshot.
        for _ in 0..=SNAPSHOT_INTERVAL {
            c.one(c.random_command(), servers, true).await?;
        }
        restart_all(&c);
        // A single op, to get something to be written back to persistent storage.
        c.one(c.random_command(), servers, true).await?;
        restart_all(&c);
        // Do another op to trigger a potential bug.
        c.one(c.random_command(), servers, true).await?;
        log_size_ok(&c)?;
        Ok(())
    })
}

fn restart_all<L: RaftLab>(c: &Cluster<L>) {
    for peer in 0..c.n() {
        c.crash1(peer);
    }
    for peer in 0..c.n() {
        c.start1(peer);
        c.connect(peer);
    }
}
