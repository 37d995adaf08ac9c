//! The relay's persistent state behind one interface.
//!
//! Callers use [`Store`] only. Today it has one backend, an embedded SQLite file (WAL, one
//! transaction per change); a PostgreSQL backend for scale-out adds a variant to `Backend` and a
//! module beside `sqlite`, without touching any caller.

mod health;
mod identity;
mod sqlite;

pub use health::{AlertFilter, AlertPolicy};
pub use identity::{
    ALL_GROUPS, AlreadyEnrolled, CertRow, CertStatus, Grants, RevokeOutcome, RevokeTarget,
    normalize_serial,
};

use std::path::{Path, PathBuf};
use tether_protocol::history::Change;
use tether_protocol::identity::Role;
use tether_protocol::inventory::{Inventory, PackageSource, Summary};
use tether_protocol::message::ReportRow;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database holds an invalid value: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Url(String),
}

/// Where a store lives, from the one URL the relay is given (`--store`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `sqlite:///absolute/path.db` or `sqlite://relative/path.db`: one relay.
    Sqlite(PathBuf),
}

impl StoreUrl {
    /// The SQLite file in a relay's data directory: the default.
    pub fn in_data_dir(data: &crate::config::DataDir) -> Self {
        StoreUrl::Sqlite(data.database())
    }
}

impl std::str::FromStr for StoreUrl {
    type Err = StoreError;

    fn from_str(url: &str) -> Result<Self, StoreError> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            StoreError::Url(format!(
                "{url:?} is not a store URL (expected sqlite:///path/tether.db)"
            ))
        })?;
        match scheme {
            "sqlite" if !rest.is_empty() => Ok(StoreUrl::Sqlite(PathBuf::from(rest))),
            "sqlite" => Err(StoreError::Url("sqlite:// needs a file path".into())),
            "postgres" | "postgresql" => Err(StoreError::Url(
                "PostgreSQL stores are not supported by this relay yet; use sqlite:///path/tether.db"
                    .into(),
            )),
            other => Err(StoreError::Url(format!(
                "unknown store type {other:?} (expected sqlite://)"
            ))),
        }
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
        }
    }
}

/// What a token enrolls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKind {
    Agent {
        group: String,
    },
    /// `replace`: the name may already hold valid certificates, which enrolling revokes
    /// (`--replace`); without it such a token is refused.
    Technician {
        name: String,
        role: Role,
        replace: bool,
    },
}

#[derive(Debug, Clone)]
pub struct NewToken {
    pub secret_hash: [u8; 32],
    pub kind: TokenKind,
    pub created_at: i64,
    pub expires_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RedeemError {
    #[error("unknown enrollment token (never issued, or mistyped)")]
    Unknown,
    #[error("enrollment token was already used")]
    AlreadyUsed,
    #[error("enrollment token has expired; ask your IT admin for a new one")]
    Expired,
    #[error(
        "technician {0} is already enrolled; ask your IT admin for a token made with --replace"
    )]
    AlreadyEnrolled(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    pub id: String,
    pub hostname: String,
    pub group: String,
    pub os: String,
    pub agent_version: String,
    pub first_seen: i64,
    pub last_seen: i64,
}

/// One device group's policy (defaults for a group nobody configured).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPolicy {
    pub group: String,
    pub unattended: bool,
    pub record_shells: bool,
    /// Sessions may run as root on the group's devices (when the technician asks for it).
    pub allow_root: bool,
    pub updated_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(sqlite::Sqlite),
}

impl Store {
    /// Opens (creating if needed) the SQLite store and brings its schema up to date.
    /// Opens (creating and migrating as needed) the store `url` names.
    pub async fn open(url: &StoreUrl) -> Result<Self, StoreError> {
        match url {
            StoreUrl::Sqlite(path) => Self::open_sqlite(path).await,
        }
    }

