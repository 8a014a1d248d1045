//! Part `raft-agreement` (6.824 2B), first half: commands commit on every peer, the log
//! carries each command's bytes about once per follower, and a minority of failed followers
//! or a failed leader does not stop agreement, while a lost majority does.
//!
//! Adaptation: 6.824 expects the first command at index 1. A raft-rs leader first commits
//! an empty entry of its own (not applied as a command), so these scenarios check indices
//! relative to the first command's instead of absolute ones.

use super::checks::ELECTION_TIMEOUT;
use super::cluster::{command, Cluster, ClusterOptions};
use super::lab::RaftLab;
use crate::scenario::Outcome;

/// Slack of the RPC bytes bound, as 6.824 `TestRPCBytes2B`: heartbeats, votes, framing.
pub const RPC_BYTES_SLACK: u64 = 50_000;

/// Nothing commits before it is started; each command then commits on all three peers at
/// the next index (6.824 `TestBasicAgree2B`).
pub fn basic_agree<L: RaftLab>(seed: u64) -> Outcome {
    let servers = 3;
    let c = Cluster::<L>::new(seed, servers, ClusterOptions::default());
    c.run(async {
        let mut previous = None;
        for i in 1..=3u64 {
            let next = previous.map_or(1, |p| p + 1);
            let (count, _) = c.n_committed(next)?;
            if count > 0 {
                return Err(format!("some have committed index {next} before Start()"));
            }
            let index = c.one(command(i * 100), servers, false).await?;
            if let Some(p) = previous {
                if index != p + 1 {
                    return Err(format!("got index {index} but expected {}", p + 1));
                }
            }
            previous = Some(index);
        }
        Ok(())
    })
}

/// Ten 5000-byte commands cost each follower about their size, not more: total bytes sent
/// stay within `servers * sent + 50000` (6.824 `TestRPCBytes2B`).
pub fn rpc_bytes<L: RaftLab>(seed: u64) -> Outcome {
    let servers = 3;
    let c = Cluster::<L>::new(seed, servers, ClusterOptions::default());
    c.run(async {
        let first = c.one(command(99), servers, false).await?;
        let bytes0 = c.bytes_total();
        let mut sent = 0u64;
        for i in 1..=10u64 {
            let cmd: Vec<u8> = (0..5000).map(|_| b'a' + c.random(26) as u8).collect();
            sent += cmd.len() as u64;
            let index = c.one(cmd, servers, false).await?;
            if index != first + i {
                return Err(format!("got index {index} but expected {}", first + i));
            }
        }
        let got = c.bytes_total() - bytes0;
        let expected = servers as u64 * sent;
        if got > expected + RPC_BYTES_SLACK {
            return Err(format!(
                "too many RPC bytes; got {got}, expected {expected}"
            ));
        }
        Ok(())
    })
}

/// One follower, then both, disconnect: agreement continues with one, and a command
/// started with none left does not commit (6.824 `TestFollowerFailure2B`).
pub fn follower_failure<L: RaftLab>(seed: u64) -> Outcome {
    let servers = 3;
    let c = Cluster::<L>::new(seed, servers, ClusterOptions::default());
    c.run(async {
        c.one(command(101), servers, false).await?;
        // Disconnect one follower from the network.
        let leader1 = c.check_one_leader().await?;
        c.disconnect((leader1 + 1) % servers);
        // The leader and remaining follower should be able to agree despite it.
        c.one(command(102), servers - 1, false).await?;
        c.sleep(ELECTION_TIMEOUT).await;
        let index103 = c.one(command(103), servers - 1, false).await?;
        // Disconnect the remaining follower.
        let leader2 = c.check_one_leader().await?;
        c.disconnect((leader2 + 1) % servers);
        c.disconnect((leader2 + 2) % servers);
        // Submit a command.
        let Some((index, _)) = c.start(leader2, command(104)) else {
            return Err("leader rejected Start()".to_string());
        };
        if index <= index103 {
            return Err(format!("expected an index after {index103}, got {index}"));
        }
        c.sleep(2 * ELECTION_TIMEOUT).await;
        // Check that command 104 did not commit.
        let (count, _) = c.n_committed(index)?;
        if count > 0 {
            return Err(format!("{count} committed but no majority"));
        }
        Ok(())
    })
}

