//! A follower's catch-up: the state, copied in chunks from another replica, outside raft.
//!
//! A replica group compacts its log by checkpointing its data (`snapshot.rs`): the raft
//! snapshot the leader sends a follower whose next entry is compacted away is only a
//! marker. The follower must first get the state the marker stands for, so it holds the
//! message back ([`shardkv_raft::Host::step_unless`]) and copies the data of a replica of
//! its group, then steps the message:
//!
//! ```text
//!   follower                                    any replica of the group (the leader
//!                                               that sent the snapshot, at first)
//!   MsgSnapshot{index} held ─ stage_begin
//!      PullState{index, view: None} ─────────►  applied >= index? open a view (one
//!      ◄──────────────── StateMeta{view, meta}   consistent point: a redb read)
//!      PullState{index, view, after} ────────►  next chunk of the view
//!      ◄── StateChunk{pairs, last} ─ stage(pairs) (non-durable)
//!      ... until last
//!   switch_to_staged(meta, view): one durable commit
//!   step MsgSnapshot ─► raft installs the marker; the state holds through `view`
//!      (>= index); log entries up to `view` are skipped, not applied again.
//! ```
//!
//! Memory stays bounded on both sides: one chunk (at most `chunk_bytes`, one pair more
//! alone) at a time. A crash before the switch leaves the follower's data as it was; the
//! leader sends the snapshot again and the copy starts over. A view is named by its
//! applied index, where every replica holds the same state, so chunks of one copy never
//! mix two points. A lost answer is asked again when the call times out; an answer that
//! the view is gone (the serving replica restarted, or dropped it) starts the copy over.
//!
//! The serving side keeps at most [`MAX_VIEWS`] views (the least recently used goes
//! first), each dropped after [`VIEW_IDLE_CALL_TIMEOUTS`] call timeouts unused: an open
//! view holds the database pages it reads, so the file cannot reuse them meanwhile.

use std::collections::BTreeMap;

use bincode::Options;
use shardkv_proto::kv::{GroupRequest, GroupResponse, MigrationReply, MigrationRequest};
use shardkv_proto::NodeId;
use shardkv_raft::{LogStore, Replicated, SnapshotOffer};

use crate::calls::{Purpose, Target};
use crate::data::{DataError, DataView};
use crate::effect::RequestId;
use crate::message::{options, MAX_ENTRY_BYTES};
use crate::options::ServerError;
use crate::server::Server;
use crate::{Index, MigrationResponse};

/// The most views a replica serves at once.
pub const MAX_VIEWS: usize = 2;

/// A view unused for this many call timeouts is dropped.
pub const VIEW_IDLE_CALL_TIMEOUTS: u64 = 5;

/// A follower's copy in progress; see the module docs.
#[derive(Debug)]
pub(crate) struct CatchUp {
    /// The held snapshot message, stepped once the data holds its state.
    message: Vec<u8>,
    /// The peer the held message arrived from.
    sender: NodeId,
    /// The snapshot's index: the copy must stand at least there.
    index: Index,
    /// Who sent the latest snapshot: asked when the copy starts (over).
    leader: NodeId,
    /// What has been copied.
    progress: Progress,
}

#[derive(Debug)]
enum Progress {
    /// Asking for a view.
    Opening,
    /// Copying the view at applied index `view` of replica `from`.
    Copying {
        from: NodeId,
        view: Index,
        meta: Vec<u8>,
        /// The last key staged.
        after: Option<Vec<u8>>,
    },
}

/// The views a replica serves other replicas' catch-ups from.
#[derive(Default)]
pub(crate) struct Views {
    /// Applied index → the view and the tick it was last used at.
    open: BTreeMap<Index, (DataView, u64)>,
}

impl Views {
    /// Drops views unused since before tick `oldest`.
    fn expire(&mut self, oldest: u64) {
        self.open.retain(|_, (_, used)| *used >= oldest);
    }
}

impl<S: LogStore> Server<S> {
    /// A raft message from a peer: a leader's snapshot that stands for state this
    /// replica does not hold is held for a catch-up, anything else is stepped.
    pub(crate) fn step_peer_message(
        &mut self,
        from: NodeId,
        bytes: &[u8],
    ) -> Result<(), ServerError> {
        let applied = self.state().applied_index();
        let held = self
            .host
            .step_unless(from, bytes, |offer| offer.index > applied && !offer.in_log);
        if let Some(offer) = held {
            self.on_snapshot_offer(offer, bytes.to_vec())?;
        }
        Ok(())
    }

