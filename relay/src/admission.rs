//! Who may start a handshake: a token bucket per source address, so one address flooding the
//! relay with connection attempts is refused (cheaply, before any cryptography) while everyone
//! else connects as usual. Pure and time-driven, so it is tested in memory.
//!
//! A peer that proves who it is — a valid, unrevoked certificate, or an enrollment with a valid
//! token — gives its token back ([`Admission::handle_authenticated`]): the bucket limits attempts
//! that *fail*, so an office of thousands of agents behind one NAT address enrolls, or reconnects
//! after a relay restart, as fast as the relay can handshake, while a flood of garbage from that
//! address is still held to the rate.
//!
//! IPv6 addresses are counted per /64 ([`bucket_key`]): one subscriber usually holds a whole
//! /64, so keying by the full address would hand an attacker 2^64 fresh buckets. IPv4-mapped
//! IPv6 addresses count as the IPv4 address they carry.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// Entries idle this long are forgotten when the table grows.
const FORGET_AFTER: Duration = Duration::from_secs(60);
/// Table size that triggers forgetting idle entries.
const PRUNE_AT: usize = 10_000;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// New connections per second per address, sustained.
    pub rate: f64,
    /// How many may come at once (a NATed office reconnecting after a relay restart).
    pub burst: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            rate: 50.0,
            burst: 200.0,
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    refused: u64,
    last_logged: Option<Instant>,
}

/// What to do with a connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Admit,
    /// Refuse; `log` is true at most once a second per address (with the count so far).
    Refuse {
        log: bool,
        refused: u64,
    },
}

#[derive(Debug)]
pub struct Admission {
    limits: Limits,
    buckets: HashMap<IpAddr, Bucket>,
}

/// The address a connection attempt is counted under: IPv4 as is (also when IPv4-mapped),
/// IPv6 by its /64 prefix.
pub fn bucket_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

impl Admission {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            buckets: HashMap::new(),
        }
    }

    pub fn handle_attempt(&mut self, ip: IpAddr, now: Instant) -> Verdict {
        if self.buckets.len() >= PRUNE_AT {
            self.buckets
                .retain(|_, b| now.saturating_duration_since(b.last) < FORGET_AFTER);
        }
        let limits = self.limits;
        let b = self.buckets.entry(bucket_key(ip)).or_insert(Bucket {
            tokens: limits.burst,
            last: now,
            refused: 0,
            last_logged: None,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * limits.rate).min(limits.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Verdict::Admit;
        }
        b.refused += 1;
        let log = b
            .last_logged
            .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1));
        if log {
            b.last_logged = Some(now);
        }
        Verdict::Refuse {
            log,
            refused: b.refused,
        }
    }
}

impl Admission {
    /// A connection from `ip` authenticated with a valid certificate: its token is returned.
    pub fn handle_authenticated(&mut self, ip: IpAddr) {
        let burst = self.limits.burst;
        if let Some(b) = self.buckets.get_mut(&bucket_key(ip)) {
            b.tokens = (b.tokens + 1.0).min(burst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_per_address() {
        let t0 = Instant::now();
        let mut a = Admission::new(Limits {
            rate: 10.0,
            burst: 5.0,
        });
        let flood: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..5 {
            assert_eq!(a.handle_attempt(flood, t0), Verdict::Admit);
        }
        assert_eq!(
            a.handle_attempt(flood, t0),
            Verdict::Refuse {
                log: true,
                refused: 1
            }
        );
        assert_eq!(
            a.handle_attempt(flood, t0),
            Verdict::Refuse {
                log: false,
                refused: 2
            }
        );
        // Others are not affected.
        assert_eq!(a.handle_attempt(other, t0), Verdict::Admit);
        // 10 per second: one more after 100 ms.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(a.handle_attempt(flood, t1), Verdict::Admit);
        assert!(matches!(
            a.handle_attempt(flood, t1),
            Verdict::Refuse { .. }
        ));
        // The bucket refills to the burst, no further.
        let t2 = t0 + Duration::from_secs(60);
        for _ in 0..5 {
            assert_eq!(a.handle_attempt(flood, t2), Verdict::Admit);
        }
        assert!(matches!(
            a.handle_attempt(flood, t2),
            Verdict::Refuse { log: true, .. }
        ));
    }

    /// Reproduces a flood from one IPv6 subscriber rotating through its /64 (and an IPv4 host
    /// also reaching the relay as IPv4-mapped IPv6): keyed by full address, every attempt got
    /// a fresh bucket and none was refused.
    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let t0 = Instant::now();
        let mut a = Admission::new(Limits {
            rate: 1.0,
            burst: 3.0,
        });
        let refused = |a: &mut Admission, ips: &[IpAddr]| {
            ips.iter()
                .filter(|ip| matches!(a.handle_attempt(**ip, t0), Verdict::Refuse { .. }))
                .count()
        };
        let rotating: Vec<IpAddr> = (1..=10u16)
            .map(|i| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 7, i, i * 3, 0, i)))
            .collect();
        assert_eq!(refused(&mut a, &rotating), 7);
        // The neighbouring /64 is someone else.
        let neighbour: IpAddr = "2001:db8:0:8::1".parse().unwrap();
        assert_eq!(a.handle_attempt(neighbour, t0), Verdict::Admit);
        // IPv4 and its IPv4-mapped form share one bucket.
        let v4: IpAddr = "192.0.2.9".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.9".parse().unwrap();
        assert_eq!(refused(&mut a, &[v4, mapped, v4, mapped]), 1);
        // A refund goes to the same bucket.
        a.handle_authenticated(mapped);
        assert_eq!(a.handle_attempt(v4, t0), Verdict::Admit);
        assert_eq!(
            bucket_key("2001:db8:0:7:ffff::1".parse().unwrap()),
            "2001:db8:0:7::".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn authenticated_peers_give_their_token_back() {
        let t0 = Instant::now();
        let mut a = Admission::new(Limits {
            rate: 1.0,
            burst: 3.0,
        });
        let nat: IpAddr = "192.0.2.7".parse().unwrap();
        // An office of 50 agents behind one address, each authenticating before the next.
        for _ in 0..50 {
            assert_eq!(a.handle_attempt(nat, t0), Verdict::Admit);
            a.handle_authenticated(nat);
        }
        // Failed attempts keep their token: three, then refused.
        for _ in 0..3 {
            assert_eq!(a.handle_attempt(nat, t0), Verdict::Admit);
        }
        assert!(matches!(a.handle_attempt(nat, t0), Verdict::Refuse { .. }));
        // A refund never lifts the bucket above its burst.
        for _ in 0..10 {
            a.handle_authenticated(nat);
        }
        for _ in 0..3 {
            assert_eq!(a.handle_attempt(nat, t0), Verdict::Admit);
        }
        assert!(matches!(a.handle_attempt(nat, t0), Verdict::Refuse { .. }));
    }
}
