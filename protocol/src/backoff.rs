//! Reconnect delays: exponential backoff with jitter, so a fleet of agents that lost its relay
//! does not come back in one synchronized wave.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Default for Backoff {
    /// 0.5 s doubling up to 30 s.
    fn default() -> Self {
        Self::new(Duration::from_millis(500), Duration::from_secs(30))
    }
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// The delay before the next attempt. `random` is any uniformly random `u64`; the delay is
    /// the current base plus up to half of it again, capped at `max`.
    pub fn next_delay(&mut self, random: u64) -> Duration {
        let base = self
            .min
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half_ms = (base.as_millis() / 2).max(1) as u64;
        let jitter = Duration::from_millis(random % (half_ms + 1));
        (base + jitter).min(self.max)
    }

    /// Called once a connection was established: the next failure starts from `min` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_within_bounds_and_resets() {
        let mut b = Backoff::default();
        let delays: Vec<_> = (0..12).map(|i| b.next_delay(i * 7919)).collect();
        assert!(delays[0] >= Duration::from_millis(500));
        assert!(delays[0] <= Duration::from_millis(750));
        assert!(delays[3] >= Duration::from_secs(4));
        for d in &delays {
            assert!(*d <= Duration::from_secs(30));
        }
        assert_eq!(*delays.last().unwrap(), Duration::from_secs(30));
        b.reset();
        assert!(b.next_delay(u64::MAX) <= Duration::from_millis(750));
    }

    #[test]
    fn jitter_spreads_delays() {
        let mut a = Backoff::default();
        let mut b = Backoff::default();
        for _ in 0..4 {
            a.next_delay(0);
            b.next_delay(0);
        }
        assert_ne!(a.next_delay(0), b.next_delay(u64::MAX));
    }
}
