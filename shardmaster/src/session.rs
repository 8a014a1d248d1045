//! The shard master's duplicate table: one session per client, so a retried request
//! takes effect once.
//!
//! The table itself is [`shardkv_proto::session::Sessions`], shared with the replica
//! groups: it classifies `(client, seq)` as new, duplicate or stale, and expires clients
//! quiet for more than the timeout by log index (so a table holds at most `timeout + 1`
//! sessions). This module fixes what the shard master puts in it.
//!
//! Only changing requests (Join, Leave, Move, Abandon) are remembered; a Query or a
//! Holder query changes nothing and is answered afresh. A duplicate gets the remembered
//! [`Outcome`] back; a stale request gets [`shardkv_proto::MasterError::StaleRequest`].
//! The outcome is stored as the number of the configuration the request created (for an
//! Abandon, the latest when it applied; all configurations are kept, so the answer can be
//! rebuilt) or its error: a few bytes per client, whatever the configuration's
//! size.
//!
//! Caveat: a client silent for longer than the timeout that then retries an old request
//! is treated as new and the request is applied again (a Join then fails with
//! `AlreadyJoined`, a Leave with `UnknownGroup`; a Move makes one more configuration).
//! The timeout must be far longer than any client's retry horizon.

use shardkv_proto::{session, ConfigNum, MasterError};

pub use shardkv_proto::session::DEFAULT_SESSION_TIMEOUT_ENTRIES;

/// What a changing request produced: the configuration it created, or its error.
pub type Outcome = Result<ConfigNum, MasterError>;

/// One client's remembered latest request.
pub type Session = session::Session<Outcome>;

/// The shard master's duplicate table.
pub type Sessions = session::Sessions<Outcome>;
