//! The duplicate table of one shard: one session per client, so that a retried mutation
//! takes effect once and gets its original answer.
//!
//! The table itself is [`shardkv_proto::session::Sessions`], shared with the shard
//! master: it classifies `(client, seq)` as new, duplicate or stale, and expires clients
//! quiet for more than the group's timeout by log index. This module fixes what a group
//! puts in it.
//!
//! Only mutations (Put, Append, Delete) are remembered, with the [`Response`] they got;
//! Gets change nothing and are answered afresh. A stale mutation gets
//! [`shardkv_proto::kv::KvError::StaleRequest`].
//!
//! Each shard has its own table, and it travels with the shard ([`Sessions::export`] as
//! [`shardkv_proto::kv::DupEntry`]s, then [`Sessions::import`]): a client whose Append
//! was applied by the old owner just before a move, and who retries at the new owner,
//! finds its session there. The importing group stamps every session as heard at the
//! install entry's index, since the old owner's log indices mean nothing here.
//!
//! Caveat: a client silent for longer than the timeout that then retries an old mutation
//! has it applied again. The timeout must be far longer than any client's retry horizon.

use shardkv_proto::kv::Response;
use shardkv_proto::session;

pub use shardkv_proto::session::DEFAULT_SESSION_TIMEOUT_ENTRIES;

/// One client's remembered latest mutation on a shard.
pub type Session = session::Session<Response>;

/// The duplicate table of one shard.
pub type Sessions = session::Sessions<Response>;
