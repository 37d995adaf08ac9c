//! PostgreSQL backend: one database shared by several relays (`postgres://` store URL).
//!
//! One module per concern, each implementing its trait of [`super::backend`], mirroring the
//! SQLite modules query for query (`$n` placeholders). Where SQLite takes its write lock up
//! front (`BEGIN IMMEDIATE`), this backend locks what the transaction is about: the device's row
//! for an inventory replacement (`SELECT … FOR UPDATE`), a transaction-scoped advisory lock on
//! the technician's name for an enrollment or a revocation. Single-row rules (a token redeemed
//! once, one open alert per key) hold by conditional `UPDATE … RETURNING` and `ON CONFLICT`
//! under the default READ COMMITTED.

mod cluster;
mod copy;
mod health;
mod identity;
mod inventory;
mod sessions;

use super::StoreError;
use super::backend::Backend;
use async_trait::async_trait;
use sqlx::PgPool;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, SqlSafeStr, Transaction};
use std::time::Duration;

/// How long a query may wait for a connection (see `Postgres::open`).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(4);
/// Connections per relay: several relays share one server, whose default limit is 100.
const POOL_SIZE: u32 = 8;

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
            include_str!("../../../migrations/postgres/0001_init.sql"),
        ),
        m(
            2,
            "cluster",
            include_str!("../../../migrations/postgres/0002_cluster.sql"),
        ),
    ])
}

/// `($first,$first+1,$first+2,$first+3),…` for `n` tuples.
fn tuple_placeholders(n: usize, first: usize) -> String {
    let mut s = String::with_capacity(n * 20);
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        let p = first + 4 * i;
        s.push_str(&format!("(${},${},${},${})", p, p + 1, p + 2, p + 3));
    }
    s
}

/// A key for `pg_advisory_xact_lock`: what is locked (`scope`) and its name, hashed (FNV-1a)
/// here so the SQL needs no PostgreSQL-only hash function.
fn lock_key(scope: &str, name: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in scope.bytes().chain([0]).chain(name.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

/// Holds the advisory lock `(scope, name)` until the transaction ends.
async fn lock(
    tx: &mut Transaction<'static, sqlx::Postgres>,
    scope: &str,
    name: &str,
) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(lock_key(scope, name))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct Postgres {
    pool: PgPool,
}

impl Postgres {
    /// Connects to the database `url` names and brings its schema up to date.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let opts: PgConnectOptions = url.parse()?;
        // One connection first: a pool that cannot connect reports only that it timed out,
        // this says why (refused, authentication, no such database).
        opts.connect().await?.close().await?;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            // While the server is down a query waits this long (sqlx keeps reconnecting) before
            // failing: short enough that the relay's answer ("relay store unavailable") reaches
            // a client before its own hello timeout (10 s) gives up on the relay.
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(opts)
            .await?;
        // Several relays may start at once: sqlx's migrator takes an advisory lock itself.
        migrator().run(&pool).await?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl Backend for Postgres {
    async fn close(&self) {
        self.pool.close().await;
    }

    fn cluster(&self) -> Option<&dyn crate::store::cluster::ClusterStore> {
        Some(self)
    }

    /// Foreign keys are enforced by the server, and its storage checks itself; what is left to
    /// look at is what the relay keeps beside the keys: a device's package rows that point to a
    /// missing package (none, unless someone edited the tables by hand).
    async fn integrity_problems(&self) -> Result<Vec<String>, StoreError> {
        let mut problems = Vec::new();
        let orphans: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM device_packages dp
             WHERE NOT EXISTS (SELECT 1 FROM packages p WHERE p.id = dp.package_id)",
        )
        .fetch_one(&self.pool)
        .await?;
        if orphans > 0 {
            problems.push(format!("{orphans} package rows point to no package"));
        }
        let invalid: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = current_schema() AND NOT i.indisvalid",
        )
        .fetch_one(&self.pool)
        .await?;
        if invalid > 0 {
            problems.push(format!("{invalid} invalid indexes"));
        }
        Ok(problems)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{Store, StoreUrl};

    #[test]
    fn placeholders_number_on() {
        assert_eq!(
            super::tuple_placeholders(2, 2),
            "($2,$3,$4,$5),($6,$7,$8,$9)"
        );
        assert_ne!(
            super::lock_key("tech", "ana"),
            super::lock_key("tech", "bo")
        );
    }

    /// Reopening (a second relay, or a restart) migrates idempotently.
    #[tokio::test]
    async fn reopens() {
        let url = StoreUrl::Postgres(tether_pg::database("reopens"));
        let store = Store::open(&url).await.unwrap();
        store
            .set_policy_flag("lab", crate::store::PolicyFlag::Unattended, true, 1)
            .await
            .unwrap();
        let again = Store::open(&url).await.unwrap();
        assert!(
            again
                .policy_flag("lab", crate::store::PolicyFlag::Unattended)
                .await
                .unwrap()
        );
        assert!(again.integrity_problems().await.unwrap().is_empty());
        store.close().await;
        again.close().await;
    }
}
