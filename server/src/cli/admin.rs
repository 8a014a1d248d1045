//! `shardkv join | leave | move | query`: steer shards through the shard master.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Args;
use shardkv_client::{Admin, Config, ConfigNum, GroupId, ShardId};
use shardkv_proto::NO_GROUP;

use super::{print_json, run_client, ClientArgs};

/// Options of `shardkv join`.
#[derive(Args, Debug, Clone)]
pub struct JoinArgs {
    /// The new group's id (non-zero).
    pub gid: GroupId,
    /// Its replicas' addresses, comma-separated, in raft id order (replica N is the Nth).
    #[arg(value_delimiter = ',', required = true)]
    pub servers: Vec<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Options of `shardkv leave`.
#[derive(Args, Debug, Clone)]
pub struct LeaveArgs {
    /// The departing groups.
    #[arg(required = true)]
    pub gids: Vec<GroupId>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Options of `shardkv move`.
#[derive(Args, Debug, Clone)]
pub struct MoveArgs {
    /// The shard.
    pub shard: ShardId,
    /// The group that gets it.
    pub gid: GroupId,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Options of `shardkv query`.
#[derive(Args, Debug, Clone)]
pub struct QueryArgs {
    /// The configuration number (default: the latest).
    pub num: Option<ConfigNum>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Runs `shardkv join`.
pub fn join(args: JoinArgs) -> ExitCode {
    let groups = BTreeMap::from([(args.gid, args.servers)]);
    with_admin(
        &args.client,
        |mut admin| async move { admin.join(groups).await },
    )
}

/// Runs `shardkv leave`.
pub fn leave(args: LeaveArgs) -> ExitCode {
    let gids = args.gids;
    with_admin(
        &args.client,
        |mut admin| async move { admin.leave(gids).await },
    )
}

/// Runs `shardkv move`.
pub fn move_shard(args: MoveArgs) -> ExitCode {
    let (shard, gid) = (args.shard, args.gid);
    with_admin(&args.client, |mut admin| async move {
        admin.move_shard(shard, gid).await
    })
}

/// Runs `shardkv query`.
pub fn query(args: QueryArgs) -> ExitCode {
    let num = args.num;
    with_admin(
        &args.client,
        |mut admin| async move { admin.query(num).await },
    )
}

/// Runs one admin operation and prints the configuration it returns.
fn with_admin<F, Fut>(args: &ClientArgs, operation: F) -> ExitCode
where
    F: FnOnce(Admin<shardkv_client::TarpcTransport>) -> Fut,
    Fut: std::future::Future<Output = Result<Config, shardkv_client::AdminError>>,
{
    super::logging::init("off");
    let admin = Admin::connect(args.masters.clone(), args.policy());
    let json = args.json;
    run_client(async move {
        let config = operation(admin).await.map_err(|error| error.to_string())?;
        match json {
            true => print_json(&config_json(&config)),
            false => print!("{}", render(&config)),
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The configuration as JSON: `{num, shards: [gid..], groups: {gid: [addr..]}}`.
pub fn config_json(config: &Config) -> serde_json::Value {
    serde_json::json!({
        "num": config.num,
        "shards": config.shards,
        "groups": config.groups,
    })
}

/// A readable shard map: runs of shards per group, then each group's replicas.
pub fn render(config: &Config) -> String {
    let mut out = format!("configuration {}\n", config.num);
    let mut start = 0;
    for shard in 1..=config.shards.len() {
        if shard == config.shards.len() || config.shards[shard] != config.shards[start] {
            let owner = match config.shards[start] {
                NO_GROUP => "no group".to_string(),
                gid => format!("group {gid}"),
            };
            let range = match shard - 1 == start {
                true => format!("shard {start}"),
                false => format!("shards {start}-{}", shard - 1),
            };
            out.push_str(&format!("  {range:<16} -> {owner}\n"));
            start = shard;
        }
    }
    for (gid, servers) in &config.groups {
        let count = config.shards.iter().filter(|&&owner| owner == *gid).count();
        out.push_str(&format!(
            "  group {gid} ({count} shards): {}\n",
            servers.join(",")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shard map folds runs of shards into ranges and lists every group.
    #[test]
    fn render_folds_runs() {
        let config = Config {
            num: 2,
            shards: vec![100, 100, 101, 0],
            groups: BTreeMap::from([
                (100, vec!["a:1".into()]),
                (101, vec!["b:1".into(), "b:2".into()]),
            ]),
        };
        let text = render(&config);
        assert!(text.contains("configuration 2"), "{text}");
        assert!(
            text.contains("shards 0-1") && text.contains("-> group 100"),
            "{text}"
        );
        assert!(
            text.contains("shard 3") && text.contains("no group"),
            "{text}"
        );
        assert!(text.contains("group 101 (1 shards): b:1,b:2"), "{text}");
    }
}
