//! The fake shard master's state machine: a list of configurations and a duplicate
//! table, applied at the leader.

use std::cell::RefCell;
use std::collections::BTreeMap;

use shardkv_proto::{ClientId, Config, MasterError, Op, Request, Response, Seq};

/// What the fake shard master has applied.
#[derive(Debug)]
pub struct MasterState {
    configs: RefCell<Vec<Config>>,
    applied: RefCell<BTreeMap<(ClientId, Seq), Response>>,
}

impl MasterState {
    /// Configuration 0 of `nshards` shards, and nothing applied.
    pub fn new(nshards: usize) -> Self {
        MasterState {
            configs: RefCell::new(vec![Config::initial(nshards)]),
            applied: RefCell::default(),
        }
    }

    /// Every configuration so far, 0 first.
    pub fn configs(&self) -> Vec<Config> {
        self.configs.borrow().clone()
    }

    /// The latest configuration.
    pub fn latest(&self) -> Config {
        self.configs
            .borrow()
            .last()
            .expect("config 0 exists")
            .clone()
    }

    /// Appends a configuration (numbered next) as a test scripts it.
    pub fn push(&self, mut config: Config) -> Config {
        let mut configs = self.configs.borrow_mut();
        config.num = configs.len() as u64;
        config.check().expect("a scripted configuration is valid");
        configs.push(config.clone());
        config
    }

    /// Applies `request` at the leader, once per `(client, seq)`.
    pub fn apply(&self, request: &Request) -> Response {
        let configs = self.configs.borrow();
        if let Op::Query { num } = request.op {
            let latest = configs.len() - 1;
            let num = num.map_or(latest, |n| (n as usize).min(latest));
            return Ok(configs[num].clone());
        }
        let key = (request.client, request.seq);
        if let Some(answer) = self.applied.borrow().get(&key) {
            return answer.clone();
        }
        let answer = execute(configs.last().expect("config 0 exists"), &request.op);
        drop(configs);
        if let Ok(config) = &answer {
            self.configs.borrow_mut().push(config.clone());
        }
        self.applied.borrow_mut().insert(key, answer.clone());
        answer
    }
}

/// The configuration after `op` (naive round-robin placement; the fake is no rebalancer).
fn execute(latest: &Config, op: &Op) -> Response {
    let mut next = latest.clone();
    next.num += 1;
    match op {
        Op::Join { groups } => {
            if groups.contains_key(&0) {
                return Err(MasterError::ReservedGroup);
            }
            next.groups.extend(groups.clone());
        }
        Op::Leave { gids } => {
            for gid in gids {
                next.groups
                    .remove(gid)
                    .ok_or(MasterError::UnknownGroup { gid: *gid })?;
            }
        }
        Op::Move { shard, gid } => {
            if !next.groups.contains_key(gid) {
                return Err(MasterError::UnknownGroup { gid: *gid });
            }
            next.shards[*shard] = *gid;
            return Ok(next);
        }
        Op::Abandon { .. } | Op::Holder { .. } => {
            return Err(MasterError::NotAllowed {
                reason: "the fake master abandons no group".into(),
            })
        }
        Op::Query { .. } => unreachable!("queries do not execute"),
    }
    let gids: Vec<_> = next.groups.keys().copied().collect();
    for (shard, owner) in next.shards.iter_mut().enumerate() {
        *owner = if gids.is_empty() {
            0
        } else {
            gids[shard % gids.len()]
        };
    }
    Ok(next)
}
