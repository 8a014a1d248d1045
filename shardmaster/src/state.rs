//! [`ShardMaster`]: the replicated configuration state machine.
//!
//! Every shard-master replica feeds the committed log entries, in order, to
//! [`ShardMaster::apply`]; because `apply` is deterministic (no clock read, no
//! randomness, only `BTreeMap` order; time is the cluster time the entries carry), every
//! replica holds the same configurations and gives the same answer at the same index.
//! The leader sends that answer to the client.
//!
//! ```text
//!   apply(index, request)
//!     |-- expire sessions quiet for > timeout (cluster time) (shardkv_proto::session)
//!     |-- Query?  -> answer configs[num or latest]           (no session, no change)
//!     |-- Holder? -> answer the last config whose owner of the shard is not abandoned
//!     |-- (client, seq) seen? -> original answer / StaleRequest
//!     |-- ops::join / leave / move_shard on the latest config (ops.rs, rebalance.rs)
//!     |   ops::abandon: record the group as abandoned; no configuration
//!     |      Ok(next)  -> push next, remember Ok(next.num)
//!     |      Err(e)    -> remember Err(e); no configuration created
//!     '-- answer
//! ```
//!
//! Invariants (asserted): `configs[i].num == i`; configuration 0 owns nothing; every
//! configuration has the same shard count and passes [`Config::check`]; indices passed
//! to `apply` strictly increase.

use std::collections::BTreeSet;

use shardkv_proto::session::{Clock, Refused, DEFAULT_MAX_SESSIONS};
use shardkv_proto::{
    Config, ConfigNum, GroupId, MasterError, Millis, Op, Request, Response, ShardId,
};

use crate::ops;
use crate::session::{Outcome, Sessions, DEFAULT_SESSION_TIMEOUT_MS};
use crate::Index;

/// The shard master's replicated state: every configuration ever made, the groups
/// abandoned, the duplicate table, and the index of the last applied entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMaster {
    pub(crate) configs: Vec<Config>,
    /// Groups declared dead for good ([`Op::Abandon`]); never members again.
    pub(crate) abandoned: BTreeSet<GroupId>,
    /// Sessions expire after this much cluster time of silence.
    pub(crate) session_timeout_ms: Millis,
    pub(crate) sessions: Sessions,
    pub(crate) applied_index: Index,
    /// The cluster time as applied (the latest an entry carried).
    pub(crate) time: Millis,
}

impl ShardMaster {
    /// A fresh state machine for a cluster of `nshards` shards: only configuration 0, the
    /// default session timeout ([`DEFAULT_SESSION_TIMEOUT_MS`]).
    ///
    /// # Panics
    /// If `nshards` is 0.
    pub fn new(nshards: usize) -> Self {
        Self::with_session_timeout(nshards, DEFAULT_SESSION_TIMEOUT_MS)
    }

    /// Like [`ShardMaster::new`] with sessions expiring after `timeout_ms` of cluster
    /// time in silence. Every replica must use the same value.
    ///
    /// # Panics
    /// If `nshards` or `timeout_ms` is 0.
    pub fn with_session_timeout(nshards: usize, timeout_ms: Millis) -> Self {
        assert!(timeout_ms > 0, "session timeout of 0 ms");
        ShardMaster {
            configs: vec![Config::initial(nshards)],
            abandoned: BTreeSet::new(),
            session_timeout_ms: timeout_ms,
            sessions: Sessions::new(),
            applied_index: 0,
            time: 0,
        }
    }

    /// Applies the committed request at log `index`, stamped with cluster time `time`,
    /// and returns the answer for its client.
    ///
    /// # Panics
    /// If `index` is not greater than the last applied index: the log layer must feed
    /// each entry once, in order.
    pub fn apply(&mut self, index: Index, time: Millis, request: &Request) -> Response {
        assert!(
            index > self.applied_index,
            "apply at index {index} after index {}",
            self.applied_index
        );
        self.advance_to(index, time);
        let Request { client, seq, op } = request;
        match op {
            Op::Query { num } => return Ok(self.query(*num).clone()),
            Op::Holder { shard, num } => return self.holder(*shard, *num).cloned(),
            _ => {}
        }
        let clock = self.clock();
        let (configs, abandoned) = (&mut self.configs, &mut self.abandoned);
        // The master's requests carry no observation of its clock (`seen: None`): an
        // unknown client's request is taken as new (see `session.rs`).
        let outcome = self.sessions.once(*client, *seq, None, clock, || {
            let outcome = execute(configs, abandoned, op);
            tracing::debug!(client, seq, index, ?outcome, "applied");
            outcome
        });
        self.sessions.evict(DEFAULT_MAX_SESSIONS);
        match outcome {
            Ok(outcome) => self.answer(outcome),
            Err(Refused::Stale { last }) => Err(MasterError::StaleRequest {
                client: *client,
                seq: *seq,
                last,
            }),
            Err(Refused::Unknown) => unreachable!("requests without `seen` are never refused"),
        }
    }

