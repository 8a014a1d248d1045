//! # shardkv-raft: a sans-IO replicated log over raft-rs
//!
//! Every shardkv server (shard-master replica, replica-group replica) sits on a
//! [`Replica`]: a Raft group member that turns events into effects and never does I/O of
//! its own. raft-rs 0.7 (`RawNode`) does the protocol; this crate does the rest of what
//! a real server needs around it:
//!
//! ```text
//!   driver (simulator or tokio runtime)
//!     │ tick / step(bytes) / propose / read_index / change_membership / snapshot
//!     ▼
//!   Replica ──────── RawNode (raft-rs) ───── reads ─────┐
//!     │ advance(): Ready protocol                         ▼
//!     ├── append / hard state / snapshot / ONE sync ──► Store<B: Backend>
//!     │                                                  ├── MemBackend (tests, sim)
//!     ▼                                                  └── WalBackend<Disk> (files)
//!   Output { messages, applied, reads, leader_term }
//!     │ Pending::advance: settle against the server's waiters
//!     ▼
//!   Settled { messages, applied: [Step + its waiters], reads, failed waiters }
//! ```
//!
//! ## The protocol in prose
//!
//! The driver feeds events and then calls [`Replica::advance`], which runs raft-rs's
//! Ready protocol in raft-rs's order: leader messages go out at once, a snapshot from the
//! leader is installed, committed entries are handed over, new entries and the hard
//! state are written, the store is synced once, and only then do the messages that
//! promise durability (votes, append acknowledgements) leave. The driver sends
//! `Output::messages`, applies `Output::applied` to its state machine in order, serves
//! `Output::reads` once applied, and settles its proposals against what applied.
//!
//! A server that answers clients keeps who waits on each proposal in a [`Pending`]:
//! [`Pending::advance`] runs `advance` and hands the output back as [`Settled`], each
//! applied [`Step`] with the waiters it settles and the waiters that must be failed
//! (displaced, passed over, covered by a snapshot, or orphaned by a step-down). Proposals
//! are tracked there and nowhere else.
//!
//! Both shardkv servers are built on one shell, [`Host`] and [`Service`]: a [`Host`]
//! holds the replica, its [`Pending`] waiters and a [`StateMachine`], runs the Ready
//! protocol, applies and answers, snapshots through [`Replica::maybe_snapshot`] (images
//! written with [`encode_image`]), and stops on a [`ServerError`]; [`Service`] gives
//! every server the same peer messages, sync completions, batches and flush. A service
//! writes only its state machine and its own events.
//!
//! State machines are volatile: on restart, `Replica::open` over the same store hands
//! back the stored snapshot first and then replays the committed log after it. The
//! state machine hands its bytes back through [`Replica::snapshot`] when
//! [`Replica::should_snapshot`] says the log reached `snapshot_bytes_threshold` (and, when
//! `snapshot_log_multiple` is set, that multiple of the last snapshot's size); the log
//! is compacted and lagging followers receive the snapshot.
//!
//! ## Invariants
//!
//! - Nothing is acknowledged to a peer before it is synced ([`LogStore`] states what is
//!   durable when), whether `advance` syncs or a driver's [`SyncSink`] does.
//! - `Output::applied` is in strictly increasing log order, each index at most once per
//!   process lifetime; a snapshot resets the order to its index.
//! - A [`Proposal`] commits iff an `Applied::Command` (or `Membership`) with the same
//!   index and term shows up; [`Pending`] fails the waiters of the ones that may not
//!   (eagerly: callers dedupe).
//! - Deterministic: no clock, no unseeded randomness (raft-rs's election timeout range is
//!   pinned to a single value and the spread is drawn from the configuration's seed),
//!   sorted outputs.
//!
//! ## Caveats
//!
//! - No learners, no leases (reads use ReadIndex, `ReadOnlyOption::Safe`), no async
//!   log fetch, no snapshot streaming (a snapshot is one message).
//! - A read or proposal dropped by raft-rs for lack of a leader is not reported; callers
//!   time out and retry.
//! - Membership changes one at a time (`Error::Busy` otherwise); see `membership.rs`.

#![warn(missing_docs)]

mod backend;
mod codec;
mod config;
mod disk;
mod election;
mod error;
mod host;
mod identity;
mod image;
mod input;
mod log_store;
mod logger;
mod membership;
#[cfg(feature = "mutants")]
pub mod mutants;
mod output;
mod pending;
mod ready;
mod replica;
mod snapshot_read;
mod snapshots;
mod store;
mod store_write;
mod wal;

pub use raft;

pub use backend::{Backend, KeyValues, MemBackend, SnapshotMaker, SnapshotReader};
pub use config::ReplicaConfig;
pub use disk::{Disk, DiskFile, OsDisk, OsFile, SyncJob};
pub use error::{Error, ServerError, SnapshotError, StoreError};
pub use host::{check_restored, Command, Host, Replicated, Service, SnapshotEncoder, StateMachine};
pub use identity::{check_identity, record_identity, DataDirOwner, IDENTITY_FILE};
pub use image::{
    decode_command, decode_entry, decode_image, encode_command, encode_image, stamp_command,
};
pub use log_store::{LogStore, SnapshotData};
pub use logger::{discard_logger, tracing_logger};
pub use membership::Membership;
pub use output::{Applied, Output};
pub use pending::{Fate, Pending, Proposal, Settled, Step};
pub use replica::{EarlySink, Replica, SnapshotOffer, SyncSink};
pub use store::Store;
pub use wal::{Background, WalBackend, SEGMENT_BYTES};

/// A Raft term.
pub type Term = u64;
/// A Raft node's id (non-zero) and a Raft log index: the same types the protocol uses.
pub use shardkv_proto::{Index, NodeId};
