//! The apply checker: what every peer applied, checked as it happens (6.824's `checkLogs`,
//! `ingestSnap` and `nCommitted`).
//!
//! Invariants checked on every apply:
//! - **one value per index**: no two peers ever apply different commands at one index;
//! - **in order**: a peer applies strictly increasing indices (a snapshot never goes back);
//! - **no gaps**: a peer never skips an index at which some peer applied a command, in
//!   either order (it applies past an index another peer later fills, or vice versa), and
//!   a snapshot holds every command committed at or below its index.
//!
//! The first violation is kept in `error`; harness helpers report it at their next check.
//! Per-peer logs survive crashes (as in 6.824): a restarted peer re-applies from its
//! snapshot and must re-apply the same values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::lab::{Index, Peer};

/// The test state machine's snapshot: the commands applied through `index`.
#[derive(Serialize, Deserialize, Debug, Default)]
pub struct SnapshotImage {
    /// Last index the snapshot covers.
    pub index: Index,
    /// Every command applied at or below `index`, by index.
    pub log: Vec<(Index, Vec<u8>)>,
}

/// Shows a command readably in failure messages.
pub fn show(command: &[u8]) -> String {
    let text = String::from_utf8_lossy(command);
    if command.len() > 24 {
        let head: String = text.chars().take(24).collect();
        format!("{head}..({} bytes)", command.len())
    } else {
        text.into_owned()
    }
}

/// Applied commands of every peer, checked as they arrive.
#[derive(Debug)]
pub struct Checker {
    logs: Vec<BTreeMap<Index, Vec<u8>>>,
    last_applied: Vec<Index>,
    /// First command applied at each index by any peer.
    committed: BTreeMap<Index, Vec<u8>>,
    /// The first invariant violation seen.
    pub error: Option<String>,
}

impl Checker {
    /// A checker for `n` peers that have applied nothing.
    pub fn new(n: usize) -> Self {
        Checker {
            logs: vec![BTreeMap::new(); n],
            last_applied: vec![0; n],
            committed: BTreeMap::new(),
            error: None,
        }
    }

    fn fail(&mut self, message: String) {
        if self.error.is_none() {
            self.error = Some(message);
        }
    }

    /// Peer `me` applied `command` at `index`.
    pub fn apply_command(&mut self, me: Peer, index: Index, command: &[u8]) {
        if let Err(message) = self.check_command(me, index, command) {
            self.fail(format!("apply error: {message}"));
        }
        self.logs[me].insert(index, command.to_vec());
        self.committed
            .entry(index)
            .or_insert_with(|| command.to_vec());
        self.last_applied[me] = self.last_applied[me].max(index);
    }

    fn check_command(&self, me: Peer, index: Index, command: &[u8]) -> Result<(), String> {
        if let Some(old) = self.committed.get(&index) {
            if old != command {
                return Err(format!(
                    "commit index={index} server={me} {} != {} applied by another server",
                    show(command),
                    show(old)
                ));
            }
        }
        let last = self.last_applied[me];
        if index <= last {
            return Err(format!("server {me} applied index {index} after {last}"));
        }
        if let Some((&skipped, _)) = self.committed.range(last + 1..index).next() {
            return Err(format!(
                "server {me} skipped index {skipped}: applied {index} after {last}"
            ));
        }
        for (other, log) in self.logs.iter().enumerate() {
            if other != me && self.last_applied[other] > index && !log.contains_key(&index) {
                return Err(format!(
                    "server {other} applied past index {index} (to {}) without its command",
                    self.last_applied[other]
                ));
            }
        }
        Ok(())
    }

    /// Peer `me` replaced its state with `data`, taken at `index` (6.824 `ingestSnap`).
    pub fn apply_snapshot(&mut self, me: Peer, index: Index, data: &[u8]) {
        if let Err(message) = self.check_snapshot(me, index, data) {
            self.fail(format!("snapshot error: {message}"));
        }
    }

