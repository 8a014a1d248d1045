//! The leader's outgoing work: polling the shard master, pulling shards, acknowledging
//! installs; and what it does with the answers.
//!
//! ```text
//!   every poll_ticks, on the leader:
//!     stable, no master call ──► Call master: Query { num: current + 1 }
//!     each Pulling shard     ──► Call prev owner: PullShard { current, shard, after }
//!     each Acking shard      ──► Call prev owner: DeleteShard { current, shard }
//!
//!   after each Ready, on the leader:
//!     a Pulling shard's chunk applied since last asked ──► PullShard for the next one
//!
//!   on_response(call_id, bytes):
//!     config current + 1     ──► propose Entry::Config
//!     ShardData (as asked)   ──► propose Entry::InstallShard (one chunk; the next is
//!                                asked after it applied)
//!     Deleted (as asked)     ──► propose Entry::ShardAcked
//!     anything else / None   ──► move the target's cursor; retry at the next poll
//! ```
//!
//! Nothing here changes the state directly: every result goes through the log, and the
//! state machine ignores whatever no longer fits, so a deposed leader's late proposals
//! and a driver's duplicated answers are harmless. A task already proposed and not yet
//! applied is not proposed again.

use bincode::Options;
use shardkv_proto::kv::{GroupRequest, GroupResponse, MigrationReply, MigrationRequest};
use shardkv_proto::master::{self, MasterError};
use shardkv_proto::{Config, ConfigNum, NodeId, ShardId, NO_GROUP};
use shardkv_raft::{LogStore, Service};

use crate::calls::{Purpose, Target};
use crate::effect::{CallId, Effect};
use crate::message::{options, Entry, MAX_ENTRY_BYTES};
use crate::phase::Phase;
use crate::server::{Server, Task, Waiter};

/// The largest shard master reply decoded (64 MiB: a configuration is a few KiB).
const MAX_MASTER_REPLY_BYTES: u64 = 1 << 26;

impl<S: LogStore> Server<S> {
    /// On the leader, every `poll_ticks`: starts the calls that are due.
    pub(crate) fn maybe_call(&mut self) {
        if !self.replica().is_leader() {
            return;
        }
        if !self.ticks.is_multiple_of(self.options.poll_ticks) {
            return;
        }
        if self.state().is_stable() && !self.calls.busy(Target::Master) {
            self.call_master(self.state().config().num + 1);
        }
        self.ask_holders();
        let current = self.state().config().num;
        for shard in 0..self.state().nshards() {
            if self.calls.busy(Target::Shard(shard)) {
                continue;
            }
            let purpose = match self.state().phase(shard) {
                Some(Phase::Pulling { .. }) => Purpose::Pull {
                    config_num: current,
                    shard,
                },
                Some(Phase::Acking { .. }) => Purpose::Ack {
                    config_num: current,
                    shard,
                },
                _ => continue,
            };
            self.call_group(purpose);
        }
    }

    /// On the leader, after a Ready: asks at once for the next chunk of every pulling
    /// shard whose last chunk has applied since it was last asked, so a large shard moves
    /// at one round trip and one log entry per chunk rather than one per poll interval.
    /// A failed call falls back to the poll.
    pub(crate) fn ask_next_chunks(&mut self) {
        if !self.replica().is_leader() {
            return;
        }
        let current = self.state().config().num;
        for shard in 0..self.state().nshards() {
            let Some(received) = self.received(shard) else {
                continue;
            };
            if self.chunk_asked.get(&shard) == Some(received)
                || self.calls.busy(Target::Shard(shard))
            {
                continue;
            }
            let received = received.clone();
            self.chunk_asked.insert(shard, received);
            self.call_group(Purpose::Pull {
                config_num: current,
                shard,
            });
        }
        let state = self.host.state();
        self.chunk_asked
            .retain(|&shard, _| matches!(state.phase(shard), Some(Phase::Pulling { .. })));
    }

