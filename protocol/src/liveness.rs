//! How the relay knows an agent is alive, at a cost that stays flat as the fleet grows.
//!
//! An agent and relay that both announce [`CAPABILITY`] leave liveness to QUIC: the relay sets a
//! keep-alive interval on each new connection (it sends a PING when the connection has been
//! quiet that long; the agent's QUIC stack acknowledges it without waking the agent) and an idle
//! timeout of [`MISSES`] intervals, after which either side drops the connection. No application
//! heartbeats flow, so a quiet agent costs the relay one tiny packet each way per interval.
//!
//! The interval is chosen from the number of enrolled devices so that the relay's PINGs stay
//! within [`PINGS_PER_SECOND`]: [`MIN_INTERVAL`] (offline seen within 7.5 s) for fleets up to 2,000
//! devices, longer for larger ones, never beyond [`MAX_INTERVAL`] (UDP mappings in NATs
//! commonly expire after 30 s). Relays sharing a fleet each count their share
//! ([`keepalive_interval_shared`]). Peers without the capability keep the heartbeats of
//! [`crate::conn`].

use std::time::Duration;

/// Announced in `Hello` and `Welcome` by peers that leave liveness to QUIC.
pub const CAPABILITY: &str = "transport-liveness";
/// Missed intervals after which a peer is gone (the QUIC idle timeout). QUIC restarts the idle
/// timer when the first PING after the peer's last packet goes out, so a silent peer is dropped
/// between `MISSES` and `MISSES + 1` intervals after it fell silent ([`offline_within`]). Lost
/// PINGs or acknowledgements are repaired by QUIC's loss recovery well inside that window.
pub const MISSES: u32 = 2;
pub const MIN_INTERVAL: Duration = Duration::from_millis(2_500);
pub const MAX_INTERVAL: Duration = Duration::from_secs(20);
/// The relay's PING budget at steady state, whatever the fleet size (up to `MAX_INTERVAL`).
pub const PINGS_PER_SECOND: u64 = 800;
/// The idle timeout an agent offers: long enough for any interval the relay may pick (the
/// effective timeout is the smaller of the two sides').
pub const AGENT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The keep-alive interval for new connections to a relay with `devices` enrolled devices.
pub fn keepalive_interval(devices: u64) -> Duration {
    Duration::from_millis(devices.saturating_mul(1000) / PINGS_PER_SECOND)
        .clamp(MIN_INTERVAL, MAX_INTERVAL)
}

/// The keep-alive interval for new connections to one of `relays` relays sharing a fleet of
/// `devices`: the PING budget is each relay's own, and agents spread over the relays, so each
/// expects its share (a relay that holds more after another died pings faster than its
/// budget until the fleet is counted again, never slower than the fleet's own interval).
pub fn keepalive_interval_shared(devices: u64, relays: u64) -> Duration {
    keepalive_interval(devices.div_ceil(relays.max(1)))
}

/// The idle timeout that goes with `interval`.
pub fn idle_timeout(interval: Duration) -> Duration {
    interval * MISSES
}

/// At most this long after a peer falls silent, it is offline.
pub fn offline_within(interval: Duration) -> Duration {
    interval * (MISSES + 1)
}

/// Prefix of the capability by which a relay tells the agent the keep-alive interval of this
/// connection (`keepalive-ms=3750`), so the agent can watch for the relay's silence itself.
/// QUIC's own idle timer is at least three probe timeouts, and an agent whose last RTT samples
/// were taken while the relay was swamped (a connect storm) may hold an estimate of seconds:
/// then it would notice a dead relay long after the idle timeout. The watch does not depend on
/// the RTT.
pub const INTERVAL_PREFIX: &str = "keepalive-ms=";

/// The capability announcing `interval`.
pub fn announce_interval(interval: Duration) -> String {
    format!("{INTERVAL_PREFIX}{}", interval.as_millis())
}

/// The keep-alive interval a relay announced, if it did; a value outside
/// [`MIN_INTERVAL`]..=[`MAX_INTERVAL`] or not a number is ignored (an agent then relies on QUIC's
/// idle timeout alone rather than dropping a healthy connection on a bad announcement).
pub fn announced_interval(capabilities: &[String]) -> Option<Duration> {
    capabilities.iter().find_map(|c| {
        let ms: u64 = c.strip_prefix(INTERVAL_PREFIX)?.parse().ok()?;
        let d = Duration::from_millis(ms);
        (MIN_INTERVAL..=MAX_INTERVAL).contains(&d).then_some(d)
    })
}

/// Whether a peer's capability list announces transport liveness.
pub fn announced(capabilities: &[String]) -> bool {
    capabilities.iter().any(|c| c == CAPABILITY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_fleets_are_seen_offline_within_ten_seconds() {
        for devices in [0, 1, 100, 2_000] {
            let i = keepalive_interval(devices);
            assert_eq!(i, MIN_INTERVAL, "{devices} devices");
            assert!(offline_within(i) < Duration::from_secs(10));
        }
    }

    #[test]
    fn large_fleets_keep_the_ping_rate_within_budget() {
        for devices in [5_000u64, 10_000, 16_000] {
            let i = keepalive_interval(devices);
            let rate = devices as f64 / i.as_secs_f64();
            assert!(rate <= PINGS_PER_SECOND as f64 + 1.0, "{devices}: {rate}/s");
            assert!(i > MIN_INTERVAL && i <= MAX_INTERVAL);
        }
        assert_eq!(keepalive_interval(10_000), Duration::from_millis(12_500));
        // Beyond the budget the interval stops growing: NAT mappings must not expire.
        assert_eq!(keepalive_interval(1_000_000), MAX_INTERVAL);
        assert_eq!(keepalive_interval(u64::MAX), MAX_INTERVAL);
        assert!(AGENT_IDLE_TIMEOUT >= idle_timeout(MAX_INTERVAL));
    }

    #[test]
    fn several_relays_each_budget_their_share() {
        // 9,000 devices on three relays: each pings its ~3,000 as a 3,000-device relay would,
        // so a dead relay's agents notice within 11.25 s rather than 33.75 s.
        assert_eq!(
            keepalive_interval_shared(9_000, 3),
            Duration::from_millis(3_750)
        );
        assert!(offline_within(keepalive_interval_shared(9_000, 3)) < Duration::from_secs(12));
        assert_eq!(
            keepalive_interval_shared(9_000, 1),
            keepalive_interval(9_000)
        );
        // No relay counted (the store not reachable yet) is one relay, never a division by 0.
        assert_eq!(
            keepalive_interval_shared(9_000, 0),
            keepalive_interval(9_000)
        );
        assert_eq!(keepalive_interval_shared(10, 7), MIN_INTERVAL);
    }

    #[test]
    fn the_interval_announcement_round_trips_and_garbage_is_ignored() {
        let caps = |c: &str| vec!["health".to_string(), c.to_string()];
        let i = Duration::from_millis(3_750);
        assert_eq!(announced_interval(&caps(&announce_interval(i))), Some(i));
        assert_eq!(announced_interval(&caps("health")), None);
        for bad in [
            "keepalive-ms=",
            "keepalive-ms=abc",
            "keepalive-ms=-5",
            "keepalive-ms=1",
            "keepalive-ms=2499",
            "keepalive-ms=20001",
            "keepalive-ms=99999999999999999999999",
            "keepalive-ms= 3000",
        ] {
            assert_eq!(announced_interval(&caps(bad)), None, "{bad}");
        }
        assert_eq!(
            announced_interval(&caps("keepalive-ms=20000")),
            Some(MAX_INTERVAL)
        );
    }
}
