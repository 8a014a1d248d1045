//! `Replica::advance`: raft-rs's Ready protocol, in raft-rs's order.
//!
//! ```text
//!  ready() ─► 1 messages (leader only; may leave before persistence: to the early
//!             sink at once when the driver set one, else into the Output)
//!             2 snapshot from the leader ─► store.apply_snapshot, Applied::Snapshot
//!             3 committed entries ─► Applied::{Command, Membership} (conf changes applied)
//!             4 unstable entries ─► store.append
//!             5 hard state ─► store.set_hard_state
//!             6 ONE store.sync() when raft-rs says the Ready must be synced
//!             7 persisted messages (votes, append responses: they promise step 6)
//!  advance() ─► LightReady: commit index ─► hard state, messages, committed entries
//!  advance_apply()
//! ```
//!
//! With a sync sink ([`Replica::sync_with`], the production driver), step 6 becomes a
//! request: the sink gets the Ready's number, the Ready goes back to raft-rs with
//! `advance_append_async`, and the messages of step 7 (and of any Ready after it, until
//! the sync is reported) wait in `SyncProgress::held`. `Replica::on_synced` tells
//! raft-rs (`on_persist_ready`), and the next `advance` releases the held messages
//! first. Readies holding a leader's snapshot are still synced in place.
//!
//! One call to `advance` runs rounds of this until raft-rs has nothing more (bounded by
//! `MAX_READY_ROUNDS`), so the Output holds everything to do. A snapshot sent to a
//! follower is reported to raft-rs as delivered at once: the network may lose it, and
//! then the follower's rejection of the next append makes raft-rs send it again (left
//! in the "snapshot in flight" state, the leader would wait forever).

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeV2, Entry, EntryType, Message, MessageType, Snapshot};
use raft::{ReadState, Ready, SnapshotStatus, StateRole};

use crate::membership::sorted_voters;
use crate::{Applied, Error, LogStore, Output, Replica};

/// Ready rounds per `advance`; raft-rs settles in one or two (auto-leave, snapshot reports).
const MAX_READY_ROUNDS: usize = 8;

impl<S: LogStore> Replica<S> {
    /// Run raft-rs's Ready protocol (persist entries and hard state, one sync, then
    /// persisted messages; committed entries in order). Call after every
    /// tick/step/propose/read/change. Returns everything to do.
    pub fn advance(&mut self) -> Result<Output, Error> {
        // Deferred store upkeep first: if it fails, no Ready has been taken yet.
        self.raw.mut_store().tidy()?;
        let mut out = Output::default();
        self.release_held(&mut out);
        if let Some(snapshot) = self.restored.take() {
            let meta = snapshot.get_metadata();
            out.applied.push(Applied::Snapshot {
                index: meta.index,
                term: meta.term,
                data: snapshot.data.to_vec(),
            });
        }
        for _ in 0..MAX_READY_ROUNDS {
            self.maintain_membership();
            if !self.raw.has_ready() {
                break;
            }
            self.run_ready(&mut out)?;
        }
        out.leader_term = (self.raw.raft.state == StateRole::Leader).then_some(self.term());
        Ok(out)
    }

    /// One Ready round.
    fn run_ready(&mut self, out: &mut Output) -> Result<(), Error> {
        let mut ready = self.raw.ready();
        let mut snapshots_sent = Vec::new();
        match &mut self.early {
            Some(sink) => {
                let mut early = Output::default();
                emit(ready.take_messages(), &mut early, &mut snapshots_sent)?;
                for (to, bytes) in early.messages {
                    sink(to, bytes);
                }
            }
            None => emit(ready.take_messages(), out, &mut snapshots_sent)?,
        }
        if !ready.snapshot().is_empty() {
            self.install_snapshot(ready.snapshot().clone(), out)?;
        }
        self.apply_entries(ready.take_committed_entries(), out)?;
        let store = self.raw.mut_store();
        store.append(ready.entries())?;
        if let Some(hs) = ready.hs() {
            store.set_hard_state(hs)?;
        }
        out.reads
            .extend(ready.take_read_states().into_iter().filter_map(decode_read));
        let deferred = self.sync_sink.is_some()
            && ready.snapshot().is_empty()
            && (ready.must_sync() || self.sync.outstanding());
        if deferred {
            self.defer_sync(ready, &mut snapshots_sent)?;
        } else {
            if ready.must_sync() {
                self.raw.mut_store().sync()?;
                // Everything written so far is durable, whatever the sink is still doing.
                self.sync.done = self.sync.asked;
                self.release_held(out);
            }
            emit(ready.take_persisted_messages(), out, &mut snapshots_sent)?;
            let mut light = self.raw.advance(ready);
            if light.commit_index().is_some() {
                // Commit may lag on disk; it is synced with the next Ready that must sync.
                let hs = self.raw.raft.hard_state();
                self.raw.mut_store().set_hard_state(&hs)?;
            }
            emit(light.take_messages(), out, &mut snapshots_sent)?;
            self.apply_entries(light.take_committed_entries(), out)?;
            self.raw.advance_apply();
        }
        for to in snapshots_sent {
            self.raw.report_snapshot(to, SnapshotStatus::Finish);
        }
        Ok(())
    }

