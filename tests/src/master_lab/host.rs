//! The simulator host around one master replica: it turns simulator events into
//! [`MasterLab`] calls, decodes client requests, and carries the replica's effects out
//! (peer messages onto the network, replies back to the calling client).
//!
//! Wire format between the real `Admin` and the host: a bincode 1.3 [`Request`] in, a
//! bincode [`Response`] out, exactly what the client library sends and expects. A request
//! that does not decode is dropped (and traced); the client sees a timeout and retries.

use crate::sim_disk::SYNC_LATENCY;
use std::cell::RefCell;
use std::rc::Rc;

use bincode::Options;
use labrpc_sim::{Context, Host, RequestId, SimNode};
use shardkv_proto::{Op, Request, Response};

use super::lab::{MasterEffect, MasterLab, Peer};

/// The largest client request the host decodes: above any sane log entry limit, so that
/// the replica itself answers an over-large request (`RequestTooLarge`).
pub const REQUEST_BYTES_MAX: u64 = 4 << 20;

/// Bound on drain rounds after one event.
const DRAIN_ROUNDS_MAX: usize = 64;

/// Simulator node ids of the replicas, filled once every host exists.
pub type ReplicaIds = Rc<RefCell<Vec<SimNode>>>;

/// One master replica hosted by the simulator.
pub struct MasterHost<L: MasterLab> {
    me: Peer,
    /// The replica under test.
    pub lab: L,
    ids: ReplicaIds,
    leading: bool,
}

/// `bytes` as a client request, bounded in size, rejecting trailing bytes.
pub fn decode_request(bytes: &[u8]) -> Result<Request, bincode::Error> {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_limit(REQUEST_BYTES_MAX)
        .deserialize(bytes)
}

/// One short trace line for `request` (a Join may list thousands of groups).
fn describe(request: &Request) -> String {
    let Request { client, seq, op } = request;
    let what = match op {
        Op::Join { groups } if groups.len() > 8 => format!("join {} groups", groups.len()),
        Op::Join { groups } => format!("join {:?}", groups.keys().collect::<Vec<_>>()),
        Op::Leave { gids } => format!("leave {gids:?}"),
        Op::Move { shard, gid } => format!("move {shard} to {gid}"),
        Op::Query { num } => format!("query {num:?}"),
        Op::Abandon { gid } => format!("abandon {gid}"),
        Op::Holder { shard, num } => format!("holder of shard {shard} for config {num}"),
    };
    format!("client {client} seq {seq}: {what}")
}

fn encode_response(response: &Response) -> Vec<u8> {
    bincode::serialize(response).expect("a response always encodes")
}

impl<L: MasterLab> MasterHost<L> {
    /// Host `lab` as replica `me`.
    pub fn new(me: Peer, lab: L, ids: ReplicaIds) -> Self {
        MasterHost {
            me,
            lab,
            ids,
            leading: false,
        }
    }

    fn peer_of(&self, id: SimNode) -> Option<Peer> {
        self.ids.borrow().iter().position(|&x| x == id)
    }

    /// Carry out everything the replica asked for since the last drain.
    pub fn drain(&mut self, cx: &mut Context<'_>) {
        let leading = self.lab.is_leader();
        if leading != self.leading {
            self.leading = leading;
            cx.trace("role", format_args!("{} leader {leading}", self.me));
        }
        for _ in 0..DRAIN_ROUNDS_MAX {
            let effects = self.lab.take_effects();
            if effects.is_empty() {
                return;
            }
            for effect in effects {
                self.carry_out(cx, effect);
            }
        }
        panic!(
            "master replica {}: effects still pending after {DRAIN_ROUNDS_MAX} drains",
            self.me
        );
    }

    fn carry_out(&mut self, cx: &mut Context<'_>, effect: MasterEffect) {
        match effect {
            MasterEffect::Send { to, bytes } => {
                let id = self.ids.borrow().get(to).copied();
                match id {
                    Some(id) if to != self.me => cx.send(id, bytes),
                    _ => cx.trace("bad-send", format_args!("replica {} sent to {to}", self.me)),
                }
            }
            MasterEffect::Reply { req_id, response } => {
                match &response {
                    Ok(config) => cx.trace(
                        "reply",
                        format_args!("{} ok config {}", self.me, config.num),
                    ),
                    Err(error) => cx.trace("reply", format_args!("{} {error}", self.me)),
                }
                cx.reply(req_id, encode_response(&response));
            }
            MasterEffect::Wake { token } => cx.wake_after(SYNC_LATENCY, token),
        }
    }
}

impl<L: MasterLab> Host for MasterHost<L> {
    fn on_message(&mut self, cx: &mut Context<'_>, from: SimNode, payload: Vec<u8>) {
        if let Some(from) = self.peer_of(from) {
            self.lab.on_peer_message(from, payload);
            self.drain(cx);
        }
    }

    fn on_request(&mut self, cx: &mut Context<'_>, id: RequestId, payload: Vec<u8>) {
        match decode_request(&payload) {
            Ok(request) => {
                cx.trace(
                    "request",
                    format_args!("{} {}", self.me, describe(&request)),
                );
                self.lab.on_request(id, request);
                self.drain(cx);
            }
            Err(error) => cx.trace("bad-request", format_args!("{} {error}", self.me)),
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
