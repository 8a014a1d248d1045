//! [`Hosted`]: the one face the driver sees of either sans-IO server.
//!
//! The shard master and the replica group share their server shell
//! (`shardkv_raft::Service`: peer messages, sync completions, batches, flush) but speak
//! different request types and emit different effects; the driver only needs bytes in
//! and [`Action`]s out. This module does the decoding and encoding at that boundary, so
//! the driver loop is written once.
//!
//! Client frames are decoded here, bounded by [`MAX_REQUEST_BYTES`]: a frame that is too
//! large or does not decode is logged and answered (a group answers
//! `KvError::Malformed`; the shard master, whose protocol has no such error, answers an
//! empty frame that its clients treat as a lost reply) without touching the log.

use shardkv_client::tls::Identity;
use shardkv_proto::kv::{
    GroupRequest, GroupResponse, KvError, MigrationRequest, MAX_REQUEST_BYTES,
};
use shardkv_proto::master::Op as MasterOp;
use shardkv_proto::{MasterError, NO_GROUP};
use shardkv_raft::{LogStore, NodeId, Service};
use shardmaster::MasterService;

/// What the driver must do, with every payload already encoded.
#[derive(Debug)]
pub enum Action {
    /// Send a raft message to peer `to`.
    Send {
        /// The peer replica.
        to: NodeId,
        /// The encoded raft message.
        bytes: Vec<u8>,
    },
    /// Answer the call the driver registered as `req_id`.
    Reply {
        /// The driver's id of the call.
        req_id: u64,
        /// The encoded answer.
        bytes: Vec<u8>,
    },
    /// Call the node at address `to` and report its answer with `on_response`.
    Call {
        /// The server's id of the call.
        call_id: u64,
        /// The address.
        to: String,
        /// The encoded request.
        bytes: Vec<u8>,
    },
}

/// A fatal server error: the node stops (and may restart from its data directory).
pub type Fatal = Box<dyn std::error::Error + Send + Sync>;

/// A sans-IO server as the driver drives it: a [`Service`] (peer messages, sync
/// completions, batches and flush come from there) whose calls and answers are bytes.
pub trait Hosted: Service {
    /// An encoded request from a caller, answered later by [`Action::Reply`] with
    /// `req_id`; or at once, for a malformed frame or a request the `caller`'s
    /// certificate does not allow, with the returned answer. (`caller` is `None`
    /// without TLS: then every request is allowed.)
    fn on_call(
        &mut self,
        req_id: u64,
        bytes: &[u8],
        caller: Option<&Identity>,
    ) -> Result<Option<Vec<u8>>, Fatal>;
    /// The answer (`None`: failure or timeout) to an [`Action::Call`].
    fn on_response(&mut self, call_id: u64, reply: Option<Vec<u8>>) -> Result<(), Fatal>;
    /// The actions produced since the last call, in order.
    fn take_actions(&mut self) -> Vec<Action>;
    /// Whether the node's disk is nearly full (its driver watches it). A group refuses
    /// client writes meanwhile; the shard master's writes are small and rare, and go on.
    fn set_out_of_space(&mut self, _out: bool) {}
}

/// The raft messages `server` produced, as actions.
fn sends(server: &mut impl Service) -> impl Iterator<Item = Action> {
    let messages = server.take_messages().into_iter();
    messages.map(|(to, bytes)| Action::Send { to, bytes })
}

/// Whether `caller` may run `op` on the shard master: without TLS anyone may; with it,
/// anyone may read (Query, Holder), and only an administrator may change the
/// configuration or abandon a group.
fn master_allows(caller: Option<&Identity>, op: &MasterOp) -> bool {
    match (caller, op) {
        (None, _) => true,
        (_, op) if op.is_read() => true,
        (Some(caller), _) => matches!(caller, Identity::Client { admin: true, .. }),
    }
}

/// The command-line name of a shard-master operation.
fn op_name(op: &MasterOp) -> &'static str {
    match op {
        MasterOp::Join { .. } => "join",
        MasterOp::Leave { .. } => "leave",
        MasterOp::Move { .. } => "move",
        MasterOp::Query { .. } => "query",
        MasterOp::Abandon { .. } => "abandon",
        MasterOp::Holder { .. } => "holder",
    }
}

/// Whether the caller (known, with TLS) may make migration request `request` of group
/// `server`: a copy of the whole state (`PullState`) only to a replica of the same group;
/// a shard's data or its deletion (`PullShard`, `DeleteShard`) only to a replica of
/// another group, and, when this replica stands at the configuration that moved the
/// shard, only to a replica of the group it moved to.
fn migration_allowed<S: LogStore>(
    server: &replica_group::Server<S>,
    caller: Option<&Identity>,
    request: &MigrationRequest,
) -> Result<(), String> {
    let who = || caller.map_or("the caller".to_string(), Identity::to_string);
    let Some(Identity::Replica(replica)) = caller else {
        return Err(format!(
            "{} may not move data: that takes a group replica's certificate",
            who()
        ));
    };
    let gid = server.gid();
    match request {
        MigrationRequest::PullState { .. } if replica.service == gid => Ok(()),
        MigrationRequest::PullState { .. } => Err(format!(
            "{} may not copy group {gid}'s state: only its own replicas may",
            who()
        )),
        MigrationRequest::PullShard {
            config_num, shard, ..
        }
        | MigrationRequest::DeleteShard { config_num, shard } => {
            let config = server.state().config();
            let owner = match config.num == *config_num {
                true => config.shards.get(*shard).copied(),
                false => None,
            };
            match (replica.service, owner) {
                (NO_GROUP, _) => Err(format!("{} is no group's replica", who())),
                (service, _) if service == gid => {
                    Err(format!("{} asks its own group for a shard", who()))
                }
                (service, Some(owner)) if service != owner => Err(format!(
                    "{} may not take shard {shard}: configuration {config_num} gives it to \
                     group {owner}",
                    who()
                )),
                _ => Ok(()),
            }
        }
    }
}

