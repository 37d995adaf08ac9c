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
//! commonly expire after 30 s). Peers without the capability keep the heartbeats of
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

/// The idle timeout that goes with `interval`.
pub fn idle_timeout(interval: Duration) -> Duration {
    interval * MISSES
}

/// At most this long after a peer falls silent, it is offline.
pub fn offline_within(interval: Duration) -> Duration {
    interval * (MISSES + 1)
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
}
