//! Simulation knobs: how often hosts tick and how long a healthy network takes.
//!
//! Everything else about the network (reliability, delays, reordering, partitions) is a
//! fault a test switches on and off at run time through [`crate::Sim`]; only the numbers
//! that shape a whole run live here.

use std::time::Duration;

/// Simulation knobs.
///
/// `SimConfig::default()` ticks every host every 50 ms with jitter 0.5 (each interval is
/// drawn uniformly from `[tick*(1-j), tick*(1+j)]`) and gives the reliable network a
/// one-way latency drawn uniformly from `[0.1 ms, 1 ms]`.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Mean interval between two ticks of one host.
    pub tick: Duration,
    /// Relative jitter of the tick interval, clamped to `[0, 1]`.
    pub tick_jitter: f64,
    /// Smallest one-way latency of a delivered message, request or reply.
    pub min_latency: Duration,
    /// Largest one-way latency of a delivered message, request or reply.
    pub max_latency: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            tick: Duration::from_millis(50),
            tick_jitter: 0.5,
            min_latency: Duration::from_micros(100),
            max_latency: Duration::from_millis(1),
        }
    }
}

impl SimConfig {
    /// Panics with a clear message if the knobs cannot drive a simulation: a zero tick would
    /// make a host tick forever at one instant, and an inverted latency range is meaningless.
    pub(crate) fn validate(&self) {
        assert!(!self.tick.is_zero(), "SimConfig.tick must be positive");
        assert!(
            self.tick_jitter.is_finite(),
            "SimConfig.tick_jitter must be finite, got {}",
            self.tick_jitter
        );
        assert!(
            self.min_latency <= self.max_latency,
            "SimConfig latency range inverted: min {:?} > max {:?}",
            self.min_latency,
            self.max_latency
        );
    }

    /// The inclusive range, in nanoseconds, from which one tick interval is drawn.
    /// Never starts at zero, so time always moves between two ticks of a host.
    pub(crate) fn tick_range_nanos(&self) -> (u64, u64) {
        let tick = duration_nanos(self.tick) as f64;
        let jitter = self.tick_jitter.clamp(0.0, 1.0);
        let lo = (tick * (1.0 - jitter)).max(1.0) as u64;
        let hi = (tick * (1.0 + jitter)) as u64;
        (lo, hi.max(lo))
    }
}

/// A duration in whole nanoseconds, saturating at `u64::MAX` (about 584 years).
pub(crate) fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
