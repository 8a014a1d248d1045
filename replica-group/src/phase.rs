//! [`Phase`]: where one shard stands in this group, as of the current configuration.
//!
//! ```text
//!                 config: gained from NO_GROUP
//!      +--------+ ---------------------------------------------> +---------+
//!      | Absent | config: gained from G    +---------+  install  | Serving |<--+
//!      |        | -----------------------> | Pulling | --------+ |         |   |
//!      +--------+                          +---------+         | +---------+   |
//!        ^   ^        DeleteShard applied  +----------+        v      |        |
//!        |   +---------------------------- | Offering |   +--------+  | acked |
//!        |                                 +----------+   | Acking | -+-------+
//!        |  config: lost to NO_GROUP            ^         +--------+  |
//!        +--------------------------------------|---------------------+ (Serving)
//!                                               +--- config: lost to G (from Serving)
//!
//!   Offering to G, G abandoned (Reclaim) ──► Held ── config: gained back ──► Serving
//!                                             |  '── config: to H ──► Offering { to: H }
//!                                             '───── config: to nobody ──► Absent
//! ```
//!
//! | phase      | owned in current config | data held        | served |
//! |------------|-------------------------|------------------|--------|
//! | `Absent`   | no                      | no               | no     |
//! | `Pulling`  | yes                     | arriving         | no     |
//! | `Acking`   | yes                     | yes              | yes    |
//! | `Serving`  | yes                     | yes              | yes    |
//! | `Offering` | no (owned by `to`)      | yes, frozen      | no     |
//! | `Held`     | no (by an abandoned group) | yes, frozen   | no     |
//!
//! `Held` is the way out of a migration to a group that died for good before installing
//! the shard (`shardkv abandon`, `abandon.rs`): the frozen copy stays here, stable, for
//! whoever owns the shard next, this group included.
//!
//! `Serving`, `Absent` and `Held` are **stable**; the group adopts its next configuration only
//! when every shard is stable, so a migration always completes within the configuration
//! that started it (the old owner deletes before the new owner can move on, and each
//! group is in exactly one migration per shard at a time).
//!
//! This is an explicit enum rather than one type per phase: a group holds a vector of
//! shards in different phases, and a vector of typestates would need this enum anyway.
//! The typestate discipline is kept in the transitions: each `into_*` consumes the old
//! phase and asserts it is the one the protocol allows, naming the shard and both phases
//! when it is not.

use serde::{Deserialize, Serialize};
use shardkv_proto::{GroupId, ShardId};

use crate::store::ShardStore;

/// One shard's phase in this group; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Not ours in the current configuration, and no data held.
    Absent,
    /// Ours, data held, no migration pending: served.
    Serving(ShardStore),
    /// Ours since the current configuration; the data is still at group `from`, the
    /// owner in the previous configuration, and arrives in chunks. Not served until
    /// installed.
    Pulling {
        /// The previous owner, to pull from.
        from: GroupId,
        /// The last key installed so far (`None`: no chunk yet).
        received: Option<Vec<u8>>,
    },
    /// Installed from group `from` and served; `from` has yet to confirm it deleted its
    /// copy, so this group keeps sending it `DeleteShard`.
    Acking {
        /// The previous owner, to acknowledge to.
        from: GroupId,
        /// The shard's data.
        store: ShardStore,
    },
    /// Given to group `to` by the current configuration: frozen (no request changes it,
    /// no session expires) and kept only until `to` confirms it installed it.
    Offering {
        /// The new owner.
        to: GroupId,
        /// The shard's frozen data.
        store: ShardStore,
    },
    /// Was `Offering` to group `abandoned`, which was abandoned without installing it:
    /// the frozen data stays, not served, for the shard's next owner. Stable.
    Held {
        /// The group it was given to.
        abandoned: GroupId,
        /// The shard's frozen data.
        store: ShardStore,
    },
}

