//! Randomized election timeouts drawn from a seeded source.
//!
//! Raft spreads election timeouts at random so that replicas started together do not
//! split their votes in step forever. raft-rs draws them from an unseeded thread RNG,
//! which would make a simulated run depend on something other than its seed. So raft-rs
//! is given a single value, `E` ticks, and the spread is added here: whenever raft-rs's
//! election clock restarts (a new term, a role change, a heartbeat from the leader), a
//! number `k` in `[0, spread)` is drawn from this replica's own generator, seeded by its
//! driver (the operating system's randomness on a real node, the simulator's RNG in a
//! simulated one). The clock then runs as usual (`election_elapsed` counts every tick,
//! so the follower's leader lease, `elapsed < E`, ends after `E` ticks as in raft-rs),
//! but the first `k` ticks that would start a campaign only advance the clock. The
//! campaign starts after `E + k` ticks, as if raft-rs had drawn the timeout from
//! `[E, E + spread)`. Leaders are never held back (their ticks drive heartbeats and the
//! quorum check).

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

/// What to do with a non-leader's tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tick {
    /// Hand it to raft-rs.
    Pass,
    /// Only advance the election clock: the campaign it would start is held back.
    Hold,
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
    /// since it restarted) and its timeout `timeout` (`E`): whether the tick goes to
    /// raft-rs or only advances the clock.
    pub(crate) fn tick(&mut self, elapsed: usize, timeout: usize) -> Tick {
        if self.spread <= 1 {
            return Tick::Pass;
        }
        if elapsed == 0 {
            if !self.armed {
                self.held = (self.next() % self.spread as u64) as usize;
                self.armed = true;
            }
        } else {
            self.armed = false;
        }
        if elapsed + 1 >= timeout && self.held > 0 {
            self.held -= 1;
            return Tick::Hold;
        }
        Tick::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the election clock from 0 with timeout 10, as raft-rs would (every tick
    /// advances it), until a tick passes at the timeout: the campaign's tick count.
    fn campaign_after(spread: &mut ElectionSpread) -> usize {
        let mut elapsed = 0;
        loop {
            let tick = spread.tick(elapsed, 10);
            elapsed += 1;
            if tick == Tick::Pass && elapsed >= 10 {
                return elapsed;
            }
            assert!(
                tick == Tick::Pass || elapsed >= 10,
                "held before the timeout"
            );
        }
    }

    /// Each restart of the election clock gets a fresh draw: campaigns start after
    /// `[10, 20)` ticks, the same for the same seed and others for another seed; ticks
    /// before the timeout always pass (the lease ends after 10, as in raft-rs).
    #[test]
    fn campaigns_start_after_a_seeded_draw() {
        let draws = |seed| {
            let mut spread = ElectionSpread::new(seed, 10);
            (0..50)
                .map(|_| campaign_after(&mut spread))
                .collect::<Vec<usize>>()
        };
        let first = draws(7);
        assert!(first.iter().all(|&ticks| (10..20).contains(&ticks)));
        assert!(first.iter().any(|&ticks| ticks > 10));
        assert_eq!(first, draws(7));
        assert_ne!(first, draws(8));
        let mut none = ElectionSpread::new(7, 1);
        assert_eq!(campaign_after(&mut none), 10);
    }
}