    fn call_master(&mut self, num: ConfigNum) {
        let request = master::Request {
            client: self.options.gid,
            seq: 0,
            op: master::Op::Query { num: Some(num) },
        };
        let at = self
            .calls
            .cursor(Target::Master, self.options.masters.len());
        let to = self.options.masters[at].clone();
        let bytes = options().serialize(&request).expect("a query encodes");
        self.start_call(Purpose::Master { num }, to, bytes);
    }

    fn call_group(&mut self, purpose: Purpose) {
        let (shard, request) = match purpose {
            Purpose::Pull { config_num, shard } => {
                let request = MigrationRequest::PullShard {
                    config_num,
                    shard,
                    after: self.received(shard).cloned(),
                };
                (shard, request)
            }
            Purpose::Ack { config_num, shard } => {
                (shard, MigrationRequest::DeleteShard { config_num, shard })
            }
            Purpose::Master { .. } | Purpose::CatchUp | Purpose::Holder { .. } => {
                unreachable!("masters and peers are called elsewhere")
            }
        };
        let current = self.state().config().num;
        if (self.holders.found(current, shard)).is_some_and(|holder| holder.gid == NO_GROUP) {
            self.settle_without_holder(shard);
            return;
        }
        let Some(servers) = self.previous_owner(shard) else {
            let from = self.state().prev_config().shards[shard];
            tracing::error!(
                gid = self.options.gid,
                shard,
                from,
                "previous owner has no servers"
            );
            return;
        };
        let to = servers[self.calls.cursor(Target::Shard(shard), servers.len())].clone();
        let bytes = options()
            .serialize(&GroupRequest::Migration(request))
            .expect("a migration request encodes");
        self.start_call(purpose, to, bytes);
    }

    pub(crate) fn start_call(&mut self, purpose: Purpose, to: String, bytes: Vec<u8>) {
        let timeout = self.options.call_timeout_ticks;
        let call_id = self.calls.start(purpose, self.ticks, timeout);
        tracing::debug!(gid = self.options.gid, call_id, ?purpose, to, "call");
        self.host
            .machine_mut()
            .push(Effect::Call { call_id, to, bytes });
    }

    /// The answer to call `call_id`: its reply bytes, or `None` when it failed or timed
    /// out. Answers to unknown or forgotten calls are ignored.
    pub fn on_response(
        &mut self,
        call_id: CallId,
        reply: Option<Vec<u8>>,
    ) -> Result<(), crate::ServerError> {
        let Some(purpose) = self.calls.finish(call_id) else {
            return Ok(());
        };
        if purpose == Purpose::CatchUp {
            self.on_state_reply(reply)?;
            return self.drive();
        }
        let done = match (purpose, reply) {
            (_, None) => false,
            (Purpose::Master { num }, Some(bytes)) => self.on_master_reply(num, &bytes),
            (
                Purpose::Holder {
                    config_num,
                    shard,
                    num,
                },
                Some(bytes),
            ) => self.on_holder_reply(config_num, shard, num, &bytes),
            (purpose, Some(bytes)) => self.on_group_reply(purpose, &bytes),
        };
        if !done {
            self.call_failed(purpose.target(), None);
            if let Purpose::Holder { shard, .. } = purpose {
                self.holders.failed(shard);
            }
        }
        self.drive()
    }

    /// The last key of `shard` installed so far, while it is pulling.
    fn received(&self, shard: ShardId) -> Option<&Vec<u8>> {
        match self.state().phase(shard) {
            Some(Phase::Pulling { received, .. }) => received.as_ref(),
            _ => None,
        }
    }

    /// The servers of `shard`'s owner in the previous configuration (whom its pulls and
    /// acknowledgements go to), or of the group holding its data when that owner was
    /// abandoned (`abandon.rs`).
    fn previous_owner(&self, shard: ShardId) -> Option<&[String]> {
        let current = self.state().config().num;
        if let Some(holder) = self.holders.found(current, shard) {
            return Some(&holder.servers)
                .filter(|servers| !servers.is_empty())
                .map(Vec::as_slice);
        }
        let prev = self.state().prev_config();
        prev.servers(prev.shards[shard])
    }

