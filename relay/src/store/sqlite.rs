//! SQLite backend: one file in the data directory, WAL journal, owner-only permissions.

mod health;
mod identity;

use super::GroupPolicy;
use super::{
    DeviceRow, NewToken, RedeemError, SessionFilter, SessionRecord, SoftwareHit, StoreError,
    TokenKind,
};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Row, SqlSafeStr, Sqlite as Db, SqlitePool, Transaction};
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;
use tether_protocol::history::{self, Change, ChangeKind};
use tether_protocol::inventory::{Inventory, Package, Summary};
use tether_protocol::message::ReportRow;

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
            include_str!("../../migrations/sqlite/0001_init.sql"),
        ),
        m(
            2,
            "inventory",
            include_str!("../../migrations/sqlite/0002_inventory.sql"),
        ),
        m(
            3,
            "sessions",
            include_str!("../../migrations/sqlite/0003_sessions.sql"),
        ),
        m(
            4,
            "policy",
            include_str!("../../migrations/sqlite/0004_policy.sql"),
        ),
        m(
            5,
            "health",
            include_str!("../../migrations/sqlite/0005_health.sql"),
        ),
        m(
            6,
            "session actions",
            include_str!("../../migrations/sqlite/0006_session_actions.sql"),
        ),
        m(
            7,
            "record shells",
            include_str!("../../migrations/sqlite/0007_record_shells.sql"),
        ),
        m(
            8,
            "technician groups",
            include_str!("../../migrations/sqlite/0008_technician_groups.sql"),
        ),
        m(
            9,
            "identity certificates",
            include_str!("../../migrations/sqlite/0009_identity_certificates.sql"),
        ),
        m(
            10,
            "identity all groups",
            include_str!("../../migrations/sqlite/0010_identity_all_groups.sql"),
        ),
        m(
            11,
            "allow root",
            include_str!("../../migrations/sqlite/0011_allow_root.sql"),
        ),
        m(
            12,
            "engagements",
            include_str!("../../migrations/sqlite/0012_engagements.sql"),
        ),
    ])
}

/// Rows per multi-row statement (4 bound values each, far below SQLite's variable limit).
const CHUNK: usize = 200;

type PkgTuple = (String, String, String, String);

fn pkg_tuples(inv: &Inventory) -> BTreeSet<PkgTuple> {
    inv.software
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                p.version.clone(),
                p.arch.clone(),
                super::source_name(p.source).to_string(),
            )
        })
        .collect()
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

    pub async fn close(&self) {
        self.relaxed.close().await;
        self.pool.close().await;
    }

    /// SQLite's own consistency checks; empty when all is well.
    pub async fn integrity_problems(&self) -> Result<Vec<String>, StoreError> {
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

    pub async fn insert_token(&self, t: &NewToken) -> Result<(), StoreError> {
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

    pub async fn redeem_token(
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
                        replace: row.try_get("replace_existing")?,
                    }
                }
            }));
        }
        // Not redeemed: find out why, for a useful message.
        let row =
            sqlx::query("SELECT used_at, expires_at, tech_name FROM tokens WHERE secret_hash = ?")
                .bind(&secret_hash[..])
                .fetch_optional(&self.pool)
                .await?;
        Ok(Err(match row {
            None => RedeemError::Unknown,
            Some(r) if r.try_get::<Option<i64>, _>("used_at")?.is_some() => {
                RedeemError::AlreadyUsed
            }
            Some(r) if r.try_get::<i64, _>("expires_at")? <= now => RedeemError::Expired,
            Some(r) => RedeemError::AlreadyEnrolled(
                r.try_get::<Option<String>, _>("tech_name")?
                    .unwrap_or_default(),
            ),
        }))
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
        .execute(&self.relaxed)
        .await?;
        Ok(())
    }

    pub async fn touch_device(&self, id: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE devices SET last_seen = MAX(last_seen, ?) WHERE id = ?")
            .bind(now)
            .bind(id)
            .execute(&self.relaxed)
            .await?;
        Ok(())
    }

    pub async fn touch_devices(&self, ids: &[String], now: i64) -> Result<(), StoreError> {
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

    pub async fn device_count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM devices")
            .fetch_one(&self.pool)
            .await?;
        Ok(n.max(0) as u64)
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

    pub async fn revocation_mark(&self) -> Result<(i64, i64), StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, COALESCE(MAX(revoked_at), 0) AS at FROM revoked_certs",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get("n")?, row.try_get("at")?))
    }
}