    /// The rest of a Ready whose writes (or an earlier Ready's) the driver syncs: asks
    /// the sink to sync it, holds its persisted messages until that is reported, and
    /// hands it back to raft-rs as not yet persisted.
    fn defer_sync(&mut self, mut ready: Ready, snapshots_sent: &mut Vec<u64>) -> Result<(), Error> {
        if ready.must_sync() {
            self.sync.asked = ready.number();
            let job = self.raw.mut_store().sync_job()?;
            if let Some(sink) = &mut self.sync_sink {
                sink(ready.number(), job);
            }
        }
        let mut persisted = Output::default();
        emit(
            ready.take_persisted_messages(),
            &mut persisted,
            snapshots_sent,
        )?;
        let wait_for = self.sync.asked;
        self.sync.held.extend(
            persisted
                .messages
                .into_iter()
                .map(|(to, bytes)| (wait_for, to, bytes)),
        );
        self.raw.advance_append_async(ready);
        self.raw.advance_apply();
        Ok(())
    }

    /// Moves the held messages whose Ready is synced into `out`, in order.
    pub(crate) fn release_held(&mut self, out: &mut Output) {
        while let Some(&(wait_for, ..)) = self.sync.held.front() {
            if wait_for > self.sync.done {
                break;
            }
            if let Some((_, to, bytes)) = self.sync.held.pop_front() {
                out.messages.push((to, bytes));
            }
        }
    }

    /// Installs a snapshot received from the leader.
    fn install_snapshot(&mut self, snapshot: Snapshot, out: &mut Output) -> Result<(), Error> {
        let meta = snapshot.get_metadata().clone();
        let data = snapshot.data.to_vec();
        self.raw.mut_store().apply_snapshot(snapshot)?;
        self.stagger_next = true;
        self.voters = sorted_voters(meta.get_conf_state());
        self.history =
            crate::membership::ConfHistory::new(meta.index, meta.get_conf_state().clone());
        out.applied.push(Applied::Snapshot {
            index: meta.index,
            term: meta.term,
            data,
        });
        Ok(())
    }

    /// Hands committed entries to the state machine, applying conf changes to raft-rs.
    fn apply_entries(&mut self, entries: Vec<Entry>, out: &mut Output) -> Result<(), Error> {
        for entry in entries {
            let (index, term) = (entry.index, entry.term);
            match entry.get_entry_type() {
                EntryType::EntryNormal if entry.data.is_empty() => {}
                EntryType::EntryNormal => {
                    out.applied.push(Applied::Command {
                        index,
                        term,
                        data: entry.data.to_vec(),
                    });
                }
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    self.apply_conf_entry(&entry, out)?;
                }
            }
        }
        Ok(())
    }

    /// Applies one committed conf change entry. A change raft-rs refuses at apply time is
    /// skipped on every replica alike (it is deterministic); like an empty entry it is not
    /// reported, so its proposal is settled as lost by the next entry or the step-down.
    fn apply_conf_entry(&mut self, entry: &Entry, out: &mut Output) -> Result<(), Error> {
        let (index, term) = (entry.index, entry.term);
        let decode_error = |error: protobuf::ProtobufError| {
            Error::Decode(format!("committed conf change at index {index}: {error}"))
        };
        let applied = if entry.get_entry_type() == EntryType::EntryConfChange {
            let cc = ConfChange::parse_from_bytes(&entry.data).map_err(decode_error)?;
            self.raw.apply_conf_change(&cc)
        } else {
            let cc = ConfChangeV2::parse_from_bytes(&entry.data).map_err(decode_error)?;
            self.raw.apply_conf_change(&cc)
        };
        match applied {
            Ok(cs) => {
                self.voters = sorted_voters(&cs);
                self.history.record(index, cs);
                out.applied.push(Applied::Membership {
                    index,
                    term,
                    voters: self.voters.clone(),
                });
            }
            Err(error) => {
                tracing::warn!(node = self.id(), index, %error, "conf change refused at apply");
            }
        }
        Ok(())
    }
}

/// Encodes `messages` into `out`, noting the targets of snapshot messages.
fn emit(
    messages: Vec<Message>,
    out: &mut Output,
    snapshots_sent: &mut Vec<u64>,
) -> Result<(), Error> {
    for message in messages {
        if message.get_msg_type() == MessageType::MsgSnapshot {
            snapshots_sent.push(message.to);
        }
        let bytes = message.write_to_bytes().map_err(raft::Error::from)?;
        out.messages.push((message.to, bytes));
    }
    Ok(())
}

/// `(ctx, index)` of a read state whose context is one of ours (a big-endian u64).
fn decode_read(state: ReadState) -> Option<(u64, u64)> {
    let ctx = <[u8; 8]>::try_from(state.request_ctx.as_slice()).ok()?;
    Some((u64::from_be_bytes(ctx), state.index))
}
