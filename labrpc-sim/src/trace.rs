//! The trace digest: one 64-bit fingerprint of everything a run did.
//!
//! Determinism is the simulator's contract: the same seed must replay the same run. The
//! only practical way to *check* that is to fingerprint the run and compare two of them.
//! Every processed event (its virtual time, its kind, the ids it names and the bytes it
//! carries) and every trace line a host or test writes is folded into a hand-written
//! FNV-1a 64 hash. Two runs with equal digests processed the same events in the same order
//! with the same payloads; a single reordered message or a `HashMap` iterated into a trace
//! line changes the digest.
//!
//! The hash is the `fnv` crate's [`FnvHasher`], not `std`'s `DefaultHasher`, whose
//! algorithm is unspecified and may change between releases: FNV-1a is fixed, so a digest
//! printed today means the same thing after a toolchain upgrade, and the tests below pin
//! the hasher to the published FNV-1a vectors. Only [`Hasher::write`] is used: the
//! `write_u64` here fixes the byte order itself instead of taking `std`'s native-endian
//! default.
//!
//! Readable lines are kept only when asked for ([`crate::Sim::set_trace_log`]); hashing is
//! always on.

use std::hash::Hasher;
use std::time::Duration;

use fnv::FnvHasher;

use crate::SimNode;

/// One readable line of the trace log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceLine {
    /// Virtual time at which the line was written.
    pub time: Duration,
    /// The host that wrote it, or `None` for lines written by the test or the simulator.
    pub node: Option<SimNode>,
    /// A short category, e.g. `"raft"` or `"sim"`.
    pub topic: String,
    /// The text.
    pub line: String,
}

/// An incremental FNV-1a 64 hash with the digest's encoding of numbers and byte strings.
pub(crate) struct Fnv64(FnvHasher);

impl Fnv64 {
    /// A hash of no bytes.
    pub(crate) fn new() -> Self {
        Fnv64(FnvHasher::default())
    }

    /// Folds `bytes` into the hash.
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }

    /// Folds a number in, little-endian, so its width is part of the encoding.
    pub(crate) fn write_u64(&mut self, v: u64) {
        self.write(&v.to_le_bytes());
    }

    /// Folds a length-prefixed byte string in, so `("ab","c")` and `("a","bc")` differ.
    pub(crate) fn write_bytes(&mut self, bytes: &[u8]) {
        self.write_u64(bytes.len() as u64);
        self.write(bytes);
    }

    /// The hash so far.
    pub(crate) fn finish(&self) -> u64 {
        self.0.finish()
    }
}

/// The run's digest plus, optionally, its readable log.
pub(crate) struct Trace {
    digest: Fnv64,
    keep_lines: bool,
    lines: Vec<TraceLine>,
}

impl Trace {
    pub(crate) fn new() -> Self {
        Trace {
            digest: Fnv64::new(),
            keep_lines: false,
            lines: Vec::new(),
        }
    }

    /// Folds one processed event into the digest: time, kind tag, two ids and a payload.
    pub(crate) fn event(&mut self, time: Duration, kind: u8, a: u64, b: u64, payload: &[u8]) {
        self.digest.write_u64(time.as_secs());
        self.digest.write_u64(u64::from(time.subsec_nanos()));
        self.digest.write(&[kind]);
        self.digest.write_u64(a);
        self.digest.write_u64(b);
        self.digest.write_bytes(payload);
    }

    /// Folds a trace line into the digest and keeps it if the log is on.
    pub(crate) fn line(
        &mut self,
        time: Duration,
        node: Option<SimNode>,
        topic: &str,
        line: String,
    ) {
        let node_tag = node.map_or(u64::MAX, |n| n as u64);
        self.event(time, b'T', node_tag, 0, topic.as_bytes());
        self.digest.write_bytes(line.as_bytes());
        if self.keep_lines {
            self.lines.push(TraceLine {
                time,
                node,
                topic: topic.to_string(),
                line,
            });
        }
    }

    pub(crate) fn set_keep_lines(&mut self, on: bool) {
        self.keep_lines = on;
    }

    pub(crate) fn lines(&self) -> Vec<TraceLine> {
        self.lines.clone()
    }

    pub(crate) fn digest(&self) -> u64 {
        self.digest.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the digest's hasher is FNV-1a 64: it matches the published test vectors.
    #[test]
    fn fnv1a_matches_reference_vectors() {
        let cases: [(&[u8], u64); 3] = [
            (b"", 0xcbf2_9ce4_8422_2325),
            (b"a", 0xaf63_dc4c_8601_ec8c),
            (b"foobar", 0x8594_4171_f739_67e8),
        ];
        for (input, want) in cases {
            let mut h = Fnv64::new();
            h.write(input);
            assert_eq!(h.finish(), want, "fnv1a({:?})", input);
        }
    }

    /// Proves that length prefixes keep differently split byte strings apart.
    #[test]
    fn byte_strings_are_length_prefixed() {
        let mut a = Fnv64::new();
        a.write_bytes(b"ab");
        a.write_bytes(b"c");
        let mut b = Fnv64::new();
        b.write_bytes(b"a");
        b.write_bytes(b"bc");
        assert_ne!(a.finish(), b.finish());
    }
}
