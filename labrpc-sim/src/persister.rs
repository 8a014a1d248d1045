//! Durable storage of one simulated host, the part of a node that survives a crash.
//!
//! As in 6.824, a persister has two areas: a key/value area for Raft state (hard state,
//! log entries, applied index, anything keyed) and a single snapshot blob. The simulator
//! owns one persister per host; a crash drops the host object (all volatile state) but
//! keeps the persister, and a restart hands the *same* persister to the host factory, so a
//! simulated crash keeps exactly what a real crash with synced writes would keep.
//!
//! A persister also carries its host's [`SimDisk`], a flat directory of files with real
//! disk semantics: unsynced writes, `sync_data`/`sync_dir`, and power failures that lose,
//! keep or tear what was not synced. The two areas above keep their contract, the one the
//! labs are written against: durable on return, untouched by crashes and power failures.
//! The disk is where a host that models real files (a write-ahead log, an embedded
//! database) keeps them; [`crate::Sim::power_fail`] reaches only the disk.
//!
//! Invariants:
//! - every write to the two areas is durable when the method returns (there is no unsynced
//!   buffer to lose);
//! - `raft_state_size` is always the sum of key and value lengths in the key/value area;
//! - `scan` and `delete_range` work on the half-open range `[start, end)` in key order, and
//!   an empty or inverted range touches nothing;
//! - clones share the areas and the disk; `deep_copy` copies both areas and the disk.
//!
//! Caveats: the two areas have no torn writes, no partial syncs and no disk-full errors;
//! the disk's faults are described in `disk.rs`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::rc::Rc;

use crate::SimDisk;

#[derive(Clone, Debug, Default)]
struct State {
    kv: BTreeMap<Vec<u8>, Vec<u8>>,
    kv_bytes: usize,
    snapshot: Vec<u8>,
    bytes_written: u64,
    /// Shared with every handle the host took; `deep_copy` replaces it with a copy.
    disk: SimDisk,
    /// Drawn from the simulation's RNG each time the host boots.
    entropy: u64,
}

/// Durable storage of one host; survives crash/restart. Writes to its key/value area and
/// snapshot blob are durable on return; its [`SimDisk`] has real disk semantics.
///
/// Clones share the same storage (it is a handle); use [`Persister::deep_copy`] for an
/// independent copy.
#[derive(Clone, Debug, Default)]
pub struct Persister {
    state: Rc<RefCell<State>>,
}

impl Persister {
    /// An empty standalone persister (for unit tests of a server outside the simulator).
    pub fn new() -> Self {
        Self::default()
    }

