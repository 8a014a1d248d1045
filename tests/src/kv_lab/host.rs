//! The simulator host around one replica group replica: it turns simulator events into
//! [`KvLab`] calls and carries the replica's effects out: peer messages onto the network,
//! replies back to the caller, and calls to masters and other groups through
//! [`Context::call`], their addresses resolved in the harness's [`AddressBook`].
//!
//! Wire format: a bincode 1.3 [`GroupRequest`] in, a bincode [`GroupResponse`] out,
//! exactly what the client library and other groups send and expect. A request that does
//! not decode is dropped (and traced); the caller sees a timeout and retries.

use std::collections::BTreeMap;

use bincode::Options;
use labrpc_sim::{Context, Host, RequestId, SimNode};
use shardkv_proto::kv::{GroupRequest, GroupResponse, MAX_REQUEST_BYTES};
use shardkv_proto::GroupId;

use super::lab::{CallId, KvEffect, KvLab, Peer};
use crate::master_lab::host::ReplicaIds;
use crate::sim_disk::SYNC_LATENCY;
use crate::sim_transport::AddressBook;

/// Bound on drain rounds after one event.
const DRAIN_ROUNDS_MAX: usize = 64;

/// How long the simulator waits for the answer to a replica's call.
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// One replica group replica hosted by the simulator.
pub struct KvHost<L: KvLab> {
    gid: GroupId,
    me: Peer,
    /// The replica under test.
    pub lab: L,
    ids: ReplicaIds,
    book: AddressBook,
    /// Simulator call id to the replica's call id.
    calls: BTreeMap<labrpc_sim::CallId, CallId>,
    leading: bool,
}

/// `bytes` as a group request, bounded in size, rejecting trailing bytes.
pub fn decode_group_request(bytes: &[u8]) -> Result<GroupRequest, bincode::Error> {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_limit(MAX_REQUEST_BYTES)
        .deserialize(bytes)
}

fn encode_response(response: &GroupResponse) -> Vec<u8> {
    bincode::serialize(response).expect("a response always encodes")
}

impl<L: KvLab> KvHost<L> {
    /// Host `lab` as replica `me` of group `gid`.
    pub fn new(gid: GroupId, me: Peer, lab: L, ids: ReplicaIds, book: AddressBook) -> Self {
        KvHost {
            gid,
            me,
            lab,
            ids,
            book,
            calls: BTreeMap::new(),
            leading: false,
        }
    }

    fn peer_of(&self, id: SimNode) -> Option<Peer> {
        self.ids.borrow().iter().position(|&x| x == id)
    }

    /// Carry out everything the replica asked for since the last drain.
    pub fn drain(&mut self, cx: &mut Context<'_>) {
        for _ in 0..DRAIN_ROUNDS_MAX {
            let effects = self.lab.take_effects();
            if effects.is_empty() {
                let leading = self.lab.is_leader();
                if leading != self.leading {
                    self.leading = leading;
                    cx.trace("role", format_args!("{} leader {leading}", self.me));
                }
                return;
            }
            for effect in effects {
                self.carry_out(cx, effect);
            }
        }
        panic!(
            "group {} replica {}: effects still pending after {DRAIN_ROUNDS_MAX} drains",
            self.gid, self.me
        );
    }

