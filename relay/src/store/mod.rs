//! The relay's persistent state behind one interface.
//!
//! Callers use [`Store`] only. Below it a backend implements the primitives of
//! [`backend`] (one trait per concern: identity, inventory, sessions, health); the rules —
//! what an inventory upload changes, say — live in [`Store`]'s domain steps, written once.
//! Two backends: an embedded SQLite file (WAL, one transaction per change) for one relay, and
//! a PostgreSQL database (`postgres`) that several relays share, each opened from its
//! [`StoreUrl`]; the store tests (`tests.rs`) run against both.

mod backend;
pub mod cluster;
pub mod copy;
#[cfg(test)]
mod copy_tests;
mod health;
mod identity;
pub mod inventory;
mod postgres;
mod rows;
mod sqlite;
#[cfg(test)]
mod tests;

pub use backend::{
    Backend, CopyStore, ExportTx, HealthStore, IdentityStore, ImportTx, InventoryStore,
    InventoryTx, PackageKey, SessionStore,
};
pub use health::{AlertFilter, AlertPolicy};
pub use identity::{
    ALL_GROUPS, AlreadyEnrolled, CertRow, CertStatus, Grants, RevokeOutcome, RevokeTarget,
    normalize_serial,
};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use tether_protocol::identity::Role;
use tether_protocol::inventory::PackageSource;
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

/// Where a store lives, from the one URL the relay is given (`--store`). `Debug` and
/// `Display` show a PostgreSQL URL without its password.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `sqlite:///absolute/path.db` or `sqlite://relative/path.db`: one relay.
    Sqlite(PathBuf),
    /// `postgres://user:password@host:port/database?sslmode=…` (or `postgresql://`): a
    /// database several relays share. Shown with its password redacted.
    Postgres(String),
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
            "postgres" | "postgresql" => {
                // Checked now, so a mistyped URL is refused before anything starts (and the
                // error never repeats the URL, which may hold a password).
                url.parse::<sqlx::postgres::PgConnectOptions>()
                    .map_err(|e| {
                        StoreError::Url(format!(
                            "invalid PostgreSQL URL: {}",
                            redact_error(&e, url)
                        ))
                    })?;
                Ok(StoreUrl::Postgres(url.to_string()))
            }
            other => Err(StoreError::Url(format!(
                "unknown store type {other:?} (expected sqlite:// or postgres://)"
            ))),
        }
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            StoreUrl::Postgres(url) => f.write_str(&redact_password(url)),
        }
    }
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            StoreUrl::Postgres(_) => f.debug_tuple("Postgres").field(&self.to_string()).finish(),
        }
    }
}

/// A URL with its password (`user:password@`, or a `password=` parameter) replaced by `***`.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    // The user information ends at the last `@` (a password may hold `/` or `?`; when in
    // doubt, hide more).
    let (mut out, tail) = match rest.rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or_default();
            let hidden = if rest[..at].contains(':') { ":***" } else { "" };
            (format!("{scheme}://{user}{hidden}@"), &rest[at + 1..])
        }
        None => (format!("{scheme}://"), rest),
    };
    match tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            out.push_str(path);
            out.push('?');
            out.push_str(&params.join("&"));
        }
        None => out.push_str(tail),
    }
    out
}

/// An error about `url` with any copy of the URL in it redacted.
fn redact_error(e: &dyn std::fmt::Display, url: &str) -> String {
    e.to_string().replace(url, &redact_password(url))
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

/// One on/off setting of a device group's session policy; every one is off until an admin
/// turns it on (`tether-relay policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyFlag {
    /// Admins' sessions start without asking the user.
    Unattended,
    /// Shells are recorded to a transcript on the relay.
    RecordShells,
    /// Sessions may run as root when the technician asks for it.
    AllowRoot,
}

impl PolicyFlag {
    /// Its column in `group_policy` (a fixed name: safe to put in SQL).
    pub(crate) fn column(self) -> &'static str {
        match self {
            PolicyFlag::Unattended => "unattended",
            PolicyFlag::RecordShells => "record_shells",
            PolicyFlag::AllowRoot => "allow_root",
        }
    }
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

/// The relay's store: the domain steps (see [`inventory`]) over a backend's primitives, which
/// callers reach through `Deref` (`store.list_devices()`).
#[derive(Debug, Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
}

impl std::ops::Deref for Store {
    type Target = dyn Backend;

    fn deref(&self) -> &Self::Target {
        &*self.backend
    }
}

impl Store {
    /// Opens (creating and migrating as needed) the store `url` names.
    pub async fn open(url: &StoreUrl) -> Result<Self, StoreError> {
        match url {
            StoreUrl::Sqlite(path) => Self::open_sqlite(path).await,
            StoreUrl::Postgres(url) => Ok(Self {
                backend: Arc::new(postgres::Postgres::open(url).await?),
            }),
        }
    }

    pub async fn open_sqlite(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            backend: Arc::new(sqlite::Sqlite::open(path).await?),
        })
    }
}

/// One row of the audit trail (see migrations/sqlite/0003_sessions.sql), as technicians get it.
pub use tether_protocol::message::SessionRow;

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
            ("postgres://db:notaport/tether", "invalid PostgreSQL URL"),
            ("mysql://db", "unknown store type"),
        ] {
            let e = bad.parse::<StoreUrl>().unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
        for ok in [
            "postgres://db.example.org/tether",
            "postgresql://relay@db:5433/tether?sslmode=verify-full",
        ] {
            assert_eq!(
                ok.parse::<StoreUrl>().ok(),
                Some(StoreUrl::Postgres(ok.into()))
            );
            assert_eq!(ok.parse::<StoreUrl>().unwrap().to_string(), ok);
        }
        // The password never shows.
        let url: StoreUrl = "postgres://relay:s3cret@db:5432/tether?sslmode=require"
            .parse()
            .unwrap();
        assert_eq!(
            url.to_string(),
            "postgres://relay:***@db:5432/tether?sslmode=require"
        );
        assert!(!format!("{url:?}").contains("s3cret"));
        for (url, shown) in [
            ("postgres://relay:a/b?c@db/t", "postgres://relay:***@db/t"),
            (
                "postgres://db/t?user=relay&password=s3cret&sslmode=require",
                "postgres://db/t?user=relay&password=***&sslmode=require",
            ),
            ("postgres://relay@db/t", "postgres://relay@db/t"),
        ] {
            assert_eq!(redact_password(url), shown);
        }
        let e = "postgres://relay:s3cret@db:bad/x"
            .parse::<StoreUrl>()
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cret"), "{e}");
    }
}