    /// A leader's snapshot through `offer.index`, held: start a copy, or go on with the
    /// one in progress when it will stand at least there.
    fn on_snapshot_offer(
        &mut self,
        offer: SnapshotOffer,
        message: Vec<u8>,
    ) -> Result<(), ServerError> {
        if self.options.peers.is_empty() {
            tracing::warn!(
                gid = self.options.gid,
                index = offer.index,
                "behind the compacted log, and no peer addresses to copy the state from"
            );
            return Ok(());
        }
        if let Some(catch_up) = &mut self.catch_up {
            let copying_past = match &catch_up.progress {
                Progress::Opening => false,
                Progress::Copying { view, .. } => *view >= offer.index,
            };
            if offer.index <= catch_up.index || copying_past {
                catch_up.leader = offer.from;
                if offer.index >= catch_up.index {
                    catch_up.index = offer.index;
                    catch_up.message = message;
                    catch_up.sender = offer.from;
                }
                return Ok(());
            }
        }
        tracing::info!(
            gid = self.options.gid,
            index = offer.index,
            from = offer.from,
            "behind the compacted log: copying the state"
        );
        self.catch_up = Some(CatchUp {
            message,
            sender: offer.from,
            index: offer.index,
            leader: offer.from,
            progress: Progress::Opening,
        });
        self.restart_copy()
    }

    /// Starts the copy over: an empty staged table, and a view asked of the leader.
    fn restart_copy(&mut self) -> Result<(), ServerError> {
        let staged = self.host.state_mut().data_mut().stage_begin();
        staged.map_err(|error| self.data_failed(error))?;
        if let Some(catch_up) = &mut self.catch_up {
            catch_up.progress = Progress::Opening;
        }
        self.ask_state();
        Ok(())
    }

    /// Asks for what the copy needs next, unless a call is in flight; on every tick too,
    /// so a lost call is asked again once it timed out.
    pub(crate) fn ask_state(&mut self) {
        let Some(catch_up) = &self.catch_up else {
            return;
        };
        if self.state().applied_index() >= catch_up.index {
            // The log reached it after all (a new leader had the entries).
            self.catch_up = None;
            return;
        }
        if self.calls.busy(Target::Peers) {
            return;
        }
        let (to, request) = match &catch_up.progress {
            Progress::Opening => (
                catch_up.leader,
                MigrationRequest::PullState {
                    index: catch_up.index,
                    view: None,
                    after: None,
                },
            ),
            Progress::Copying {
                from, view, after, ..
            } => (
                *from,
                MigrationRequest::PullState {
                    index: catch_up.index,
                    view: Some(*view),
                    after: after.clone(),
                },
            ),
        };
        let Some(address) = self.options.peers.get(&to) else {
            tracing::error!(gid = self.options.gid, to, "no address for peer");
            return;
        };
        let bytes = options()
            .serialize(&GroupRequest::Migration(request))
            .expect("a catch-up request encodes");
        self.start_call(Purpose::CatchUp, address.clone(), bytes);
    }

    /// The answer to a catch-up call (`None`: failed or timed out: asked again at the
    /// next tick).
    pub(crate) fn on_state_reply(&mut self, reply: Option<Vec<u8>>) -> Result<(), ServerError> {
        let Some(bytes) = reply else {
            // Asked again at the next tick; of the current leader if the view's replica
            // is another (it may be gone).
            let stray = self.catch_up.as_ref().is_some_and(|c| match c.progress {
                Progress::Copying { from, .. } => from != c.leader,
                Progress::Opening => false,
            });
            return match stray {
                true => self.restart_copy(),
                false => Ok(()),
            };
        };
        let reply = match options().with_limit(MAX_ENTRY_BYTES).deserialize(&bytes) {
            Ok(GroupResponse::Migration(Ok(reply))) => reply,
            other => {
                tracing::warn!(gid = self.options.gid, ?other, "catch-up call refused");
                return self.restart_copy();
            }
        };
        let Some(catch_up) = &mut self.catch_up else {
            return Ok(());
        };
        match (&mut catch_up.progress, reply) {
            (Progress::Opening, MigrationReply::StateMeta { view, meta })
                if view >= catch_up.index =>
            {
                catch_up.progress = Progress::Copying {
                    from: catch_up.leader,
                    view,
                    meta,
                    after: None,
                };
            }
            (
                Progress::Copying {
                    view, after, meta, ..
                },
                MigrationReply::StateChunk {
                    view: got,
                    after: got_after,
                    pairs,
                    last,
                },
            ) if got == *view && got_after == *after => {
                let pairs: Vec<_> = pairs.into_iter().collect();
                let (view, meta) = (*view, std::mem::take(meta));
                if let Some((key, _)) = pairs.last() {
                    *after = Some(key.clone());
                }
                let staged = self.host.state_mut().data_mut().stage(&pairs);
                staged.map_err(|error| self.data_failed(error))?;
                if last {
                    return self.switch(view, meta);
                }
                if let Some(CatchUp {
                    progress: Progress::Copying { meta: kept, .. },
                    ..
                }) = &mut self.catch_up
                {
                    *kept = meta;
                }
            }
            (_, other) => {
                tracing::info!(gid = self.options.gid, ?other, "catch-up starts over");
                return self.restart_copy();
            }
        }
        self.ask_state();
        Ok(())
    }

