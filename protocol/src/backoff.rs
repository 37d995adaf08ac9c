//! Reconnect delays: exponential backoff with jitter, so a fleet of agents that lost its relay
//! does not come back in one synchronized wave.

use std::time::Duration;

/// How far [`Backoff::busy_delay`] spreads retries: up to this many times the minimum delay.
pub const BUSY_SPREAD: u64 = 6;

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

    /// The delay after a relay refused a new connection because it is busy (its per-address
    /// admission limit, e.g. a whole office reconnecting after a relay restart): the relay is up,
    /// so retry soon, spread over `min` to `BUSY_SPREAD × min` so a refused crowd thins out,
    /// without growing the backoff (which is for relays that are down).
    pub fn busy_delay(&self, random: u64) -> Duration {
        let spread_ms = self.min.as_millis() as u64 * (BUSY_SPREAD - 1);
        (self.min + Duration::from_millis(random % (spread_ms + 1))).min(self.max)
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

    #[test]
    fn a_busy_relay_is_retried_soon_and_spread_out() {
        let mut b = Backoff::default();
        for _ in 0..8 {
            b.next_delay(1);
        }
        let delays: Vec<_> = (0..1000u64).map(|i| b.busy_delay(i * 7919)).collect();
        assert!(delays.iter().all(|d| *d >= Duration::from_millis(500)));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(3)));
        // Spread out, not one wave.
        assert!(delays.iter().any(|d| *d < Duration::from_secs(1)));
        assert!(delays.iter().any(|d| *d > Duration::from_millis(2500)));
        // It did not grow the backoff either.
        let before = b.clone().next_delay(0);
        b.busy_delay(5);
        assert_eq!(b.next_delay(0), before);
    }
}
