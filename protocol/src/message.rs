//! Every message of every channel.
//!
//! Channels and who speaks first:
//! * every connection: the client opens a bidirectional *control stream* and sends [`Hello`]; the
//!   relay answers [`HelloReply`];
//! * enrollment (no client certificate yet): [`EnrollRequest`] → [`EnrollReply`] on the control
//!   stream, then the relay closes;
//! * agent ↔ relay: [`AgentToRelay`] / [`RelayToAgent`] on the control stream for as long as the
//!   agent is online;
//! * technician ↔ relay: one bidirectional stream per request, [`TechRequest`] → [`TechResponse`].
//!
//! Compatibility rules: `Hello` keeps `version` as its first field and `HelloReply` keeps its two
//! variants in this order, so peers of any version can always tell each other "unsupported".

use crate::identity::{Identity, Role};
use serde::{Deserialize, Serialize};

/// Capability names this build advertises.
pub mod capability {
    pub const PRESENCE: &str = "presence";
}

/// At most this many capabilities are read from a peer.
pub const MAX_CAPABILITIES: usize = 64;

/// First message on every connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Protocol version the sender speaks best. Must stay the first field.
    pub version: u16,
    /// Oldest version the sender can fall back to.
    pub min_version: u16,
    pub intent: Intent,
    pub capabilities: Vec<String>,
    /// Free-form software name and version, for logs ("tether-agent 0.1.0").
    pub software: String,
}

impl Hello {
    pub fn new(intent: Intent, software: &str) -> Self {
        Self {
            version: crate::PROTOCOL_VERSION,
            min_version: crate::MIN_PROTOCOL_VERSION,
            intent,
            capabilities: vec![capability::PRESENCE.to_string()],
            software: software.to_string(),
        }
    }
}

/// What the connecting peer wants to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Intent {
    Agent,
    Technician,
    Enroll,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloReply {
    Welcome(Welcome),
    Refused(Refusal),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// Version both sides will speak.
    pub version: u16,
    pub capabilities: Vec<String>,
    /// Who the relay authenticated the peer as (from its certificate); `None` when enrolling.
    pub identity: Option<Identity>,
    pub software: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub reason: RefusalReason,
    /// One human-readable line.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusalReason {
    UnsupportedVersion {
        min: u16,
        max: u16,
    },
    /// The intent needs a client certificate and none was presented.
    NotAuthenticated,
    /// The certificate is for another kind of peer (a device certificate used as technician…).
    WrongIdentity,
    /// The certificate was revoked by an administrator.
    Revoked,
    /// The hello could not be decoded.
    Malformed,
}

/// Sent by a machine or technician that has a token but no certificate yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    /// The secret half of the token; the relay keeps only its hash.
    pub token_secret: [u8; 32],
    /// PKCS#10 request for a key that never leaves the enrolling machine.
    pub csr_pem: String,
    /// The enrolling machine's hostname (informational, untrusted).
    pub hostname: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnrollReply {
    Issued {
        identity: Identity,
        cert_pem: String,
        ca_pem: String,
    },
    Refused {
        reason: EnrollRefusal,
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnrollRefusal {
    /// No such token (never issued, forged, or mistyped).
    UnknownToken,
    AlreadyUsed,
    Expired,
    BadCsr,
    /// Too many attempts; try later.
    Busy,
}

/// Agent → relay, on the agent's control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentToRelay {
    /// Sent once after the welcome and whenever it changes. Untrusted: the relay cleans it.
    Status(AgentStatus),
    Heartbeat {
        seq: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub hostname: String,
    pub os: String,
    pub agent_version: String,
}

/// Relay → agent, on the agent's control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RelayToAgent {
    HeartbeatAck { seq: u64 },
}

/// Technician → relay: the first and only frame a technician sends on a request stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TechRequest {
    ListDevices,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TechResponse {
    Devices(Vec<DeviceSummary>),
    Error { code: ErrorCode, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    Forbidden,
    NotFound,
    BadRequest,
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSummary {
    pub id: String,
    pub hostname: String,
    pub group: String,
    pub online: bool,
    pub os: String,
    pub agent_version: String,
    pub first_seen_unix_ms: i64,
    pub last_seen_unix_ms: i64,
}

/// Application close codes used on QUIC connections (`CONNECTION_CLOSE` with an app error code).
pub mod close_code {
    pub const NORMAL: u32 = 0;
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const HELLO_TIMEOUT: u32 = 2;
    pub const REFUSED: u32 = 3;
    pub const REVOKED: u32 = 4;
    pub const REPLACED: u32 = 5;
    pub const SHUTDOWN: u32 = 6;
    pub const IDLE: u32 = 7;
}

/// Technician roles allowed to list devices.
pub fn may_list_devices(role: Role) -> bool {
    matches!(role, Role::Viewer | Role::Support | Role::Admin)
}
