//! `shardkv bench --timeline`: where one client's operations spend their time, stage
//! by stage, from the steps the local cluster's replicas recorded
//! ([`crate::runtime::timeline`]).
//!
//! ```text
//!  client ──► leader's listener ──► leader's driver ──► peer task ──► follower's driver
//!                                     (propose,                         │ write: append, ask
//!                                      append, send)                    │ the sync thread,
//!                                                                       │ flush, hear of it
//!  client ◄── leader's listener ◄── leader's driver ◄── peer task ◄─────┘ (read: heartbeat)
//!                                    (commit/read, apply, answer)
//! ```
//!
//! Each operation's path is cut at those steps; the follower is the one whose answer
//! completed a majority with the leader (in a group of 3 the first to answer, of 5 the
//! second): the one the commit or the read waited for. Operations that went to more
//! than one node (a retry) are left out. The leader's own flush runs while its
//! followers work and is reported on its own line.

use std::collections::BTreeSet;

use crate::runtime::timeline::{Mark, Waypoint};

/// One stage over every operation: median and mean, in microseconds.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Stage {
    /// What happens in it.
    pub stage: &'static str,
    /// Median over the operations.
    pub p50_us: f64,
    /// Mean over the operations.
    pub mean_us: f64,
}

/// The stages of a run's operations.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Breakdown {
    /// Operations whose whole path was found.
    pub operations: usize,
    /// Their median latency, microseconds.
    pub latency_p50_us: f64,
    /// Their mean latency, microseconds: the sum of the stages' means.
    pub latency_mean_us: f64,
    /// Consecutive stages, client to client.
    pub stages: Vec<Stage>,
    /// Writes: the leader's own flush (which runs meanwhile), median, microseconds.
    pub leader_flush_p50_us: Option<f64>,
}

/// Stage names of a write's path, in order.
const WRITE_STAGES: [&str; 12] = [
    "client to leader (tarpc over loopback)",
    "leader's listener to its driver",
    "leader: propose, append, send",
    "leader to follower (raft stream)",
    "follower: append, ask for a sync",
    "follower: sync thread wakes",
    "follower: flush (write + fdatasync)",
    "follower: driver hears of the flush",
    "follower: ack to its peer task",
    "follower to leader (raft stream)",
    "leader: commit, apply, answer",
    "leader to client (tarpc over loopback)",
];

/// Stage names of a linearizable read's path (ReadIndex: one heartbeat round).
const READ_STAGES: [&str; 8] = [
    "client to leader (tarpc over loopback)",
    "leader's listener to its driver",
    "leader: read index, heartbeat",
    "leader to follower (raft stream)",
    "follower: heartbeat answered",
    "follower to leader (raft stream)",
    "leader: read confirmed, answer",
    "leader to client (tarpc over loopback)",
];

