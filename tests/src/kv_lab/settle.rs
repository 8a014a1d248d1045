//! Waiting for the deployment to settle: every running group replica has applied the
//! shard master's latest configuration and finished its migrations. Scenarios use it
//! where 6.824 sleeps "to allow time for shards to transfer", so they wait exactly as
//! long as the implementation needs (and fail, saying who lags, past a timeout).

use std::time::Duration;

use shardkv_proto::{Config, ConfigNum};

use super::cluster::{KvCluster, GIDS, GROUP_SIZE};
use super::lab::KvLab;

impl<L: KvLab> KvCluster<L> {
    /// The shard master's latest configuration.
    pub async fn latest_config(&self) -> Result<Config, String> {
        let mut admin = self.take_admin();
        let result = admin.latest().await;
        self.return_admin(admin);
        result
    }

    /// The shard master's configuration `num`.
    pub async fn query(&self, num: ConfigNum) -> Result<Config, String> {
        let mut admin = self.take_admin();
        let result = admin.query(num).await;
        self.return_admin(admin);
        result
    }

    /// Waits until every running group replica has applied the master's latest
    /// configuration and serves exactly its shards in it (migrations done).
    pub async fn settle(&self, timeout: Duration) -> Result<Config, String> {
        let config = self.latest_config().await?;
        let step_ms = 50;
        let mut waited = Duration::ZERO;
        loop {
            let lagging: Vec<String> = (GIDS.iter())
                .flat_map(|&gid| (0..GROUP_SIZE).map(move |me| (gid, me)))
                .filter_map(|(gid, me)| {
                    let (num, shards) = self.with_lab(gid, me, |lab| lab.serving())?;
                    let settled = num == config.num && shards == config.shards_of(gid);
                    (!settled).then(|| format!("{gid}/{me} at {num} serving {shards:?}"))
                })
                .collect();
            if lagging.is_empty() {
                return Ok(config);
            }
            if waited >= timeout {
                return Err(format!(
                    "not settled on config {} ({:?}) within {timeout:?}: {}",
                    config.num,
                    config.shards,
                    lagging.join(", ")
                ));
            }
            self.sleep_ms(step_ms).await;
            waited += Duration::from_millis(step_ms);
        }
    }
}