    pub async fn open_sqlite(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            backend: Backend::Sqlite(sqlite::Sqlite::open(path).await?),
        })
    }

    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(s) => s.close().await,
        }
    }

    pub async fn insert_token(&self, t: &NewToken) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.insert_token(t).await,
        }
    }

    /// Marks the token used, atomically: of two concurrent redemptions exactly one succeeds.
    pub async fn redeem_token(
        &self,
        secret_hash: &[u8; 32],
        now: i64,
        used_by: &str,
    ) -> Result<Result<TokenKind, RedeemError>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.redeem_token(secret_hash, now, used_by).await,
        }
    }

    /// Records what an online agent reported about itself.
    pub async fn update_device_status(
        &self,
        id: &str,
        hostname: &str,
        os: &str,
        agent_version: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => {
                s.update_device_status(id, hostname, os, agent_version, now)
                    .await
            }
        }
    }

    pub async fn touch_device(&self, id: &str, now: i64) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.touch_device(id, now).await,
        }
    }

    /// `touch_device` for many devices in one transaction.
    pub async fn touch_devices(&self, ids: &[String], now: i64) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.touch_devices(ids, now).await,
        }
    }

    pub async fn list_devices(&self) -> Result<Vec<DeviceRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.list_devices().await,
        }
    }

    /// How many devices are enrolled (the fleet size that sets the keep-alive interval).
    pub async fn device_count(&self) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.device_count().await,
        }
    }

    /// Changes whenever a certificate is revoked: (count, latest time).
    pub async fn revocation_mark(&self) -> Result<(i64, i64), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.revocation_mark().await,
        }
    }

    /// The store's consistency problems (empty: intact).
    pub async fn integrity_problems(&self) -> Result<Vec<String>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.integrity_problems().await,
        }
    }

    pub async fn session_requested(&self, r: &SessionRecord) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.session_requested(r).await,
        }
    }

    /// Records the decision on a session request (and when it started, if it did).
    pub async fn session_decided(
        &self,
        id: &str,
        decision: tether_protocol::decision::Decision,
        detail: &str,
        granted: &str,
        started_at: Option<i64>,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => {
                s.session_decided(id, decision, detail, granted, started_at)
                    .await
            }
        }
    }

    pub async fn session_ended(
        &self,
        id: &str,
        ended_at: i64,
        ended_by: &str,
        bytes_up: u64,
        bytes_down: u64,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => {
                s.session_ended(id, ended_at, ended_by, bytes_up, bytes_down)
                    .await
            }
        }
    }

    /// Files a session under the engagement the agent says it joined, only if that engagement
    /// began with a session of the same technician on the same device. False otherwise.
    pub async fn session_engaged(&self, id: &str, engagement: &str) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.session_engaged(id, engagement).await,
        }
    }

    pub async fn session_ended_by_user(
        &self,
        id: &str,
        device_id: &str,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.session_ended_by_user(id, device_id).await,
        }
    }

    /// Appends to the audit record of a session that started on this device. False if none.
    pub async fn session_action(
        &self,
        id: &str,
        device_id: &str,
        action: &str,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.session_action(id, device_id, action, now_ms()).await,
        }
    }

    pub async fn rate_session(
        &self,
        id: &str,
        device_id: &str,
        rating: u8,
        comment: &str,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.rate_session(id, device_id, rating, comment).await,
        }
    }

    pub async fn set_unattended(&self, group: &str, on: bool) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.set_unattended(group, on, now_ms()).await,
        }
    }

    /// Whether the group allows unattended access (off unless an admin turned it on).
    pub async fn unattended(&self, group: &str) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.unattended(group).await,
        }
    }

    pub async fn set_record_shells(&self, group: &str, on: bool) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.set_record_shells(group, on, now_ms()).await,
        }
    }

    /// Whether shells on the group's devices are recorded (off unless an admin turned it on).
    pub async fn record_shells(&self, group: &str) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.record_shells(group).await,
        }
    }

    pub async fn set_allow_root(&self, group: &str, on: bool) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.set_allow_root(group, on, now_ms()).await,
        }
    }

    /// Whether sessions may run as root on the group's devices (off unless an admin turned it on).
    pub async fn allow_root(&self, group: &str) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.allow_root(group).await,
        }
    }

    pub async fn policies(&self) -> Result<Vec<GroupPolicy>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.policies().await,
        }
    }

    pub async fn report(
        &self,
        since: i64,
        technician: Option<&str>,
    ) -> Result<Vec<ReportRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.report(since, technician).await,
        }
    }

    pub async fn add_notes(
        &self,
        id: &str,
        technician: &str,
        text: &str,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.add_notes(id, technician, text).await,
        }
    }

    pub async fn sessions(&self, f: &SessionFilter) -> Result<Vec<SessionRecord>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.sessions(f).await,
        }
    }

    /// Fingerprint of the stored inventory of a device, if any.
    pub async fn inventory_hash(&self, device_id: &str) -> Result<Option<u64>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.inventory_hash(device_id).await,
        }
    }

    /// Stores an inventory (already cleaned) with the history of changes; returns how many
    /// changes were recorded. Atomic: on error nothing of it is stored.
    pub async fn ingest_inventory(
        &self,
        device_id: &str,
        hash: u64,
        inv: &Inventory,
        now: i64,
    ) -> Result<u32, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.ingest_inventory(device_id, hash, inv, now).await,
        }
    }

    /// The latest inventory of a device and when it was received.
    pub async fn inventory(&self, device_id: &str) -> Result<Option<(i64, Inventory)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.inventory(device_id).await,
        }
    }

    /// `(device id, summary, received at)` for every device with an inventory.
    pub async fn inventory_summaries(&self) -> Result<Vec<(String, Summary, i64)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.inventory_summaries().await,
        }
    }

    pub async fn software(&self, name: &str) -> Result<Vec<SoftwareHit>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.software(name).await,
        }
    }

    pub async fn history(
        &self,
        device_id: &str,
        since: i64,
    ) -> Result<Vec<(i64, Change)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.history(device_id, since).await,
        }
    }
}

