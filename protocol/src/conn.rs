//! Connection state machines, driven by the I/O glue in the quinn-proto style: the glue feeds in
//! what arrived (`handle_*`) with the current time, asks what to send (`poll_transmit`) and when to
//! wake up (`poll_timeout`), and calls `handle_timeout` when that moment comes.
//!
//! * [`RelayConn`] — the relay's view of any incoming connection: hello deadline, version
//!   negotiation, intent vs. certificate, and (for agents) liveness by heartbeat.
//! * [`AgentConn`] — the agent's view of its connection to the relay: heartbeats, and noticing a
//!   relay that stopped answering.

use crate::codec;
use crate::identity::Identity;
use crate::message::{
    AgentToRelay, Hello, HelloReply, Intent, Refusal, RefusalReason, RelayToAgent, Welcome,
    close_code,
};
use crate::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use std::time::{Duration, Instant};
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// How long a new connection may take to say hello.
    pub hello: Duration,
    /// How often an agent sends a heartbeat.
    pub heartbeat: Duration,
    /// Silence after which a peer is considered gone. Must exceed `heartbeat` comfortably.
    pub dead_after: Duration,
}

impl Default for Timeouts {
    /// Offline within 6 s of an agent vanishing (the product promises 10 s).
    fn default() -> Self {
        Self {
            hello: Duration::from_secs(10),
            heartbeat: Duration::from_secs(2),
            dead_after: Duration::from_secs(6),
        }
    }
}

/// Why a connection ended, as an application close code plus one line for logs and peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    pub code: u32,
    pub reason: String,
}

