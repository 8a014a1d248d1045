//! Invariant: **replicas of a group that applied the same log index hold the same
//! state.**
//!
//! The monitor ([`super::ownership::monitor`]) samples every running replica's
//! [`KvLab::state_digest`] every [`super::ownership::SAMPLE_MS`]: a digest of its whole
//! replicated state and the log index it stands at. The first digest seen for a group
//! at an index is kept; another replica (or the same one later, after a restart or a
//! catch-up) showing a different digest at that index is a violation, kept with the time
//! it was seen and reported at the end of the run. It catches replicas that diverge
//! silently: an entry applied twice after a restart, a state copied from a mix of
//! points, a lost checkpoint replayed over.
//!
//! Caveats: sampling sees only the indexes replicas happen to stand at when sampled;
//! implementations that give no digest (the default) are not checked.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use shardkv_proto::GroupId;

use super::cluster::{KvCluster, GIDS, GROUP_SIZE};
use super::lab::{KvLab, Peer};

#[derive(Default)]
struct Seen {
    /// (group, applied index) → (the first digest seen there, who showed it).
    digests: BTreeMap<(GroupId, u64), (u64, Peer)>,
    violation: Option<String>,
    samples: u64,
}

/// The digests seen so far; cheap clones share them.
#[derive(Clone, Default)]
pub struct Agreement {
    seen: Rc<RefCell<Seen>>,
}

impl Agreement {
    /// The first violation seen, if any.
    pub fn violation(&self) -> Option<String> {
        self.seen.borrow().violation.clone()
    }

    /// How many digests were compared.
    pub fn samples(&self) -> u64 {
        self.seen.borrow().samples
    }

    /// Records that replica `me` of `gid` showed `digest` at `applied`; an error when
    /// another digest was seen for the group there.
    pub fn record(&self, gid: GroupId, me: Peer, applied: u64, digest: u64) -> Result<(), String> {
        let mut seen = self.seen.borrow_mut();
        seen.samples += 1;
        let (first, by) = *seen.digests.entry((gid, applied)).or_insert((digest, me));
        match first == digest {
            true => Ok(()),
            false => Err(format!(
                "replicas {gid}/{by} and {gid}/{me} hold different states at log index {applied}"
            )),
        }
    }

    /// Samples every running replica once; the first violation is kept.
    pub fn sample<L: KvLab>(&self, c: &KvCluster<L>, at: std::time::Duration) {
        for gid in GIDS {
            for me in 0..GROUP_SIZE {
                let Some(Some((applied, digest))) = c.with_lab(gid, me, |lab| lab.state_digest())
                else {
                    continue;
                };
                if let Err(error) = self.record(gid, me, applied, digest) {
                    let mut seen = self.seen.borrow_mut();
                    seen.violation.get_or_insert(format!("at {at:?}: {error}"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Equal digests at one index agree; another digest there is a violation; digests
    /// at other indexes or of other groups are not compared.
    #[test]
    fn different_states_at_one_index_are_violations() {
        let agreement = Agreement::default();
        assert_eq!(agreement.record(100, 0, 7, 42), Ok(()));
        assert_eq!(agreement.record(100, 1, 7, 42), Ok(()));
        assert_eq!(agreement.record(100, 1, 8, 43), Ok(()));
        assert_eq!(agreement.record(101, 0, 7, 44), Ok(()));
        assert!(agreement.record(100, 2, 7, 45).is_err());
    }
}
