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

pub use crate::device::DeviceSummary;
use crate::history::Change;
use crate::identity::{Identity, Role};
use crate::inventory::Inventory;
use serde::{Deserialize, Serialize};

/// Capability names this build advertises.
pub mod capability {
    pub const PRESENCE: &str = "presence";
    /// The relay accepts [`super::AgentToRelay::Health`] reports.
    pub const HEALTH: &str = "health";
    /// Technician and relay: [`super::TechResponse::Asking`] may come before the answer to
    /// `OpenSession` and `Say`. The relay sends it only to technicians that announced this, and a
    /// technician whose relay does not announce it cannot know when the user is being asked.
    pub const ASKING: &str = "asking";
    /// Technician and relay: a relay sharing its store with others may answer a request for a
    /// device another relay holds with [`super::TechResponse::Elsewhere`], which the technician
    /// follows by asking that relay. Sent only to technicians that announced this.
    pub const ELSEWHERE: &str = "elsewhere";
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
            // Agents leave liveness to QUIC where the relay agrees (see `crate::liveness`).
            capabilities: match intent {
                Intent::Agent => vec![
                    capability::PRESENCE.to_string(),
                    crate::liveness::CAPABILITY.to_string(),
                ],
                Intent::Technician => vec![
                    capability::PRESENCE.to_string(),
                    capability::ASKING.to_string(),
                    capability::ELSEWHERE.to_string(),
                ],
                Intent::Enroll => vec![capability::PRESENCE.to_string()],
            },
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
    /// A technician token without `--replace` for a name that holds a valid certificate.
    AlreadyEnrolled,
}

/// Agent → relay, on the agent's control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentToRelay {
    /// Sent once after the welcome and whenever it changes. Untrusted: the relay cleans it.
    Status(AgentStatus),
    Heartbeat {
        seq: u64,
    },
    /// Fingerprint of the agent's current inventory ([`crate::history::fingerprint`]), sent after
    /// each connect; the relay answers whether it already has that inventory.
    InventoryHash {
        hash: u64,
    },
    /// The user ended this session from the tray or the terminal.
    SessionEndedByUser {
        session_id: String,
    },
    /// The user's rating of a session that ran on this device (1–5, comment cleaned).
    Rating {
        session_id: String,
        rating: u8,
        comment: String,
    },
    /// Something done in a session, for its audit record: a command line and its exit code, a
    /// file's path, size and checksum. The relay bounds and cleans it.
    SessionAction {
        session_id: String,
        action: String,
    },
    /// A health sample, on an interval and once after each connect; only to a relay that
    /// advertised [`capability::HEALTH`]. Untrusted: the relay sanitizes it.
    Health(Box<crate::health::HealthReport>),
}

/// Longest [`AgentToRelay::SessionAction`] text kept.
pub const MAX_ACTION: usize = 2048;

/// First frame of a stream the agent opens on its connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AgentStream {
    /// A full inventory (bulk limit). Answered by one [`UploadReply`] on the same stream.
    InventoryUpload {
        hash: u64,
        inventory: Box<Inventory>,
    },
    /// The terminal output of a recorded shell ([`crate::session::SessionGrant::record_shell`]),
    /// followed by [`TranscriptChunk`]s until the agent finishes the stream.
    Transcript { session_id: String },
}

/// Part of a shell transcript (control limit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranscriptChunk(#[serde(with = "serde_bytes")] pub Vec<u8>);

/// Largest transcript the relay keeps per session; the rest is cut (and says so).
pub const MAX_TRANSCRIPT: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UploadReply {
    /// Stored durably; `changes` history entries were recorded.
    Ack {
        hash: u64,
        changes: u32,
    },
    Rejected {
        message: String,
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
    HeartbeatAck {
        seq: u64,
    },
    /// Answer to [`AgentToRelay::InventoryHash`]: `current` is false when the relay's stored
    /// inventory differs (or there is none) and the agent should upload.
    InventoryKnown {
        hash: u64,
        current: bool,
    },
}

/// Technician → relay: the first and only frame a technician sends on a request stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TechRequest {
    ListDevices,
    /// The latest inventory of one device (id, unique id prefix, or hostname).
    Inventory {
        device: String,
    },
    /// One summary row per device.
    InventoryAll,
    /// Which devices have a package. `name` may end in `*`; `version_below` keeps only versions
    /// that sort below it (dpkg order).
    Software {
        name: String,
        version_below: Option<String>,
    },
    /// What changed on a device since a time.
    History {
        device: String,
        since_unix_ms: i64,
    },
    /// A screen session. On success the relay answers [`TechResponse::SessionReady`] and this
    /// stream becomes the end-to-end channel to the agent (see [`crate::session`]).
    OpenSession(SessionRequest),
    /// The audit trail. Admins see every session, others their own.
    Sessions {
        device: Option<String>,
        technician: Option<String>,
        since_unix_ms: i64,
    },
    /// Adds resolution notes to one of your sessions.
    AddNotes {
        session_id: String,
        text: String,
    },
    /// Sessions per technician since a time. Admins see every technician, others themselves.
    Report {
        since_unix_ms: i64,
    },
    /// A message for the user at a device, shown by the tray app; answered by
    /// [`TechResponse::Said`] with their reply, after at most `wait_ms`.
    Say {
        device: String,
        text: String,
        wait_ms: u64,
    },
    /// The technician is done: end their engagement on a device for a ticket (the user is then
    /// asked for a rating). Answered by [`TechResponse::EngagementEnded`].
    EndEngagement {
        device: String,
        ticket: String,
    },
    /// The latest health report of a device and its open alerts.
    Health {
        device: String,
    },
    /// Open alerts; with `all`, also those closed recently.
    Alerts {
        all: bool,
    },
    /// Admins: a one-time enrollment token ([`TechResponse::Token`]).
    CreateToken {
        for_whom: TokenFor,
        ttl_ms: u64,
        /// `host:port` to put in the token instead of the relay's public address.
        relay_addr: Option<String>,
    },
    /// Admins: change a device group's policy (`None` leaves a setting as it is).
    SetPolicy {
        group: String,
        unattended: Option<bool>,
        record_shells: Option<bool>,
        /// Sessions may run as root on the group's devices ([`crate::session::Permissions::root`]).
        allow_root: Option<bool>,
    },
}

