//! Fake replica groups: three replicas each, one leader, and one key/value store with a
//! duplicate table shared by every group (shard migration is instantaneous in the fake,
//! so data and duplicate memory "travel" with a shard for free).
//!
//! A group serves a key only when the shard master's latest configuration gives the
//! key's shard to it, and not while it is "installing" (a count of requests to refuse
//! with `WrongGroup`, as a real group does while it waits for a shard's data).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use shardkv_proto::kv::{Op, Request, Response, MAX_VALUE_BYTES};
use shardkv_proto::{ClientId, Config, GroupId, KvError, Reply, Seq};

/// The addresses of group `gid`'s replicas; NodeId i + 1 is the i-th.
pub fn group_servers(gid: GroupId) -> Vec<String> {
    (1..=3).map(|i| format!("g{gid}-{i}")).collect()
}

/// One fake replica group.
#[derive(Debug)]
pub struct FakeGroup {
    /// The replicas' addresses.
    pub servers: Vec<String>,
    /// Index of the leader in `servers`.
    pub leader: Cell<usize>,
    /// Whether followers name the leader in `WrongLeader`.
    pub hints: Cell<bool>,
    /// How many of the next requests reaching the leader it refuses with `WrongGroup`.
    pub installing: Cell<u32>,
}

impl FakeGroup {
    fn new(gid: GroupId) -> Self {
        FakeGroup {
            servers: group_servers(gid),
            leader: Cell::new(0),
            hints: Cell::new(true),
            installing: Cell::new(0),
        }
    }
}

/// Every fake group and the data they share.
#[derive(Debug, Default)]
pub struct FakeGroups {
    groups: RefCell<BTreeMap<GroupId, FakeGroup>>,
    data: RefCell<BTreeMap<Vec<u8>, Vec<u8>>>,
    sessions: RefCell<BTreeMap<ClientId, (Seq, Response)>>,
}

impl FakeGroups {
    /// Creates the groups of `config` that do not exist yet.
    pub fn add(&self, config: &Config) {
        let mut groups = self.groups.borrow_mut();
        for &gid in config.groups.keys() {
            groups.entry(gid).or_insert_with(|| FakeGroup::new(gid));
        }
    }

    /// Runs `f` on group `gid`.
    pub fn with<R>(&self, gid: GroupId, f: impl FnOnce(&FakeGroup) -> R) -> R {
        f(&self.groups.borrow()[&gid])
    }

    /// The group and replica index at `address`, if a fake replica listens there.
    pub fn locate(&self, address: &str) -> Option<(GroupId, usize)> {
        self.groups.borrow().iter().find_map(|(&gid, group)| {
            let index = group.servers.iter().position(|s| s == address)?;
            Some((gid, index))
        })
    }

    /// The stored value of `key`.
    pub fn value(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.data.borrow().get(key).cloned()
    }

    /// Replica `index` of group `gid` answers `request` under `latest`.
    pub fn serve(
        &self,
        gid: GroupId,
        index: usize,
        request: &Request,
        latest: &Config,
    ) -> Response {
        let groups = self.groups.borrow();
        let group = &groups[&gid];
        let leader = group.leader.get();
        if index != leader {
            let hint = group.hints.get().then_some(leader as u64 + 1);
            return Err(KvError::WrongLeader { hint });
        }
        request.op.check_limits()?;
        if group.installing.get() > 0 {
            group.installing.set(group.installing.get() - 1);
            return Err(KvError::WrongGroup);
        }
        if latest.group_of_key(request.op.key()) != Some(gid) {
            return Err(KvError::WrongGroup);
        }
        self.apply(request)
    }

    /// Applies `request`, mutations once per `(client, seq)`.
    fn apply(&self, request: &Request) -> Response {
        let Request {
            client, seq, op, ..
        } = request;
        if let Op::Get { key } = op {
            return Ok(Reply::Value(self.value(key)));
        }
        if let Some((last, response)) = self.sessions.borrow().get(client) {
            if last == seq {
                return response.clone();
            }
            if last > seq {
                let (client, seq, last) = (*client, *seq, *last);
                return Err(KvError::StaleRequest { client, seq, last });
            }
        }
        let response = self.execute(op);
        self.sessions
            .borrow_mut()
            .insert(*client, (*seq, response.clone()));
        response
    }

    fn execute(&self, op: &Op) -> Response {
        let mut data = self.data.borrow_mut();
        match op {
            Op::Get { .. } => unreachable!("gets are answered before execute"),
            Op::Put { key, value } => {
                data.insert(key.clone(), value.clone());
            }
            Op::Append { key, value } => {
                let len = data.get(key).map_or(0, Vec::len) + value.len();
                if len > MAX_VALUE_BYTES {
                    let max = MAX_VALUE_BYTES;
                    return Err(KvError::ValueTooLarge { len, max });
                }
                data.entry(key.clone())
                    .or_default()
                    .extend_from_slice(value);
            }
            Op::Delete { key } => {
                data.remove(key);
            }
        }
        Ok(Reply::Done)
    }
}
