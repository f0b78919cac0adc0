//! Workspaces inside an organization.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::audit::{self, AuditEntry};
use super::{now, Store, StoreError};
use crate::auth::TenantCtx;
use crate::db::{on_conn, unique_violation, Access, Scope};
use crate::domain::{DisplayName, Slug};
use crate::ids::{OrgId, WorkspaceId};

/// A workspace.
#[derive(Clone, Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Workspace {
    /// Id.
    pub id: WorkspaceId,
    /// Owning organization.
    pub org_id: OrgId,
    /// Display name.
    pub name: String,
    /// Slug, unique within the organization.
    pub slug: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, org_id, name, slug, created_at, updated_at";

impl Store {
    /// Creates a workspace in the caller's organization.
    pub async fn create_workspace(
        &self,
        ctx: &TenantCtx,
        name: DisplayName,
        slug: Slug,
    ) -> Result<Workspace, StoreError> {
        let mut tx = self
            .db()
            .begin(Scope::Tenant(ctx.org_id()), Access::Write)
            .await?;
        let sql = format!(
            "INSERT INTO workspaces (org_id, id, name, slug, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING {COLUMNS}"
        );
        let ws: Workspace = on_conn!(tx.conn(), c => sqlx::query_as(&sql)
            .bind(ctx.org_id())
            .bind(WorkspaceId::new())
            .bind(name.as_str())
            .bind(slug.as_str())
            .bind(now())
            .fetch_one(&mut *c)
            .await)
        .map_err(|e| match unique_violation(&e) {
            Some(_) => StoreError::Conflict("slug_taken"),
            None => e.into(),
        })?;
        let entry = AuditEntry::new("workspace.created", "workspace", ws.id)
            .with_metadata(serde_json::json!({ "name": ws.name, "slug": ws.slug }));
        audit::append(&mut tx, ctx.org_id(), ctx.actor(), ctx.meta(), entry).await?;
        tx.commit().await?;
        Ok(ws)
    }

    /// One workspace of the caller's organization.
    pub async fn get_workspace(
        &self,
        ctx: &TenantCtx,
        id: WorkspaceId,
    ) -> Result<Workspace, StoreError> {
        let mut tx = self
            .db()
            .begin(Scope::Tenant(ctx.org_id()), Access::Read)
            .await?;
        let sql = format!("SELECT {COLUMNS} FROM workspaces WHERE org_id = $1 AND id = $2");
        let ws: Option<Workspace> = on_conn!(tx.conn(), c => sqlx::query_as(&sql)
            .bind(ctx.org_id())
            .bind(id)
            .fetch_optional(&mut *c)
            .await)?;
        tx.commit().await?;
        ws.ok_or(StoreError::NotFound)
    }

    /// The caller's organization's workspaces, by slug.
    pub async fn list_workspaces(&self, ctx: &TenantCtx) -> Result<Vec<Workspace>, StoreError> {
        let mut tx = self
            .db()
            .begin(Scope::Tenant(ctx.org_id()), Access::Read)
            .await?;
        let sql = format!("SELECT {COLUMNS} FROM workspaces WHERE org_id = $1 ORDER BY slug");
        let list: Vec<Workspace> = on_conn!(tx.conn(), c => sqlx::query_as(&sql)
            .bind(ctx.org_id())
            .fetch_all(&mut *c)
            .await)?;
        tx.commit().await?;
        Ok(list)
    }
}