impl Close {
    fn new(code: u32, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

/// Negotiates the version both sides speak, if any.
pub fn negotiate(peer_min: u16, peer_max: u16) -> Option<u16> {
    let v = peer_max.min(PROTOCOL_VERSION);
    (v >= peer_min.max(MIN_PROTOCOL_VERSION)).then_some(v)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayConnState {
    AwaitingHello,
    Established { version: u16, intent: Intent },
    Closed(Close),
}

/// The relay's side of one connection.
#[derive(Debug)]
pub struct RelayConn {
    state: RelayConnState,
    identity: Option<Identity>,
    timeouts: Timeouts,
    hello_deadline: Instant,
    last_rx: Instant,
    /// The agent announced [`crate::liveness`]: QUIC's idle timeout, not heartbeats, ends it.
    transport_liveness: bool,
    /// The technician announced [`crate::message::capability::ASKING`].
    asking: bool,
    /// The technician announced [`crate::message::capability::ELSEWHERE`].
    follows: bool,
    /// This connection's QUIC keep-alive interval, announced to agents that take
    /// [`crate::liveness`] so they can watch for our silence.
    keepalive: Option<Duration>,
}

impl RelayConn {
    /// `identity` is what the peer's client certificate says, `None` without one.
    pub fn new(now: Instant, timeouts: Timeouts, identity: Option<Identity>) -> Self {
        Self {
            state: RelayConnState::AwaitingHello,
            identity,
            timeouts,
            hello_deadline: now + timeouts.hello,
            last_rx: now,
            transport_liveness: false,
            asking: false,
            follows: false,
            keepalive: None,
        }
    }

    /// The QUIC keep-alive interval this connection was accepted with (see
    /// [`crate::liveness::announce_interval`]).
    pub fn set_keepalive(&mut self, interval: Duration) {
        self.keepalive = Some(interval);
    }

    pub fn state(&self) -> &RelayConnState {
        &self.state
    }

    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// Handles the payload of the first frame on the control stream and returns the reply to send.
    /// A refusal also closes the connection (see [`Self::close`]).
    pub fn handle_hello(&mut self, now: Instant, payload: &[u8]) -> HelloReply {
        if self.state != RelayConnState::AwaitingHello {
            return self.refuse(RefusalReason::Malformed, "hello sent twice");
        }
        self.last_rx = now;
        let hello: Hello = match codec::from_payload(payload) {
            Ok(h) => h,
            Err(e) => {
                // A future version may have changed the rest of the hello: answer in its terms.
                return match codec::peek_version(payload) {
                    Ok(v) if negotiate(v, v).is_none() => self.unsupported(v),
                    _ => self.refuse(RefusalReason::Malformed, format!("bad hello: {e}")),
                };
            }
        };
        let Some(version) = negotiate(hello.min_version, hello.version) else {
            return self.unsupported(hello.version);
        };
        let id_ok = match (hello.intent, &self.identity) {
            (Intent::Enroll, _) => Ok(()),
            (_, None) => Err(RefusalReason::NotAuthenticated),
            (Intent::Agent, Some(Identity::Device { .. })) => Ok(()),
            (Intent::Technician, Some(Identity::Technician { .. })) => Ok(()),
            _ => Err(RefusalReason::WrongIdentity),
        };
        if let Err(reason) = id_ok {
            let msg = match reason {
                RefusalReason::NotAuthenticated => {
                    "no client certificate: enroll first with a token".to_string()
                }
                _ => format!(
                    "certificate identifies {} but the connection asks to be {:?}",
                    self.identity
                        .as_ref()
                        .map(|i| i.to_string())
                        .unwrap_or_default(),
                    hello.intent
                ),
            };
            return self.refuse(reason, msg);
        }
        self.state = RelayConnState::Established {
            version,
            intent: hello.intent,
        };
        self.transport_liveness = crate::liveness::announced(&hello.capabilities);
        self.asking = hello
            .capabilities
            .iter()
            .any(|c| c == crate::message::capability::ASKING);
        self.follows = hello
            .capabilities
            .iter()
            .any(|c| c == crate::message::capability::ELSEWHERE);
        let mut capabilities = vec![
            crate::message::capability::PRESENCE.to_string(),
            crate::message::capability::HEALTH.to_string(),
            crate::liveness::CAPABILITY.to_string(),
            crate::message::capability::ASKING.to_string(),
            crate::message::capability::ELSEWHERE.to_string(),
        ];
        if let Some(i) = self.keepalive.filter(|_| self.transport_liveness) {
            capabilities.push(crate::liveness::announce_interval(i));
        }
        HelloReply::Welcome(Welcome {
            version,
            capabilities,
            identity: self.identity.clone(),
            software: String::new(),
        })
    }

    fn unsupported(&mut self, version: u16) -> HelloReply {
        self.refuse(
            RefusalReason::UnsupportedVersion {
                min: MIN_PROTOCOL_VERSION,
                max: PROTOCOL_VERSION,
            },
            format!(
                "protocol version {version} is not supported by this relay (it speaks {MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION}); upgrade the older side"
            ),
        )
    }

    fn refuse(&mut self, reason: RefusalReason, message: impl Into<String>) -> HelloReply {
        let message = message.into();
        self.state = RelayConnState::Closed(Close::new(close_code::REFUSED, message.clone()));
        HelloReply::Refused(Refusal { reason, message })
    }

    /// Any frame after the hello: proof of life.
    pub fn handle_frame(&mut self, now: Instant) {
        self.last_rx = now;
    }

    /// The glue saw bytes that are not a valid message for this state.
    pub fn handle_protocol_error(&mut self, reason: impl Into<String>) {
        if !matches!(self.state, RelayConnState::Closed(_)) {
            self.state = RelayConnState::Closed(Close::new(close_code::PROTOCOL_ERROR, reason));
        }
    }

    /// Whether this connection's liveness is left to QUIC (see [`crate::liveness`]).
    pub fn transport_liveness(&self) -> bool {
        self.transport_liveness
    }

    /// Whether the technician takes [`crate::message::TechResponse::Asking`] before an answer.
    pub fn peer_takes_asking(&self) -> bool {
        self.asking
    }

    /// Whether the technician follows [`crate::message::TechResponse::Elsewhere`].
    pub fn peer_follows_elsewhere(&self) -> bool {
        self.follows
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            RelayConnState::AwaitingHello => Some(self.hello_deadline),
            RelayConnState::Established {
                intent: Intent::Agent,
                ..
            } if !self.transport_liveness => Some(self.last_rx + self.timeouts.dead_after),
            _ => None,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        match &self.state {
            RelayConnState::AwaitingHello if now >= self.hello_deadline => {
                self.state = RelayConnState::Closed(Close::new(
                    close_code::HELLO_TIMEOUT,
                    format!("no hello within {:?}", self.timeouts.hello),
                ));
            }
            RelayConnState::Established {
                intent: Intent::Agent,
                ..
            } if !self.transport_liveness && now >= self.last_rx + self.timeouts.dead_after => {
                self.state = RelayConnState::Closed(Close::new(
                    close_code::IDLE,
                    format!("no heartbeat for {:?}", self.timeouts.dead_after),
                ));
            }
            _ => {}
        }
    }

    /// `Some` once the connection must be closed, with the code and reason to close it with.
    pub fn poll_close(&self) -> Option<&Close> {
        match &self.state {
            RelayConnState::Closed(c) => Some(c),
            _ => None,
        }
    }
}

/// Why a client's handshake failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    #[error("relay refused the connection: {}", .0.message)]
    Refused(Refusal),
    #[error("relay chose protocol version {0}, which this build does not speak")]
    BadVersion(u16),
}

/// Checks the relay's answer to a client's hello.
pub fn check_hello_reply(reply: HelloReply) -> Result<Welcome, HandshakeError> {
    match reply {
        HelloReply::Refused(r) => Err(HandshakeError::Refused(r)),
        HelloReply::Welcome(w) if negotiate(w.version, w.version).is_none() => {
            Err(HandshakeError::BadVersion(w.version))
        }
        HelloReply::Welcome(w) => Ok(w),
    }
}

/// Something the agent's glue must do in answer to the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    /// The relay already has the inventory with this fingerprint.
    InventoryCurrent { hash: u64 },
    /// The relay wants the current inventory uploaded.
    InventoryWanted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentConnState {
    AwaitingWelcome,
    Established,
    Closed(Close),
}

/// The agent's side of its connection to the relay.
#[derive(Debug)]
pub struct AgentConn {
    state: AgentConnState,
    timeouts: Timeouts,
    hello_deadline: Instant,
    last_rx: Instant,
    next_heartbeat: Instant,
    seq: u64,
    /// Heartbeats sent and not yet acknowledged.
    unacked: u64,
    /// The relay agreed to [`crate::liveness`]: no heartbeats, QUIC's idle timeout ends it.
    transport_liveness: bool,
    /// With transport liveness, how long the relay may stay silent (nothing at all received)
    /// before we end the connection ourselves: the idle timeout that goes with the keep-alive
    /// interval it announced. `None`: it announced none; QUIC's idle timer alone ends it.
    silent_limit: Option<Duration>,
}

impl AgentConn {
    pub fn new(now: Instant, timeouts: Timeouts) -> Self {
        Self {
            state: AgentConnState::AwaitingWelcome,
            timeouts,
            hello_deadline: now + timeouts.hello,
            last_rx: now,
            next_heartbeat: now,
            seq: 0,
            unacked: 0,
            transport_liveness: false,
            silent_limit: None,
        }
    }

    pub fn state(&self) -> &AgentConnState {
        &self.state
    }

    pub fn hello(&self, software: &str) -> Hello {
        Hello::new(Intent::Agent, software)
    }

    pub fn handle_hello_reply(
        &mut self,
        now: Instant,
        reply: HelloReply,
    ) -> Result<Welcome, HandshakeError> {
        self.last_rx = now;
        match check_hello_reply(reply) {
            Ok(w) => {
                self.state = AgentConnState::Established;
                self.next_heartbeat = now + self.timeouts.heartbeat;
                // Our hello announced it; the relay's welcome agrees.
                self.transport_liveness = crate::liveness::announced(&w.capabilities);
                self.silent_limit = crate::liveness::announced_interval(&w.capabilities)
                    .filter(|_| self.transport_liveness)
                    .map(crate::liveness::idle_timeout);
                Ok(w)
            }
            Err(e) => {
                self.state = AgentConnState::Closed(Close::new(close_code::REFUSED, e.to_string()));
                Err(e)
            }
        }
    }

    /// Handles a message from the relay; some ask the glue to act.
    pub fn handle_message(&mut self, now: Instant, msg: RelayToAgent) -> Option<AgentEvent> {
        self.last_rx = now;
        match msg {
            RelayToAgent::HeartbeatAck { seq } if seq <= self.seq => {
                self.unacked = 0;
                None
            }
            RelayToAgent::HeartbeatAck { .. } => {
                self.state = AgentConnState::Closed(Close::new(
                    close_code::PROTOCOL_ERROR,
                    "relay acknowledged a heartbeat that was never sent",
                ));
                None
            }
            RelayToAgent::InventoryKnown {
                hash,
                current: true,
            } => Some(AgentEvent::InventoryCurrent { hash }),
            RelayToAgent::InventoryKnown { current: false, .. } => {
                Some(AgentEvent::InventoryWanted)
            }
        }
    }

    /// The next message to send now, if any.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<AgentToRelay> {
        if self.state != AgentConnState::Established
            || self.transport_liveness
            || now < self.next_heartbeat
        {
            return None;
        }
        self.seq += 1;
        self.unacked += 1;
        self.next_heartbeat = now + self.timeouts.heartbeat;
        Some(AgentToRelay::Heartbeat { seq: self.seq })
    }

    /// Whether liveness is left to QUIC on this connection (see [`crate::liveness`]).
    pub fn transport_liveness(&self) -> bool {
        self.transport_liveness
    }

    /// Whether the glue should report packets received ([`Self::handle_transport_rx`]): the
    /// relay announced its keep-alive interval, so its silence is watched here.
    pub fn watches_silence(&self) -> bool {
        self.silent_limit.is_some()
    }

    /// Something arrived from the relay at the transport (a keep-alive PING counts, though it
    /// never reaches the application).
    pub fn handle_transport_rx(&mut self, now: Instant) {
        self.last_rx = self.last_rx.max(now);
    }

    /// Heartbeats sent since the last acknowledgement.
    pub fn unacked(&self) -> u64 {
        self.unacked
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            AgentConnState::AwaitingWelcome => Some(self.hello_deadline),
            AgentConnState::Established if self.transport_liveness => {
                self.silent_limit.map(|l| self.last_rx + l)
            }
            AgentConnState::Established => Some(
                self.next_heartbeat
                    .min(self.last_rx + self.timeouts.dead_after),
            ),
            AgentConnState::Closed(_) => None,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            AgentConnState::AwaitingWelcome if now >= self.hello_deadline => {
                self.state = AgentConnState::Closed(Close::new(
                    close_code::HELLO_TIMEOUT,
                    "relay did not answer the hello",
                ));
            }
            AgentConnState::Established
                if !self.transport_liveness && now >= self.last_rx + self.timeouts.dead_after =>
            {
                self.state = AgentConnState::Closed(Close::new(
                    close_code::IDLE,
                    format!("relay silent for {:?}", self.timeouts.dead_after),
                ));
            }
            AgentConnState::Established if self.transport_liveness => {
                if let Some(limit) = self.silent_limit
                    && now >= self.last_rx + limit
                {
                    self.state = AgentConnState::Closed(Close::new(
                        close_code::IDLE,
                        format!("relay silent for {limit:?} despite its keep-alive"),
                    ));
                }
            }
            _ => {}
        }
    }

