//! The shard master's duplicate table: one session per client, so a retried request
//! takes effect once.
//!
//! The table itself is [`shardkv_proto::session::Sessions`], shared with the replica
//! groups: it classifies `(client, seq)` as new, duplicate or stale, and forgets clients
//! quiet for more than the timeout (an hour of cluster time by default), or the least
//! recently heard beyond [`shardkv_proto::session::DEFAULT_MAX_SESSIONS`]. This module
//! fixes what the shard master puts in it.
//!
//! Only changing requests (Join, Leave, Move, Abandon) are remembered; a Query or a
//! Holder query changes nothing and is answered afresh. A duplicate gets the remembered
//! [`Outcome`] back; a stale request gets [`shardkv_proto::MasterError::StaleRequest`].
//! The outcome is stored as the number of the configuration the request created (for an
//! Abandon, the latest when it applied; all configurations are kept, so the answer can be
//! rebuilt) or its error: a few bytes per client, whatever the configuration's
//! size.
//!
//! Unlike a group's, the master's requests carry no observation of its clock, so a
//! request of a client the table does not know is taken as new. A client forgotten (quiet
//! for the timeout) that then retries an old request has it applied again; the
//! configurations make that visible rather than harmful: a Join then fails with
//! `AlreadyJoined`, a Leave with `UnknownGroup`, an Abandon with `Abandoned`, and a
//! Move makes one more configuration with the same placement. Administrators' retries
//! end within the admin client's deadline (30 s by default), far inside the hour.

use shardkv_proto::{session, ConfigNum, MasterError};

pub use shardkv_proto::session::DEFAULT_SESSION_TIMEOUT_MS;

/// What a changing request produced: the configuration it created, or its error.
pub type Outcome = Result<ConfigNum, MasterError>;

/// One client's remembered latest request.
pub type Session = session::Session<Outcome>;

/// The shard master's duplicate table.
pub type Sessions = session::Sessions<Outcome>;
