//! SQLite side of copying whole tables ([`crate::store::copy`]).

use super::Sqlite;
use crate::store::StoreError;
use crate::store::backend::{CopyStore, ExportTx, ImportTx};
use crate::store::copy::{Kind, Row, SchemaColumn, Table, Value, bind_value};
use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, Row as _, Sqlite as Db, Transaction};

#[async_trait]
impl CopyStore for Sqlite {
    async fn schema(&self) -> Result<Vec<SchemaColumn>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.name AS t, p.name AS c, lower(p.type) AS ty
             FROM sqlite_master m JOIN pragma_table_info(m.name) p
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
             ORDER BY m.name, p.cid",
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
        // Deferred: the snapshot is taken at the first read and kept until the end (WAL lets
        // the relay go on writing meanwhile).
        let tx = self.pool.begin().await?;
        Ok(Box::new(SqliteCopy { tx }))
    }

    async fn begin_import(&self) -> Result<Box<dyn ImportTx>, StoreError> {
        // IMMEDIATE: the emptiness check and the copy see no other writer slip in between.
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok(Box::new(SqliteCopy { tx }))
    }
}

/// Either side of a copy: one transaction.
struct SqliteCopy {
    tx: Transaction<'static, Db>,
}

impl SqliteCopy {
    async fn count_rows(&mut self, table: &Table) -> Result<u64, StoreError> {
        let sql = format!("SELECT COUNT(*) FROM {}", table.name);
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_one(&mut *self.tx)
            .await?;
        u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("{}: count {n}", table.name)))
    }
}

fn read(row: &SqliteRow, table: &Table) -> Result<Row, StoreError> {
    table
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            Ok(match c.kind {
                Kind::Int => Value::Int(row.try_get(i)?),
                Kind::Text => Value::Text(row.try_get(i)?),
                Kind::Blob => Value::Blob(row.try_get(i)?),
                Kind::Bool => Value::Bool(row.try_get::<Option<i64>, _>(i)?.map(|v| v != 0)),
            })
        })
        .collect()
}

#[async_trait]
impl ExportTx for SqliteCopy {
    async fn count(&mut self, table: &Table) -> Result<u64, StoreError> {
        self.count_rows(table).await
    }

    async fn rows(
        &mut self,
        table: &Table,
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        let sql = table.select_sql(after.is_some(), limit, |_| "?".into());
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
impl ImportTx for SqliteCopy {
    async fn count(&mut self, table: &Table) -> Result<u64, StoreError> {
        self.count_rows(table).await
    }

    async fn insert(&mut self, table: &Table, rows: &[Row]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let sql = table.insert_sql(rows.len(), |_| "?".into());
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for v in rows.iter().flatten() {
            q = bind_value!(q, v);
        }
        q.execute(&mut *self.tx).await?;
        Ok(())
    }

    /// Nothing to do: SQLite continues an `INTEGER PRIMARY KEY` after its largest value, and an
    /// `AUTOINCREMENT` one after the largest it ever held, copied ids included.
    async fn finish(&mut self, _: &Table) -> Result<(), StoreError> {
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        Ok(self.tx.commit().await?)
    }
}
