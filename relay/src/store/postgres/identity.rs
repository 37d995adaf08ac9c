//! PostgreSQL side of enrollment tokens, devices, certificates, revocation and technician grants.

use super::{Postgres, lock};
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
     WHERE c.kind = 'technician' AND c.name = $1
       AND NOT EXISTS (SELECT 1 FROM revoked_certs r WHERE r.serial = c.serial)";

#[async_trait]
impl IdentityStore for Postgres {
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
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
            "UPDATE tokens SET used_at = $1, used_by = $2
             WHERE secret_hash = $3 AND used_at IS NULL AND expires_at > $4
               AND NOT (kind = 'technician' AND NOT replace_existing AND EXISTS (
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
            sqlx::query("SELECT used_at, expires_at, tech_name FROM tokens WHERE secret_hash = $1")
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
            "UPDATE devices SET hostname = $1, os = $2, agent_version = $3, last_seen = $4 WHERE id = $5",
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

    async fn touch_device(&self, id: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE devices SET last_seen = GREATEST(last_seen, $1) WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn touch_devices(&self, ids: &[String], now: i64) -> Result<(), StoreError> {
        // One statement; sorted, so two relays touching the same rows lock them in one order.
        let mut ids = ids.to_vec();
        ids.sort();
        sqlx::query("UPDATE devices SET last_seen = GREATEST(last_seen, $1) WHERE id = ANY($2)")
            .bind(now)
            .bind(&ids)
            .execute(&self.pool)
            .await?;
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
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
             VALUES ($1, 'device', $2, $3, $4)",
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
        // The name's lock: the check and the writes below see no enrollment slip in between.
        let mut tx = self.pool.begin().await?;
        lock(&mut tx, "technician", name).await?;
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
                "INSERT INTO revoked_certs (serial, subject, revoked_at, reason) VALUES ($1, $2, $3, $4)
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
             VALUES ($1, 'technician', $2, $3, $4)",
        )
        .bind(cert_serial)
        .bind(name)
        .bind(role.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO technicians (name, role, cert_serial, enrolled_at) VALUES ($1, $2, $3, $4)
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
        // Re-enrolling with --replace revoked the technician's older certificates.
        self.notify(super::cluster::REVOCATIONS).await;
        Ok(Ok(live))
    }

    async fn technician_role(&self, name: &str, now: i64) -> Result<Option<String>, StoreError> {
        let enrolled: Option<String> =
            sqlx::query_scalar("SELECT role FROM technicians WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        if enrolled.is_some() {
            return Ok(enrolled);
        }
        Ok(sqlx::query_scalar(
            "SELECT role FROM tokens WHERE kind = 'technician' AND tech_name = $1
             AND used_at IS NULL AND expires_at > $2 ORDER BY created_at DESC LIMIT 1",
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
        let mut tx = self.pool.begin().await?;
        if let RevokeTarget::Technician(t) = target {
            // Not between an enrollment's check of the name and its writes.
            lock(&mut tx, "technician", t).await?;
        }
        // (serial, subject) of every certificate to revoke.
        let certs: Vec<(String, String)> = match target {
            RevokeTarget::Device(d) => {
                let mut ids: Vec<String> = sqlx::query_scalar("SELECT id FROM devices WHERE id = $1")
                    .bind(d)
                    .fetch_all(&mut *tx)
                    .await?;
                if ids.is_empty() {
                    ids = sqlx::query_scalar("SELECT id FROM devices WHERE hostname = $1 ORDER BY id")
                        .bind(d)
                        .fetch_all(&mut *tx)
                        .await?;
                }
                match ids.as_slice() {
                    [] => return Ok(RevokeOutcome::NotFound),
                    [id] => sqlx::query_as(
                        "SELECT serial, 'device:' || name FROM certificates
                         WHERE kind = 'device' AND name = $1
                         UNION SELECT cert_serial, 'device:' || id FROM devices WHERE id = $2",
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
                    "SELECT serial, 'tech:' || name FROM certificates WHERE kind = 'technician' AND name = $1
                     UNION SELECT cert_serial, 'tech:' || name FROM technicians WHERE name = $2",
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
                     FROM certificates WHERE serial = $1",
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
                "INSERT INTO revoked_certs (serial, subject, revoked_at, reason) VALUES ($1, $2, $3, $4)
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
        if !revoked.is_empty() {
            self.notify(super::cluster::REVOCATIONS).await;
        }
        Ok(RevokeOutcome::Revoked {
            subject,
            serials: revoked,
        })
    }

    async fn certificate_status(&self, serial: &str) -> Result<CertStatus, StoreError> {
        let row = sqlx::query(
            "SELECT EXISTS (SELECT 1 FROM certificates WHERE serial = $1) AS known,
                    EXISTS (SELECT 1 FROM revoked_certs WHERE serial = $1) AS revoked",
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
             WHERE ($1 IS NULL OR (c.kind = 'device' AND (c.name = $1
                        OR c.name IN (SELECT id FROM devices WHERE hostname = $1))))
               AND ($2 IS NULL OR (c.kind = 'technician' AND c.name = $2))
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
            "INSERT INTO technician_groups (technician, group_name, granted_at) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM technician_groups WHERE technician = $1 AND group_name = $2 AND $3 IS NOT NULL"
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
            "SELECT group_name FROM technician_groups WHERE technician = $1 ORDER BY group_name",
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
