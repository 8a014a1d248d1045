//! The duplicate table of one shard: one session per client, so that a retried mutation
//! takes effect once and gets its original answer.
//!
//! The table itself is [`shardkv_proto::session::Sessions`], shared with the shard
//! master: it classifies `(client, seq, seen)` as new, duplicate, stale or of an unknown
//! client that cannot prove it new, and forgets clients quiet for more than the group's
//! timeout (an hour of cluster time by default) by the shard's clock
//! ([`crate::store::ShardClock`]). This module fixes what a group puts in it.
//!
//! Only mutations (Put, Append, Delete) are remembered, with the [`Response`] they got;
//! Gets change nothing and are answered afresh. A stale mutation gets
//! [`shardkv_proto::kv::KvError::StaleRequest`]; an unknown client's mutation that cannot
//! prove it never applied gets [`shardkv_proto::kv::KvError::UnknownSession`].
//!
//! Each shard has its own table, and it travels with the shard (as a
//! [`shardkv_proto::kv::DupTable`], with the shard's clock): a client whose Append was
//! applied by the old owner just before a move, and who retries at the new owner, finds
//! its session there, and times keep their meaning because the shard's clock continues.

use shardkv_proto::kv::Response;
use shardkv_proto::session;

pub use shardkv_proto::session::DEFAULT_SESSION_TIMEOUT_MS;

/// One client's remembered latest mutation on a shard.
pub type Session = session::Session<Response>;

/// The duplicate table of one shard.
pub type Sessions = session::Sessions<Response>;
