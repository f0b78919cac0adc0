//! The example tenant resource (`/v1/orgs/{org}/data`): the shape a SaaS builder copies
//! for their own tenant-owned data. Every query runs in the tenant's scope and filters on
//! `org_id`; changes are audited in the same transaction (or, for the hot write, the same
//! statement).

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::audit::{AuditEntry, NewRecord};
use super::{now, page_size, Store, StoreError};
use crate::auth::TenantCtx;
use crate::db::{on_conn, single_statement_tenant_read, single_statement_tenant_write, Access, Db};
use crate::ids::{DataItemId, OrgId};
use crate::vocab::JsonText;

/// An item.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct DataItem {
    /// Id.
    pub id: DataItemId,
    /// Owning organization.
    pub org_id: OrgId,
    /// Name.
    pub name: String,
    /// Any JSON value.
    pub value: serde_json::Value,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: DataItemId,
    org_id: OrgId,
    name: String,
    value: JsonText<serde_json::Value>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl Row {
    fn into_item(self) -> DataItem {
        DataItem {
            id: self.id,
            org_id: self.org_id,
            name: self.name,
            value: self.value.0,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

const COLUMNS: &str = "id, org_id, name, value, created_at, updated_at";

impl Store {
    /// Creates an item, with its audit record. The hot write: on PostgreSQL one statement in
    /// one round trip (see [`single_statement_tenant_write`]), atomic without an explicit
    /// transaction; a request with an idempotency key to claim takes the transaction path.
    pub async fn create_data_item(
        &self,
        ctx: &TenantCtx,
        name: &str,
        value: &serde_json::Value,
    ) -> Result<DataItem, StoreError> {
        let id = DataItemId::new();
        let at = now();
        let entry = AuditEntry::new("data_item.created", "data_item", id)
            .with_metadata(serde_json::json!({ "name": name }));
        if let Db::Postgres(pool) = self.db() {
            if !super::idempotency::claim_outstanding() {
                static SQL: LazyLock<String> = LazyLock::new(|| {
                    single_statement_tenant_write(&format!(
                        "item AS (INSERT INTO data_items (org_id, id, name, value, created_at, updated_at) \
                         SELECT $2, $3, $4, $5, $6, $6 FROM s WHERE s.scope IS NOT NULL RETURNING {COLUMNS}), \
                         {records}",
                        records = NewRecord::pg_ctes(6)
                    ), &format!("SELECT {COLUMNS} FROM item"))
                });
                let record = NewRecord::new(ctx.org_id(), ctx.actor(), ctx.meta(), entry);
                // A failed statement drops (`?`) its connection back to the pool.
                let mut conn = self.hot().take(pool).await?;
                let query = sqlx::query_as(&SQL)
                    .bind(ctx.org_id())
                    .bind(ctx.org_id())
                    .bind(id)
                    .bind(name)
                    .bind(value.to_string())
                    .bind(at);
                let row: Row = record.bind_pg(query).fetch_one(&mut *conn).await?;
                self.hot().give_back(conn, pool);
                return Ok(row.into_item());
            }
        }
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        let sql = format!(
            "INSERT INTO data_items (org_id, id, name, value, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING {COLUMNS}"
        );
        let row: Row = on_conn!(tx.conn(), c => sqlx::query_as(&sql)
            .bind(ctx.org_id())
            .bind(id)
            .bind(name)
            .bind(value.to_string())
            .bind(at)
            .fetch_one(&mut *c)
            .await)?;
        tx.audit(entry).await?;
        tx.commit().await?;
        Ok(row.into_item())
    }

    /// One item. The hot read: on PostgreSQL a single statement in one round trip (see
    /// [`single_statement_tenant_read`]), still under row-level security, on a connection
    /// kept between such reads ([`HotConnections`](crate::db::HotConnections)).
    pub async fn get_data_item(
        &self,
        ctx: &TenantCtx,
        id: DataItemId,
    ) -> Result<DataItem, StoreError> {
        let row: Option<Row> = match self.db() {
            Db::Postgres(pool) => {
                static SQL: LazyLock<String> = LazyLock::new(|| {
                    single_statement_tenant_read(&format!(
                        "SELECT {COLUMNS} FROM data_items WHERE org_id = $2 AND id = $3"
                    ))
                });
                // A failed statement drops (`?`) its connection back to the pool.
                let mut conn = self.hot().take(pool).await?;
                let row = sqlx::query_as(&SQL)
                    .bind(ctx.org_id())
                    .bind(ctx.org_id())
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?;
                self.hot().give_back(conn, pool);
                row
            }
            // One statement is its own consistent snapshot in SQLite: no BEGIN and COMMIT
            // round trips (the tenant filter is the query's own `org_id`), on a kept
            // connection (no release ping to its worker thread).
            Db::Sqlite(pool) => {
                static SQL: LazyLock<String> = LazyLock::new(|| {
                    format!("SELECT {COLUMNS} FROM data_items WHERE org_id = $1 AND id = $2")
                });
                // A failed statement drops (`?`) its connection back to the pool.
                let mut conn = self.hot_sqlite().take_kept(pool).await?;
                let row = sqlx::query_as(&SQL)
                    .bind(ctx.org_id())
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?;
                self.hot_sqlite().keep(conn, pool);
                row
            }
        };
        row.map(Row::into_item).ok_or(StoreError::NotFound)
    }

    /// Items newest first, older than `before` when given.
    pub async fn list_data_items(
        &self,
        ctx: &TenantCtx,
        before: Option<DataItemId>,
        limit: Option<u32>,
    ) -> Result<Vec<DataItem>, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Read).await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM data_items WHERE org_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        );
        let rows: Vec<Row> = on_conn!(tx.conn(), c => sqlx::query_as(&sql)
            .bind(ctx.org_id())
            .bind(before)
            .bind(page_size(limit))
            .fetch_all(&mut *c)
            .await)?;
        tx.commit().await?;
        Ok(rows.into_iter().map(Row::into_item).collect())
    }

    /// Deletes an item.
    pub async fn delete_data_item(
        &self,
        ctx: &TenantCtx,
        id: DataItemId,
    ) -> Result<(), StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        let n = on_conn!(tx.conn(), c => sqlx::query("DELETE FROM data_items WHERE org_id = $1 AND id = $2")
            .bind(ctx.org_id())
            .bind(id)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        let entry = AuditEntry::new("data_item.deleted", "data_item", id);
        tx.audit(entry).await?;
        tx.commit().await?;
        Ok(())
    }
}