impl Phase {
    /// The phase's name, for logs and assertion messages.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Absent => "Absent",
            Phase::Serving(_) => "Serving",
            Phase::Pulling { .. } => "Pulling",
            Phase::Acking { .. } => "Acking",
            Phase::Offering { .. } => "Offering",
            Phase::Held { .. } => "Held",
        }
    }

    /// True for the phases that let the group adopt its next configuration.
    pub fn is_stable(&self) -> bool {
        matches!(self, Phase::Absent | Phase::Serving(_) | Phase::Held { .. })
    }

    /// True when requests for the shard are served here.
    pub fn serves(&self) -> bool {
        matches!(self, Phase::Serving(_) | Phase::Acking { .. })
    }

    /// The data, when this group holds it (served or frozen).
    pub fn store(&self) -> Option<&ShardStore> {
        match self {
            Phase::Serving(store)
            | Phase::Acking { store, .. }
            | Phase::Offering { store, .. }
            | Phase::Held { store, .. } => Some(store),
            Phase::Absent | Phase::Pulling { .. } => None,
        }
    }

    /// True when the group may hold keys of the shard: every phase but `Absent` (a
    /// pulling shard holds the chunks installed so far).
    pub fn holds_keys(&self) -> bool {
        !matches!(self, Phase::Absent)
    }

    /// The data, only when served.
    pub fn served_store(&self) -> Option<&ShardStore> {
        match self {
            Phase::Serving(store) | Phase::Acking { store, .. } => Some(store),
            _ => None,
        }
    }

    /// The data, mutable, only when served (frozen data is never changed).
    pub fn served_store_mut(&mut self) -> Option<&mut ShardStore> {
        match self {
            Phase::Serving(store) | Phase::Acking { store, .. } => Some(store),
            _ => None,
        }
    }

    /// Gained from nobody (the shard was unowned): served at once, empty.
    pub fn into_fresh(self, shard: ShardId) -> Phase {
        self.expect(shard, "Absent", matches!(self, Phase::Absent));
        Phase::Serving(ShardStore::default())
    }

    /// Gained from group `from`: wait for its data.
    pub fn into_pulling(self, shard: ShardId, from: GroupId) -> Phase {
        self.expect(shard, "Absent", matches!(self, Phase::Absent));
        Phase::Pulling {
            from,
            received: None,
        }
    }

    /// The pulled data arrived (through the log): serve it, and acknowledge to `from`.
    pub fn into_acking(self, shard: ShardId, store: ShardStore) -> Phase {
        match self {
            Phase::Pulling { from, .. } => Phase::Acking { from, store },
            other => other.fail(shard, "Pulling"),
        }
    }

    /// The previous owner confirmed deletion: nothing left to do.
    pub fn into_serving(self, shard: ShardId) -> Phase {
        match self {
            Phase::Acking { store, .. } => Phase::Serving(store),
            other => other.fail(shard, "Acking"),
        }
    }

    /// Lost to group `to` (from Serving), or owned by `to` next while held for an
    /// abandoned group: freeze the data until `to` has it.
    pub fn into_offering(self, shard: ShardId, to: GroupId) -> Phase {
        match self {
            Phase::Serving(store) | Phase::Held { store, .. } => Phase::Offering { to, store },
            other => other.fail(shard, "Serving or Held"),
        }
    }

    /// The group it was offered to is abandoned: keep the frozen data, stable.
    pub fn into_held(self, shard: ShardId) -> Phase {
        match self {
            Phase::Offering { to, store } => Phase::Held {
                abandoned: to,
                store,
            },
            other => other.fail(shard, "Offering"),
        }
    }

    /// Held, and given back to this group: serve the data held.
    pub fn into_reclaimed(self, shard: ShardId) -> Phase {
        match self {
            Phase::Held { store, .. } => Phase::Serving(store),
            other => other.fail(shard, "Held"),
        }
    }

    /// The new owner installed it (Offering), or nobody owns it any more (Serving,
    /// Held): delete the data.
    pub fn into_absent(self, shard: ShardId) -> Phase {
        let allowed = matches!(
            self,
            Phase::Offering { .. } | Phase::Serving(_) | Phase::Held { .. }
        );
        self.expect(shard, "Offering, Serving or Held", allowed);
        Phase::Absent
    }

    fn expect(&self, shard: ShardId, wanted: &str, ok: bool) {
        assert!(
            ok,
            "shard {shard}: transition needs phase {wanted}, found {}",
            self.name()
        );
    }

    fn fail(self, shard: ShardId, wanted: &str) -> ! {
        panic!(
            "shard {shard}: transition needs phase {wanted}, found {}",
            self.name()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The full migration cycle passes through every phase in protocol order.
    #[test]
    fn migration_cycle() {
        let phase = Phase::Absent.into_pulling(3, 7);
        assert!(!phase.is_stable() && !phase.serves());
        let phase = phase.into_acking(3, ShardStore::default());
        assert!(phase.serves() && !phase.is_stable());
        let phase = phase.into_serving(3);
        assert!(phase.serves() && phase.is_stable());
        let phase = phase.into_offering(3, 9);
        assert!(!phase.serves() && phase.store().is_some());
        assert_eq!(phase.into_absent(3), Phase::Absent);
    }

    /// An offer to an abandoned group is held (stable, not served, data kept), then
    /// served again, offered on, or dropped.
    #[test]
    fn held_for_an_abandoned_group() {
        let offering = || Phase::Serving(ShardStore::default()).into_offering(3, 9);
        let held = offering().into_held(3);
        assert!(held.is_stable() && !held.serves() && held.store().is_some());
        assert_eq!(
            held.clone().into_reclaimed(3),
            Phase::Serving(ShardStore::default())
        );
        assert!(matches!(
            held.clone().into_offering(3, 7),
            Phase::Offering { to: 7, .. }
        ));
        assert_eq!(held.into_absent(3), Phase::Absent);
    }

    /// A transition from the wrong phase is a broken invariant and names both phases.
    #[test]
    #[should_panic(expected = "shard 4: transition needs phase Pulling, found Serving")]
    fn wrong_transition_panics() {
        Phase::Serving(ShardStore::default()).into_acking(4, ShardStore::default());
    }
}
