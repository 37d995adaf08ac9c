//! PostgreSQL side of health reports, alerts and alert policy.

use super::Postgres;
use crate::store::backend::HealthStore;
use crate::store::{AlertFilter, AlertPolicy, StoreError};
use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;
use std::time::Duration;
use tether_protocol::health::{AlertKey, AlertKind, AlertRow, HealthReport, Reading, Thresholds};

const ALERT_COLUMNS: &str = "a.id, a.device_id, COALESCE(d.hostname, '') AS hostname,
    COALESCE(d.group_name, '') AS group_name, a.kind, a.subject, a.value, a.threshold, a.detail,
    a.opened_at, a.closed_at, a.close_detail";

fn alert_row(r: &PgRow) -> Result<AlertRow, StoreError> {
    let kind: String = r.try_get("kind")?;
    Ok(AlertRow {
        id: r.try_get("id")?,
        device_id: r.try_get("device_id")?,
        hostname: r.try_get("hostname")?,
        group: r.try_get("group_name")?,
        kind: AlertKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("alert kind {kind:?}")))?,
        subject: r.try_get("subject")?,
        value: r.try_get("value")?,
        threshold: r.try_get("threshold")?,
        detail: r.try_get("detail")?,
        opened_unix_ms: r.try_get("opened_at")?,
        closed_unix_ms: r.try_get("closed_at")?,
        close_detail: r.try_get("close_detail")?,
    })
}

fn to_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn from_ms(v: i64) -> Duration {
    Duration::from_millis(u64::try_from(v).unwrap_or(0))
}

fn percent(v: i64, what: &str) -> Result<u8, StoreError> {
    u8::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} {v}")))
}

