//! [`Effect`]: what a [`crate::Server`] asks its driver to do.
//!
//! ```text
//!   Server ──take_effects()──► Reply { req_id, Response, clock }   answer a client request
//!                              MigrationReply { req_id, .. }       answer another group
//!                              Call  { call_id, to: address, .. }  ask a shard master or a
//!                                                                  group; answer comes back
//!                                                                  as on_response(call_id, ..)
//! ```
//!
//! A `Call` must eventually be answered by `Server::on_response(call_id, reply)`, with
//! `None` when the call failed or timed out; the server also forgets calls older than its
//! call timeout, so a driver that drops one only delays the work it was for.

use shardkv_proto::kv::{MigrationResponse, Response};
use shardkv_proto::Millis;

/// The driver's id for one incoming request (client or group), echoed in its reply.
pub type RequestId = u64;

/// The server's id for one outgoing call, echoed by the driver in `on_response`.
pub type CallId = u64;

/// Something the driver must do on the server's behalf (raft messages to the group's
/// replicas come separately, from `Service::take_messages`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Answer the client request the driver registered as `req_id` (on the wire, a
    /// `GroupResponse::Kv`).
    Reply {
        /// The request's id, as given to `Server::on_request`.
        req_id: RequestId,
        /// The answer.
        response: Response,
        /// The clock of the key's shard when answered from the state, else 0 (see
        /// `GroupResponse::Kv`).
        clock: Millis,
    },
    /// Answer the migration request of another group registered as `req_id` (on the
    /// wire, a `GroupResponse::Migration`).
    MigrationReply {
        /// The request's id, as given to `Server::on_migration_request`.
        req_id: RequestId,
        /// The answer.
        response: MigrationResponse,
    },
    /// Send `bytes` to the server at address `to` (a shard master or a replica of
    /// another group, as addresses appear in a `Config`) and report its reply bytes, or
    /// `None` on failure or timeout, through `Server::on_response(call_id, ..)`.
    ///
    /// Bytes to a shard master are a bincode `shardkv_proto::master::Request` (a Query);
    /// to a group, a bincode `shardkv_proto::kv::GroupRequest::Migration`. Replies are
    /// the matching `master::Response` and `kv::GroupResponse`.
    Call {
        /// The call's id.
        call_id: CallId,
        /// The server's address.
        to: String,
        /// The encoded request.
        bytes: Vec<u8>,
    },
}
