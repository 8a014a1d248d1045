//! Invariant: **a shard is served by at most one group per configuration, and only by
//! the group that configuration gives it to.**
//!
//! A monitor task samples every running replica every [`SAMPLE_MS`] of virtual time
//! through [`KvLab::serving`]: the configuration it has applied and the shards it would
//! serve in it. Each claim "group G serves shard s in configuration n" is checked
//! against the shard master's configuration `n` (read from any master replica that has
//! applied it) and against every earlier claim on `(n, s)`. The first violation is kept
//! and fails the run at its end, with the time it was seen.
//!
//! Caveats: sampling can miss a violation that lasts less than [`SAMPLE_MS`]; the
//! linearizability checker catches the ones that reach a client.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use shardkv_proto::{Config, ConfigNum, GroupId, ShardId};

use super::cluster::{KvCluster, GIDS, GROUP_SIZE};
use super::lab::KvLab;
use crate::master_lab::cluster::REPLICAS as MASTERS;

/// Virtual milliseconds between two samples.
pub const SAMPLE_MS: u64 = 100;

#[derive(Default)]
struct Claims {
    /// Who was seen serving each shard in each configuration.
    servers: BTreeMap<(ConfigNum, ShardId), GroupId>,
    /// The masters' configurations, as far as they were needed.
    configs: BTreeMap<ConfigNum, Config>,
    /// The first violation.
    violation: Option<String>,
    samples: u64,
}

/// The claims seen so far; cheap clones share them.
#[derive(Clone, Default)]
pub struct Ownership {
    claims: Rc<RefCell<Claims>>,
}

impl Ownership {
    /// The first violation seen, if any.
    pub fn violation(&self) -> Option<String> {
        self.claims.borrow().violation.clone()
    }

    /// How many replica views were checked.
    pub fn samples(&self) -> u64 {
        self.claims.borrow().samples
    }

    /// Checks that `gid` may serve `shards` in configuration `num` (whose master copy
    /// `config` is, when known) and records the claims.
    pub fn record(
        &self,
        gid: GroupId,
        num: ConfigNum,
        shards: &[ShardId],
        config: Option<&Config>,
    ) -> Result<(), String> {
        let mut claims = self.claims.borrow_mut();
        claims.samples += 1;
        for &shard in shards {
            if let Some(config) = config {
                let owner = config.owner(shard);
                if owner != Some(gid) {
                    return Err(format!("group {gid} serves shard {shard} in configuration {num}, which gives it to {owner:?}: {:?}", config.shards));
                }
            }
            let first = *claims.servers.entry((num, shard)).or_insert(gid);
            if first != gid {
                return Err(format!(
                    "groups {first} and {gid} both serve shard {shard} in configuration {num}"
                ));
            }
        }
        Ok(())
    }

    fn config<L: KvLab>(&self, c: &KvCluster<L>, num: ConfigNum) -> Option<Config> {
        if let Some(config) = self.claims.borrow().configs.get(&num) {
            return Some(config.clone());
        }
        let config = (0..MASTERS)
            .filter_map(|p| c.masters.applied_config(p, Some(num)))
            .find(|config| config.num == num)?;
        self.claims.borrow_mut().configs.insert(num, config.clone());
        Some(config)
    }

    /// Samples every running replica once; the first violation is kept.
    pub fn sample<L: KvLab>(&self, c: &KvCluster<L>, at: std::time::Duration) {
        for gid in GIDS {
            for me in 0..GROUP_SIZE {
                let Some((num, shards)) = c.with_lab(gid, me, |lab| lab.serving()) else {
                    continue;
                };
                let config = self.config(c, num);
                if let Err(error) = self.record(gid, num, &shards, config.as_ref()) {
                    let mut claims = self.claims.borrow_mut();
                    let line = format!("replica {gid}/{me} at {at:?}: {error}");
                    claims.violation.get_or_insert(line);
                }
            }
        }
    }
}

/// Samples the cluster every [`SAMPLE_MS`] until the run ends (the task is dropped):
/// ownership, and whether replicas agree ([`super::agreement`]).
pub async fn monitor<L: KvLab>(c: KvCluster<L>) {
    loop {
        c.ownership.sample(&c, c.sim.now());
        c.agreement.sample(&c, c.sim.now());
        c.sleep_ms(SAMPLE_MS).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Claims by two groups on one shard in one configuration, or by a group the
    /// configuration does not name, are violations; claims across configurations are not.
    #[test]
    fn conflicting_claims_are_violations() {
        let ownership = Ownership::default();
        let mut config = Config::initial(4);
        config.num = 1;
        config.shards = vec![100, 100, 101, 101];
        assert_eq!(ownership.record(100, 1, &[0, 1], Some(&config)), Ok(()));
        assert!(ownership.record(101, 1, &[1], None).is_err());
        assert!(ownership.record(101, 1, &[0], Some(&config)).is_err());
        assert_eq!(ownership.record(101, 2, &[0], None), Ok(()));
    }
}
