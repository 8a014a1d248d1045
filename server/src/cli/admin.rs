//! `shardkv join | leave | move | abandon | query`: steer shards through the shard master.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use shardkv_client::tarpc_transport::ReplicaName;
use shardkv_client::{Admin, Config, ConfigNum, GroupId, ShardId, TransportError};
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
    /// Join even though no replica of the group answers as the group's at its addresses
    /// (to join a group before starting it; a group that never starts takes its shards
    /// out of service).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Options of `shardkv leave`.
#[derive(Args, Debug, Clone)]
pub struct LeaveArgs {
    /// The departing groups.
    #[arg(required = true)]
    pub gids: Vec<GroupId>,
    /// Leave even when no group would remain: the shards then have no owner, and a group
    /// that joins later starts them empty, so every key written so far reads as absent.
    #[arg(long)]
    pub force: bool,
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

/// Options of `shardkv abandon`.
#[derive(Args, Debug, Clone)]
pub struct AbandonArgs {
    /// The group, which must have left. Its id can never join again.
    pub gid: GroupId,
    /// Abandon it even though one of its replicas answers at its addresses.
    #[arg(long)]
    pub force: bool,
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

/// Runs `shardkv join`: unless `--force`, first checks that the addresses are the
/// group's replicas ([`check_addresses`]).
pub fn join(args: JoinArgs) -> ExitCode {
    let (gid, servers, force) = (args.gid, args.servers, args.force);
    let timeout = args.client.timeout.min(IDENTIFY_TIMEOUT);
    let transport = args.client.transport();
    with_admin(&args.client, |admin| async move {
        if !force {
            check_addresses(&transport?, gid, &servers, timeout).await?;
        }
        let groups = BTreeMap::from([(gid, servers)]);
        admin.join(groups).await.map_err(|error| error.to_string())
    })
}

/// How long `join` waits for each address to say which replica it is.
const IDENTIFY_TIMEOUT: Duration = Duration::from_secs(2);

/// What each of `servers` says it is, in order.
async fn identify_all(
    transport: &shardkv_client::TarpcTransport,
    servers: &[String],
    timeout: Duration,
) -> Vec<Result<ReplicaName, TransportError>> {
    let asked = servers
        .iter()
        .map(|address| transport.identify(address, timeout));
    futures::future::join_all(asked).await
}

/// Asks every address which replica serves there, and refuses (with what each said) when
/// one is another service's replica or a replica of the group listed out of raft id order,
/// or when none is a replica of the group. An address that does not answer is allowed if
/// another one does (a replica may be down).
async fn check_addresses(
    transport: &shardkv_client::TarpcTransport,
    gid: GroupId,
    servers: &[String],
    timeout: Duration,
) -> Result<(), String> {
    let answers = identify_all(transport, servers, timeout).await;
    let mut heard = Vec::new();
    let mut confirmed = false;
    for (position, (address, answer)) in servers.iter().zip(answers).enumerate() {
        let listed = position as u64 + 1;
        match answer {
            Ok(name) if name.service != gid => {
                return Err(format!(
                    "{address} is {name}, not a replica of group {gid} (pass --force to join \
                     it anyway)"
                ))
            }
            Ok(name) if name.id != listed => {
                return Err(format!(
                    "{address} is {name} but is listed as replica {listed}: list a group's \
                     addresses in raft id order"
                ))
            }
            Ok(_) => confirmed = true,
            Err(error) => heard.push(format!("{address}: {error}")),
        }
    }
    match confirmed {
        true => Ok(()),
        false => Err(format!(
            "no replica of group {gid} answers at its addresses ({}); start its replicas \
             first, or pass --force to join it anyway",
            heard.join("; ")
        )),
    }
}

/// Runs `shardkv leave`: unless `--force`, refuses to leave no group holding the shards
/// ([`check_leave`]). (The check and the leave are two requests: a concurrent leave by
/// someone else can still come between them.)
pub fn leave(args: LeaveArgs) -> ExitCode {
    let (gids, force) = (args.gids, args.force);
    with_admin(&args.client, |admin| async move {
        if !force {
            let latest = admin.query(None).await.map_err(|error| error.to_string())?;
            check_leave(&latest, &gids)?;
        }
        admin.leave(gids).await.map_err(|error| error.to_string())
    })
}

/// Why `gids` leaving `latest` would lose data, if it would: no group would remain to
/// hold the shards they own.
fn check_leave(latest: &Config, gids: &[GroupId]) -> Result<(), String> {
    let remains = latest.groups.keys().any(|gid| !gids.contains(gid));
    let held = latest
        .shards
        .iter()
        .filter(|&&owner| owner != NO_GROUP)
        .count();
    if remains || held == 0 {
        return Ok(());
    }
    Err(format!(
        "leaving would leave no group: the {held} shards they hold would have no owner, and \
         a group that joins later starts them empty, so every key written so far would read \
         as absent; join another group first, or pass --force to leave anyway"
    ))
}

/// Runs `shardkv move`.
pub fn move_shard(args: MoveArgs) -> ExitCode {
    let (shard, gid) = (args.shard, args.gid);
    with_admin(&args.client, |admin| async move {
        let moved = admin.move_shard(shard, gid).await;
        moved.map_err(|error| error.to_string())
    })
}

/// Runs `shardkv abandon`: unless `--force`, first checks that no replica of the group
/// answers at the addresses it last had ([`check_gone`]).
pub fn abandon(args: AbandonArgs) -> ExitCode {
    let (gid, force) = (args.gid, args.force);
    let timeout = args.client.timeout.min(IDENTIFY_TIMEOUT);
    let transport = args.client.transport();
    with_admin(&args.client, |mut admin| async move {
        if !force {
            let servers = last_servers(&mut admin, gid).await?;
            let answers = identify_all(&transport?, &servers, timeout).await;
            check_gone(gid, &servers, answers)?;
        }
        admin.abandon(gid).await.map_err(|error| error.to_string())
    })
}

/// The most configurations `abandon` looks back through for the group's addresses.
const ABANDON_LOOKBACK: ConfigNum = 100;

/// The servers group `gid` had in the latest configuration that lists it, looking back
/// at most [`ABANDON_LOOKBACK`] configurations; refused when it is not found there
/// (nothing could be checked).
async fn last_servers(
    admin: &mut Admin<shardkv_client::TarpcTransport>,
    gid: GroupId,
) -> Result<Vec<String>, String> {
    let latest = admin.query(None).await.map_err(|error| error.to_string())?;
    if latest.groups.contains_key(&gid) {
        return Err(format!(
            "group {gid} is still a member: `shardkv leave {gid}` first"
        ));
    }
    for num in (latest.num.saturating_sub(ABANDON_LOOKBACK)..latest.num).rev() {
        let config = admin.query(Some(num)).await.map_err(|e| e.to_string())?;
        if let Some(servers) = config.groups.get(&gid) {
            return Ok(servers.clone());
        }
    }
    Err(format!(
        "group {gid} is in none of the last {ABANDON_LOOKBACK} configurations, so whether \
         it is alive cannot be checked; pass --force to abandon it anyway"
    ))
}

/// Refuses when a replica of group `gid` answered at one of `servers` (`answers`, in
/// order): a live group must not be abandoned (its copies would be served twice).
fn check_gone(
    gid: GroupId,
    servers: &[String],
    answers: Vec<Result<ReplicaName, TransportError>>,
) -> Result<(), String> {
    for (address, answer) in servers.iter().zip(answers) {
        if let Ok(name) = answer {
            if name.service == gid {
                return Err(format!(
                    "{address} answers as {name}: group {gid} is alive. Abandon only a \
                     group whose replicas are gone for good (or pass --force)"
                ));
            }
        }
    }
    Ok(())
}

/// Runs `shardkv query`.
pub fn query(args: QueryArgs) -> ExitCode {
    let num = args.num;
    with_admin(&args.client, |admin| async move {
        admin.query(num).await.map_err(|error| error.to_string())
    })
}

/// Runs one admin operation and prints the configuration it returns.
fn with_admin<F, Fut>(args: &ClientArgs, operation: F) -> ExitCode
where
    F: FnOnce(Admin<shardkv_client::TarpcTransport>) -> Fut,
    Fut: std::future::Future<Output = Result<Config, String>>,
{
    super::logging::init("off");
    let transport = match args.transport() {
        Ok(transport) => transport,
        Err(message) => return super::fail(message),
    };
    let admin = Admin::with_policy(transport, args.masters.clone(), args.policy());
    let json = args.json;
    run_client(async move {
        let config = operation(admin).await?;
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

    /// A leave that would leave no group holding shards is refused; one that leaves a
    /// group, or from a configuration with no shards held, is not.
    #[test]
    fn leaving_every_group_is_refused() {
        let config = Config {
            num: 3,
            shards: vec![100, 101, 100],
            groups: BTreeMap::from([(100, vec!["a:1".into()]), (101, vec!["b:1".into()])]),
        };
        let refused = check_leave(&config, &[100, 101]).expect_err("leaves none");
        assert!(refused.contains("the 3 shards"), "{refused}");
        assert!(check_leave(&config, &[101]).is_ok());
        let empty = Config {
            shards: vec![NO_GROUP; 3],
            ..config
        };
        assert!(check_leave(&empty, &[100, 101]).is_ok());
    }

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
