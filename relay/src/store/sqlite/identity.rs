//! SQLite side of enrollment tokens, devices, certificates, revocation and technician grants.

use super::Sqlite;
use crate::store::backend::IdentityStore;
use crate::store::identity::{
    ALL_GROUPS, AlreadyEnrolled, CertRow, CertStatus, Grants, RevokeOutcome, RevokeTarget,
    normalize_serial,
};
use crate::store::rows;
use crate::store::{DeviceRow, StoreError};
use crate::store::{NewToken, RedeemError, TokenKind};
use async_trait::async_trait;
use sqlx::{FromRow, Row};
use tether_protocol::identity::Role;

/// Serials of a technician's certificates that are not revoked.
const LIVE_TECH_SERIALS: &str = "SELECT c.serial FROM certificates c
     WHERE c.kind = 'technician' AND c.name = ?
       AND NOT EXISTS (SELECT 1 FROM revoked_certs r WHERE r.serial = c.serial)";

#[async_trait]
impl IdentityStore for Sqlite {
    async fn insert_token(&self, t: &NewToken) -> Result<(), StoreError> {
        let (kind, group, name, role, replace) = match &t.kind {
            TokenKind::Agent { group } => ("agent", Some(group.as_str()), None, None, false),
            TokenKind::Technician {
                name,
                role,
                replace,
            } => (
                "technician",
                None,
                Some(name.as_str()),
                Some(role.as_str()),
                *replace,
            ),
        };
        sqlx::query(
            "INSERT INTO tokens (secret_hash, kind, group_name, tech_name, role, replace_existing, created_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&t.secret_hash[..])
        .bind(kind)
        .bind(group)
        .bind(name)
        .bind(role)
        .bind(replace)
        .bind(t.created_at)
        .bind(t.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn redeem_token(
        &self,
        secret_hash: &[u8; 32],
        now: i64,
        used_by: &str,
    ) -> Result<Result<TokenKind, RedeemError>, StoreError> {
        // A technician token without --replace is not spent on a name that holds a valid
        // certificate (enrolled since the token was made): that needs the admin's explicit choice.
        let row = sqlx::query(
            "UPDATE tokens SET used_at = ?, used_by = ?
             WHERE secret_hash = ? AND used_at IS NULL AND expires_at > ?
               AND NOT (kind = 'technician' AND replace_existing = 0 AND EXISTS (
                   SELECT 1 FROM certificates c WHERE c.kind = 'technician' AND c.name = tokens.tech_name
                   AND NOT EXISTS (SELECT 1 FROM revoked_certs r WHERE r.serial = c.serial)))
             RETURNING kind, group_name, tech_name, role, replace_existing",
        )
        .bind(now)
        .bind(used_by)
        .bind(&secret_hash[..])
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = row {
            return Ok(Ok(rows::RedeemedToken::from_row(&row)?.kind()?));
        }
        // Not redeemed: find out why, for a useful message.
        let row =
            sqlx::query("SELECT used_at, expires_at, tech_name FROM tokens WHERE secret_hash = ?")
                .bind(&secret_hash[..])
                .fetch_optional(&self.pool)
                .await?;
        let token = row
            .map(|r| rows::UnredeemedToken::from_row(&r))
            .transpose()?;
        Ok(Err(rows::UnredeemedToken::why(token, now)))
    }

    async fn update_device_status(
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
        .execute(&self.relaxed)
        .await?;
        Ok(())
    }

    async fn touch_device(&self, id: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE devices SET last_seen = MAX(last_seen, ?) WHERE id = ?")
            .bind(now)
            .bind(id)
            .execute(&self.relaxed)
            .await?;
        Ok(())
    }

    async fn touch_devices(&self, ids: &[String], now: i64) -> Result<(), StoreError> {
        let mut tx = self.relaxed.begin().await?;
        for id in ids {
            sqlx::query("UPDATE devices SET last_seen = MAX(last_seen, ?) WHERE id = ?")
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn device_count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM devices")
            .fetch_one(&self.pool)
            .await?;
        Ok(n.max(0) as u64)
    }

    async fn list_devices(&self) -> Result<Vec<DeviceRow>, StoreError> {
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

    async fn revocation_mark(&self) -> Result<(i64, i64), StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, COALESCE(MAX(revoked_at), 0) AS at FROM revoked_certs",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get("n")?, row.try_get("at")?))
    }

    async fn enroll_device(&self, d: &DeviceRow, cert_serial: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
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
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO certificates (serial, kind, name, detail, issued_at)
             VALUES (?, 'device', ?, ?, ?)",
        )
        .bind(cert_serial)
        .bind(&d.id)
        .bind(&d.group)
        .bind(d.first_seen)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn enroll_technician(
        &self,
        name: &str,
        role: Role,
        cert_serial: &str,
        replace: bool,
        now: i64,
    ) -> Result<Result<Vec<String>, AlreadyEnrolled>, StoreError> {
        // IMMEDIATE: the check and the writes below see no enrollment slip in between.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let live: Vec<String> = sqlx::query_scalar(LIVE_TECH_SERIALS)
            .bind(name)
            .fetch_all(&mut *tx)
            .await?;
        if !live.is_empty() && !replace {
            tx.rollback().await?;
            return Ok(Err(AlreadyEnrolled));
        }
        for serial in &live {
            sqlx::query(
                "INSERT INTO revoked_certs (serial, subject, revoked_at, reason) VALUES (?, ?, ?, ?)
                 ON CONFLICT (serial) DO NOTHING",
            )
            .bind(serial)
            .bind(format!("tech:{name}"))
            .bind(now)
            .bind(format!("replaced by a new enrollment as {role}"))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO certificates (serial, kind, name, detail, issued_at)
             VALUES (?, 'technician', ?, ?, ?)",
        )
        .bind(cert_serial)
        .bind(name)
        .bind(role.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO technicians (name, role, cert_serial, enrolled_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (name) DO UPDATE SET role = excluded.role, cert_serial = excluded.cert_serial,
                                              enrolled_at = excluded.enrolled_at",
        )
        .bind(name)
        .bind(role.as_str())
        .bind(cert_serial)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ok(live))
    }

    async fn technician_role(&self, name: &str, now: i64) -> Result<Option<String>, StoreError> {
        let enrolled: Option<String> =
            sqlx::query_scalar("SELECT role FROM technicians WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        if enrolled.is_some() {
            return Ok(enrolled);
        }
        Ok(sqlx::query_scalar(
            "SELECT role FROM tokens WHERE kind = 'technician' AND tech_name = ?
             AND used_at IS NULL AND expires_at > ? ORDER BY created_at DESC LIMIT 1",
        )
        .bind(name)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn technician_enrolled(&self, name: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar::<_, String>(LIVE_TECH_SERIALS)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    async fn revoke(
        &self,
        target: RevokeTarget<'_>,
        reason: &str,
        now: i64,
    ) -> Result<RevokeOutcome, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // (serial, subject) of every certificate to revoke.
        let certs: Vec<(String, String)> = match target {
            RevokeTarget::Device(d) => {
                let mut ids: Vec<String> = sqlx::query_scalar("SELECT id FROM devices WHERE id = ?")
                    .bind(d)
                    .fetch_all(&mut *tx)
                    .await?;
                if ids.is_empty() {
                    ids = sqlx::query_scalar("SELECT id FROM devices WHERE hostname = ? ORDER BY id")
                        .bind(d)
                        .fetch_all(&mut *tx)
                        .await?;
                }
                match ids.as_slice() {
                    [] => return Ok(RevokeOutcome::NotFound),
                    [id] => sqlx::query_as(
                        "SELECT serial, 'device:' || name FROM certificates
                         WHERE kind = 'device' AND name = ?
                         UNION SELECT cert_serial, 'device:' || id FROM devices WHERE id = ?",
                    )
                    .bind(id)
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await?,
                    _ => return Ok(RevokeOutcome::Ambiguous(ids)),
                }
            }
            RevokeTarget::Technician(t) => {
                sqlx::query_as(
                    "SELECT serial, 'tech:' || name FROM certificates WHERE kind = 'technician' AND name = ?
                     UNION SELECT cert_serial, 'tech:' || name FROM technicians WHERE name = ?",
                )
                .bind(t)
                .bind(t)
                .fetch_all(&mut *tx)
                .await?
            }
            RevokeTarget::Serial(s) => {
                let Some(serial) = normalize_serial(s) else {
                    return Ok(RevokeOutcome::NotFound);
                };
                sqlx::query_as(
                    "SELECT serial, CASE kind WHEN 'device' THEN 'device:' ELSE 'tech:' END || name
                     FROM certificates WHERE serial = ?",
                )
                .bind(serial)
                .fetch_all(&mut *tx)
                .await?
            }
        };
        let Some(subject) = certs.first().map(|(_, s)| s.clone()) else {
            return Ok(RevokeOutcome::NotFound);
        };
        let mut revoked = Vec::new();
        for (serial, subject) in &certs {
            let r = sqlx::query(
                "INSERT INTO revoked_certs (serial, subject, revoked_at, reason) VALUES (?, ?, ?, ?)
                 ON CONFLICT (serial) DO NOTHING",
            )
            .bind(serial)
            .bind(subject)
            .bind(now)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
            if r.rows_affected() == 1 {
                revoked.push(serial.clone());
            }
        }
        tx.commit().await?;
        Ok(RevokeOutcome::Revoked {
            subject,
            serials: revoked,
        })
    }

    async fn certificate_status(&self, serial: &str) -> Result<CertStatus, StoreError> {
        let row = sqlx::query(
            "SELECT EXISTS (SELECT 1 FROM certificates WHERE serial = ?1) AS known,
                    EXISTS (SELECT 1 FROM revoked_certs WHERE serial = ?1) AS revoked",
        )
        .bind(serial)
        .fetch_one(&self.pool)
        .await?;
        Ok(
            match (
                row.try_get::<bool, _>("known")?,
                row.try_get::<bool, _>("revoked")?,
            ) {
                (_, true) => CertStatus::Revoked,
                (false, false) => CertStatus::Unknown,
                (true, false) => CertStatus::Valid,
            },
        )
    }

    async fn certificates(
        &self,
        device: Option<&str>,
        technician: Option<&str>,
    ) -> Result<Vec<CertRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.serial, CASE c.kind WHEN 'device' THEN 'device:' ELSE 'tech:' END || c.name AS subject,
                    c.detail, c.issued_at, r.revoked_at
             FROM certificates c LEFT JOIN revoked_certs r ON r.serial = c.serial
             WHERE (?1 IS NULL OR (c.kind = 'device' AND (c.name = ?1
                        OR c.name IN (SELECT id FROM devices WHERE hostname = ?1))))
               AND (?2 IS NULL OR (c.kind = 'technician' AND c.name = ?2))
             ORDER BY c.issued_at DESC, c.serial",
        )
        .bind(device)
        .bind(technician)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(CertRow {
                    serial: r.try_get("serial")?,
                    subject: r.try_get("subject")?,
                    detail: r.try_get("detail")?,
                    issued_at: r.try_get("issued_at")?,
                    revoked_at: r.try_get("revoked_at")?,
                })
            })
            .collect()
    }

    async fn grant_group(
        &self,
        technician: &str,
        group: &str,
        on: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        let q = if on {
            "INSERT INTO technician_groups (technician, group_name, granted_at) VALUES (?, ?, ?)
             ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM technician_groups WHERE technician = ? AND group_name = ? AND ? IS NOT NULL"
        };
        sqlx::query(q)
            .bind(technician)
            .bind(group)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn technician_grants(&self, technician: &str) -> Result<Grants, StoreError> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT group_name FROM technician_groups WHERE technician = ? ORDER BY group_name",
        )
        .bind(technician)
        .fetch_all(&self.pool)
        .await?;
        let mut grants = Grants::default();
        for g in rows {
            if g == ALL_GROUPS {
                grants.all_groups = true;
            } else {
                grants.groups.push(g);
            }
        }
        Ok(grants)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CertStatus, Store};
    use sqlx::sqlite::SqliteConnectOptions;

    fn tmp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("tether-id-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("tether.db")
    }

    /// An installation from before certificates were all kept and "every group" was a grant:
    /// its serials become certificates, its technicians without grants keep every group
    /// (explicitly), and those with grants keep exactly those.
    #[tokio::test]
    async fn migrating_an_older_store_keeps_serials_and_access() {
        let path = tmp("migrate");
        let pool = sqlx::SqlitePool::connect_with(
            SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true),
        )
        .await
        .unwrap();
        let mut old = super::super::migrator();
        old.migrations = old
            .migrations
            .iter()
            .filter(|m| m.version <= 8)
            .cloned()
            .collect::<Vec<_>>()
            .into();
        old.run(&pool).await.unwrap();
        for q in [
            "INSERT INTO devices (id, hostname, group_name, cert_serial, first_seen, last_seen)
             VALUES ('d1', 'ws1', 'lab', 'aa01', 1, 1)",
            "INSERT INTO technicians (name, role, cert_serial, enrolled_at) VALUES
             ('free', 'support', 'bb01', 2), ('narrow', 'viewer', 'bb02', 3), ('gone', 'support', 'bb03', 4)",
            "INSERT INTO technician_groups (technician, group_name, granted_at) VALUES ('narrow', 'lab', 5)",
            "INSERT INTO revoked_certs (serial, subject, revoked_at) VALUES ('bb03', 'tech:gone', 6)",
        ] {
            sqlx::query(q).execute(&pool).await.unwrap();
        }
        pool.close().await;

        let store = Store::open_sqlite(&path).await.unwrap();
        assert_eq!(
            store.certificate_status("aa01").await.unwrap(),
            CertStatus::Valid
        );
        assert_eq!(
            store.certificate_status("bb01").await.unwrap(),
            CertStatus::Valid
        );
        assert_eq!(
            store.certificate_status("bb03").await.unwrap(),
            CertStatus::Revoked
        );
        // A serial overwritten by a re-enrollment before the upgrade is unknown: refused.
        assert_eq!(
            store.certificate_status("cc99").await.unwrap(),
            CertStatus::Unknown
        );
        let free = store.technician_grants("free").await.unwrap();
        assert!(free.all_groups && free.groups.is_empty());
        let narrow = store.technician_grants("narrow").await.unwrap();
        assert!(!narrow.all_groups);
        assert_eq!(narrow.groups, vec!["lab".to_string()]);
        // Withdrawing the last group leaves nothing, not everything.
        store.grant_group("narrow", "lab", false, 7).await.unwrap();
        assert!(store.technician_grants("narrow").await.unwrap().is_empty());
        assert!(store.technician_enrolled("free").await.unwrap());
        assert!(!store.technician_enrolled("gone").await.unwrap());
        assert!(store.integrity_problems().await.unwrap().is_empty());
    }