/// Decodes a caller's frame, refusing frames over [`MAX_REQUEST_BYTES`].
fn decode_request<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    if bytes.len() as u64 > MAX_REQUEST_BYTES {
        return Err(format!(
            "request of {} bytes is over the {MAX_REQUEST_BYTES} byte limit",
            bytes.len()
        ));
    }
    bincode::deserialize(bytes).map_err(|error| error.to_string())
}

/// Encodes an answer; the protocol's types always encode, so a failure is a bug that
/// the caller sees as an empty (undecodable, hence retried) frame.
fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    bincode::serialize(value).unwrap_or_else(|error| {
        tracing::error!(%error, "cannot encode an answer");
        Vec::new()
    })
}

impl<S: LogStore> Hosted for shardmaster::Server<S> {
    fn on_call(
        &mut self,
        req_id: u64,
        bytes: &[u8],
        caller: Option<&Identity>,
    ) -> Result<Option<Vec<u8>>, Fatal> {
        match decode_request::<shardmaster::Request>(bytes) {
            Ok(request) if !master_allows(caller, &request.op) => {
                let reason = format!(
                    "{} may not {}: that takes an administrator's certificate",
                    caller.map_or("the caller".to_string(), Identity::to_string),
                    op_name(&request.op),
                );
                tracing::warn!(node = self.id(), %reason, "refused a shard-master request");
                let answer: shardmaster::Response = Err(MasterError::NotAllowed { reason });
                Ok(Some(encode(&answer)))
            }
            Ok(request) => self
                .on_request(req_id, request)
                .map(|()| None)
                .map_err(Into::into),
            Err(reason) => {
                tracing::warn!(node = self.id(), %reason, "malformed shard-master request");
                Ok(Some(Vec::new()))
            }
        }
    }

    fn on_response(&mut self, _call_id: u64, _reply: Option<Vec<u8>>) -> Result<(), Fatal> {
        Ok(())
    }

    fn take_actions(&mut self) -> Vec<Action> {
        let replies = self.take_replies().into_iter();
        let replies = replies.map(|shardmaster::Reply { req_id, response }| Action::Reply {
            req_id,
            bytes: encode(&response),
        });
        sends(self).chain(replies).collect()
    }
}

impl<S: LogStore> Hosted for replica_group::Server<S> {
    fn on_call(
        &mut self,
        req_id: u64,
        bytes: &[u8],
        caller: Option<&Identity>,
    ) -> Result<Option<Vec<u8>>, Fatal> {
        let outcome = match decode_request::<GroupRequest>(bytes) {
            Ok(GroupRequest::Migration(request)) if caller.is_some() => {
                match migration_allowed(self, caller, &request) {
                    Ok(()) => self.on_migration_request(req_id, request),
                    Err(reason) => {
                        tracing::warn!(node = self.id(), %reason, "refused a migration request");
                        let answer = GroupResponse::Migration(Err(KvError::NotAllowed { reason }));
                        return Ok(Some(encode(&answer)));
                    }
                }
            }
            Ok(GroupRequest::Kv(request)) => self.on_request(req_id, request),
            Ok(GroupRequest::Migration(request)) => self.on_migration_request(req_id, request),
            Err(reason) => {
                tracing::warn!(node = self.id(), %reason, "malformed group request");
                let answer = GroupResponse::Kv(Err(KvError::Malformed { reason }), 0);
                return Ok(Some(encode(&answer)));
            }
        };
        outcome.map(|()| None).map_err(Into::into)
    }

    fn on_response(&mut self, call_id: u64, reply: Option<Vec<u8>>) -> Result<(), Fatal> {
        Ok(replica_group::Server::on_response(self, call_id, reply)?)
    }

    fn set_out_of_space(&mut self, out: bool) {
        replica_group::Server::set_out_of_space(self, out);
    }

    fn take_actions(&mut self) -> Vec<Action> {
        use replica_group::Effect;
        let effects = self.take_effects().into_iter();
        let effects = effects.map(|effect| match effect {
            Effect::Reply {
                req_id,
                response,
                clock,
            } => Action::Reply {
                req_id,
                bytes: encode(&GroupResponse::Kv(response, clock)),
            },
            Effect::MigrationReply { req_id, response } => Action::Reply {
                req_id,
                bytes: encode(&GroupResponse::Migration(response)),
            },
            Effect::Call { call_id, to, bytes } => Action::Call { call_id, to, bytes },
        });
        sends(self).chain(effects).collect()
    }
}
