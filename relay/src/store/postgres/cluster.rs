//! PostgreSQL side of the cluster tables (migrations/postgres/0002_cluster.sql).

use super::Postgres;
use crate::store::StoreError;
use crate::store::cluster::{Changes, ClusterStore, HeldLock, LeaseChange, LeaseRow, RelayRow};
use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection};
use std::time::Duration;

#[async_trait]
impl ClusterStore for Postgres {
    async fn relay_alive(
        &self,
        id: &str,
        addr: &str,
        started: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO relays (id, public_addr, started_at, seen_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET public_addr = EXCLUDED.public_addr,
                 started_at = EXCLUDED.started_at, seen_at = EXCLUDED.seen_at",
        )
        .bind(id)
        .bind(addr)
        .bind(started)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn relays(&self, since: i64) -> Result<Vec<RelayRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, public_addr, started_at, seen_at FROM relays WHERE seen_at >= $1
             ORDER BY id",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RelayRow {
                    id: r.try_get("id")?,
                    public_addr: r.try_get("public_addr")?,
                    started_at: r.try_get("started_at")?,
                    seen_at: r.try_get("seen_at")?,
                })
            })
            .collect()
    }

    async fn change_leases(
        &self,
        relay: &str,
        changes: &[LeaseChange],
        expires: i64,
    ) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for c in changes {
            match c {
                LeaseChange::Take { device, epoch } => {
                    sqlx::query(
                        "INSERT INTO leases (device_id, relay_id, epoch, expires_at)
                         VALUES ($1, $2, $3, $4)
                         ON CONFLICT (device_id) DO UPDATE SET relay_id = EXCLUDED.relay_id,
                             epoch = EXCLUDED.epoch, expires_at = EXCLUDED.expires_at",
                    )
                    .bind(device)
                    .bind(relay)
                    .bind(epoch)
                    .bind(expires)
                    .execute(&mut *tx)
                    .await?;
                }
                LeaseChange::Give { device, epoch } => {
                    sqlx::query(
                        "DELETE FROM leases WHERE device_id = $1 AND relay_id = $2 AND epoch = $3",
                    )
                    .bind(device)
                    .bind(relay)
                    .bind(epoch)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn renew_leases(&self, relay: &str, expires: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("UPDATE leases SET expires_at = $1 WHERE relay_id = $2")
            .bind(expires)
            .bind(relay)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn clear_leases(&self, relay: &str) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM leases WHERE relay_id = $1")
            .bind(relay)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// A session-level advisory lock on a connection taken out of the pool: PostgreSQL
    /// releases it when that connection ends, however the relay ends.
    async fn try_lock(&self, name: &str) -> Result<Option<Box<dyn HeldLock>>, StoreError> {
        let mut conn = self.pool.acquire().await?.detach();
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(super::lock_key("leader", name))
            .fetch_one(&mut conn)
            .await?;
        if got {
            Ok(Some(Box::new(PgLock { conn: Some(conn) })))
        } else {
            let _ = conn.close().await;
            Ok(None)
        }
    }

    async fn changes(&self) -> Result<Box<dyn Changes>, StoreError> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(CHANNEL).await?;
        Ok(Box::new(Listener(listener)))
    }

    async fn leases(&self, now: i64, alive_since: i64) -> Result<Vec<LeaseRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT l.device_id, l.relay_id FROM leases l JOIN relays r ON r.id = l.relay_id
             WHERE l.expires_at > $1 AND r.seen_at >= $2",
        )
        .bind(now)
        .bind(alive_since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LeaseRow {
                    device_id: r.try_get("device_id")?,
                    relay_id: r.try_get("relay_id")?,
                })
            })
            .collect()
    }
}

/// A held advisory lock: the connection it lives on.
struct PgLock {
    conn: Option<PgConnection>,
}

/// How long the lock's connection may take to answer before the lock counts as lost.
const LOCK_CHECK: Duration = Duration::from_secs(3);

#[async_trait]
impl HeldLock for PgLock {
    async fn still_held(&mut self) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        let alive = tokio::time::timeout(LOCK_CHECK, conn.ping())
            .await
            .is_ok_and(|r| r.is_ok());
        if !alive {
            // Whatever the server thinks, this relay no longer counts on the lock: dropping the
            // connection makes sure the server lets it go too.
            self.conn = None;
        }
        alive
    }
}

/// The `LISTEN`/`NOTIFY` channel of changes every relay must hear of; the payload says what
/// changed ([`REVOCATIONS`]).
const CHANNEL: &str = "tether_changes";
/// A certificate was revoked.
pub const REVOCATIONS: &str = "revocations";

impl Postgres {
    /// Wakes the relays listening ([`ClusterStore::changes`]). Only a wake-up, sent after the
    /// change is committed: a server without `NOTIFY` (some PostgreSQL-compatible engines), or
    /// a listener reconnecting meanwhile, leaves the relays to their polling.
    pub(super) async fn notify(&self, what: &str) {
        if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(what)
            .execute(&self.pool)
            .await
        {
            tracing::debug!("NOTIFY {CHANNEL} failed: {e}");
        }
    }
}

struct Listener(PgListener);

#[async_trait]
impl Changes for Listener {
    async fn next(&mut self) -> Result<Option<String>, StoreError> {
        Ok(self.0.try_recv().await?.map(|n| n.payload().to_string()))
    }
}