    fn carry_out(&mut self, cx: &mut Context<'_>, effect: KvEffect) {
        match effect {
            KvEffect::Send { to, bytes } => {
                let id = self.ids.borrow().get(to).copied();
                match id {
                    Some(id) if to != self.me => cx.send(id, bytes),
                    _ => cx.trace("bad-send", format_args!("replica {} sent to {to}", self.me)),
                }
            }
            KvEffect::Reply {
                req_id,
                response,
                clock,
            } => {
                let what = response.as_ref().map(|reply| match reply {
                    shardkv_proto::kv::Reply::Value(v) => v.as_ref().map_or(0, Vec::len),
                    shardkv_proto::kv::Reply::Done => 0,
                });
                cx.trace("reply", format_args!("{} {what:?}", self.me));
                cx.reply(req_id, encode_response(&GroupResponse::Kv(response, clock)));
            }
            KvEffect::MigrationReply { req_id, response } => {
                let what = response.as_ref().map(describe_migration_reply);
                cx.trace("migration-reply", format_args!("{} {what:?}", self.me));
                cx.reply(req_id, encode_response(&GroupResponse::Migration(response)));
            }
            KvEffect::Wake { token } => cx.wake_after(SYNC_LATENCY, token),
            KvEffect::Call { call_id, to, bytes } => match self.book.resolve(&to) {
                Some(id) => {
                    let sim_call = cx.call(id, bytes, CALL_TIMEOUT);
                    self.calls.insert(sim_call, call_id);
                }
                None => {
                    cx.trace("bad-call", format_args!("{} to unknown {to:?}", self.me));
                    self.lab.on_response(call_id, None);
                }
            },
        }
    }
}

/// One short trace line for a client operation (values can be long).
fn describe_op(op: &shardkv_proto::kv::Op) -> String {
    use shardkv_proto::kv::Op::*;
    let key = crate::linearizability::history::show_bytes(op.key(), 16);
    match op {
        Get { .. } => format!("get {key}"),
        Put { value, .. } => format!("put {key} ({} bytes)", value.len()),
        Append { value, .. } => format!("append {key} ({} bytes)", value.len()),
        Delete { .. } => format!("delete {key}"),
    }
}

fn describe_migration_reply(reply: &shardkv_proto::kv::MigrationReply) -> String {
    use shardkv_proto::kv::MigrationReply::*;
    match reply {
        ShardData {
            config_num,
            shard,
            kv,
            ..
        } => format!("data config {config_num} shard {shard}: {} keys", kv.len()),
        NotReady { current } => format!("not ready (at {current})"),
        Deleted { config_num, shard } => format!("deleted config {config_num} shard {shard}"),
        StateMeta { view, meta } => format!("state view {view}: {} bytes of metadata", meta.len()),
        StateChunk {
            view, pairs, last, ..
        } => format!("state view {view}: {} keys, last {last}", pairs.len()),
        StateUnavailable { applied } => format!("state unavailable (applied {applied})"),
    }
}

impl<L: KvLab> Host for KvHost<L> {
    fn on_message(&mut self, cx: &mut Context<'_>, from: SimNode, payload: Vec<u8>) {
        if let Some(from) = self.peer_of(from) {
            self.lab.on_peer_message(from, payload);
            self.drain(cx);
        }
    }

    fn on_request(&mut self, cx: &mut Context<'_>, id: RequestId, payload: Vec<u8>) {
        match decode_group_request(&payload) {
            Ok(GroupRequest::Kv(request)) => {
                let (client, seq) = (request.client, request.seq);
                let what = describe_op(&request.op);
                cx.trace("request", format_args!("{} {client}/{seq} {what}", self.me));
                self.lab.on_request(id, request);
            }
            Ok(GroupRequest::Migration(request)) => {
                cx.trace("migration", format_args!("{} {request:?}", self.me));
                self.lab.on_migration_request(id, request);
            }
            Err(error) => cx.trace("bad-request", format_args!("{} {error}", self.me)),
        }
        self.drain(cx);
    }

    fn on_response(
        &mut self,
        cx: &mut Context<'_>,
        call: labrpc_sim::CallId,
        reply: Option<Vec<u8>>,
    ) {
        if let Some(call_id) = self.calls.remove(&call) {
            self.lab.on_response(call_id, reply);
            self.drain(cx);
        }
    }

    fn on_tick(&mut self, cx: &mut Context<'_>) {
        self.lab.on_tick();
        self.drain(cx);
    }

    fn on_wake(&mut self, cx: &mut Context<'_>, token: u64) {
        self.lab.on_wake(token);
        self.drain(cx);
    }
}