/// The leader, then the new leader, disconnect: the first time the rest agree, the second
/// time a command started everywhere does not commit (6.824 `TestLeaderFailure2B`).
pub fn leader_failure<L: RaftLab>(seed: u64) -> Outcome {
    let servers = 3;
    let c = Cluster::<L>::new(seed, servers, ClusterOptions::default());
    c.run(async {
        c.one(command(101), servers, false).await?;
        // Disconnect the first leader.
        let leader1 = c.check_one_leader().await?;
        c.disconnect(leader1);
        // The remaining followers should elect a new leader.
        c.one(command(102), servers - 1, false).await?;
        c.sleep(ELECTION_TIMEOUT).await;
        c.one(command(103), servers - 1, false).await?;
        // Disconnect the new leader.
        let leader2 = c.check_one_leader().await?;
        c.disconnect(leader2);
        // Submit a command to each server.
        for peer in 0..servers {
            c.start(peer, command(104));
        }
        c.sleep(2 * ELECTION_TIMEOUT).await;
        // Check that command 104 did not commit, at any index.
        c.check_apply_error()?;
        let indices = c.checker().indices_of(&command(104));
        if !indices.is_empty() {
            return Err(format!(
                "command 104 committed at {indices:?} but no majority"
            ));
        }
        Ok(())
    })
}

/// A disconnected follower catches up when it rejoins (6.824 `TestFailAgree2B`).
pub fn fail_agree<L: RaftLab>(seed: u64) -> Outcome {
    let servers = 3;
    let c = Cluster::<L>::new(seed, servers, ClusterOptions::default());
    c.run(async {
        c.one(command(101), servers, false).await?;
        // Disconnect one follower from the network.
        let leader = c.check_one_leader().await?;
        c.disconnect((leader + 1) % servers);
        // The leader and remaining follower should be able to agree despite it.
        c.one(command(102), servers - 1, false).await?;
        c.one(command(103), servers - 1, false).await?;
        c.sleep(ELECTION_TIMEOUT).await;
        c.one(command(104), servers - 1, false).await?;
        c.one(command(105), servers - 1, false).await?;
        // Re-connect; the full set of servers should preserve previous agreements and be
        // able to agree on new commands.
        c.connect((leader + 1) % servers);
        c.one(command(106), servers, true).await?;
        c.sleep(ELECTION_TIMEOUT).await;
        c.one(command(107), servers, true).await?;
        Ok(())
    })
}

/// With three of five followers cut off nothing commits; once they are back, a leader
/// continues right after the last agreed index (6.824 `TestFailNoAgree2B`; the new index
/// may also be one or two later, for a new leader's empty entry).
pub fn fail_no_agree<L: RaftLab>(seed: u64) -> Outcome {
    let servers = 5;
    let c = Cluster::<L>::new(seed, servers, ClusterOptions::default());
    c.run(async {
        let index10 = c.one(command(10), servers, false).await?;
        // Three of five followers disconnect.
        let leader = c.check_one_leader().await?;
        for k in 1..=3 {
            c.disconnect((leader + k) % servers);
        }
        let Some((index, _)) = c.start(leader, command(20)) else {
            return Err("leader rejected Start()".to_string());
        };
        if index != index10 + 1 {
            return Err(format!("expected index {}, got {index}", index10 + 1));
        }
        c.sleep(2 * ELECTION_TIMEOUT).await;
        let (count, _) = c.n_committed(index)?;
        if count > 0 {
            return Err(format!("{count} committed but no majority"));
        }
        // Repair.
        for k in 1..=3 {
            c.connect((leader + k) % servers);
        }
        // The disconnected majority may have chosen a leader from among their own ranks,
        // forgetting index `index`.
        let leader2 = c.check_one_leader().await?;
        let Some((index2, _)) = c.start(leader2, command(30)) else {
            return Err("leader2 rejected Start()".to_string());
        };
        if index2 < index10 + 1 || index2 > index10 + 3 {
            return Err(format!("unexpected index {index2} (last agreed {index10})"));
        }
        c.one(command(1000), servers, true).await?;
        Ok(())
    })
}