    /// The value stored under `key` in the key/value area.
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.state.borrow().kv.get(key).cloned()
    }

    /// Stores `value` under `key`, replacing any previous value.
    pub fn put(&self, key: &[u8], value: &[u8]) {
        let mut s = self.state.borrow_mut();
        s.bytes_written += (key.len() + value.len()) as u64;
        s.kv_bytes += key.len() + value.len();
        if let Some(old) = s.kv.insert(key.to_vec(), value.to_vec()) {
            s.kv_bytes -= key.len() + old.len();
        }
    }

    /// Removes `key`; a missing key is not an error.
    pub fn delete(&self, key: &[u8]) {
        let mut s = self.state.borrow_mut();
        if let Some(old) = s.kv.remove(key) {
            s.kv_bytes -= key.len() + old.len();
        }
    }

    /// Removes every key in `[start, end)`.
    pub fn delete_range(&self, start: &[u8], end: &[u8]) {
        if start >= end {
            return;
        }
        let mut s = self.state.borrow_mut();
        let doomed: Vec<Vec<u8>> =
            s.kv.range::<[u8], _>(range(start, end))
                .map(|(k, _)| k.clone())
                .collect();
        for key in doomed {
            if let Some(old) = s.kv.remove(&key) {
                s.kv_bytes -= key.len() + old.len();
            }
        }
    }

    /// Every key/value pair in `[start, end)`, in key order.
    pub fn scan(&self, start: &[u8], end: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        if start >= end {
            return Vec::new();
        }
        let s = self.state.borrow();
        s.kv.range::<[u8], _>(range(start, end))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Sum of key and value bytes in the key/value area (6.824's `RaftStateSize`).
    pub fn raft_state_size(&self) -> usize {
        self.state.borrow().kv_bytes
    }

    /// Replaces the snapshot blob.
    pub fn save_snapshot(&self, snapshot: &[u8]) {
        let mut s = self.state.borrow_mut();
        s.bytes_written += snapshot.len() as u64;
        s.snapshot = snapshot.to_vec();
    }

    /// The snapshot blob; empty if none was ever saved.
    pub fn snapshot(&self) -> Vec<u8> {
        self.state.borrow().snapshot.clone()
    }

    /// Length of the snapshot blob in bytes.
    pub fn snapshot_size(&self) -> usize {
        self.state.borrow().snapshot.len()
    }

    /// Cumulative bytes written to both areas since creation (deletes write nothing).
    pub fn bytes_written(&self) -> u64 {
        self.state.borrow().bytes_written
    }

    /// The host's disk (a shared handle, not a copy): the files a host that models real
    /// storage keeps. Unlike the two areas above, what is written there is durable only
    /// once synced, and [`crate::Sim::power_fail`] may lose the rest.
    pub fn disk(&self) -> SimDisk {
        self.state.borrow().disk.clone()
    }

    /// The simulated machine's randomness for this boot of its host: a number the
    /// simulator draws from its one RNG just before it builds the host (0 for a persister
    /// outside a simulation). What a real node would take from the operating system (to
    /// seed its election timeouts, say), a simulated one takes from here, so a run stays
    /// a function of its seed.
    pub fn entropy(&self) -> u64 {
        self.state.borrow().entropy
    }

    pub(crate) fn set_entropy(&self, entropy: u64) {
        self.state.borrow_mut().entropy = entropy;
    }

    /// An independent copy, disk included: later writes to either persister do not reach
    /// the other (6.824's `Persister.Copy`). See [`SimDisk::deep_copy`] for the disk's part.
    pub fn deep_copy(&self) -> Persister {
        let mut state = self.state.borrow().clone();
        state.disk = state.disk.deep_copy();
        Persister {
            state: Rc::new(RefCell::new(state)),
        }
    }
}

fn range<'a>(start: &'a [u8], end: &'a [u8]) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    (Bound::Included(start), Bound::Excluded(end))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves put/get/delete keep `raft_state_size` equal to the stored key+value bytes.
    #[test]
    fn size_tracks_contents() {
        let p = Persister::new();
        p.put(b"a", b"123");
        p.put(b"bb", b"4");
        assert_eq!(p.raft_state_size(), 4 + 3);
        p.put(b"a", b"1");
        assert_eq!(p.raft_state_size(), 2 + 3);
        p.delete(b"bb");
        p.delete(b"missing");
        assert_eq!(p.raft_state_size(), 2);
        assert_eq!(p.get(b"a"), Some(b"1".to_vec()));
        assert_eq!(p.bytes_written(), 4 + 3 + 2);
    }

    /// Proves scan and delete_range use half-open `[start, end)` ranges in key order.
    #[test]
    fn ranges_are_half_open() {
        let p = Persister::new();
        for k in [b"k1", b"k2", b"k3", b"k4"] {
            p.put(k, b"v");
        }
        let keys: Vec<Vec<u8>> = p.scan(b"k2", b"k4").into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec![b"k2".to_vec(), b"k3".to_vec()]);
        assert!(p.scan(b"k4", b"k1").is_empty());
        p.delete_range(b"k1", b"k3");
        p.delete_range(b"z", b"a");
        let keys: Vec<Vec<u8>> = p.scan(b"", b"\xff").into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec![b"k3".to_vec(), b"k4".to_vec()]);
        assert_eq!(p.raft_state_size(), 6);
    }

    /// Proves clones share storage while deep copies are independent, snapshot included.
    #[test]
    fn deep_copy_is_independent() {
        let p = Persister::new();
        p.save_snapshot(b"snap");
        let shared = p.clone();
        let copy = p.deep_copy();
        shared.put(b"k", b"v");
        p.save_snapshot(b"new");
        assert_eq!(p.get(b"k"), Some(b"v".to_vec()));
        assert_eq!(copy.get(b"k"), None);
        assert_eq!(copy.snapshot(), b"snap".to_vec());
        assert_eq!(p.snapshot_size(), 3);
    }

    /// Proves clones share the disk while a deep copy gets its own copy of it.
    #[test]
    fn deep_copy_copies_the_disk() {
        let p = Persister::new();
        p.disk()
            .create("a")
            .and_then(|f| f.write_at(0, b"1"))
            .expect("write");
        let copy = p.deep_copy();
        p.clone().disk().create("b").expect("create via clone");
        copy.disk().remove("a").expect("remove in copy");
        assert_eq!(p.disk().list(), ["a", "b"]);
        assert!(copy.disk().list().is_empty());
    }
}