    /// The copy is complete: switch the data to it, then step the held snapshot. A copy
    /// the log overtook meanwhile (the state applied through the view's index or past
    /// it) is dropped: switching would move the state back, and the entries between
    /// would never apply again.
    fn switch(&mut self, view: Index, meta: Vec<u8>) -> Result<(), ServerError> {
        let Some(catch_up) = self.catch_up.take() else {
            return Ok(());
        };
        let applied = self.state().applied_index();
        if applied >= view {
            tracing::info!(
                gid = self.options.gid,
                applied,
                view,
                "the log overtook the copy: dropped"
            );
            return Ok(());
        }
        if let Err(reason) = self.host.state_mut().switch_to_staged(&meta, view) {
            tracing::error!(gid = self.options.gid, %reason, "catch-up refused");
            self.catch_up = Some(catch_up);
            return self.restart_copy();
        }
        tracing::info!(
            gid = self.options.gid,
            applied = view,
            index = catch_up.index,
            "caught up from a copy"
        );
        self.host.step(catch_up.sender, &catch_up.message);
        Ok(())
    }

    /// Another replica's `PullState`: a view opened (or found) at an applied index of at
    /// least `index`, or the next chunk of view `view`.
    pub(crate) fn serve_state(
        &mut self,
        req_id: RequestId,
        index: Index,
        view: Option<Index>,
        after: Option<Vec<u8>>,
    ) -> Result<(), ServerError> {
        let now = self.ticks;
        let answer = match view {
            None => self.open_view(index, now),
            Some(view) => self.read_view(view, after, now),
        };
        let answer: MigrationResponse = Ok(answer.map_err(|error| self.data_failed(error))?);
        self.host.machine_mut().answer_group(req_id, answer);
        Ok(())
    }

    fn open_view(&mut self, index: Index, now: u64) -> Result<MigrationReply, DataError> {
        let applied = self.state().applied_index();
        if applied < index {
            return Ok(MigrationReply::StateUnavailable { applied });
        }
        let at = match self.views.open.range(index..).next_back() {
            Some((&at, _)) => at,
            None => {
                if self.views.open.len() >= MAX_VIEWS {
                    let oldest = self.views.open.iter().min_by_key(|(_, (_, used))| *used);
                    if let Some(oldest) = oldest.map(|(&at, _)| at) {
                        self.views.open.remove(&oldest);
                    }
                }
                let (view, _) = self.host.state_mut().view()?;
                let at = view.applied_index();
                self.views.open.insert(at, (view, now));
                at
            }
        };
        let (view, used) = self.views.open.get_mut(&at).expect("just found or opened");
        *used = now;
        let meta = view
            .meta(crate::snapshot::META_NAME)?
            .ok_or_else(|| DataError("a view without the group's metadata".into()))?;
        Ok(MigrationReply::StateMeta { view: at, meta })
    }

    fn read_view(
        &mut self,
        at: Index,
        after: Option<Vec<u8>>,
        now: u64,
    ) -> Result<MigrationReply, DataError> {
        let Some((view, used)) = self.views.open.get_mut(&at) else {
            let applied = self.state().applied_index();
            return Ok(MigrationReply::StateUnavailable { applied });
        };
        *used = now;
        let chunk = view.stored_chunk(after.as_deref(), self.options.chunk_bytes)?;
        Ok(MigrationReply::StateChunk {
            view: at,
            after,
            last: chunk.next.is_none(),
            pairs: chunk.pairs.into_iter().collect(),
        })
    }

    /// Drops views unused for too long (every tick).
    pub(crate) fn expire_views(&mut self) {
        let idle = self.options.call_timeout_ticks * VIEW_IDLE_CALL_TIMEOUTS;
        self.views.expire(self.ticks.saturating_sub(idle));
    }

    fn data_failed(&self, error: DataError) -> ServerError {
        ServerError::State {
            index: self.state().applied_index(),
            reason: error.to_string(),
        }
    }
}
