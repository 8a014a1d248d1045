//! The checks of 6.824's `config.go`, in virtual time: `check_one_leader`, `check_terms`,
//! `check_no_leader`, `n_committed`, `one` and `wait`. Each returns `Err(message)` where
//! 6.824 calls `t.Fatalf`, so scenarios read `c.one(cmd, 3, false).await?`.

use std::collections::BTreeMap;
use std::time::Duration;

use super::cluster::Cluster;
use super::lab::{Index, Peer, RaftLab, Term};

/// 6.824's `RaftElectionTimeout`: the suite expects a new leader within this much virtual
/// time after the old one fails (our peers: election after 10 ticks of ~50 ms).
pub const ELECTION_TIMEOUT: Duration = Duration::from_millis(1000);

/// How long `one` waits for agreement in total (6.824: 10 s).
pub const AGREEMENT_TIMEOUT: Duration = Duration::from_secs(10);

impl<L: RaftLab> Cluster<L> {
    /// Wait for exactly one leader among the connected peers and return it; fail if a
    /// term has two leaders or no leader appears in ~5 s (6.824 `checkOneLeader`).
    pub async fn check_one_leader(&self) -> Result<Peer, String> {
        for _ in 0..10 {
            let ms = 450 + self.random(100);
            self.sleep_ms(ms).await;
            let mut leaders: BTreeMap<Term, Vec<Peer>> = BTreeMap::new();
            for peer in (0..self.n()).filter(|&p| self.is_connected(p)) {
                if let Some((term, true)) = self.get_state(peer) {
                    leaders.entry(term).or_default().push(peer);
                }
            }
            if let Some((term, peers)) = leaders.iter().find(|(_, peers)| peers.len() > 1) {
                return Err(format!(
                    "term {term} has {} (>1) leaders: {peers:?}",
                    peers.len()
                ));
            }
            if let Some((_, peers)) = leaders.iter().next_back() {
                return Ok(peers[0]);
            }
        }
        Err("expected one leader, got none".to_string())
    }

    /// The term every connected peer agrees on; fail if they disagree (6.824 `checkTerms`).
    pub fn check_terms(&self) -> Result<Term, String> {
        let mut term = None;
        for peer in (0..self.n()).filter(|&p| self.is_connected(p)) {
            if let Some((xterm, _)) = self.get_state(peer) {
                match term {
                    None => term = Some(xterm),
                    Some(t) if t != xterm => {
                        return Err(format!(
                            "servers disagree on term: {t} vs {xterm} (server {peer})"
                        ))
                    }
                    Some(_) => {}
                }
            }
        }
        term.ok_or_else(|| "no connected server to ask for its term".to_string())
    }

    /// Fail if any connected peer thinks it leads (6.824 `checkNoLeader`).
    pub fn check_no_leader(&self) -> Result<(), String> {
        for peer in (0..self.n()).filter(|&p| self.is_connected(p)) {
            if let Some((term, true)) = self.get_state(peer) {
                return Err(format!("expected no leader among connected servers, but {peer} claims to be leader in term {term}"));
            }
        }
        Ok(())
    }

    /// How many peers applied `index`, and the command there (6.824 `nCommitted`); fails on
    /// any apply error seen so far.
    pub fn n_committed(&self, index: Index) -> Result<(usize, Option<Vec<u8>>), String> {
        self.checker().n_committed(index)
    }

    /// Fail if the checker has seen an invariant violation.
    pub fn check_apply_error(&self) -> Result<(), String> {
        match &self.checker().error {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    /// Submit `command` until some leader accepts it and `expected` peers apply it at the
    /// index it got; return that index (6.824 `one`). Without `retry`, one failed attempt
    /// (2 s without agreement) fails; with it, attempts continue for 10 s in all.
    pub async fn one(
        &self,
        command: Vec<u8>,
        expected: usize,
        retry: bool,
    ) -> Result<Index, String> {
        let t0 = self.sim.now();
        let mut starts = 0;
        while self.sim.now() - t0 < AGREEMENT_TIMEOUT {
            let mut index = None;
            for _ in 0..self.n() {
                starts = (starts + 1) % self.n();
                if self.is_connected(starts) {
                    if let Some((i, _)) = self.start(starts, command.clone()) {
                        index = Some(i);
                        break;
                    }
                }
            }
            let Some(index) = index else {
                self.sleep_ms(50).await;
                continue;
            };
            // Somebody claimed to be the leader and to have submitted our command.
            let t1 = self.sim.now();
            while self.sim.now() - t1 < Duration::from_secs(2) {
                let (count, value) = self.n_committed(index)?;
                if count > 0 && count >= expected && value.as_deref() == Some(&command[..]) {
                    return Ok(index);
                }
                self.sleep_ms(20).await;
            }
            if !retry {
                return Err(format!(
                    "one({}) failed to reach agreement",
                    super::checker::show(&command)
                ));
            }
        }
        Err(format!(
            "one({}) failed to reach agreement in {AGREEMENT_TIMEOUT:?}",
            super::checker::show(&command)
        ))
    }

    /// Wait for `n` peers to apply `index`; `Ok(None)` when some peer has moved past
    /// `start_term` (the entry may never commit); fail if they do not in ~30 s (6.824 `wait`).
    pub async fn wait(
        &self,
        index: Index,
        n: usize,
        start_term: Option<Term>,
    ) -> Result<Option<Vec<u8>>, String> {
        let mut to = Duration::from_millis(10);
        for _ in 0..30 {
            if self.n_committed(index)?.0 >= n {
                break;
            }
            self.sleep(to).await;
            if to < Duration::from_secs(1) {
                to *= 2;
            }
            if let Some(start_term) = start_term {
                let moved_on = (0..self.n())
                    .filter_map(|p| self.get_state(p))
                    .any(|(t, _)| t > start_term);
                if moved_on {
                    return Ok(None);
                }
            }
        }
        let (count, value) = self.n_committed(index)?;
        if count < n {
            return Err(format!(
                "only {count} decided for index {index}; wanted {n}"
            ));
        }
        Ok(value)
    }
}
