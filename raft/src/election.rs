//! Randomized election timeouts drawn from a seeded source.
//!
//! Raft spreads election timeouts at random so that replicas started together do not
//! split their votes in step forever. raft-rs draws them from an unseeded thread RNG,
//! which would make a simulated run depend on something other than its seed. So raft-rs
//! is given a single value, `E` ticks, and the spread is added here: whenever raft-rs's
//! election clock restarts (a new term, a role change, a heartbeat from the leader), a
//! number `k` in `[0, spread)` is drawn from this replica's own generator, seeded by its
//! driver (the operating system's randomness on a real node, the simulator's RNG in a
//! simulated one), and the next `k` ticks are held back from raft-rs. The timeout is then
//! `E + k` ticks, as if raft-rs had drawn it from `[E, E + spread)`. Leaders are never
//! held back (their ticks drive heartbeats and the quorum check).

/// The held-back ticks of one replica.
#[derive(Debug, Clone)]
pub(crate) struct ElectionSpread {
    /// splitmix64 state.
    state: u64,
    spread: usize,
    /// Ticks still to hold back.
    held: usize,
    /// Whether the current run of the election clock (since it last read 0) has had its
    /// draw.
    armed: bool,
}

impl ElectionSpread {
    pub(crate) fn new(seed: u64, spread: usize) -> Self {
        ElectionSpread {
            state: seed,
            spread,
            held: 0,
            armed: false,
        }
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Called before a non-leader's tick with raft-rs's election clock (`elapsed` ticks
    /// since it restarted): true when this tick is held back.
    pub(crate) fn hold(&mut self, elapsed: usize) -> bool {
        if self.spread <= 1 {
            return false;
        }
        if elapsed > 0 {
            self.armed = false;
        } else if !self.armed {
            self.held = (self.next() % self.spread as u64) as usize;
            self.armed = true;
        }
        if self.held > 0 {
            self.held -= 1;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each restart of the election clock holds back a fresh draw in `[0, spread)` ticks,
    /// the same draws for the same seed and other draws for another seed.
    #[test]
    fn draws_are_seeded_and_in_range() {
        let draws = |seed| {
            let mut spread = ElectionSpread::new(seed, 10);
            (0..50)
                .map(|_| {
                    let mut held = 0;
                    while spread.hold(0) {
                        held += 1;
                    }
                    assert!(!spread.hold(1), "a running clock is never held");
                    held
                })
                .collect::<Vec<usize>>()
        };
        let first = draws(7);
        assert!(first.iter().all(|&held| held < 10));
        assert!(first.iter().any(|&held| held > 0));
        assert_eq!(first, draws(7));
        assert_ne!(first, draws(8));
        let mut none = ElectionSpread::new(7, 1);
        assert!(!none.hold(0));
    }
}