    pub fn poll_close(&self) -> Option<&Close> {
        match &self.state {
            AgentConnState::Closed(c) => Some(c),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Role;

    fn device() -> Identity {
        Identity::Device {
            id: "d1".into(),
            group: "default".into(),
        }
    }

    fn hello_bytes(h: &Hello) -> Vec<u8> {
        codec::to_bytes(h).unwrap()
    }

    #[test]
    fn hello_deadline_closes_silent_peer() {
        let t0 = Instant::now();
        let mut c = RelayConn::new(t0, Timeouts::default(), Some(device()));
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(10)));
        c.handle_timeout(t0 + Duration::from_secs(9));
        assert!(c.poll_close().is_none());
        c.handle_timeout(t0 + Duration::from_secs(10));
        assert_eq!(c.poll_close().unwrap().code, close_code::HELLO_TIMEOUT);
        assert_eq!(c.poll_timeout(), None);
    }

    /// The hello of an agent from before [`crate::liveness`]: heartbeats only.
    fn legacy_agent_hello() -> Hello {
        let mut h = Hello::new(Intent::Agent, "old agent");
        h.capabilities.retain(|c| c != crate::liveness::CAPABILITY);
        h
    }

    #[test]
    fn agent_hello_then_liveness() {
        let t0 = Instant::now();
        let mut c = RelayConn::new(t0, Timeouts::default(), Some(device()));
        let reply = c.handle_hello(t0, &hello_bytes(&legacy_agent_hello()));
        let w = check_hello_reply(reply).unwrap();
        assert_eq!(w.identity, Some(device()));
        // Heartbeats keep it alive past the hello deadline.
        for s in 1..20 {
            let now = t0 + Duration::from_secs(s);
            c.handle_frame(now);
            c.handle_timeout(now);
        }
        assert!(c.poll_close().is_none());
        let last = t0 + Duration::from_secs(19);
        assert_eq!(c.poll_timeout(), Some(last + Duration::from_secs(6)));
        c.handle_timeout(last + Duration::from_secs(6));
        assert_eq!(c.poll_close().unwrap().code, close_code::IDLE);
    }