    fn check_snapshot(&mut self, me: Peer, index: Index, data: &[u8]) -> Result<(), String> {
        let image = decode_image(index, data)?;
        if image.index < self.last_applied[me] {
            return Err(format!(
                "server {me} snapshot at {} goes back from applied {}",
                image.index, self.last_applied[me]
            ));
        }
        let mut log = BTreeMap::new();
        for (i, command) in image.log {
            if i > image.index {
                return Err(format!(
                    "server {me} snapshot at {} holds index {i}",
                    image.index
                ));
            }
            if let Some(old) = self.committed.get(&i) {
                if *old != command {
                    return Err(format!(
                        "server {me} snapshot has {} at {i}, not {}",
                        show(&command),
                        show(old)
                    ));
                }
            }
            log.insert(i, command);
        }
        if let Some((&missing, _)) = self
            .committed
            .range(..=image.index)
            .find(|(i, _)| !log.contains_key(i))
        {
            return Err(format!(
                "server {me} snapshot at {} lacks command {missing}",
                image.index
            ));
        }
        for (&i, command) in &log {
            self.committed.entry(i).or_insert_with(|| command.clone());
        }
        self.logs[me] = log;
        self.last_applied[me] = image.index;
        Ok(())
    }

    /// Peer `me` restarted: it has applied nothing yet in this incarnation (it will deliver
    /// its persisted snapshot first). Its log is kept, so that re-applied commands are
    /// compared with what it applied before.
    pub fn restart(&mut self, me: Peer) {
        self.last_applied[me] = 0;
    }

    /// The snapshot of peer `me`'s state machine at `index` (6.824 `applierSnap`).
    pub fn image(&self, me: Peer, index: Index) -> Vec<u8> {
        let log = self.logs[me]
            .range(..=index)
            .map(|(&i, c)| (i, c.clone()))
            .collect();
        bincode::serialize(&SnapshotImage { index, log }).expect("encode snapshot image")
    }

    /// Whether peer `me` has applied (or holds through a snapshot) the command at `index`.
    pub fn has_applied(&self, me: Peer, index: Index) -> bool {
        self.logs[me].contains_key(&index)
    }

    /// Last index peer `me` applied in this incarnation (snapshot included).
    pub fn last_applied(&self, me: Peer) -> Index {
        self.last_applied[me]
    }

    /// Highest index any peer applied.
    pub fn max_index(&self) -> Index {
        self.committed.keys().next_back().copied().unwrap_or(0)
    }

    /// How many peers applied `index`, and its command (6.824 `nCommitted`).
    pub fn n_committed(&self, index: Index) -> Result<(usize, Option<Vec<u8>>), String> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        let mut count = 0;
        let mut value: Option<&Vec<u8>> = None;
        for (peer, log) in self.logs.iter().enumerate() {
            if let Some(command) = log.get(&index) {
                if let Some(v) = value {
                    if v != command {
                        return Err(format!(
                            "committed values do not match: index {index}, {} vs {} (server {peer})",
                            show(v),
                            show(command)
                        ));
                    }
                }
                count += 1;
                value = Some(command);
            }
        }
        Ok((count, value.cloned()))
    }

    /// The indices at which `command` was applied by some peer.
    pub fn indices_of(&self, command: &[u8]) -> Vec<Index> {
        self.committed
            .iter()
            .filter(|(_, c)| c.as_slice() == command)
            .map(|(&i, _)| i)
            .collect()
    }

    /// Every command applied by some peer at or below `index`, in index order.
    pub fn committed_through(&self, index: Index) -> Vec<(Index, Vec<u8>)> {
        self.committed
            .range(..=index)
            .map(|(&i, c)| (i, c.clone()))
            .collect()
    }
}

fn decode_image(index: Index, data: &[u8]) -> Result<SnapshotImage, String> {
    if data.is_empty() {
        // A snapshot the state machine never wrote (an initial configuration snapshot).
        return Ok(SnapshotImage {
            index,
            log: Vec::new(),
        });
    }
    let image: SnapshotImage =
        bincode::deserialize(data).map_err(|e| format!("snapshot decode error: {e}"))?;
    if image.index != index {
        return Err(format!(
            "snapshot image index {} does not match its message's {index}",
            image.index
        ));
    }
    Ok(image)
}
