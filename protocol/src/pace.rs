//! A stream's bandwidth cap (`tether connect --max-kbps N`): a token bucket over the bytes of
//! the frames sent. A frame may go once the bucket is not in debt; a large frame (a lossless
//! refresh) leaves it in debt and the next one waits until the link has carried it, so over any
//! stretch the stream stays within the cap plus one burst — latency stays flat instead of
//! frames queueing in the network. Pure and time-driven, tested in memory.

use std::time::{Duration, Instant};

/// The share of the cap the frames' bytes may use: the rest is headroom for what the link
/// carries besides them (QUIC, TLS and framing, pointer updates) and for the one frame that
/// may overshoot at the end of any stretch.
const SHARE: f64 = 0.9;

/// The feature of [`crate::session::ToAgent::StreamOptions`] that carries the cap:
/// `max-kbps=256`.
pub const PREFIX: &str = "max-kbps=";
/// The narrowest cap taken (below it a single keystroke's update would wait seconds).
pub const MIN_KBPS: u32 = 64;
/// The widest (beyond it no cap is needed).
pub const MAX_KBPS: u32 = 1_000_000;
/// How much the bucket holds: a quarter second of the cap, so a pause lets the next few
/// updates through at once without letting a long stretch exceed the cap by more than that.
const BURST: Duration = Duration::from_millis(250);

/// The feature announcing a cap of `kbps` kilobits per second.
pub fn announce(kbps: u32) -> String {
    format!("{PREFIX}{kbps}")
}

/// The cap a viewer announced among `features`, in kilobits per second; a value outside
/// [`MIN_KBPS`]..=[`MAX_KBPS`] is brought within it, garbage is ignored.
pub fn announced<'a>(features: impl IntoIterator<Item = &'a String>) -> Option<u32> {
    features.into_iter().find_map(|f| {
        let v: u64 = f.strip_prefix(PREFIX)?.parse().ok()?;
        Some(v.clamp(u64::from(MIN_KBPS), u64::from(MAX_KBPS)) as u32)
    })
}

/// The bucket.
#[derive(Debug, Clone)]
pub struct Pacer {
    bytes_per_s: f64,
    burst: f64,
    /// Bytes that may be sent now; negative: debt.
    tokens: f64,
    at: Instant,
}

impl Pacer {
    pub fn new(kbps: u32, now: Instant) -> Self {
        let bytes_per_s = f64::from(kbps.clamp(MIN_KBPS, MAX_KBPS)) * 1000.0 / 8.0 * SHARE;
        let burst = bytes_per_s * BURST.as_secs_f64();
        Self {
            bytes_per_s,
            burst,
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * self.bytes_per_s).min(self.burst);
        self.at = self.at.max(now);
    }

    /// A frame of `bytes` went out at `now`.
    pub fn handle_sent(&mut self, now: Instant, bytes: usize) {
        self.refill(now);
        self.tokens -= bytes as f64;
    }

    /// When the next frame may go: `now` or later.
    pub fn poll_ready(&mut self, now: Instant) -> Instant {
        self.refill(now);
        if self.tokens >= 0.0 {
            now
        } else {
            now + Duration::from_secs_f64(-self.tokens / self.bytes_per_s)
        }
    }

    /// The rate the frames are paced to, in bits per second ([`SHARE`] of the cap).
    pub fn bits_per_s(&self) -> u32 {
        (self.bytes_per_s * 8.0).round() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_read_from_the_features_within_bounds() {
        let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(announced(&f(&["palette", &announce(256)])), Some(256));
        assert_eq!(announced(&f(&["palette"])), None);
        assert_eq!(announced(&f(&["max-kbps=1"])), Some(MIN_KBPS));
        assert_eq!(announced(&f(&["max-kbps=99999999999"])), Some(MAX_KBPS));
        assert_eq!(
            announced(&f(&["max-kbps=", "max-kbps=-3", "max-kbps=x"])),
            None
        );
    }

    /// Frames sent as soon as the pacer lets them, for 10 s: the bytes stay within the cap
    /// plus the burst and the last frame, for small frames and for frames far above the burst.
    #[test]
    fn ten_seconds_of_frames_stay_within_the_cap() {
        for frame in [500usize, 8_000, 100_000] {
            let t0 = Instant::now();
            let mut p = Pacer::new(256, t0);
            let (mut now, mut sent) = (t0, 0usize);
            loop {
                now = p.poll_ready(now);
                if now >= t0 + Duration::from_secs(10) {
                    break;
                }
                p.handle_sent(now, frame);
                sent += frame;
                now += Duration::from_millis(1);
            }
            let cap = 256_000.0 / 8.0 * 10.0 * SHARE;
            let allowed = cap + cap / 40.0 + frame as f64;
            assert!(sent as f64 <= allowed, "{frame}: {sent} > {allowed}");
            // And the link is used: within one frame of the cap.
            assert!(sent as f64 >= cap - frame as f64, "{frame}: only {sent}");
        }
    }

    #[test]
    fn a_pause_refills_only_a_burst_and_time_going_backwards_is_harmless() {
        let t0 = Instant::now();
        let mut p = Pacer::new(800, t0);
        assert_eq!(p.bits_per_s(), 720_000);
        // An hour idle: a quarter second's worth goes at once, not an hour's.
        let later = t0 + Duration::from_secs(3600);
        p.handle_sent(later, 22_500);
        assert_eq!(p.poll_ready(later), later);
        p.handle_sent(later, 22_500);
        let ready = p.poll_ready(later);
        assert!(ready > later && ready <= later + Duration::from_millis(251));
        // A clock that reads earlier than before adds no tokens.
        let _ = p.poll_ready(t0);
        assert_eq!(p.poll_ready(later), ready);
    }
}