    fn clock(&self) -> Clock {
        Clock {
            now: self.time,
            timeout: self.session_timeout_ms,
        }
    }

    /// Moves the applied index to `index` and the time to `time` (if later), and expires
    /// the sessions quiet by then.
    pub(crate) fn advance_to(&mut self, index: Index, time: Millis) {
        self.applied_index = index;
        self.time = self.time.max(time);
        for (client, heard) in self.sessions.expire(self.clock()) {
            tracing::debug!(client, heard, now = self.time, "session expired");
        }
    }

    /// Configuration `num`, or the latest when `num` is `None` or past the latest.
    pub fn query(&self, num: Option<ConfigNum>) -> &Config {
        let latest = self.latest();
        match num {
            Some(num) if num < latest.num => &self.configs[num as usize],
            _ => latest,
        }
    }

    /// The configuration that says who holds the data of `shard` for its owner in
    /// configuration `num` (the latest when `num` is past it): the latest one at or
    /// before `num` whose owner of `shard` is not abandoned. See [`Op::Holder`].
    pub fn holder(&self, shard: ShardId, num: ConfigNum) -> Result<&Config, MasterError> {
        let nshards = self.nshards();
        if shard >= nshards {
            return Err(MasterError::ShardOutOfRange { shard, nshards });
        }
        let from = num.min(self.latest().num) as usize;
        let holder = self.configs[..=from]
            .iter()
            .rev()
            .find(|config| !self.abandoned.contains(&config.shards[shard]))
            .expect("configuration 0 is owned by nobody, who is never abandoned");
        Ok(holder)
    }

    /// The groups abandoned, in increasing order.
    pub fn abandoned(&self) -> &BTreeSet<GroupId> {
        &self.abandoned
    }

    /// The latest configuration.
    pub fn latest(&self) -> &Config {
        self.configs.last().expect("configuration 0 always exists")
    }

    /// Every configuration, indexed by number.
    pub fn configs(&self) -> &[Config] {
        &self.configs
    }

    /// The cluster's shard count.
    pub fn nshards(&self) -> usize {
        self.configs[0].nshards()
    }

    /// The duplicate table.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// Sessions expire after this much cluster time of silence.
    pub fn session_timeout_ms(&self) -> Millis {
        self.session_timeout_ms
    }

    /// The cluster time as applied.
    pub fn time(&self) -> Millis {
        self.time
    }

    fn answer(&self, outcome: Outcome) -> Response {
        outcome.map(|num| {
            let config = &self.configs[num as usize];
            assert_eq!(config.num, num, "remembered config {num} not at its index");
            config.clone()
        })
    }
}

/// Runs the changing operation `op`, appending the configuration it makes (Join, Leave,
/// Move) or recording the group it abandons (Abandon, which answers the latest).
fn execute(configs: &mut Vec<Config>, abandoned: &mut BTreeSet<GroupId>, op: &Op) -> Outcome {
    let latest = configs.last().expect("configuration 0 always exists");
    let next = match op {
        Op::Join { groups } => ops::join(latest, abandoned, groups)?,
        Op::Leave { gids } => ops::leave(latest, gids)?,
        Op::Move { shard, gid } => ops::move_shard(latest, *shard, *gid)?,
        Op::Abandon { gid } => {
            ops::check_abandon(configs, abandoned, *gid)?;
            abandoned.insert(*gid);
            return Ok(latest.num);
        }
        Op::Query { .. } | Op::Holder { .. } => {
            unreachable!("reads are answered before execute")
        }
    };
    assert_eq!(
        next.num as usize,
        configs.len(),
        "config {} after {}",
        next.num,
        latest.num
    );
    let num = next.num;
    configs.push(next);
    Ok(num)
}