    #[test]
    fn unknown_versions_get_a_clear_refusal() {
        let t0 = Instant::now();
        let mut h = Hello::new(Intent::Agent, "future");
        h.version = 99;
        h.min_version = 50;
        let mut c = RelayConn::new(t0, Timeouts::default(), Some(device()));
        match c.handle_hello(t0, &hello_bytes(&h)) {
            HelloReply::Refused(r) => {
                assert_eq!(
                    r.reason,
                    RefusalReason::UnsupportedVersion {
                        min: MIN_PROTOCOL_VERSION,
                        max: PROTOCOL_VERSION
                    }
                );
                assert!(r.message.contains("99"), "{}", r.message);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.poll_close().unwrap().code, close_code::REFUSED);

        // A future hello whose body this build cannot even decode: the version still reads.
        let mut bytes = codec::to_bytes(&99u16).unwrap();
        bytes.extend_from_slice(&[0xff; 40]);
        let mut c = RelayConn::new(t0, Timeouts::default(), Some(device()));
        assert!(matches!(
            c.handle_hello(t0, &bytes),
            HelloReply::Refused(Refusal {
                reason: RefusalReason::UnsupportedVersion { .. },
                ..
            })
        ));
    }

    #[test]
    fn newer_client_falls_back_to_our_version() {
        let mut h = Hello::new(Intent::Agent, "newer");
        h.version = PROTOCOL_VERSION + 3;
        let mut c = RelayConn::new(Instant::now(), Timeouts::default(), Some(device()));
        let w = check_hello_reply(c.handle_hello(Instant::now(), &hello_bytes(&h))).unwrap();
        assert_eq!(w.version, PROTOCOL_VERSION);
    }

    #[test]
    fn intent_must_match_certificate() {
        let now = Instant::now();
        let tech = Identity::Technician {
            name: "ana".into(),
            role: Role::Viewer,
        };
        let cases = [
            (None, Intent::Agent, Some(RefusalReason::NotAuthenticated)),
            (
                None,
                Intent::Technician,
                Some(RefusalReason::NotAuthenticated),
            ),
            (None, Intent::Enroll, None),
            (
                Some(tech.clone()),
                Intent::Agent,
                Some(RefusalReason::WrongIdentity),
            ),
            (
                Some(device()),
                Intent::Technician,
                Some(RefusalReason::WrongIdentity),
            ),
            (Some(tech), Intent::Technician, None),
            (Some(device()), Intent::Agent, None),
        ];
        for (id, intent, expect) in cases {
            let mut c = RelayConn::new(now, Timeouts::default(), id.clone());
            let reply = c.handle_hello(now, &hello_bytes(&Hello::new(intent, "x")));
            let got = match reply {
                HelloReply::Refused(r) => Some(r.reason),
                HelloReply::Welcome(_) => None,
            };
            assert_eq!(got, expect, "{id:?} {intent:?}");
        }
    }

    #[test]
    fn only_technicians_that_announce_it_are_told_the_user_is_being_asked() {
        use crate::message::capability;
        let now = Instant::now();
        let tech = Identity::Technician {
            name: "ana".into(),
            role: Role::Support,
        };
        let mut c = RelayConn::new(now, Timeouts::default(), Some(tech.clone()));
        let reply = c.handle_hello(now, &hello_bytes(&Hello::new(Intent::Technician, "x")));
        let w = check_hello_reply(reply).unwrap();
        assert!(w.capabilities.iter().any(|c| c == capability::ASKING));
        assert!(c.peer_takes_asking());
        // A technician from before `Asking` would not decode it.
        let mut old = Hello::new(Intent::Technician, "old tether");
        old.capabilities
            .retain(|c| c != capability::ASKING && c != capability::ELSEWHERE);
        let mut c = RelayConn::new(now, Timeouts::default(), Some(tech.clone()));
        check_hello_reply(c.handle_hello(now, &hello_bytes(&old))).unwrap();
        assert!(!c.peer_takes_asking());
        // Nor sent elsewhere (it would not decode that either).
        assert!(!c.peer_follows_elsewhere());
        let mut c = RelayConn::new(now, Timeouts::default(), Some(tech));
        let w = check_hello_reply(
            c.handle_hello(now, &hello_bytes(&Hello::new(Intent::Technician, "t"))),
        )
        .unwrap();
        assert!(c.peer_follows_elsewhere());
        assert!(w.capabilities.iter().any(|c| c == capability::ELSEWHERE));
    }

    #[test]
    fn garbage_hello_is_refused_and_second_hello_too() {
        let now = Instant::now();
        let mut c = RelayConn::new(now, Timeouts::default(), Some(device()));
        // Starts like a version-1 hello, then garbage.
        assert!(matches!(
            c.handle_hello(now, &[1, 0xde, 0xad, 0xbe, 0xef]),
            HelloReply::Refused(Refusal {
                reason: RefusalReason::Malformed,
                ..
            })
        ));
        // Garbage whose first byte reads as some other version is refused all the same.
        let mut c = RelayConn::new(now, Timeouts::default(), Some(device()));
        assert!(matches!(
            c.handle_hello(now, &[0xde, 0xad, 0xbe, 0xef]),
            HelloReply::Refused(_)
        ));
        let mut c = RelayConn::new(now, Timeouts::default(), Some(device()));
        let h = hello_bytes(&Hello::new(Intent::Agent, "x"));
        assert!(matches!(c.handle_hello(now, &h), HelloReply::Welcome(_)));
        assert!(matches!(c.handle_hello(now, &h), HelloReply::Refused(_)));
        assert!(c.poll_close().is_some());
    }

    #[test]
    fn agent_sends_heartbeats_and_notices_silent_relay() {
        let t0 = Instant::now();
        let t = Timeouts::default();
        let mut a = AgentConn::new(t0, t);
        assert_eq!(a.poll_transmit(t0), None, "no heartbeat before welcome");
        let mut relay = RelayConn::new(t0, t, Some(device()));
        // A relay from before transport liveness: it does not announce it.
        let reply = match relay.handle_hello(t0, &hello_bytes(&a.hello("agent"))) {
            HelloReply::Welcome(mut w) => {
                w.capabilities.retain(|c| c != crate::liveness::CAPABILITY);
                HelloReply::Welcome(w)
            }
            other => other,
        };
        a.handle_hello_reply(t0, reply).unwrap();
        assert!(!a.transport_liveness());
        assert_eq!(a.poll_timeout(), Some(t0 + t.heartbeat));
        assert_eq!(a.poll_transmit(t0 + Duration::from_secs(1)), None);
        let hb = a.poll_transmit(t0 + t.heartbeat);
        assert_eq!(hb, Some(AgentToRelay::Heartbeat { seq: 1 }));
        a.handle_message(t0 + t.heartbeat, RelayToAgent::HeartbeatAck { seq: 1 });
        assert_eq!(a.unacked(), 0);
        // The relay goes silent: heartbeats continue, then the agent gives up.
        let mut now = t0 + t.heartbeat;
        while a.poll_close().is_none() {
            now = a.poll_timeout().unwrap();
            a.handle_timeout(now);
            let _ = a.poll_transmit(now);
        }
        assert_eq!(now, t0 + t.heartbeat + t.dead_after);
        assert_eq!(
            a.unacked(),
            2,
            "heartbeats at +4 s and +6 s went unanswered"
        );
        assert_eq!(a.poll_close().unwrap().code, close_code::IDLE);
    }

    #[test]
    fn agent_watches_the_silence_of_a_relay_that_announced_its_keep_alive() {
        let t0 = Instant::now();
        let t = Timeouts::default();
        let interval = Duration::from_millis(3_750);
        let mut a = AgentConn::new(t0, t);
        let mut relay = RelayConn::new(t0, t, Some(device()));
        relay.set_keepalive(interval);
        let reply = relay.handle_hello(t0, &hello_bytes(&a.hello("agent")));
        a.handle_hello_reply(t0, reply).unwrap();
        assert!(a.transport_liveness() && a.watches_silence());
        let limit = crate::liveness::idle_timeout(interval);
        assert_eq!(a.poll_timeout(), Some(t0 + limit));
        // Keep-alive PINGs seen at the transport push the deadline on; no heartbeats are sent.
        let mut now = t0;
        for _ in 0..10 {
            now += interval;
            a.handle_transport_rx(now);
            a.handle_timeout(now);
            assert_eq!(a.poll_transmit(now), None);
        }
        assert!(a.poll_close().is_none());
        // A report of an earlier packet, arriving late, does not move the deadline back.
        a.handle_transport_rx(t0);
        assert_eq!(a.poll_timeout(), Some(now + limit));
        // The relay dies: the agent closes at the limit, whatever QUIC's RTT estimate is.
        a.handle_timeout(now + limit - Duration::from_millis(1));
        assert!(a.poll_close().is_none());
        a.handle_timeout(now + limit);
        assert_eq!(a.poll_close().unwrap().code, close_code::IDLE);
    }

    #[test]
    fn no_interval_is_announced_to_an_agent_without_transport_liveness() {
        let t0 = Instant::now();
        let mut relay = RelayConn::new(t0, Timeouts::default(), Some(device()));
        relay.set_keepalive(Duration::from_secs(5));
        let mut h = Hello::new(Intent::Agent, "old agent");
        h.capabilities.retain(|c| c != crate::liveness::CAPABILITY);
        let HelloReply::Welcome(w) = relay.handle_hello(t0, &hello_bytes(&h)) else {
            panic!("refused");
        };
        assert_eq!(crate::liveness::announced_interval(&w.capabilities), None);
    }

    #[test]
    fn agent_and_relay_that_both_announce_it_leave_liveness_to_quic() {
        let t0 = Instant::now();
        let t = Timeouts::default();
        let mut a = AgentConn::new(t0, t);
        let mut relay = RelayConn::new(t0, t, Some(device()));
        let reply = relay.handle_hello(t0, &hello_bytes(&a.hello("agent")));
        a.handle_hello_reply(t0, reply).unwrap();
        assert!(a.transport_liveness() && relay.transport_liveness());
        // No heartbeats, no deadlines: an hour of silence closes nothing at this layer (the
        // QUIC idle timeout does, in the glue).
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(a.poll_transmit(later), None);
        assert_eq!((a.poll_timeout(), relay.poll_timeout()), (None, None));
        a.handle_timeout(later);
        relay.handle_timeout(later);
        assert!(a.poll_close().is_none() && relay.poll_close().is_none());
        // Heartbeats that still arrive (say, from an agent mid-upgrade) are answered as before.
        a.handle_message(later, RelayToAgent::HeartbeatAck { seq: 0 });
        assert!(a.poll_close().is_none());
    }

    #[test]
    fn an_old_agent_on_a_new_relay_keeps_its_heartbeat_deadline() {
        let t0 = Instant::now();
        let t = Timeouts::default();
        let mut relay = RelayConn::new(t0, t, Some(device()));
        let reply = relay.handle_hello(t0, &hello_bytes(&legacy_agent_hello()));
        assert!(crate::liveness::announced(
            &check_hello_reply(reply).unwrap().capabilities
        ));
        assert!(!relay.transport_liveness());
        assert_eq!(relay.poll_timeout(), Some(t0 + t.dead_after));
    }

    #[test]
    fn agent_reports_refusal() {
        let t0 = Instant::now();
        let mut a = AgentConn::new(t0, Timeouts::default());
        let err = a
            .handle_hello_reply(
                t0,
                HelloReply::Refused(Refusal {
                    reason: RefusalReason::Revoked,
                    message: "revoked".into(),
                }),
            )
            .unwrap_err();
        assert!(matches!(err, HandshakeError::Refused(_)));
        assert!(a.poll_close().is_some());
    }

    #[test]
    fn ack_for_unsent_heartbeat_is_a_protocol_error() {
        let t0 = Instant::now();
        let mut a = AgentConn::new(t0, Timeouts::default());
        let mut relay = RelayConn::new(t0, Timeouts::default(), Some(device()));
        let reply = relay.handle_hello(t0, &hello_bytes(&a.hello("agent")));
        a.handle_hello_reply(t0, reply).unwrap();
        a.handle_message(t0, RelayToAgent::HeartbeatAck { seq: 5 });
        assert_eq!(a.poll_close().unwrap().code, close_code::PROTOCOL_ERROR);
    }
}
