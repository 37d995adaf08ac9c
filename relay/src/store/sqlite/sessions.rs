//! SQLite side of the session audit trail and the groups' session policy.

use super::Sqlite;
use crate::store::backend::SessionStore;
use crate::store::rows;
use crate::store::{GroupPolicy, PolicyFlag, SessionFilter, SessionRow, StoreError};
use async_trait::async_trait;
use sqlx::{AssertSqlSafe, FromRow, Row};
use tether_protocol::message::ReportRow;

#[async_trait]
impl SessionStore for Sqlite {
    async fn session_requested(&self, r: &SessionRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (id, technician, device_id, reason, ticket, permissions_asked, requested_at, activity)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&r.id)
        .bind(&r.technician)
        .bind(&r.device_id)
        .bind(&r.reason)
        .bind(&r.ticket)
        .bind(&r.permissions_asked)
        .bind(r.requested_unix_ms)
        .bind(&r.activity)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn session_decided(
        &self,
        id: &str,
        decision: tether_protocol::decision::Decision,
        detail: &str,
        granted: &str,
        started_at: Option<i64>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE sessions SET decision = ?, decision_detail = ?, permissions_granted = ?, started_at = ?
             WHERE id = ?",
        )
        .bind(decision.as_str())
        .bind(detail)
        .bind(granted)
        .bind(started_at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn session_engaged(&self, id: &str, engagement: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE sessions SET engagement_id = ?1
             WHERE id = ?2 AND EXISTS (
                 SELECT 1 FROM sessions e
                 WHERE e.id = ?1 AND e.device_id = sessions.device_id
                   AND e.technician = sessions.technician)",
        )
        .bind(engagement)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn session_ended(
        &self,
        id: &str,
        ended_at: i64,
        ended_by: &str,
        bytes_up: u64,
        bytes_down: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE sessions SET ended_at = ?, ended_by = COALESCE(ended_by, ?), bytes_up = ?, bytes_down = ?
             WHERE id = ?",
        )
        .bind(ended_at)
        .bind(ended_by)
        .bind(i64::try_from(bytes_up).unwrap_or(i64::MAX))
        .bind(i64::try_from(bytes_down).unwrap_or(i64::MAX))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The device's user ended this session. Wins over the splice's view (the relay only sees
    /// the agent's side close), whichever is recorded first. False if no such session runs or
    /// ran on this device.
    async fn session_ended_by_user(&self, id: &str, device_id: &str) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE sessions SET ended_by = 'user'
             WHERE id = ? AND device_id = ? AND started_at IS NOT NULL",
        )
        .bind(id)
        .bind(device_id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn session_action(
        &self,
        id: &str,
        device_id: &str,
        action: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "INSERT INTO session_actions (session_id, seq, at, action)
             SELECT s.id, COALESCE((SELECT MAX(seq) + 1 FROM session_actions WHERE session_id = s.id), 0), ?, ?
             FROM sessions s WHERE s.id = ? AND s.device_id = ? AND s.started_at IS NOT NULL",
        )
        .bind(now)
        .bind(action)
        .bind(id)
        .bind(device_id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// The user's rating of a session that started on this device. False if there is none.
    async fn rate_session(
        &self,
        id: &str,
        device_id: &str,
        rating: u8,
        comment: &str,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE sessions SET rating = ?, rating_comment = ?
             WHERE id = ? AND device_id = ? AND started_at IS NOT NULL",
        )
        .bind(i64::from(rating))
        .bind(comment)
        .bind(id)
        .bind(device_id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn set_policy_flag(
        &self,
        group: &str,
        flag: PolicyFlag,
        on: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        let col = flag.column();
        let sql = format!(
            "INSERT INTO group_policy (group_name, {col}, updated_at) VALUES (?, ?, ?)
             ON CONFLICT (group_name) DO UPDATE SET {col} = excluded.{col},
             updated_at = excluded.updated_at"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(group)
            .bind(on)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn policy_flag(&self, group: &str, flag: PolicyFlag) -> Result<bool, StoreError> {
        let sql = format!(
            "SELECT {} FROM group_policy WHERE group_name = ?",
            flag.column()
        );
        let on: Option<bool> = sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(group)
            .fetch_optional(&self.pool)
            .await?;
        Ok(on.unwrap_or(false))
    }

    /// Every group with a policy row, or a device: (group, unattended, updated_at).
    async fn policies(&self) -> Result<Vec<GroupPolicy>, StoreError> {
        let rows = sqlx::query(
            "SELECT g AS group_name, COALESCE(p.unattended, 0) AS unattended,
                    COALESCE(p.record_shells, 0) AS record_shells,
                    COALESCE(p.allow_root, 0) AS allow_root, p.updated_at
             FROM (SELECT group_name AS g FROM group_policy UNION SELECT group_name FROM devices) AS all_groups
             LEFT JOIN group_policy p ON p.group_name = all_groups.g ORDER BY g",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(GroupPolicy {
                    group: r.try_get("group_name")?,
                    unattended: r.try_get("unattended")?,
                    record_shells: r.try_get("record_shells")?,
                    allow_root: r.try_get("allow_root")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

    /// Per-technician figures over sessions requested since `since` (all technicians, or one).
    /// Messages (`tether say`) are not session requests: they are left out of every column.
    async fn report(
        &self,
        since: i64,
        technician: Option<&str>,
    ) -> Result<Vec<ReportRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT technician,
                    COUNT(*) AS requests,
                    SUM(decision = 'approved') AS approved,
                    SUM(decision = 'unattended') AS unattended,
                    SUM(decision = 'denied') AS denied,
                    SUM(decision = 'timed_out') AS timed_out,
                    SUM(decision = 'failed') AS failed,
                    SUM(CASE WHEN started_at IS NOT NULL AND ended_at IS NOT NULL
                        THEN ended_at - started_at END) AS total_ms,
                    AVG(CASE WHEN started_at IS NOT NULL AND ended_at IS NOT NULL
                        THEN ended_at - started_at END) AS mean_ms,
                    COUNT(rating) AS ratings,
                    AVG(rating) AS mean_rating
             FROM sessions WHERE requested_at >= ? AND (? IS NULL OR technician = ?)
               AND permissions_asked <> 'message'
             GROUP BY technician ORDER BY technician",
        )
        .bind(since)
        .bind(technician)
        .bind(technician)
        .fetch_all(&self.pool)
        .await?;
        let count = |r: &sqlx::sqlite::SqliteRow, c: &str| -> Result<u64, StoreError> {
            Ok(r.try_get::<Option<i64>, _>(c)?.unwrap_or(0).max(0) as u64)
        };
        rows.iter()
            .map(|r| {
                Ok(ReportRow {
                    technician: r.try_get("technician")?,
                    requests: count(r, "requests")?,
                    approved: count(r, "approved")?,
                    unattended: count(r, "unattended")?,
                    denied: count(r, "denied")?,
                    timed_out: count(r, "timed_out")?,
                    failed: count(r, "failed")?,
                    total_seconds: count(r, "total_ms")? / 1000,
                    mean_seconds: r.try_get::<Option<f64>, _>("mean_ms")?.map(|v| v / 1000.0),
                    ratings: count(r, "ratings")?,
                    mean_rating: r.try_get("mean_rating")?,
                })
            })
            .collect()
    }

    /// Appends resolution notes to a session of `technician`. False if there is no such session.
    async fn add_notes(&self, id: &str, technician: &str, text: &str) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE sessions SET notes = CASE WHEN notes = '' THEN ? ELSE notes || char(10) || ? END
             WHERE id = ? AND technician = ?",
        )
        .bind(text)
        .bind(text)
        .bind(id)
        .bind(technician)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn sessions(&self, f: &SessionFilter) -> Result<Vec<SessionRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.*, COALESCE(d.hostname, '') AS hostname
             FROM sessions s LEFT JOIN devices d ON d.id = s.device_id
             WHERE requested_at >= ? AND (? IS NULL OR device_id = ?) AND (? IS NULL OR technician = ?)
             ORDER BY requested_at, id",
        )
        .bind(f.since)
        .bind(&f.device_id)
        .bind(&f.device_id)
        .bind(&f.technician)
        .bind(&f.technician)
        .fetch_all(&self.pool)
        .await?;
        let records = rows
            .iter()
            .map(|r| rows::Session::from_row(r).map(SessionRow::from))
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let actions = sqlx::query(
            "SELECT a.session_id, a.action FROM session_actions a JOIN sessions s ON s.id = a.session_id
             WHERE s.requested_at >= ? AND (? IS NULL OR s.device_id = ?) AND (? IS NULL OR s.technician = ?)
             ORDER BY a.session_id, a.seq",
        )
        .bind(f.since)
        .bind(&f.device_id)
        .bind(&f.device_id)
        .bind(&f.technician)
        .bind(&f.technician)
        .fetch_all(&self.pool)
        .await?;
        let mut by_session: std::collections::HashMap<String, Vec<String>> = Default::default();
        for a in actions {
            by_session
                .entry(a.try_get("session_id")?)
                .or_default()
                .push(a.try_get("action")?);
        }
        Ok(records
            .into_iter()
            .map(|mut r| {
                r.actions = by_session.remove(&r.id).unwrap_or_default();
                r
            })
            .collect())
    }
}
