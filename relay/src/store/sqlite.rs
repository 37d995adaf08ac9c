//! SQLite backend: one file in the data directory, WAL journal, owner-only permissions.

use super::{DeviceRow, NewToken, RedeemError, StoreError, TokenKind};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlSafeStr, SqlitePool};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;
use tether_protocol::identity::Role;

fn migrator() -> Migrator {
    Migrator::with_migrations(vec![Migration::new(
        1,
        "init".into(),
        MigrationType::Simple,
        include_str!("../../migrations/sqlite/0001_init.sql").into_sql_str(),
        false,
    )])
}

#[derive(Debug, Clone)]
pub struct Sqlite {
    pool: SqlitePool,
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
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        migrator().run(&pool).await?;
        Ok(Self { pool })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn insert_token(&self, t: &NewToken) -> Result<(), StoreError> {
        let (kind, group, name, role) = match &t.kind {
            TokenKind::Agent { group } => ("agent", Some(group.as_str()), None, None),
            TokenKind::Technician { name, role } => {
                ("technician", None, Some(name.as_str()), Some(role.as_str()))
            }
        };
        sqlx::query(
            "INSERT INTO tokens (secret_hash, kind, group_name, tech_name, role, created_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&t.secret_hash[..])
        .bind(kind)
        .bind(group)
        .bind(name)
        .bind(role)
        .bind(t.created_at)
        .bind(t.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn redeem_token(
        &self,
        secret_hash: &[u8; 32],
        now: i64,
        used_by: &str,
    ) -> Result<Result<TokenKind, RedeemError>, StoreError> {
        let row = sqlx::query(
            "UPDATE tokens SET used_at = ?, used_by = ?
             WHERE secret_hash = ? AND used_at IS NULL AND expires_at > ?
             RETURNING kind, group_name, tech_name, role",
        )
        .bind(now)
        .bind(used_by)
        .bind(&secret_hash[..])
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = row {
            let kind: String = row.try_get("kind")?;
            return Ok(Ok(match kind.as_str() {
                "agent" => TokenKind::Agent {
                    group: row
                        .try_get::<Option<String>, _>("group_name")?
                        .unwrap_or_default(),
                },
                _ => {
                    let role: Option<String> = row.try_get("role")?;
                    TokenKind::Technician {
                        name: row
                            .try_get::<Option<String>, _>("tech_name")?
                            .unwrap_or_default(),
                        role: role.unwrap_or_default().parse().map_err(
                            |e: tether_protocol::identity::IdentityError| {
                                StoreError::Corrupt(e.to_string())
                            },
                        )?,
                    }
                }
            }));
        }
        // Not redeemed: find out why, for a useful message.
        let row = sqlx::query("SELECT used_at, expires_at FROM tokens WHERE secret_hash = ?")
            .bind(&secret_hash[..])
            .fetch_optional(&self.pool)
            .await?;
        Ok(Err(match row {
            None => RedeemError::Unknown,
            Some(r) if r.try_get::<Option<i64>, _>("used_at")?.is_some() => {
                RedeemError::AlreadyUsed
            }
            Some(_) => RedeemError::Expired,
        }))
    }

    pub async fn add_device(&self, d: &DeviceRow, cert_serial: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO devices (id, hostname, group_name, os, agent_version, cert_serial, first_seen, last_seen)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&d.id)
        .bind(&d.hostname)
        .bind(&d.group)
        .bind(&d.os)
        .bind(&d.agent_version)
        .bind(cert_serial)
        .bind(d.first_seen)
        .bind(d.last_seen)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn upsert_technician(
        &self,
        name: &str,
        role: Role,
        cert_serial: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO technicians (name, role, cert_serial, enrolled_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (name) DO UPDATE SET role = excluded.role, cert_serial = excluded.cert_serial,
                                              enrolled_at = excluded.enrolled_at",
        )
        .bind(name)
        .bind(role.as_str())
        .bind(cert_serial)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn update_device_status(
        &self,
        id: &str,
        hostname: &str,
        os: &str,
        agent_version: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE devices SET hostname = ?, os = ?, agent_version = ?, last_seen = ? WHERE id = ?",
        )
        .bind(hostname)
        .bind(os)
        .bind(agent_version)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn touch_device(&self, id: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE devices SET last_seen = MAX(last_seen, ?) WHERE id = ?")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn list_devices(&self) -> Result<Vec<DeviceRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, hostname, group_name, os, agent_version, first_seen, last_seen
             FROM devices ORDER BY hostname, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(DeviceRow {
                    id: r.try_get("id")?,
                    hostname: r.try_get("hostname")?,
                    group: r.try_get("group_name")?,
                    os: r.try_get("os")?,
                    agent_version: r.try_get("agent_version")?,
                    first_seen: r.try_get("first_seen")?,
                    last_seen: r.try_get("last_seen")?,
                })
            })
            .collect()
    }

    pub async fn is_revoked(&self, serial: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM revoked_certs WHERE serial = ?")
            .bind(serial)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, now_ms};

    fn tmp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("tether-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("tether.db")
    }

    #[tokio::test]
    async fn token_is_single_use_and_expires() {
        let path = tmp("token");
        let store = Store::open_sqlite(&path).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let now = now_ms();
        let t = NewToken {
            secret_hash: [1; 32],
            kind: TokenKind::Agent {
                group: "default".into(),
            },
            created_at: now,
            expires_at: now + 1000,
        };
        store.insert_token(&t).await.unwrap();
        let expired = NewToken {
            secret_hash: [2; 32],
            expires_at: now - 1,
            ..t.clone()
        };
        store.insert_token(&expired).await.unwrap();

        // Two redemptions race: exactly one wins.
        let (a, b) = tokio::join!(
            store.redeem_token(&[1; 32], now, "a"),
            store.redeem_token(&[1; 32], now, "b")
        );
        let results = [a.unwrap(), b.unwrap()];
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
        assert!(results.contains(&Err(RedeemError::AlreadyUsed)));
        assert_eq!(
            store.redeem_token(&[2; 32], now, "c").await.unwrap(),
            Err(RedeemError::Expired)
        );
        assert_eq!(
            store.redeem_token(&[3; 32], now, "d").await.unwrap(),
            Err(RedeemError::Unknown)
        );
        store.close().await;
        // Reopening runs migrations idempotently.
        let store = Store::open_sqlite(&path).await.unwrap();
        assert!(store.list_devices().await.unwrap().is_empty());
    }
}
