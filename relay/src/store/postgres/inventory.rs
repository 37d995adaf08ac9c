//! PostgreSQL side of inventories, their history and the package index.

use super::{Postgres, tuple_placeholders};
use crate::store::backend::{InventoryStore, InventoryTx, PackageKey};
use crate::store::{SoftwareHit, StoreError};
use async_trait::async_trait;
use sqlx::{AssertSqlSafe, Postgres as Db, Row, Transaction};
use tether_protocol::history::{Change, ChangeKind};
use tether_protocol::inventory::{Inventory, Package, Summary};

#[async_trait]
impl InventoryStore for Postgres {
    async fn inventory_hash(&self, device_id: &str) -> Result<Option<u64>, StoreError> {
        let row = sqlx::query("SELECT hash FROM inventory WHERE device_id = $1")
            .bind(device_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get::<i64, _>("hash")? as u64),
            None => None,
        })
    }

    async fn begin_inventory(&self, device_id: &str) -> Result<Box<dyn InventoryTx>, StoreError> {
        // The device's row, locked until commit: a second upload of the same device (through
        // another relay, say) waits here and then reads what this one stored, so the history
        // records each change once. Other devices' uploads go on meanwhile.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT id FROM devices WHERE id = $1 FOR UPDATE")
            .bind(device_id)
            .fetch_optional(&mut *tx)
            .await?;
        Ok(Box::new(PgInventoryTx {
            tx,
            device_id: device_id.to_string(),
            device_num: None,
        }))
    }

    async fn inventory(&self, device_id: &str) -> Result<Option<(i64, Inventory)>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let row =
            sqlx::query("SELECT device_num, received_at, body FROM inventory WHERE device_id = $1")
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

    async fn inventory_summaries(&self) -> Result<Vec<(String, Summary, i64)>, StoreError> {
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
    /// contains `*` (as SQLite's GLOB: `*` any run, `?` one character; case-sensitive).
    async fn software(&self, name: &str) -> Result<Vec<SoftwareHit>, StoreError> {
        let (op, name) = if name.contains('*') {
            ("LIKE $1 ESCAPE '\\'", glob_to_like(name))
        } else {
            ("= $1", name.to_string())
        };
        let sql = format!(
            "SELECT i.device_id, d.hostname, p.name, p.version, p.arch, p.source
             FROM packages p
             JOIN device_packages dp ON dp.package_id = p.id
             JOIN inventory i ON i.device_num = dp.device_num
             JOIN devices d ON d.id = i.device_id
             WHERE p.name {op}
             ORDER BY p.name, d.hostname, i.device_id"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(&name)
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

    async fn history(&self, device_id: &str, since: i64) -> Result<Vec<(i64, Change)>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, kind, subject, old_value, new_value FROM inventory_changes
             WHERE device_id = $1 AND at >= $2 ORDER BY at, id",
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

struct PgInventoryTx {
    tx: Transaction<'static, Db>,
    device_id: String,
    /// The device's row in the package index, known once [`InventoryTx::put`] ran.
    device_num: Option<i64>,
}

impl PgInventoryTx {
    fn device_num(&self) -> Result<i64, StoreError> {
        self.device_num
            .ok_or_else(|| StoreError::Corrupt("package index written before the inventory".into()))
    }
}

#[async_trait]
impl InventoryTx for PgInventoryTx {
    async fn current(&mut self) -> Result<Option<Inventory>, StoreError> {
        let old = sqlx::query("SELECT device_num, body FROM inventory WHERE device_id = $1")
            .bind(&self.device_id)
            .fetch_optional(&mut *self.tx)
            .await?;
        let Some(r) = old else { return Ok(None) };
        Ok(
            match serde_json::from_str::<Inventory>(&r.try_get::<String, _>("body")?) {
                Ok(mut o) => {
                    o.software = packages_of(&mut self.tx, r.try_get("device_num")?).await?;
                    Some(o)
                }
                Err(_) => None,
            },
        )
    }

    async fn put(&mut self, hash: u64, inv: &Inventory, now: i64) -> Result<(), StoreError> {
        // The package list lives in the normalized tables only; the body holds the rest.
        let body = serde_json::to_string(&Inventory {
            software: Vec::new(),
            ..inv.clone()
        })
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let summary = serde_json::to_string(&inv.summary())
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let collected_at = i64::try_from(inv.collected_at_unix_ms).unwrap_or(i64::MAX);
        let device_num: i64 = sqlx::query(
            "INSERT INTO inventory (device_id, hash, collected_at, received_at, body, summary)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (device_id) DO UPDATE SET hash = excluded.hash,
                 collected_at = excluded.collected_at, received_at = excluded.received_at,
                 body = excluded.body, summary = excluded.summary
             RETURNING device_num",
        )
        .bind(&self.device_id)
        .bind(hash as i64)
        .bind(collected_at)
        .bind(now)
        .bind(&body)
        .bind(&summary)
        .fetch_one(&mut *self.tx)
        .await?
        .try_get("device_num")?;
        self.device_num = Some(device_num);
        Ok(())
    }

    async fn clear_packages(&mut self) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM device_packages WHERE device_num = $1")
            .bind(self.device_num()?)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn remove_packages(&mut self, chunk: &[&PackageKey]) -> Result<(), StoreError> {
        let sql = format!(
            "DELETE FROM device_packages WHERE device_num = $1 AND package_id IN
             (SELECT p.id FROM (VALUES {}) v JOIN packages p
              ON p.name = v.column1 AND p.version = v.column2
              AND p.arch = v.column3 AND p.source = v.column4)",
            tuple_placeholders(chunk.len(), 2)
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(self.device_num()?);
        for (n, v, a, s) in chunk {
            q = q.bind(n).bind(v).bind(a).bind(s);
        }
        q.execute(&mut *self.tx).await?;
        Ok(())
    }

    async fn add_packages(&mut self, chunk: &[&PackageKey]) -> Result<(), StoreError> {
        let device_num = self.device_num()?;
        let sql = format!(
            "INSERT INTO packages (name, version, arch, source) VALUES {}
             ON CONFLICT DO NOTHING",
            tuple_placeholders(chunk.len(), 1)
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for (n, v, a, s) in chunk {
            q = q.bind(n).bind(v).bind(a).bind(s);
        }
        q.execute(&mut *self.tx).await?;
        let sql = format!(
            "INSERT INTO device_packages (device_num, package_id)
             SELECT $1, p.id FROM (VALUES {}) v JOIN packages p
             ON p.name = v.column1 AND p.version = v.column2
             AND p.arch = v.column3 AND p.source = v.column4
             ON CONFLICT DO NOTHING",
            tuple_placeholders(chunk.len(), 2)
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(device_num);
        for (n, v, a, s) in chunk {
            q = q.bind(n).bind(v).bind(a).bind(s);
        }
        q.execute(&mut *self.tx).await?;
        Ok(())
    }

    async fn append_changes(&mut self, changes: &[Change], now: i64) -> Result<(), StoreError> {
        for c in changes {
            sqlx::query(
                "INSERT INTO inventory_changes (device_id, at, kind, subject, old_value, new_value)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&self.device_id)
            .bind(now)
            .bind(c.kind.as_str())
            .bind(&c.subject)
            .bind(&c.old)
            .bind(&c.new)
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }
}

/// The packages of one device, from the normalized tables.
async fn packages_of(
    conn: &mut sqlx::PgConnection,
    device_num: i64,
) -> Result<Vec<Package>, StoreError> {
    let rows = sqlx::query(
        "SELECT p.name, p.version, p.arch, p.source FROM device_packages dp
         JOIN packages p ON p.id = dp.package_id WHERE dp.device_num = $1 ORDER BY p.name, p.arch",
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
                source: crate::store::parse_source(&source),
            })
        })
        .collect()
}

/// A glob (`*` any run of characters, `?` one) as a LIKE pattern, escaping LIKE's own wildcards
/// and its escape character (`\\`).
fn glob_to_like(glob: &str) -> String {
    let mut like = String::with_capacity(glob.len() + 4);
    for c in glob.chars() {
        match c {
            '*' => like.push('%'),
            '?' => like.push('_'),
            '%' | '_' | '\\' => {
                like.push('\\');
                like.push(c);
            }
            c => like.push(c),
        }
    }
    like
}

#[cfg(test)]
mod tests {
    #[test]
    fn globs_become_escaped_like_patterns() {
        assert_eq!(super::glob_to_like("lib*-dev"), "lib%-dev");
        assert_eq!(super::glob_to_like("a_b%c\\*"), "a\\_b\\%c\\\\%");
        assert_eq!(super::glob_to_like("python3.?"), "python3._");
    }
}
