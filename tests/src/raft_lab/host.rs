//! The simulator host around one lab peer: it turns simulator events into `step`/`tick`
//! calls, sends the peer's messages, records what it applies in the shared [`Checker`], and
//! in snapshot scenarios snapshots the test state machine every [`SNAPSHOT_INTERVAL`]
//! indices (6.824's `applierSnap`).

use std::cell::RefCell;
use std::rc::Rc;

use labrpc_sim::{Context, Host, SimNode};

use super::checker::Checker;
use super::lab::{ApplyMsg, Index, Peer, RaftLab, Term};
use crate::sim_disk::SYNC_LATENCY;

/// Applied indices between two snapshots of the test state machine (6.824
/// `SnapShotInterval`).
pub const SNAPSHOT_INTERVAL: Index = 10;

/// Bound on drain rounds after one event (a snapshot may produce more effects).
const DRAIN_ROUNDS_MAX: usize = 64;

/// Simulator node ids of the lab peers, filled once every host exists.
pub type PeerIds = Rc<RefCell<Vec<SimNode>>>;

/// One lab peer hosted by the simulator.
pub struct LabHost<L: RaftLab> {
    me: Peer,
    /// The peer under test.
    pub lab: L,
    ids: PeerIds,
    checker: Rc<RefCell<Checker>>,
    snapshots: bool,
    last_snapshot: Index,
    /// (term, is_leader) after the last event, to trace role changes.
    role: (Term, bool),
}

impl<L: RaftLab> LabHost<L> {
    /// Host `lab` as peer `me`; with `snapshots`, the host snapshots every
    /// [`SNAPSHOT_INTERVAL`] indices.
    pub fn new(
        me: Peer,
        lab: L,
        ids: PeerIds,
        checker: Rc<RefCell<Checker>>,
        snapshots: bool,
    ) -> Self {
        LabHost {
            me,
            lab,
            ids,
            checker,
            snapshots,
            last_snapshot: 0,
            role: (0, false),
        }
    }

    fn peer_of(&self, id: SimNode) -> Option<Peer> {
        self.ids.borrow().iter().position(|&x| x == id)
    }

    /// Carry out everything the peer asked for since the last drain.
    pub fn drain(&mut self, cx: &mut Context<'_>) {
        let role = self.lab.get_state();
        if role != self.role {
            self.role = role;
            let (term, leads) = role;
            cx.trace(
                "role",
                format_args!(
                    "{} term {term}{}",
                    self.me,
                    if leads { " leader" } else { "" }
                ),
            );
        }
        for _ in 0..DRAIN_ROUNDS_MAX {
            let effects = self.lab.take_effects();
            if effects.is_empty() {
                return;
            }
            for (to, message) in effects.messages {
                let id = self.ids.borrow().get(to).copied();
                match id {
                    Some(id) if to != self.me => cx.send(id, message),
                    _ => cx.trace("bad-send", format_args!("peer {} sent to {to}", self.me)),
                }
            }
            for applied in effects.applied {
                self.apply(cx, applied);
            }
            for token in effects.wakes {
                cx.wake_after(SYNC_LATENCY, token);
            }
        }
        panic!(
            "peer {}: effects still pending after {DRAIN_ROUNDS_MAX} drains",
            self.me
        );
    }

    fn apply(&mut self, cx: &mut Context<'_>, applied: ApplyMsg) {
        match applied {
            ApplyMsg::Command { index, command } => {
                cx.trace(
                    "apply",
                    format_args!("{} {index} {}", self.me, command.len()),
                );
                self.checker
                    .borrow_mut()
                    .apply_command(self.me, index, &command);
                if self.snapshots && index >= self.last_snapshot + SNAPSHOT_INTERVAL {
                    let image = self.checker.borrow().image(self.me, index);
                    self.last_snapshot = index;
                    self.lab.snapshot(index, image);
                }
            }
            ApplyMsg::Snapshot { index, data, .. } => {
                cx.trace("apply-snapshot", format_args!("{} {index}", self.me));
                self.checker
                    .borrow_mut()
                    .apply_snapshot(self.me, index, &data);
                self.last_snapshot = self.last_snapshot.max(index);
            }
        }
    }
}

impl<L: RaftLab> Host for LabHost<L> {
    fn on_message(&mut self, cx: &mut Context<'_>, from: SimNode, payload: Vec<u8>) {
        if let Some(from) = self.peer_of(from) {
            self.lab.step(from, payload);
            self.drain(cx);
        }
    }

    fn on_tick(&mut self, cx: &mut Context<'_>) {
        self.lab.tick();
        self.drain(cx);
    }

    fn on_wake(&mut self, cx: &mut Context<'_>, token: u64) {
        self.lab.wake(token);
        self.drain(cx);
    }
}
