//! [`Clerk`]: the real `shardkv_client::Admin` over the simulator, with the answers a
//! scenario wants (6.824's shardctrler `Clerk`): every operation returns the
//! configuration, or a failure message naming the operation.

use std::collections::BTreeMap;

use labrpc_sim::SimNode;
use shardkv_client::{Admin, AdminError};
use shardkv_proto::{Config, ConfigNum, GroupId, ShardId};

use super::checks;
use crate::sim_transport::SimTransport;

/// Groups to join: gid → server addresses.
pub type Groups = BTreeMap<GroupId, Vec<String>>;

/// One simulated administrator.
pub struct Clerk {
    admin: Admin<SimTransport>,
}

impl Clerk {
    /// Wrap `admin`.
    pub fn new(admin: Admin<SimTransport>) -> Self {
        Clerk { admin }
    }

    /// The underlying admin, for scenarios that inspect typed errors.
    pub fn admin(&mut self) -> &mut Admin<SimTransport> {
        &mut self.admin
    }

    /// The simulator node of this clerk's endpoint (to partition it with some replicas).
    pub fn node(&self) -> SimNode {
        self.admin.transport().node()
    }

    /// Join `groups`.
    pub async fn join(&mut self, groups: Groups) -> Result<Config, String> {
        let what = format!("join {:?}", groups.keys().collect::<Vec<_>>());
        self.admin.join(groups).await.map_err(|e| failed(&what, e))
    }

    /// Leave `gids`.
    pub async fn leave(&mut self, gids: &[GroupId]) -> Result<Config, String> {
        let what = format!("leave {gids:?}");
        self.admin
            .leave(gids.to_vec())
            .await
            .map_err(|e| failed(&what, e))
    }

    /// Abandon `gid`, which has left (its id is retired).
    pub async fn abandon(&mut self, gid: GroupId) -> Result<Config, String> {
        let what = format!("abandon {gid}");
        self.admin.abandon(gid).await.map_err(|e| failed(&what, e))
    }

    /// Move `shard` to `gid`.
    pub async fn move_shard(&mut self, shard: ShardId, gid: GroupId) -> Result<Config, String> {
        let what = format!("move shard {shard} to {gid}");
        self.admin
            .move_shard(shard, gid)
            .await
            .map_err(|e| failed(&what, e))
    }

    /// Configuration `num`.
    pub async fn query(&mut self, num: ConfigNum) -> Result<Config, String> {
        self.admin
            .query(Some(num))
            .await
            .map_err(|e| failed(&format!("query {num}"), e))
    }

    /// The latest configuration (the lab's `Query(-1)`).
    pub async fn latest(&mut self) -> Result<Config, String> {
        self.admin
            .query(None)
            .await
            .map_err(|e| failed("query latest", e))
    }

    /// 6.824 `check(groups, ck)`: the latest configuration has exactly `gids` as members,
    /// every shard owned by one of them (unowned when there are none), balanced.
    pub async fn check(&mut self, gids: &[GroupId]) -> Result<Config, String> {
        let config = self.latest().await?;
        checks::check_groups(&config, gids)?;
        Ok(config)
    }
}

fn failed(what: &str, error: AdminError) -> String {
    format!("{what} failed: {error}")
}

/// One group `gid` with `servers`.
pub fn group(gid: GroupId, servers: &[&str]) -> Groups {
    BTreeMap::from([(gid, servers.iter().map(|s| s.to_string()).collect())])
}