/// One row of the audit trail (see migrations/sqlite/0003_sessions.sql).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionRecord {
    pub id: String,
    pub technician: String,
    pub device_id: String,
    pub reason: String,
    pub ticket: String,
    pub permissions_asked: String,
    pub permissions_granted: String,
    pub decision: String,
    pub decision_detail: String,
    pub requested_at: i64,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub ended_by: Option<String>,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub notes: String,
    pub rating: Option<u8>,
    pub rating_comment: Option<String>,
    pub actions: Vec<String>,
    /// What it was for ([`tether_protocol::session::Activity::describe`]).
    pub activity: String,
    /// The session whose approval it ran under.
    pub engagement: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub device_id: Option<String>,
    pub technician: Option<String>,
    pub since: i64,
}

/// One device that has a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoftwareHit {
    pub device_id: String,
    pub hostname: String,
    pub name: String,
    pub version: String,
    pub arch: String,
    pub source: String,
}

pub fn source_name(s: PackageSource) -> &'static str {
    match s {
        PackageSource::Dpkg => "dpkg",
        PackageSource::Rpm => "rpm",
        PackageSource::Flatpak => "flatpak",
        PackageSource::Snap => "snap",
        PackageSource::Other => "other",
    }
}

pub fn parse_source(s: &str) -> PackageSource {
    match s {
        "dpkg" => PackageSource::Dpkg,
        "rpm" => PackageSource::Rpm,
        "flatpak" => PackageSource::Flatpak,
        "snap" => PackageSource::Snap,
        _ => PackageSource::Other,
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn store_urls_name_a_backend_or_say_why_not() {
        assert_eq!(
            "sqlite:///var/lib/tether-relay/tether.db"
                .parse::<StoreUrl>()
                .ok(),
            Some(StoreUrl::Sqlite("/var/lib/tether-relay/tether.db".into()))
        );
        assert_eq!(
            "sqlite://rel/t.db".parse::<StoreUrl>().ok(),
            Some(StoreUrl::Sqlite("rel/t.db".into()))
        );
        let url = StoreUrl::Sqlite("/d/tether.db".into());
        assert_eq!(url.to_string().parse::<StoreUrl>().ok(), Some(url));
        for (bad, says) in [
            ("/var/lib/x.db", "is not a store URL"),
            ("sqlite://", "needs a file path"),
            ("postgres://db/tether", "not supported by this relay yet"),
            ("mysql://db", "unknown store type"),
        ] {
            let e = bad.parse::<StoreUrl>().unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