    /// What `synchronous=FULL` costs over NORMAL (one fsync of the WAL per commit): audit
    /// inserts and inventory ingests, one transaction each as the relay does them. Run with
    /// `cargo test -p tether-relay --release --lib durability_cost -- --ignored --nocapture`.
    #[tokio::test]
    #[ignore = "a measurement, not a check"]
    async fn durability_cost() {
        use crate::store::SessionRow;
        use sqlx::sqlite::{SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
        use tether_protocol::inventory::{Inventory, Package, PackageSource};
        const AUDIT: usize = 500;
        const INVENTORIES: usize = 100;
        for (label, sync) in [
            ("NORMAL", SqliteSynchronous::Normal),
            ("FULL", SqliteSynchronous::Full),
        ] {
            let path = tmp(&format!("cost-{label}"));
            drop(super::Sqlite::open(&path).await.unwrap());
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(
                    SqliteConnectOptions::new()
                        .filename(&path)
                        .journal_mode(SqliteJournalMode::Wal)
                        .synchronous(sync)
                        .foreign_keys(true),
                )
                .await
                .unwrap();
            let s = crate::store::Store {
                backend: std::sync::Arc::new(super::Sqlite {
                    relaxed: pool.clone(),
                    pool,
                }),
            };
            let t0 = std::time::Instant::now();
            for i in 0..AUDIT {
                s.session_requested(&SessionRow {
                    id: format!("s{i}"),
                    technician: "ana".into(),
                    device_id: "d".into(),
                    requested_unix_ms: i as i64,
                    ..Default::default()
                })
                .await
                .unwrap();
            }
            let audit = t0.elapsed();
            let d = DeviceRow {
                id: "d".into(),
                hostname: "ws".into(),
                group: "g".into(),
                os: String::new(),
                agent_version: String::new(),
                first_seen: 0,
                last_seen: 0,
            };
            s.enroll_device(&d, "01").await.unwrap();
            let t0 = std::time::Instant::now();
            for i in 0..INVENTORIES {
                let inv = Inventory {
                    software: (0..500)
                        .map(|p| Package {
                            name: format!("pkg{p}"),
                            version: format!("1.{}", (p + i) % 7),
                            arch: "amd64".into(),
                            source: PackageSource::Dpkg,
                        })
                        .collect(),
                    ..Default::default()
                };
                s.ingest_inventory("d", i as u64, &inv, i as i64)
                    .await
                    .unwrap();
            }
            let ingest = t0.elapsed();
            eprintln!(
                "synchronous={label}: {AUDIT} audit inserts {:.2} ms each, {INVENTORIES} inventory ingests (500 packages) {:.2} ms each",
                audit.as_secs_f64() * 1000.0 / AUDIT as f64,
                ingest.as_secs_f64() * 1000.0 / INVENTORIES as f64,
            );
            s.close().await;
        }
    }

    /// Acknowledged rows must survive a power cut: WAL with synchronous=FULL (2).
    #[tokio::test]
    async fn commits_are_durable() {
        let path = tmp("sync");
        let s = super::Sqlite::open(&path).await.unwrap();
        let mut conn = s.pool.acquire().await.unwrap();
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(sync, 2, "synchronous is not FULL");
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        // Presence writes (nothing acknowledged) go through NORMAL (1).
        let mut conn = s.relaxed.acquire().await.unwrap();
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(sync, 1);
    }
}
