//! A stream's bandwidth cap (`tether connect --max-kbps N`): a token bucket over the bytes of
//! the frames sent. A frame may go once the bucket is not in debt; a large frame (a lossless
//! refresh) leaves it in debt and the next one waits until the link has carried it, so over any
//! stretch the stream stays within the cap plus one burst — latency stays flat instead of
//! frames queueing in the network. Pure and time-driven, tested in memory.
//!
//! Without a cap from the user, [`LinkMeter`] finds one from the acknowledgements: when frames
//! take clearly longer to be acknowledged than the quickest did (they queue somewhere on the
//! way), the link carries no more than what was acknowledged lately, and the stream is capped
//! a little below that; while acknowledgements come back quick, the cap is raised again, and
//! dropped once it is far above what the stream uses.

use std::collections::VecDeque;
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

/// Delay beyond the quickest acknowledgement that says frames queue on the way.
const QUEUE_DELAY: Duration = Duration::from_millis(40);
/// Acknowledged bytes and time spent waiting for acknowledgements are counted over this long.
const WINDOW: Duration = Duration::from_secs(1);
/// Share of [`WINDOW`] spent waiting for acknowledgements that says the link (not the screen)
/// limits the stream.
const BLOCKED_SHARE: f64 = 0.5;
/// The quickest acknowledgement is forgotten after this long (the route may have changed).
const MIN_RTT_FOR: Duration = Duration::from_secs(10);
/// Share of the measured rate the cap is set to on a queueing link.
const BACK_OFF: f64 = 0.8;
/// How long the stream must go without waiting on the link before the cap is raised, and by
/// how much.
const CALM: Duration = Duration::from_secs(1);
const RAISE: f64 = 1.25;
/// Frames remembered until acknowledged (more than any flow control lets out).
const MAX_UNACKED: usize = 64;

/// The cap the acknowledgements set (see the module's doc). Pure and time-driven: the stream
/// reports each frame sent, each acknowledgement, and each wait for one.
#[derive(Debug, Clone, Default)]
pub struct LinkMeter {
    /// Frames sent and not yet acknowledged: sequence number, when, bytes.
    sent: VecDeque<(u64, Instant, usize)>,
    /// The quickest acknowledgement lately, and when it was seen.
    min_rtt: Option<(Duration, Instant)>,
    /// Bytes acknowledged within the last [`WINDOW`], with when.
    acked: VecDeque<(Instant, usize)>,
    /// Waits for an acknowledgement within the last [`WINDOW`]: when each ended, how long.
    blocked: VecDeque<(Instant, Duration)>,
    /// The cap found, kilobits per second.
    cap: Option<u32>,
    /// Since when the stream has not waited on the link.
    calm_since: Option<Instant>,
}

