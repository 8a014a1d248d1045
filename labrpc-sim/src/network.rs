//! The simulated network: who can reach whom, and what happens to each packet.
//!
//! The vocabulary is labrpc's. A node (host or client endpoint) is *connected* or not; a
//! *partition* splits listed nodes into sets that cannot talk across (unlisted nodes reach
//! everyone); an *unreliable* network drops 10% of requests and one-way messages, 10% of
//! replies, and delays requests and messages by an extra 0..27 ms; *long reordering*
//! delays 2/3 of replies (as labrpc) and 1/3 of one-way messages by
//! `200 + rand(1 + rand(2000))` ms — a one-way message is half of a round trip, and a
//! request/response pair of messages is then delayed about as often (5/9) as a labrpc
//! call (2/3), instead of twice; *long delays*
//! stretch the time an unreachable call takes to fail from 0..100 ms to 0..7000 ms.
//!
//! Every decision that needs randomness takes the simulator's one RNG as an argument, so
//! this module holds no hidden source of nondeterminism; the caller decides when a draw
//! happens, and draws happen in event order.
//!
//! Reachability is checked twice for every packet: when it is sent and when it arrives,
//! so a disconnect or partition also catches packets already in flight (labrpc drops a
//! reply whose server was disconnected while the request was being served).

use std::collections::BTreeMap;
use std::time::Duration;

use rand::RngExt;
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::config::{duration_nanos, SimConfig};
use crate::SimNode;

/// Per-mille of requests/messages (and separately of replies) an unreliable network drops.
const DROP_PER_MILLE: u64 = 100;
/// Extra delay, exclusive upper bound, of a request or message on an unreliable network.
const UNRELIABLE_DELAY_MS: u64 = 27;
/// Time for an unreachable call to fail, exclusive upper bound, without and with long delays.
const UNREACHABLE_SHORT_MS: u64 = 100;
const UNREACHABLE_LONG_MS: u64 = 7000;

/// Reachability and fault switches of the simulated network.
pub(crate) struct Network {
    connected: Vec<bool>,
    partition: BTreeMap<SimNode, usize>,
    reliable: bool,
    long_delays: bool,
    long_reordering: bool,
}

impl Network {
    pub(crate) fn new() -> Self {
        Network {
            connected: Vec::new(),
            partition: BTreeMap::new(),
            reliable: true,
            long_delays: false,
            long_reordering: false,
        }
    }

    /// Registers node `id` (ids are dense), connected.
    pub(crate) fn add_node(&mut self, id: SimNode) {
        assert_eq!(id, self.connected.len(), "node ids are assigned densely");
        self.connected.push(true);
    }

    pub(crate) fn set_connected(&mut self, id: SimNode, on: bool) {
        if let Some(c) = self.connected.get_mut(id) {
            *c = on;
        }
    }

    /// Puts each listed node in the set it appears in (a later set wins on duplicates).
    pub(crate) fn partition(&mut self, sets: &[&[SimNode]]) {
        self.partition.clear();
        for (index, set) in sets.iter().enumerate() {
            for &id in set.iter() {
                self.partition.insert(id, index);
            }
        }
    }

    pub(crate) fn heal(&mut self) {
        self.partition.clear();
    }

    pub(crate) fn set_reliable(&mut self, on: bool) {
        self.reliable = on;
    }

    pub(crate) fn set_long_delays(&mut self, on: bool) {
        self.long_delays = on;
    }

    pub(crate) fn set_long_reordering(&mut self, on: bool) {
        self.long_reordering = on;
    }

    /// Whether the wire between `a` and `b` works: both connected and not split apart by
    /// the partition. Whether the endpoints are up is the caller's business.
    pub(crate) fn link_ok(&self, a: SimNode, b: SimNode) -> bool {
        let connected = |id: SimNode| self.connected.get(id).copied().unwrap_or(false);
        let same_side = match (self.partition.get(&a), self.partition.get(&b)) {
            (Some(x), Some(y)) => x == y,
            _ => true,
        };
        connected(a) && connected(b) && same_side
    }

    /// Whether an unreliable network drops this request or one-way message.
    pub(crate) fn drop_request(&self, rng: &mut Xoshiro256PlusPlus) -> bool {
        !self.reliable && rng.random_range(0..1000) < DROP_PER_MILLE
    }

    /// Whether an unreliable network drops this reply.
    pub(crate) fn drop_reply(&self, rng: &mut Xoshiro256PlusPlus) -> bool {
        !self.reliable && rng.random_range(0..1000) < DROP_PER_MILLE
    }

    /// Transit time of a request or one-way message.
    pub(crate) fn request_delay(&self, rng: &mut Xoshiro256PlusPlus, cfg: &SimConfig) -> Duration {
        let mut delay = base_latency(rng, cfg);
        if !self.reliable {
            delay += Duration::from_millis(rng.random_range(0..UNRELIABLE_DELAY_MS));
        }
        delay
    }

    /// Transit time of a reply or one-way message, including long reordering.
    pub(crate) fn reply_delay(&self, rng: &mut Xoshiro256PlusPlus, cfg: &SimConfig) -> Duration {
        base_latency(rng, cfg) + self.reorder_delay(rng, REORDER_REPLY_IN_900)
    }

    /// Transit time of a one-way message: a request's delay plus long reordering.
    pub(crate) fn message_delay(&self, rng: &mut Xoshiro256PlusPlus, cfg: &SimConfig) -> Duration {
        self.request_delay(rng, cfg) + self.reorder_delay(rng, REORDER_MESSAGE_IN_900)
    }

    /// How long a call to an unreachable peer takes to fail.
    pub(crate) fn unreachable_delay(&self, rng: &mut Xoshiro256PlusPlus) -> Duration {
        let bound = if self.long_delays {
            UNREACHABLE_LONG_MS
        } else {
            UNREACHABLE_SHORT_MS
        };
        Duration::from_millis(rng.random_range(0..bound))
    }

    /// Long reordering's extra delay, applied to `in_900` of every 900 packets.
    fn reorder_delay(&self, rng: &mut Xoshiro256PlusPlus, in_900: u64) -> Duration {
        if !self.long_reordering || rng.random_range(0..900u64) >= in_900 {
            return Duration::ZERO;
        }
        let spread = rng.random_range(0..2000u64);
        Duration::from_millis(200 + rng.random_range(0..=spread))
    }
}

/// Long reordering delays this many replies in 900 (labrpc's `rand.Intn(900) < 600`).
const REORDER_REPLY_IN_900: u64 = 600;

/// Long reordering delays this many one-way messages in 900: half a round trip each.
const REORDER_MESSAGE_IN_900: u64 = 300;

fn base_latency(rng: &mut Xoshiro256PlusPlus, cfg: &SimConfig) -> Duration {
    let lo = duration_nanos(cfg.min_latency);
    let hi = duration_nanos(cfg.max_latency).max(lo);
    Duration::from_nanos(rng.random_range(lo..=hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves partition semantics: different sets are cut, unlisted nodes reach everyone.
    #[test]
    fn partition_cuts_only_across_sets() {
        let mut net = Network::new();
        for id in 0..4 {
            net.add_node(id);
        }
        net.partition(&[&[0, 1], &[2]]);
        assert!(net.link_ok(0, 1));
        assert!(!net.link_ok(1, 2));
        assert!(net.link_ok(3, 2) && net.link_ok(0, 3));
        net.set_connected(3, false);
        assert!(!net.link_ok(0, 3));
        net.heal();
        assert!(net.link_ok(1, 2));
        assert!(!net.link_ok(4, 0), "unknown nodes are unreachable");
    }
}
