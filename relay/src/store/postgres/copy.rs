//! PostgreSQL side of copying whole tables ([`crate::store::copy`]).

use super::Postgres;
use crate::store::StoreError;
use crate::store::backend::{CopyStore, ExportTx, ImportTx};
use crate::store::copy::{Kind, Row, SchemaColumn, Table, Value, bind_value};
use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Postgres as Db, Row as _, Transaction};

#[async_trait]
impl CopyStore for Postgres {
    async fn schema(&self) -> Result<Vec<SchemaColumn>, StoreError> {
        let rows = sqlx::query(
            "SELECT table_name::text AS t, column_name::text AS c, data_type::text AS ty
             FROM information_schema.columns
             WHERE table_schema = current_schema()
             ORDER BY table_name, ordinal_position",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SchemaColumn {
                    table: r.try_get("t")?,
                    column: r.try_get("c")?,
                    ty: r.try_get("ty")?,
                })
            })
            .collect()
    }

    async fn begin_export(&self) -> Result<Box<dyn ExportTx>, StoreError> {
        // One snapshot for every table, while the relays go on writing.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        Ok(Box::new(PgCopy { tx }))
    }

    async fn begin_import(&self) -> Result<Box<dyn ImportTx>, StoreError> {
        // A relay writing meanwhile would make the final counts differ, and nothing is
        // committed then.
        let tx = self.pool.begin().await?;
        Ok(Box::new(PgCopy { tx }))
    }
}

/// Either side of a copy: one transaction.
struct PgCopy {
    tx: Transaction<'static, Db>,
}

impl PgCopy {
    async fn count_rows(&mut self, table: &Table) -> Result<u64, StoreError> {
        let sql = format!("SELECT COUNT(*) FROM {}", table.name);
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_one(&mut *self.tx)
            .await?;
        u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("{}: count {n}", table.name)))
    }
}

fn read(row: &PgRow, table: &Table) -> Result<Row, StoreError> {
    table
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            Ok(match c.kind {
                Kind::Int => Value::Int(row.try_get(i)?),
                Kind::Text => Value::Text(row.try_get(i)?),
                Kind::Blob => Value::Blob(row.try_get(i)?),
                Kind::Bool => Value::Bool(row.try_get(i)?),
            })
        })
        .collect()
}

#[async_trait]
impl ExportTx for PgCopy {
    async fn count(&mut self, table: &Table) -> Result<u64, StoreError> {
        self.count_rows(table).await
    }

    async fn rows(
        &mut self,
        table: &Table,
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        let sql = table.select_sql(after.is_some(), limit, |i| format!("${i}"));
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for v in after.unwrap_or_default() {
            q = bind_value!(q, v);
        }
        let rows = q.fetch_all(&mut *self.tx).await?;
        rows.iter().map(|r| read(r, table)).collect()
    }

    async fn end(self: Box<Self>) -> Result<(), StoreError> {
        Ok(self.tx.rollback().await?)
    }
}

#[async_trait]
impl ImportTx for PgCopy {
    async fn count(&mut self, table: &Table) -> Result<u64, StoreError> {
        self.count_rows(table).await
    }

    async fn insert(&mut self, table: &Table, rows: &[Row]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let sql = table.insert_sql(rows.len(), |i| format!("${i}"));
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for v in rows.iter().flatten() {
            q = bind_value!(q, v);
        }
        q.execute(&mut *self.tx).await?;
        Ok(())
    }

    /// A table whose ids come from a sequence: the sequence goes on after the largest copied id.
    async fn finish(&mut self, table: &Table) -> Result<(), StoreError> {
        let Some(col) = table.serial else {
            return Ok(());
        };
        let t = table.name;
        let sql = format!(
            "SELECT setval(pg_get_serial_sequence('{t}', '{col}'),
                           COALESCE((SELECT MAX({col}) FROM {t}), 0) + 1, false)"
        );
        sqlx::query(AssertSqlSafe(sql))
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        Ok(self.tx.commit().await?)
    }
}