    /// A call to `target` failed (`hint`: the leader its server named): the next call
    /// goes to the hinted server or the next one.
    fn call_failed(&mut self, target: Target, hint: Option<NodeId>) {
        let len = match target {
            Target::Master => self.options.masters.len(),
            Target::Shard(shard) => self.previous_owner(shard).map_or(0, <[String]>::len),
            Target::Peers => self.options.peers.len(),
            Target::Holder(_) => self.options.masters.len(),
        };
        self.calls.failed(target, len, hint);
    }

    /// A shard master's reply bytes, decoded (at most [`MAX_MASTER_REPLY_BYTES`]);
    /// `None`, logged, when they do not decode.
    pub(crate) fn decode_master_reply(&self, bytes: &[u8]) -> Option<master::Response> {
        let decoded = options()
            .with_limit(MAX_MASTER_REPLY_BYTES)
            .deserialize(bytes);
        decoded
            .map_err(|error: bincode::Error| {
                tracing::warn!(gid = self.options.gid, %error, "undecodable master reply");
            })
            .ok()
    }

    /// Handles a master's answer; true when it was a useful one.
    fn on_master_reply(&mut self, num: ConfigNum, bytes: &[u8]) -> bool {
        let Some(response) = self.decode_master_reply(bytes) else {
            return false;
        };
        match response {
            Ok(config) => {
                self.maybe_propose_config(num, config);
                true
            }
            Err(MasterError::WrongLeader { hint }) => {
                self.call_failed(Target::Master, hint);
                true
            }
            Err(error) => {
                tracing::warn!(gid = self.options.gid, %error, "master refused query");
                false
            }
        }
    }

    fn maybe_propose_config(&mut self, num: ConfigNum, config: Config) {
        let wanted = self.state().config().num + 1;
        if config.num != num || num != wanted {
            return; // No newer configuration yet (the master answers its latest).
        }
        if let Err(error) = config.check() {
            tracing::error!(gid = self.options.gid, %error, "master sent a bad config");
            return;
        }
        self.propose_task(Task::Config(num), Entry::Config(config));
    }

    /// Handles another group's answer; true when it was a useful one.
    fn on_group_reply(&mut self, purpose: Purpose, bytes: &[u8]) -> bool {
        let response = match options().with_limit(MAX_ENTRY_BYTES).deserialize(bytes) {
            Ok(GroupResponse::Migration(response)) => response,
            Ok(GroupResponse::Kv(..)) | Err(_) => {
                tracing::warn!(gid = self.options.gid, ?purpose, "undecodable group reply");
                return false;
            }
        };
        match (purpose, response) {
            (
                Purpose::Pull { config_num, shard },
                Ok(MigrationReply::ShardData {
                    config_num: got_num,
                    shard: got_shard,
                    after,
                    kv,
                    next,
                    sessions,
                    clock,
                }),
            ) if (got_num, got_shard) == (config_num, shard)
                && after.as_ref() == self.received(shard) =>
            {
                let entry = Entry::InstallShard {
                    config_num,
                    shard,
                    after,
                    kv,
                    next,
                    sessions,
                    clock,
                };
                self.propose_task(Task::Install(config_num, shard), entry);
                true
            }
            (
                Purpose::Ack { config_num, shard },
                Ok(MigrationReply::Deleted {
                    config_num: got_num,
                    shard: got_shard,
                }),
            ) if (got_num, got_shard) == (config_num, shard) => {
                let entry = Entry::ShardAcked { config_num, shard };
                self.propose_task(Task::Acked(config_num, shard), entry);
                true
            }
            (purpose, Err(shardkv_proto::KvError::WrongLeader { hint })) => {
                self.call_failed(purpose.target(), hint);
                true
            }
            (purpose, other) => {
                tracing::debug!(gid = self.options.gid, ?purpose, ?other, "not yet");
                false
            }
        }
    }

    /// Proposes internal work unless the same work is already in flight.
    pub(crate) fn propose_task(&mut self, task: Task, entry: Entry) {
        if self.host.is_waiting(|w| *w == Waiter::Internal(task)) {
            return;
        }
        self.propose(entry, Waiter::Internal(task));
    }
}