impl Sqlite {
    pub async fn inventory_hash(&self, device_id: &str) -> Result<Option<u64>, StoreError> {
        let row = sqlx::query("SELECT hash FROM inventory WHERE device_id = ?")
            .bind(device_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get::<i64, _>("hash")? as u64),
            None => None,
        })
    }

    /// Stores a new inventory and the history of what changed, in one transaction.
    pub async fn ingest_inventory(
        &self,
        device_id: &str,
        hash: u64,
        inv: &Inventory,
        now: i64,
    ) -> Result<u32, StoreError> {
        // The package list lives in the normalized tables only; the body holds the rest.
        let body = serde_json::to_string(&Inventory {
            software: Vec::new(),
            ..inv.clone()
        })
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let summary = serde_json::to_string(&inv.summary())
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        // IMMEDIATE takes the write lock up front: two deferred transactions that both read and
        // then write would otherwise fail with SQLITE_BUSY instead of waiting their turn.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let old = sqlx::query("SELECT device_num, body FROM inventory WHERE device_id = ?")
            .bind(device_id)
            .fetch_optional(&mut *tx)
            .await?;
        // An unreadable old body is treated as none: the new one replaces it whole.
        let old: Option<Inventory> = match old {
            Some(r) => match serde_json::from_str::<Inventory>(&r.try_get::<String, _>("body")?) {
                Ok(mut o) => {
                    o.software = packages_of(&mut tx, r.try_get("device_num")?).await?;
                    Some(o)
                }
                Err(_) => None,
            },
            None => None,
        };
        let changes = match &old {
            Some(o) => history::diff(o, inv),
            None => vec![Change {
                kind: ChangeKind::FirstInventory,
                subject: "inventory".into(),
                old: None,
                new: Some(format!("{} packages", inv.software.len())),
            }],
        };
        let collected_at = i64::try_from(inv.collected_at_unix_ms).unwrap_or(i64::MAX);
        let device_num: i64 = sqlx::query(
            "INSERT INTO inventory (device_id, hash, collected_at, received_at, body, summary)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (device_id) DO UPDATE SET hash = excluded.hash,
                 collected_at = excluded.collected_at, received_at = excluded.received_at,
                 body = excluded.body, summary = excluded.summary
             RETURNING device_num",
        )
        .bind(device_id)
        .bind(hash as i64)
        .bind(collected_at)
        .bind(now)
        .bind(&body)
        .bind(&summary)
        .fetch_one(&mut *tx)
        .await?
        .try_get("device_num")?;

        let new_set = pkg_tuples(inv);
        let old_set = match &old {
            Some(o) => pkg_tuples(o),
            None => {
                // No trustworthy old list: start from a clean slate for this device.
                sqlx::query("DELETE FROM device_packages WHERE device_num = ?")
                    .bind(device_num)
                    .execute(&mut *tx)
                    .await?;
                BTreeSet::new()
            }
        };
        let removed: Vec<_> = old_set.difference(&new_set).collect();
        let added: Vec<_> = new_set.difference(&old_set).collect();
        for chunk in removed.chunks(CHUNK) {
            let sql = format!(
                "DELETE FROM device_packages WHERE device_num = ? AND package_id IN
                 (SELECT p.id FROM (VALUES {}) v JOIN packages p
                  ON p.name = v.column1 AND p.version = v.column2
                  AND p.arch = v.column3 AND p.source = v.column4)",
                tuple_placeholders(chunk.len())
            );
            let mut q = sqlx::query(AssertSqlSafe(sql)).bind(device_num);
            for (n, v, a, s) in chunk {
                q = q.bind(n).bind(v).bind(a).bind(s);
            }
            q.execute(&mut *tx).await?;
        }
        for chunk in added.chunks(CHUNK) {
            insert_packages(&mut tx, device_num, chunk).await?;
        }
        for c in &changes {
            sqlx::query(
                "INSERT INTO inventory_changes (device_id, at, kind, subject, old_value, new_value)
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(device_id)
            .bind(now)
            .bind(c.kind.as_str())
            .bind(&c.subject)
            .bind(&c.old)
            .bind(&c.new)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(changes.len() as u32)
    }

    pub async fn inventory(&self, device_id: &str) -> Result<Option<(i64, Inventory)>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let row =
            sqlx::query("SELECT device_num, received_at, body FROM inventory WHERE device_id = ?")
                .bind(device_id)
                .fetch_optional(&mut *conn)
                .await?;
        let Some(row) = row else { return Ok(None) };
        let body: String = row.try_get("body")?;
        let mut inv: Inventory =
            serde_json::from_str(&body).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        inv.software = packages_of(&mut conn, row.try_get("device_num")?).await?;
        Ok(Some((row.try_get("received_at")?, inv)))
    }

    pub async fn inventory_summaries(&self) -> Result<Vec<(String, Summary, i64)>, StoreError> {
        let rows = sqlx::query("SELECT device_id, summary, received_at FROM inventory")
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let summary: String = r.try_get("summary")?;
            let summary =
                serde_json::from_str(&summary).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            out.push((r.try_get("device_id")?, summary, r.try_get("received_at")?));
        }
        Ok(out)
    }

    /// Devices with a package named `name`, or whose name matches the glob `name` when it
    /// contains `*`.
    pub async fn software(&self, name: &str) -> Result<Vec<SoftwareHit>, StoreError> {
        let op = if name.contains('*') { "GLOB" } else { "=" };
        let sql = format!(
            "SELECT i.device_id, d.hostname, p.name, p.version, p.arch, p.source
             FROM packages p
             JOIN device_packages dp ON dp.package_id = p.id
             JOIN inventory i ON i.device_num = dp.device_num
             JOIN devices d ON d.id = i.device_id
             WHERE p.name {op} ?
             ORDER BY p.name, d.hostname, i.device_id"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(name)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok(SoftwareHit {
                    device_id: r.try_get("device_id")?,
                    hostname: r.try_get("hostname")?,
                    name: r.try_get("name")?,
                    version: r.try_get("version")?,
                    arch: r.try_get("arch")?,
                    source: r.try_get("source")?,
                })
            })
            .collect()
    }

    pub async fn history(
        &self,
        device_id: &str,
        since: i64,
    ) -> Result<Vec<(i64, Change)>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, kind, subject, old_value, new_value FROM inventory_changes
             WHERE device_id = ? AND at >= ? ORDER BY at, id",
        )
        .bind(device_id)
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let kind: String = r.try_get("kind")?;
                Ok((
                    r.try_get("at")?,
                    Change {
                        kind: ChangeKind::parse(&kind)
                            .ok_or_else(|| StoreError::Corrupt(format!("change kind {kind:?}")))?,
                        subject: r.try_get("subject")?,
                        old: r.try_get("old_value")?,
                        new: r.try_get("new_value")?,
                    },
                ))
            })
            .collect()
    }
}