impl LinkMeter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Frame `seq` of `bytes` went out at `now`.
    pub fn handle_sent(&mut self, seq: u64, bytes: usize, now: Instant) {
        if self.sent.len() == MAX_UNACKED {
            self.sent.pop_front();
        }
        self.sent.push_back((seq, now, bytes));
    }

    /// The stream had a frame to send but no credit from `from` to `to`: it waited for an
    /// acknowledgement.
    pub fn handle_blocked(&mut self, from: Instant, to: Instant) {
        self.blocked
            .push_back((to, to.saturating_duration_since(from)));
        self.forget(to);
    }

    fn forget(&mut self, now: Instant) {
        let old = |t: Instant| now.saturating_duration_since(t) > WINDOW;
        while self.acked.front().is_some_and(|&(t, _)| old(t)) {
            self.acked.pop_front();
        }
        while self.blocked.front().is_some_and(|&(t, _)| old(t)) {
            self.blocked.pop_front();
        }
    }

    /// Frame `seq` was acknowledged at `now` (earlier frames are taken as acknowledged too;
    /// an unknown number changes nothing: it comes from the viewer, untrusted).
    pub fn handle_ack(&mut self, seq: u64, now: Instant) {
        let Some(i) = self.sent.iter().position(|&(s, _, _)| s == seq) else {
            return;
        };
        let mut bytes = 0;
        let mut at = now;
        for (_, t, b) in self.sent.drain(..=i) {
            bytes += b;
            at = t;
        }
        let rtt = now.saturating_duration_since(at);
        let min = match self.min_rtt {
            Some((m, seen)) if m <= rtt && now.saturating_duration_since(seen) < MIN_RTT_FOR => m,
            _ => {
                self.min_rtt = Some((rtt, now));
                rtt
            }
        };
        self.acked.push_back((now, bytes));
        self.forget(now);
        let waited: Duration = self.blocked.iter().map(|&(_, d)| d).sum();
        let link_bound = waited.as_secs_f64() > BLOCKED_SHARE * WINDOW.as_secs_f64();
        if link_bound && rtt.saturating_sub(min) > QUEUE_DELAY {
            // Frames wait for each other on the way: the link carries what came back lately,
            // and no more.
            let span = self
                .acked
                .front()
                .map_or(WINDOW, |&(t, _)| now.saturating_duration_since(t))
                .max(WINDOW / 2);
            let total: usize = self.acked.iter().map(|&(_, b)| b).sum();
            let kbps = (total as f64 * 8.0 / 1000.0 / span.as_secs_f64() * BACK_OFF) as u32;
            let kbps = kbps.clamp(MIN_KBPS, MAX_KBPS);
            self.cap = Some(self.cap.map_or(kbps, |c| c.min(kbps)));
            self.calm_since = None;
        } else if !link_bound {
            let since = *self.calm_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= CALM
                && let Some(c) = self.cap
            {
                self.calm_since = Some(now);
                let raised = (f64::from(c) * RAISE) as u32;
                // Far above what the stream uses lately: no cap at all.
                let used: usize = self.acked.iter().map(|&(_, b)| b).sum();
                let used_kbps = used as f64 * 8.0 / 1000.0 / WINDOW.as_secs_f64();
                self.cap = (raised < MAX_KBPS && f64::from(raised) < 4.0 * used_kbps.max(1.0))
                    .then_some(raised.max(MIN_KBPS));
            }
        }
    }

    /// The cap the link sets now, kilobits per second; `None`: none.
    pub fn cap_kbps(&self) -> Option<u32> {
        self.cap
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

    /// A simulated link of `kbps` with a `rtt` round trip: frames of `frame` bytes sent as fast
    /// as two unacknowledged frames and the meter's cap (paced) let them; the cap the meter has
    /// after `secs`.
    fn settle(kbps: f64, rtt: Duration, frame: usize, secs: u64) -> Option<u32> {
        let t0 = Instant::now();
        let mut m = LinkMeter::new();
        let mut now = t0;
        let mut link_free = t0;
        let mut in_flight: VecDeque<(u64, Instant)> = VecDeque::new();
        let mut seq = 0;
        let mut pacer: Option<(u32, Pacer)> = None;
        while now < t0 + Duration::from_secs(secs) {
            // Deliver acknowledgements that are due.
            while in_flight.front().is_some_and(|&(_, t)| t <= now) {
                let (s, _) = in_flight.pop_front().unwrap();
                m.handle_ack(s, now);
            }
            match (m.cap_kbps(), &pacer) {
                (Some(c), Some((pc, _))) if c == *pc => {}
                (Some(c), _) => pacer = Some((c, Pacer::new(c, now))),
                (None, _) => pacer = None,
            }
            let paced = pacer.as_mut().is_none_or(|(_, p)| p.poll_ready(now) <= now);
            if in_flight.len() == 2 && paced {
                // A frame is ready, but no credit: a millisecond of waiting on the link.
                m.handle_blocked(now, now + Duration::from_millis(1));
            }
            if in_flight.len() < 2 && paced {
                seq += 1;
                m.handle_sent(seq, frame, now);
                if let Some((_, p)) = pacer.as_mut() {
                    p.handle_sent(now, frame);
                }
                // The link sends it after what it holds, then the round trip.
                let start = link_free.max(now);
                link_free = start + Duration::from_secs_f64(frame as f64 * 8.0 / 1000.0 / kbps);
                in_flight.push_back((seq, link_free + rtt));
            }
            now += Duration::from_millis(1);
        }
        m.cap_kbps()
    }

    #[test]
    fn a_slow_link_is_found_from_the_acknowledgements() {
        // 1 Mbit/s, 80 ms: video frames of 30 KB queue; the meter caps near the link's rate.
        let cap = settle(1_000.0, Duration::from_millis(80), 30_000, 30).expect("a cap");
        // Between backing off to 80 % of what came through and a raise of a quarter.
        assert!((500..=1_250).contains(&cap), "{cap} kbit/s");
    }

    #[test]
    fn a_fast_link_or_small_frames_set_no_cap() {
        // Typing over the same slow link: small frames never queue.
        assert_eq!(settle(1_000.0, Duration::from_millis(80), 100, 20), None);
        // Large frames over a fast link: nothing queues either.
        assert_eq!(
            settle(100_000.0, Duration::from_millis(20), 30_000, 20),
            None
        );
    }

    #[test]
    fn unknown_or_repeated_acknowledgements_change_nothing() {
        let t0 = Instant::now();
        let mut m = LinkMeter::new();
        m.handle_ack(7, t0);
        m.handle_sent(1, 1_000_000, t0);
        m.handle_ack(99, t0 + Duration::from_secs(5));
        m.handle_ack(u64::MAX, t0 + Duration::from_secs(5));
        assert_eq!(m.cap_kbps(), None);
        for i in 0..1000 {
            m.handle_sent(i, 10, t0);
        }
        assert!(m.sent.len() <= MAX_UNACKED);
    }
}