impl Breakdown {
    /// The breakdown of `marks`: one client's operations, all writes or all reads, on
    /// a cluster whose groups' replicas record under these labels. Only the leader's
    /// group's replicas count as its followers (another group's heartbeats are not).
    pub fn of(mut marks: Vec<Mark>, write: bool, groups: &[BTreeSet<u16>]) -> Self {
        // Sorted in place: a long run records millions of marks.
        marks.sort_by_key(|mark| mark.at_ns);
        let names: &[&'static str] = if write { &WRITE_STAGES } else { &READ_STAGES };
        let mut stages: Vec<Vec<u64>> = vec![Vec::new(); names.len()];
        let mut latencies = Vec::new();
        let mut leader_flushes = Vec::new();
        for window in operations(&marks) {
            let Some(points) = path(window, write, groups) else {
                continue;
            };
            for (stage, pair) in stages.iter_mut().zip(points.windows(2)) {
                stage.push(pair[1] - pair[0]);
            }
            latencies.push(points[points.len() - 1] - points[0]);
            if write {
                leader_flushes.extend(leader_flush(window));
            }
        }
        Breakdown {
            operations: latencies.len(),
            latency_mean_us: mean_us(&latencies),
            latency_p50_us: median_us(&mut latencies),
            stages: names
                .iter()
                .zip(stages.iter_mut())
                .map(|(&stage, values)| Stage {
                    stage,
                    p50_us: median_us(values),
                    mean_us: mean_us(values),
                })
                .collect(),
            leader_flush_p50_us: write.then(|| median_us(&mut leader_flushes)),
        }
    }

    /// Prints the table.
    pub fn print(&self) {
        let title = format!("timeline of {} operations, us", self.operations);
        println!("  {title:<42} {:>8} {:>8}", "median", "mean");
        for stage in &self.stages {
            println!(
                "    {:<40} {:>8.1} {:>8.1}",
                stage.stage, stage.p50_us, stage.mean_us
            );
        }
        let sum: f64 = self.stages.iter().map(|stage| stage.p50_us).sum();
        println!("    {:<40} {sum:>8.1}", "sum of the medians");
        println!(
            "    {:<40} {:>8.1} {:>8.1}",
            "latency", self.latency_p50_us, self.latency_mean_us
        );
        if let Some(flush) = self.leader_flush_p50_us {
            println!("    {:<40} {:>8.1}", "leader's own flush, meanwhile", flush);
        }
    }
}

/// Each operation's marks: from a client's send to its answer, both included.
fn operations(marks: &[Mark]) -> Vec<&[Mark]> {
    let mut windows = Vec::new();
    let mut start = None;
    for (i, mark) in marks.iter().enumerate() {
        match (mark.step, start) {
            (Waypoint::ClientSend, _) => start = Some(i),
            (Waypoint::ClientDone, Some(first)) => {
                windows.push(&marks[first..=i]);
                start = None;
            }
            _ => {}
        }
    }
    windows
}

/// The times of an operation's path through the stages (one more than the stages), or
/// `None` if it was retried, its node is in none of `groups`, or a step is missing.
fn path(window: &[Mark], write: bool, groups: &[BTreeSet<u16>]) -> Option<Vec<u64>> {
    let mut calls = window
        .iter()
        .filter(|mark| mark.step == Waypoint::CallReceived);
    let (Some(call), None) = (calls.next(), calls.next()) else {
        return None;
    };
    let leader = call.node;
    let group = groups.iter().find(|group| group.contains(&leader))?;
    let driver = find(window, Waypoint::DriverCall, leader, call.at_ns)?;
    let sent = find(window, Waypoint::PeerSend, leader, driver)?;
    let mut answers: Vec<Vec<u64>> = group
        .iter()
        .filter(|&&node| node != leader)
        .filter_map(|&node| follower_path(window, node, sent, write))
        .collect();
    answers.sort_by_key(|points| points.last().copied());
    // With the leader, the first `group.len() / 2` answers make a majority.
    let follower = answers.into_iter().nth((group.len() / 2).max(1) - 1)?;
    let answer_sent = *follower.last()?;
    let heard = find(window, Waypoint::DriverPeer, leader, answer_sent)?;
    let answered = find(window, Waypoint::CallAnswered, leader, heard)?;
    let mut points = vec![window.first()?.at_ns, call.at_ns, driver, sent];
    points.extend(follower);
    points.extend([heard, answered, window.last()?.at_ns]);
    Some(points)
}

/// A follower's steps after the leader's send at `after`: its driver takes the message,
/// (a write: asks for a sync, the flush starts and ends, the driver hears of it), its
/// peer task sends the answer.
fn follower_path(window: &[Mark], node: u16, after: u64, write: bool) -> Option<Vec<u64>> {
    let mut points = vec![find(window, Waypoint::DriverPeer, node, after)?];
    if write {
        for step in [
            Waypoint::SyncAsked,
            Waypoint::FlushStart,
            Waypoint::FlushEnd,
            Waypoint::DriverSynced,
        ] {
            points.push(find(window, step, node, *points.last()?)?);
        }
    }
    points.push(find(window, Waypoint::PeerSend, node, *points.last()?)?);
    Some(points)
}

/// How long the leader's own flush for this write took.
fn leader_flush(window: &[Mark]) -> Option<u64> {
    let call = window
        .iter()
        .find(|mark| mark.step == Waypoint::CallReceived)?;
    let start = find(window, Waypoint::FlushStart, call.node, call.at_ns)?;
    Some(find(window, Waypoint::FlushEnd, call.node, start)? - start)
}

/// The first `step` at `node` at or after `after`.
fn find(window: &[Mark], step: Waypoint, node: u16, after: u64) -> Option<u64> {
    window
        .iter()
        .find(|mark| mark.step == step && mark.node == node && mark.at_ns >= after)
        .map(|mark| mark.at_ns)
}

/// The (upper) median of `values`, nanoseconds, in microseconds; 0 when there are none.
fn median_us(values: &mut [u64]) -> f64 {
    match values.len() {
        0 => 0.0,
        n => *values.select_nth_unstable(n / 2).1 as f64 / 1000.0,
    }
}

fn mean_us(values: &[u64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.iter().sum::<u64>() as f64 / values.len() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(labels: &[u16]) -> BTreeSet<u16> {
        labels.iter().copied().collect()
    }

    fn at(us: u64, step: Waypoint, node: u16) -> Mark {
        Mark {
            at_ns: us * 1000,
            step,
            node,
        }
    }

    /// A read's marks, from the client's send at `start`, each network hop taking
    /// `network`, through leader 7001 and follower 7002.
    fn read(start: u64, network: u64) -> Vec<Mark> {
        use Waypoint::*;
        let (leader, follower) = (7001, 7002);
        vec![
            at(start, ClientSend, 0),
            at(start + network, CallReceived, leader),
            at(start + network + 1, DriverCall, leader),
            at(start + network + 5, PeerSend, leader),
            at(start + 2 * network + 5, DriverPeer, follower),
            at(start + 2 * network + 8, PeerSend, follower),
            at(start + 3 * network + 8, DriverPeer, leader),
            at(start + 3 * network + 10, CallAnswered, leader),
            at(start + 4 * network + 10, ClientDone, 0),
        ]
    }

    /// A write's path is cut at its steps, through the follower that answered first;
    /// a retried operation and unrelated marks are left out.
    #[test]
    fn a_write_is_cut_at_its_steps() {
        use Waypoint::*;
        let (leader, slow, fast) = (7001, 7002, 7003);
        let mut marks = vec![
            at(0, ClientSend, 0),
            at(30, CallReceived, leader),
            at(31, DriverCall, leader),
            at(50, PeerSend, leader),
            at(52, SyncAsked, leader),
            at(60, FlushStart, leader),
            at(70, PeerSend, leader),
            at(80, DriverPeer, slow),
            at(90, SyncAsked, slow),
            at(95, DriverPeer, fast),
            at(100, FlushStart, slow),
            at(105, SyncAsked, fast),
            at(115, FlushStart, fast),
            at(200, FlushEnd, leader),
            at(250, FlushEnd, fast),
            at(260, DriverSynced, fast),
            at(262, PeerSend, fast),
            at(280, FlushEnd, slow),
            at(290, DriverSynced, slow),
            at(292, PeerSend, slow),
            at(300, DriverPeer, leader),
            at(320, CallAnswered, leader),
            at(330, DriverPeer, leader),
            at(350, ClientDone, 0),
            // Retried: asked a second node, left out.
            at(400, ClientSend, 0),
            at(410, CallReceived, slow),
            at(420, CallReceived, leader),
            at(900, ClientDone, 0),
        ];
        marks.reverse(); // sorted by time, whatever order they were recorded in
        let breakdown = Breakdown::of(marks.clone(), true, &[group(&[leader, slow, fast])]);
        assert_eq!(breakdown.operations, 1);
        assert_eq!(breakdown.latency_p50_us, 350.0);
        let took: Vec<f64> = breakdown.stages.iter().map(|s| s.p50_us).collect();
        assert_eq!(
            took,
            [30.0, 1.0, 19.0, 45.0, 10.0, 10.0, 135.0, 10.0, 2.0, 38.0, 20.0, 30.0]
        );
        assert_eq!(took.iter().sum::<f64>(), 350.0);
        assert_eq!(
            breakdown.stages[6].stage,
            "follower: flush (write + fdatasync)"
        );
        assert_eq!(breakdown.leader_flush_p50_us, Some(140.0));
        // In a group of 5 the commit waits for a second answer: here the slow one's.
        let of_five = Breakdown::of(marks, true, &[group(&[leader, slow, fast, 7004, 7005])]);
        assert_eq!(of_five.stages[6].p50_us, 180.0);
        assert_eq!(of_five.stages[9].p50_us, 8.0);
    }

    /// A read has no sync: the follower answers the heartbeat straight away; medians
    /// and means are over every operation found.
    #[test]
    fn reads_skip_the_sync() {
        let marks: Vec<Mark> = [read(0, 10), read(100, 20), read(200, 60)].concat();
        let breakdown = Breakdown::of(marks, false, &[group(&[7001, 7002, 7003])]);
        assert_eq!(breakdown.operations, 3);
        assert_eq!(breakdown.stages.len(), READ_STAGES.len());
        let network = &breakdown.stages[3];
        assert_eq!(network.stage, "leader to follower (raft stream)");
        assert_eq!((network.p50_us, network.mean_us), (20.0, 30.0));
        assert_eq!(breakdown.stages[4].p50_us, 3.0);
        assert_eq!(breakdown.latency_p50_us, 90.0);
        assert_eq!(breakdown.latency_mean_us, 130.0);
        assert_eq!(breakdown.leader_flush_p50_us, None);
    }

    /// With several groups, another group's replicas exchanging heartbeats meanwhile
    /// are not taken for the leader's followers, even when they answer first.
    #[test]
    fn only_the_leaders_group_counts() {
        use Waypoint::*;
        let (leader, follower, other, other_leader) = (7001, 7002, 7011, 7010);
        let mut marks = read(0, 10);
        marks.extend([
            at(16, DriverPeer, other),
            at(17, PeerSend, other),
            at(18, DriverPeer, other_leader),
        ]);
        let groups = [
            group(&[leader, follower, 7003]),
            group(&[other_leader, other, 7012]),
        ];
        let breakdown = Breakdown::of(marks.clone(), false, &groups);
        assert_eq!(breakdown.operations, 1);
        let took: Vec<f64> = breakdown.stages.iter().map(|s| s.p50_us).collect();
        assert_eq!(took, [10.0, 1.0, 4.0, 10.0, 3.0, 10.0, 2.0, 10.0]);
        // A node in no group (not a replica-group node of the local cluster) is not
        // followed at all.
        assert_eq!(Breakdown::of(marks, false, &groups[1..]).operations, 0);
    }
}