impl Sqlite {
    pub async fn session_requested(&self, r: &SessionRecord) -> Result<(), StoreError> {
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
        .bind(r.requested_at)
        .bind(&r.activity)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn session_decided(
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

    pub async fn session_engaged(&self, id: &str, engagement: &str) -> Result<bool, StoreError> {
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

    pub async fn session_ended(
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
    pub async fn session_ended_by_user(
        &self,
        id: &str,
        device_id: &str,
    ) -> Result<bool, StoreError> {
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

    pub async fn session_action(
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
    pub async fn rate_session(
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

    pub async fn set_unattended(&self, group: &str, on: bool, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO group_policy (group_name, unattended, updated_at) VALUES (?, ?, ?)
             ON CONFLICT (group_name) DO UPDATE SET unattended = excluded.unattended,
             updated_at = excluded.updated_at",
        )
        .bind(group)
        .bind(on)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn set_record_shells(
        &self,
        group: &str,
        on: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO group_policy (group_name, record_shells, updated_at) VALUES (?, ?, ?)
             ON CONFLICT (group_name) DO UPDATE SET record_shells = excluded.record_shells,
             updated_at = excluded.updated_at",
        )
        .bind(group)
        .bind(on)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn set_allow_root(&self, group: &str, on: bool, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO group_policy (group_name, allow_root, updated_at) VALUES (?, ?, ?)
             ON CONFLICT (group_name) DO UPDATE SET allow_root = excluded.allow_root,
             updated_at = excluded.updated_at",
        )
        .bind(group)
        .bind(on)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn allow_root(&self, group: &str) -> Result<bool, StoreError> {
        let on: Option<bool> =
            sqlx::query_scalar("SELECT allow_root FROM group_policy WHERE group_name = ?")
                .bind(group)
                .fetch_optional(&self.pool)
                .await?;
        Ok(on.unwrap_or(false))
    }

    pub async fn record_shells(&self, group: &str) -> Result<bool, StoreError> {
        let on: Option<bool> =
            sqlx::query_scalar("SELECT record_shells FROM group_policy WHERE group_name = ?")
                .bind(group)
                .fetch_optional(&self.pool)
                .await?;
        Ok(on.unwrap_or(false))
    }

    pub async fn unattended(&self, group: &str) -> Result<bool, StoreError> {
        let on: Option<bool> =
            sqlx::query_scalar("SELECT unattended FROM group_policy WHERE group_name = ?")
                .bind(group)
                .fetch_optional(&self.pool)
                .await?;
        Ok(on.unwrap_or(false))
    }

    /// Every group with a policy row, or a device: (group, unattended, updated_at).
    pub async fn policies(&self) -> Result<Vec<GroupPolicy>, StoreError> {
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
    pub async fn report(
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
    pub async fn add_notes(
        &self,
        id: &str,
        technician: &str,
        text: &str,
    ) -> Result<bool, StoreError> {
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

    pub async fn sessions(&self, f: &SessionFilter) -> Result<Vec<SessionRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM sessions
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
            .into_iter()
            .map(|r| {
                Ok(SessionRecord {
                    id: r.try_get("id")?,
                    technician: r.try_get("technician")?,
                    device_id: r.try_get("device_id")?,
                    reason: r.try_get("reason")?,
                    ticket: r.try_get("ticket")?,
                    permissions_asked: r.try_get("permissions_asked")?,
                    permissions_granted: r.try_get("permissions_granted")?,
                    decision: r.try_get("decision")?,
                    decision_detail: r.try_get("decision_detail")?,
                    requested_at: r.try_get("requested_at")?,
                    started_at: r.try_get("started_at")?,
                    ended_at: r.try_get("ended_at")?,
                    ended_by: r.try_get("ended_by")?,
                    bytes_up: r.try_get::<i64, _>("bytes_up")?.max(0) as u64,
                    bytes_down: r.try_get::<i64, _>("bytes_down")?.max(0) as u64,
                    notes: r.try_get("notes")?,
                    rating: r
                        .try_get::<Option<i64>, _>("rating")?
                        .map(|v| v.clamp(0, 5) as u8),
                    rating_comment: r.try_get("rating_comment")?,
                    actions: Vec::new(),
                    activity: r.try_get("activity")?,
                    engagement: r.try_get("engagement_id")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
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

/// The packages of one device, from the normalized tables.
async fn packages_of(
    conn: &mut sqlx::SqliteConnection,
    device_num: i64,
) -> Result<Vec<Package>, StoreError> {
    let rows = sqlx::query(
        "SELECT p.name, p.version, p.arch, p.source FROM device_packages dp
         JOIN packages p ON p.id = dp.package_id WHERE dp.device_num = ? ORDER BY p.name, p.arch",
    )
    .bind(device_num)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            let source: String = r.try_get("source")?;
            Ok(Package {
                name: r.try_get("name")?,
                version: r.try_get("version")?,
                arch: r.try_get("arch")?,
                source: super::parse_source(&source),
            })
        })
        .collect()
}

async fn insert_packages(
    tx: &mut Transaction<'static, Db>,
    device_num: i64,
    chunk: &[&PkgTuple],
) -> Result<(), StoreError> {
    let values = tuple_placeholders(chunk.len());
    let sql = format!(
        "INSERT INTO packages (name, version, arch, source) VALUES {values}
         ON CONFLICT DO NOTHING"
    );
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for (n, v, a, s) in chunk {
        q = q.bind(n).bind(v).bind(a).bind(s);
    }
    q.execute(&mut **tx).await?;
    let sql = format!(
        "INSERT OR IGNORE INTO device_packages (device_num, package_id)
         SELECT ?, p.id FROM (VALUES {values}) v JOIN packages p
         ON p.name = v.column1 AND p.version = v.column2
         AND p.arch = v.column3 AND p.source = v.column4"
    );
    let mut q = sqlx::query(AssertSqlSafe(sql)).bind(device_num);
    for (n, v, a, s) in chunk {
        q = q.bind(n).bind(v).bind(a).bind(s);
    }
    q.execute(&mut **tx).await?;
    Ok(())
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

    /// A hostile agent naming an engagement that is another technician's, or another device's,
    /// does not get its session filed there.
    #[tokio::test]
    async fn a_session_joins_only_an_engagement_of_its_technician_on_its_device() {
        let path = tmp("engaged");
        let store = Store::open_sqlite(&path).await.unwrap();
        for (id, tech, device) in [
            ("s1", "ana", "d1"),
            ("s2", "ana", "d1"),
            ("s3", "bo", "d1"),
            ("s4", "ana", "d2"),
        ] {
            store
                .session_requested(&crate::store::SessionRecord {
                    id: id.into(),
                    technician: tech.into(),
                    device_id: device.into(),
                    requested_at: 1,
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        assert!(store.session_engaged("s2", "s1").await.unwrap());
        assert!(store.session_engaged("s1", "s1").await.unwrap());
        assert!(!store.session_engaged("s3", "s1").await.unwrap());
        assert!(!store.session_engaged("s4", "s1").await.unwrap());
        assert!(!store.session_engaged("s2", "no-such").await.unwrap());
        let rows = store
            .sessions(&crate::store::SessionFilter::default())
            .await
            .unwrap();
        let of = |id: &str| rows.iter().find(|r| r.id == id).unwrap().engagement.clone();
        assert_eq!(of("s2").as_deref(), Some("s1"));
        assert_eq!(of("s3"), None);
        assert_eq!(of("s4"), None);
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
