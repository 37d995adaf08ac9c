//! SQLite backend: one file in the data directory, WAL journal, owner-only permissions.
//!
//! One module per concern, each implementing its trait of [`super::backend`].

mod copy;
mod health;
mod identity;
mod inventory;
mod sessions;

use super::StoreError;
use super::backend::Backend;
use async_trait::async_trait;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{SqlSafeStr, SqlitePool};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

fn migrator() -> Migrator {
    let m = |version, name: &'static str, sql: &'static str| {
        Migration::new(
            version,
            name.into(),
            MigrationType::Simple,
            sql.into_sql_str(),
            false,
        )
    };
    Migrator::with_migrations(vec![
        m(
            1,
            "init",
            include_str!("../../../migrations/sqlite/0001_init.sql"),
        ),
        m(
            2,
            "inventory",
            include_str!("../../../migrations/sqlite/0002_inventory.sql"),
        ),
        m(
            3,
            "sessions",
            include_str!("../../../migrations/sqlite/0003_sessions.sql"),
        ),
        m(
            4,
            "policy",
            include_str!("../../../migrations/sqlite/0004_policy.sql"),
        ),
        m(
            5,
            "health",
            include_str!("../../../migrations/sqlite/0005_health.sql"),
        ),
        m(
            6,
            "session actions",
            include_str!("../../../migrations/sqlite/0006_session_actions.sql"),
        ),
        m(
            7,
            "record shells",
            include_str!("../../../migrations/sqlite/0007_record_shells.sql"),
        ),
        m(
            8,
            "technician groups",
            include_str!("../../../migrations/sqlite/0008_technician_groups.sql"),
        ),
        m(
            9,
            "identity certificates",
            include_str!("../../../migrations/sqlite/0009_identity_certificates.sql"),
        ),
        m(
            10,
            "identity all groups",
            include_str!("../../../migrations/sqlite/0010_identity_all_groups.sql"),
        ),
        m(
            11,
            "allow root",
            include_str!("../../../migrations/sqlite/0011_allow_root.sql"),
        ),
        m(
            12,
            "engagements",
            include_str!("../../../migrations/sqlite/0012_engagements.sql"),
        ),
    ])
}

/// `(?,?,?,?),(?,?,?,?),…` for `n` tuples.
fn tuple_placeholders(n: usize) -> String {
    let mut s = String::with_capacity(n * 10);
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        s.push_str("(?,?,?,?)");
    }
    s
}

#[derive(Debug, Clone)]
pub struct Sqlite {
    pool: SqlitePool,
    /// The same database with `synchronous=NORMAL`, for writes nobody is told were stored
    /// (presence: last seen, hostname, OS), which are rewritten at every connect. They skip
    /// the fsync per commit that a reconnect storm of thousands of agents would otherwise pay
    /// one by one; the next commit on `pool` fsyncs the WAL, theirs included.
    relaxed: SqlitePool,
}

impl Sqlite {
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        // Create the file owner-only before SQLite does, so it never exists world-readable.
        if !path.exists() {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: in WAL mode NORMAL may lose the last commits on power loss, and the relay
            // acknowledges inventory uploads and audit records only once committed.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            // 64 MiB of page cache per connection: the package index stays in memory for large
            // fleets instead of being re-read from the OS on every ingest.
            .pragma("cache_size", "-65536")
            .pragma("temp_store", "memory");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.clone())
            .await?;
        migrator().run(&pool).await?;
        let relaxed = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(opts.synchronous(SqliteSynchronous::Normal))
            .await?;
        Ok(Self { pool, relaxed })
    }
}

#[async_trait]
impl Backend for Sqlite {
    async fn close(&self) {
        self.relaxed.close().await;
        self.pool.close().await;
    }

    /// SQLite's own consistency checks; empty when all is well.
    async fn integrity_problems(&self) -> Result<Vec<String>, StoreError> {
        let mut problems: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_all(&self.pool)
            .await?;
        problems.retain(|p| p != "ok");
        let fk = sqlx::query("PRAGMA foreign_key_check")
            .fetch_all(&self.pool)
            .await?;
        if !fk.is_empty() {
            problems.push(format!("{} rows break foreign keys", fk.len()));
        }
        Ok(problems)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::Store;
    use std::os::unix::fs::PermissionsExt;

    /// The file is owner-only from the start, and reopening migrates idempotently.
    #[tokio::test]
    async fn the_file_is_private_and_reopens() {
        let dir = std::env::temp_dir().join(format!("tether-sqlite-reopen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tether.db");
        let store = Store::open_sqlite(&path).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        store.close().await;
        let store = Store::open_sqlite(&path).await.unwrap();
        assert!(store.list_devices().await.unwrap().is_empty());
    }
}