#[async_trait]
impl HealthStore for Postgres {
    /// Stores the latest report of each device in one transaction: thousands of agents report
    /// every minute, and one commit per report would cost the relay more than the reports.
    async fn put_health_many(
        &self,
        reports: &[(String, HealthReport, i64)],
    ) -> Result<(), StoreError> {
        // In device order: two relays writing overlapping batches lock rows in one order.
        let mut sorted: Vec<_> = reports.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let mut tx = self.pool.begin().await?;
        for (device_id, report, received_at) in sorted {
            let body =
                serde_json::to_string(report).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            sqlx::query(
                "INSERT INTO health (device_id, collected_at, received_at, body) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (device_id) DO UPDATE SET collected_at = excluded.collected_at,
                     received_at = excluded.received_at, body = excluded.body",
            )
            .bind(device_id)
            .bind(i64::try_from(report.collected_at_unix_ms).unwrap_or(i64::MAX))
            .bind(*received_at)
            .bind(body)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn health(&self, device_id: &str) -> Result<Option<(i64, HealthReport)>, StoreError> {
        let row = sqlx::query("SELECT received_at, body FROM health WHERE device_id = $1")
            .bind(device_id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(r) = row else { return Ok(None) };
        let body: String = r.try_get("body")?;
        let report = serde_json::from_str(&body)
            .map_err(|e| StoreError::Corrupt(format!("health report: {e}")))?;
        Ok(Some((r.try_get("received_at")?, report)))
    }

    async fn health_received(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT device_id, received_at FROM health")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("device_id")?, r.try_get("received_at")?)))
            .collect()
    }

    async fn open_alert(
        &self,
        device_id: &str,
        key: &AlertKey,
        reading: &Reading,
        at: i64,
    ) -> Result<Option<i64>, StoreError> {
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO alerts (device_id, kind, subject, value, threshold, detail, opened_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (device_id, kind, subject) WHERE closed_at IS NULL DO NOTHING
             RETURNING id",
        )
        .bind(device_id)
        .bind(key.kind.as_str())
        .bind(&key.subject)
        .bind(reading.value)
        .bind(reading.threshold)
        .bind(&reading.detail)
        .bind(at)
        .fetch_optional(&self.pool)
        .await?;
        Ok(id)
    }

    async fn close_alert(
        &self,
        device_id: &str,
        key: &AlertKey,
        detail: &str,
        at: i64,
    ) -> Result<Option<i64>, StoreError> {
        let id: Option<i64> = sqlx::query_scalar(
            "UPDATE alerts SET closed_at = $1, close_detail = $2
             WHERE device_id = $3 AND kind = $4 AND subject = $5 AND closed_at IS NULL
             RETURNING id",
        )
        .bind(at)
        .bind(detail)
        .bind(device_id)
        .bind(key.kind.as_str())
        .bind(&key.subject)
        .fetch_optional(&self.pool)
        .await?;
        Ok(id)
    }

    async fn alert(&self, id: i64) -> Result<Option<AlertRow>, StoreError> {
        let sql = format!(
            "SELECT {ALERT_COLUMNS} FROM alerts a LEFT JOIN devices d ON d.id = a.device_id
             WHERE a.id = $1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(alert_row).transpose()
    }

    async fn alerts(&self, f: &AlertFilter) -> Result<Vec<AlertRow>, StoreError> {
        let sql = format!(
            "SELECT {ALERT_COLUMNS} FROM alerts a LEFT JOIN devices d ON d.id = a.device_id
             WHERE (a.closed_at IS NULL OR a.closed_at >= $1) AND ($2 IS NULL OR a.device_id = $3)
             ORDER BY a.closed_at IS NOT NULL, a.opened_at DESC, a.id DESC LIMIT $4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(f.closed_since.unwrap_or(i64::MAX))
            .bind(&f.device_id)
            .bind(&f.device_id)
            .bind(i64::from(f.limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(alert_row).collect()
    }

    async fn open_alert_keys(&self) -> Result<Vec<(String, AlertKey)>, StoreError> {
        let rows =
            sqlx::query("SELECT device_id, kind, subject FROM alerts WHERE closed_at IS NULL")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                let kind: String = r.try_get("kind")?;
                let kind = AlertKind::parse(&kind)
                    .ok_or_else(|| StoreError::Corrupt(format!("alert kind {kind:?}")))?;
                Ok((
                    r.try_get("device_id")?,
                    AlertKey::new(kind, r.try_get::<String, _>("subject")?),
                ))
            })
            .collect()
    }

    async fn alert_policies(&self) -> Result<Vec<AlertPolicy>, StoreError> {
        let rows = sqlx::query(
            "SELECT g AS group_name, p.disk_percent, p.memory_percent, p.memory_for_ms,
                    p.silent_after_ms, p.webhook_url, p.updated_at
             FROM (SELECT group_name AS g FROM alert_policy UNION SELECT group_name FROM devices)
                  AS all_groups
             LEFT JOIN alert_policy p ON p.group_name = all_groups.g ORDER BY g",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let group: String = r.try_get("group_name")?;
                let Some(updated_at) = r.try_get::<Option<i64>, _>("updated_at")? else {
                    return Ok(AlertPolicy::defaults(&group));
                };
                let get = |c: &str| -> Result<i64, StoreError> {
                    Ok(r.try_get::<Option<i64>, _>(c)?.unwrap_or(0))
                };
                Ok(AlertPolicy {
                    thresholds: Thresholds {
                        disk_percent: percent(get("disk_percent")?, "disk percent")?,
                        memory_percent: percent(get("memory_percent")?, "memory percent")?,
                        memory_for: from_ms(get("memory_for_ms")?),
                        silent_after: from_ms(get("silent_after_ms")?),
                    },
                    webhook: r.try_get("webhook_url")?,
                    updated_at: Some(updated_at),
                    group,
                })
            })
            .collect()
    }

    async fn set_alert_policy(&self, p: &AlertPolicy, now: i64) -> Result<(), StoreError> {
        let t = &p.thresholds;
        sqlx::query(
            "INSERT INTO alert_policy (group_name, disk_percent, memory_percent, memory_for_ms,
                 silent_after_ms, webhook_url, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (group_name) DO UPDATE SET disk_percent = excluded.disk_percent,
                 memory_percent = excluded.memory_percent, memory_for_ms = excluded.memory_for_ms,
                 silent_after_ms = excluded.silent_after_ms, webhook_url = excluded.webhook_url,
                 updated_at = excluded.updated_at",
        )
        .bind(&p.group)
        .bind(i64::from(t.disk_percent))
        .bind(i64::from(t.memory_percent))
        .bind(to_ms(t.memory_for))
        .bind(to_ms(t.silent_after))
        .bind(&p.webhook)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
