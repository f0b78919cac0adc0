//! Workspaces inside an organization.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::audit::AuditEntry;
use super::members::{RoleColumns, RoleGrant};
use super::{now, Store, StoreError};
use crate::auth::TenantCtx;
use crate::db::{on_conn, Access};
use crate::domain::{DisplayName, DomainError, Slug};
use crate::ids::{OrgId, UserId, WorkspaceId};
use crate::rbac::RoleRef;

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

/// A member's own role in a workspace.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct WorkspaceRoleLine {
    /// The member.
    pub user_id: UserId,
    /// Email.
    pub email: String,
    /// Name.
    pub name: String,
    /// A built-in role name (or the custom role's marker).
    pub role: String,
    /// The custom role, when it is one.
    pub custom_role_id: Option<crate::ids::RoleId>,
}

impl WorkspaceRoleLine {
    /// The role as forms carry it: a built-in name or a custom role id.
    pub fn role_value(&self) -> String {
        self.custom_role_id
            .map_or_else(|| self.role.clone(), |id| id.to_string())
    }
}

impl Store {
    /// Creates a workspace in the caller's organization.
    pub async fn create_workspace(
        &self,
        ctx: &TenantCtx,
        name: DisplayName,
        slug: Slug,
    ) -> Result<Workspace, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
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
        .map_err(|e| StoreError::unique(e, DomainError::SlugTaken))?;
        let entry = AuditEntry::new("workspace.created", "workspace", ws.id)
            .with_metadata(serde_json::json!({ "name": ws.name, "slug": ws.slug }));
        tx.audit(entry).await?;
        tx.commit().await?;
        Ok(ws)
    }

    /// One workspace of the caller's organization.
    pub async fn get_workspace(
        &self,
        ctx: &TenantCtx,
        id: WorkspaceId,
    ) -> Result<Workspace, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Read).await?;
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
        let mut tx = self.tenant_tx(ctx, Access::Read).await?;
        let sql = format!("SELECT {COLUMNS} FROM workspaces WHERE org_id = $1 ORDER BY slug");
        let list: Vec<Workspace> = on_conn!(tx.conn(), c => sqlx::query_as(&sql)
            .bind(ctx.org_id())
            .fetch_all(&mut *c)
            .await)?;
        tx.commit().await?;
        Ok(list)
    }
}

impl Store {
    /// Renames a workspace or changes its slug.
    pub async fn update_workspace(
        &self,
        ctx: &TenantCtx,
        id: WorkspaceId,
        name: Option<DisplayName>,
        slug: Option<Slug>,
    ) -> Result<Workspace, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        let sql = format!(
            "UPDATE workspaces SET name = coalesce($3, name), slug = coalesce($4, slug), updated_at = $5 \
             WHERE org_id = $1 AND id = $2 RETURNING {COLUMNS}"
        );
        let ws: Option<Workspace> = on_conn!(tx.conn(), c => sqlx::query_as(&sql)
            .bind(ctx.org_id())
            .bind(id)
            .bind(name.as_ref().map(DisplayName::as_str))
            .bind(slug.as_ref().map(Slug::as_str))
            .bind(now())
            .fetch_optional(&mut *c)
            .await)
        .map_err(|e| StoreError::unique(e, DomainError::SlugTaken))?;
        let ws = ws.ok_or(StoreError::NotFound)?;
        let entry = AuditEntry::new("workspace.updated", "workspace", id)
            .with_metadata(serde_json::json!({ "name": ws.name, "slug": ws.slug }));
        tx.audit(entry).await?;
        tx.commit().await?;
        Ok(ws)
    }

    /// Deletes a workspace (and its member overrides).
    pub async fn delete_workspace(
        &self,
        ctx: &TenantCtx,
        id: WorkspaceId,
    ) -> Result<(), StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        let n = on_conn!(tx.conn(), c => sqlx::query("DELETE FROM workspaces WHERE org_id = $1 AND id = $2")
            .bind(ctx.org_id())
            .bind(id)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        tx.audit(AuditEntry::new("workspace.deleted", "workspace", id))
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Gives a member a role in one workspace, on top of their organization role.
    pub async fn set_workspace_role(
        &self,
        ctx: &TenantCtx,
        ws: WorkspaceId,
        user: UserId,
        role: RoleRef,
    ) -> Result<(), StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        let (name, custom) = role.columns();
        on_conn!(tx.conn(), c => sqlx::query(
            "INSERT INTO workspace_roles (org_id, workspace_id, user_id, role, custom_role_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (org_id, workspace_id, user_id) DO UPDATE SET role = excluded.role, custom_role_id = excluded.custom_role_id",
        )
        .bind(ctx.org_id())
        .bind(ws)
        .bind(user)
        .bind(name)
        .bind(custom)
        .bind(now())
        .execute(&mut *c)
        .await
        .map(|_| ()))
        .map_err(|e| match &e {
            // The composite foreign keys reject a workspace, member or role of another tenant.
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
            _ => e.into(),
        })?;
        let entry = AuditEntry::new("workspace.member_role_set", "workspace", ws).with_metadata(
            serde_json::json!({ "user": user.to_string(), "role": role.to_string() }),
        );
        tx.audit(entry).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes a member's workspace role.
    pub async fn remove_workspace_role(
        &self,
        ctx: &TenantCtx,
        ws: WorkspaceId,
        user: UserId,
    ) -> Result<(), StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        let n = on_conn!(tx.conn(), c => sqlx::query("DELETE FROM workspace_roles WHERE org_id = $1 AND workspace_id = $2 AND user_id = $3")
            .bind(ctx.org_id())
            .bind(ws)
            .bind(user)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        let entry = AuditEntry::new("workspace.member_role_removed", "workspace", ws)
            .with_metadata(serde_json::json!({ "user": user.to_string() }));
        tx.audit(entry).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The members with a role of their own in workspace `ws`, by email: (user, email,
    /// name, role as a built-in name or a custom role id).
    pub async fn list_workspace_roles(
        &self,
        ctx: &TenantCtx,
        ws: WorkspaceId,
    ) -> Result<Vec<WorkspaceRoleLine>, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Read).await?;
        let rows: Vec<WorkspaceRoleLine> = on_conn!(tx.conn(), c => sqlx::query_as(
            "SELECT w.user_id, u.email, u.name, w.role, w.custom_role_id FROM workspace_roles w \
             JOIN users u ON u.id = w.user_id WHERE w.org_id = $1 AND w.workspace_id = $2 ORDER BY u.email",
        )
        .bind(ctx.org_id())
        .bind(ws)
        .fetch_all(&mut *c)
        .await)?;
        tx.commit().await?;
        Ok(rows)
    }

    /// A member's role in one workspace, with a custom role's permissions (JSON).
    pub async fn workspace_role(
        &self,
        ctx: &TenantCtx,
        ws: WorkspaceId,
        user: UserId,
    ) -> Result<Option<RoleGrant>, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Read).await?;
        let row: Option<RoleColumns> = on_conn!(tx.conn(), c => sqlx::query_as(
            "SELECT w.role, w.custom_role_id, r.permissions FROM workspace_roles w \
             LEFT JOIN roles r ON r.org_id = w.org_id AND r.id = w.custom_role_id \
             WHERE w.org_id = $1 AND w.workspace_id = $2 AND w.user_id = $3",
        )
        .bind(ctx.org_id())
        .bind(ws)
        .bind(user)
        .fetch_optional(&mut *c)
        .await)?;
        tx.commit().await?;
        row.map(RoleGrant::from_columns).transpose()
    }
}