/// Who an enrollment token enrolls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenFor {
    Agent {
        group: String,
    },
    /// A technician not enrolled yet (refused for a name that holds a valid certificate).
    Technician {
        name: String,
        role: Role,
    },
    /// Re-enrolls a technician: their current certificates are revoked when the new one is
    /// issued (`tether token --replace`).
    ReplaceTechnician {
        name: String,
        role: Role,
    },
}

/// One technician's sessions in a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportRow {
    pub technician: String,
    pub requests: u64,
    pub approved: u64,
    pub unattended: u64,
    pub denied: u64,
    pub timed_out: u64,
    pub failed: u64,
    /// Sum and mean over sessions that started and ended.
    pub total_seconds: u64,
    pub mean_seconds: Option<f64>,
    pub ratings: u64,
    pub mean_rating: Option<f64>,
}

/// One audited session.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SessionRow {
    pub id: String,
    pub technician: String,
    pub device_id: String,
    pub hostname: String,
    pub reason: String,
    pub ticket: String,
    pub permissions_asked: String,
    pub permissions_granted: String,
    /// A [`crate::decision::Decision`] in its text form (`Decision::parse` reads it).
    pub decision: String,
    pub decision_detail: String,
    pub requested_unix_ms: i64,
    pub started_unix_ms: Option<i64>,
    pub ended_unix_ms: Option<i64>,
    pub ended_by: Option<String>,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub notes: String,
    pub rating: Option<u8>,
    pub rating_comment: Option<String>,
    /// What was done inside the session (commands, shells, files), oldest first.
    pub actions: Vec<String>,
    /// What the session was for, as the user saw it in the prompt ("command: df -h").
    pub activity: String,
    /// The session whose approval it ran under (its own id when the user was asked for it).
    pub engagement: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRequest {
    pub device: String,
    pub permissions: crate::session::Permissions,
    pub reason: String,
    pub ticket: String,
    /// One of many devices at once (`tether exec --group`): the relay refuses unless the
    /// session would be unattended, so a batch never prompts a room full of users.
    pub batch: bool,
    /// What the session is for; the relay refuses one its permissions do not allow.
    pub activity: crate::session::Activity,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TechResponse {
    Devices(Vec<DeviceSummary>),
    Inventory(Box<DeviceInventory>),
    InventoryRows(Vec<InventoryRow>),
    Software(Vec<SoftwareRow>),
    History(Box<DeviceHistory>),
    SessionReady {
        session_id: String,
        device_id: String,
        hostname: String,
    },
    Sessions(Vec<SessionRow>),
    Report(Vec<ReportRow>),
    /// The user's reply to [`TechRequest::Say`] (`None`: shown but not answered).
    Said {
        reply: Option<String>,
    },
    /// An enrollment token (`tether1_…`) and when it expires.
    Token {
        token: String,
        expires_unix_ms: i64,
    },
    /// The request was carried out.
    Done,
    /// `EndEngagement`: whether one was open.
    EngagementEnded {
        ended: bool,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
    Health(Box<crate::health::DeviceHealth>),
    Alerts(Vec<crate::health::AlertRow>),
    /// Not yet the answer (which follows on the same stream): the relay's checks passed and an
    /// `OpenSession` is now before the user for consent, or a `Say` message on its way to their
    /// screen. Not sent for sessions that start unattended, nor to technicians that did not
    /// announce [`capability::ASKING`] (older ones would not decode it).
    Asking,
    /// The device's agent is connected to another relay of the organisation: ask again there
    /// (the same request, with the same certificate; that relay checks everything anew). Only
    /// to technicians that announced [`capability::ELSEWHERE`], and only for requests that
    /// need the agent (sessions, messages, ending an engagement).
    Elsewhere {
        relay_id: String,
        relay_addr: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceInventory {
    pub device: DeviceSummary,
    pub received_unix_ms: i64,
    pub inventory: Inventory,
}

/// Key facts of one device, for spreadsheets and asset registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryRow {
    pub device: DeviceSummary,
    pub summary: Option<crate::inventory::Summary>,
    pub received_unix_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoftwareRow {
    pub device_id: String,
    pub hostname: String,
    pub online: bool,
    pub name: String,
    pub version: String,
    pub arch: String,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceHistory {
    pub device: DeviceSummary,
    pub changes: Vec<ChangeRow>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRow {
    pub at_unix_ms: i64,
    pub change: Change,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    Forbidden,
    NotFound,
    BadRequest,
    Internal,
    /// The device is enrolled but its agent is not connected.
    Offline,
    /// The agent refused the session.
    Refused,
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

/// Technician roles allowed to start screen sessions.
pub fn may_start_session(role: Role) -> bool {
    matches!(role, Role::Support | Role::Admin)
}

/// Technician roles allowed to list devices and read inventory.
pub fn may_read_inventory(role: Role) -> bool {
    matches!(role, Role::Viewer | Role::Support | Role::Admin)
}
