//! The stable key→shard function and the shard-count constants.
//!
//! Every client and every server must agree, forever, on which shard a key lives in:
//! a client that routed `"x"` to shard 3 yesterday must route it to shard 3 today, or it
//! would read a group that never stored it. So the function is specified exactly and
//! must never change:
//!
//! ```text
//!   shard(key) = FNV-1a-64(key bytes) mod nshards
//!   FNV-1a-64:  h = 0xcbf29ce484222325
//!               for each byte b: h = (h XOR b) * 0x100000001b3   (wrapping, mod 2^64)
//! ```
//!
//! FNV-1a is tiny, has no seed (so no per-process randomness can creep in), and spreads
//! short keys such as `"k1"`, `"k2"` evenly, unlike 6.824's "first byte mod nshards".
//! It is not resistant to adversarial keys; shard skew from crafted keys is accepted.
//! The hash comes from the `fnv` crate; the tests below pin it to the published FNV-1a
//! vectors and pin `key_to_shard`'s outputs, so a change in the crate would fail them.

use std::hash::Hasher;

use fnv::FnvHasher;

use crate::ids::ShardId;

/// The number of shards the 6.824 lab suites use (the lab's `NShards`).
pub const LAB_NSHARDS: usize = 10;

/// The number of shards for a real cluster when the operator does not choose one.
///
/// 256 keeps balance fine-grained: with up to 32 groups each holds at least 8 shards,
/// so the one-shard imbalance the rebalancer allows is at most 1/8 of a group's load.
/// A configuration stays small (256 × 8 bytes of owners ≈ 2 KiB), and per-shard
/// overheads (a duplicate table and a migration per shard) stay modest.
pub const DEFAULT_NSHARDS: usize = 256;

/// FNV-1a 64 over `bytes`, computed by the `fnv` crate's [`FnvHasher`] (FNV-1a 64 with
/// the standard offset basis and prime, as specified in the module docs). Exposed so
/// other implementations can check themselves against it.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hasher = FnvHasher::default();
    hasher.write(bytes);
    hasher.finish()
}

/// The shard that holds `key` in a cluster of `nshards` shards:
/// `fnv1a64(key) mod nshards`. Never changes (see the module docs).
///
/// # Panics
/// If `nshards` is 0: a cluster always has at least one shard, so a zero count is a
/// programming error, not input.
pub fn key_to_shard(key: impl AsRef<[u8]>, nshards: usize) -> ShardId {
    assert!(nshards > 0, "key_to_shard with nshards = 0");
    // u64 -> usize: the result is < nshards, which is a usize, so it always fits.
    (fnv1a64(key.as_ref()) % nshards as u64) as ShardId
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash matches the published FNV-1a 64 test vectors, so it is the real FNV-1a.
    #[test]
    fn fnv1a64_matches_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    /// Pinned outputs: if this test fails, key routing changed and every deployed cluster
    /// would lose track of its data. Do not "fix" the expected values.
    #[test]
    fn key_to_shard_is_pinned() {
        let cases: [(&str, ShardId, ShardId); 6] = [
            ("", 7, 37),
            ("a", 6, 140),
            ("k1", 3, 193),
            ("k2", 0, 168),
            ("foobar", 8, 232),
            ("shardkv", 0, 34),
        ];
        for (key, lab, default) in cases {
            assert_eq!(key_to_shard(key, LAB_NSHARDS), lab, "key {key:?}");
            assert_eq!(key_to_shard(key, DEFAULT_NSHARDS), default, "key {key:?}");
        }
    }

    /// Short sequential keys spread over all lab shards, unlike first-byte routing.
    #[test]
    fn short_keys_cover_every_shard() {
        let mut seen = [false; LAB_NSHARDS];
        for i in 0..100 {
            seen[key_to_shard(format!("k{i}"), LAB_NSHARDS)] = true;
        }
        assert!(seen.iter().all(|&hit| hit), "shards hit: {seen:?}");
    }
}
