//! Custom roles of an organization.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::audit::AuditEntry;
use super::{now, Store, StoreError};
use crate::auth::TenantCtx;
use crate::db::{on_conn, Access};
use crate::domain::DomainError;
use crate::ids::{OrgId, RoleId};
use crate::rbac::Permission;
use crate::vocab::JsonText;

/// A custom role.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Role {
    /// Id (`rol_…`), used as the role of members and invitations.
    pub id: RoleId,
    /// Owning organization.
    pub org_id: OrgId,
    /// Name, unique in the organization.
    pub name: String,
    /// Description.
    pub description: String,
    /// Permissions from the catalog.
    #[schema(value_type = Vec<String>)]
    pub permissions: Vec<Permission>,
    /// Created at.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: RoleId,
    org_id: OrgId,
    name: String,
    description: String,
    permissions: JsonText<Vec<Permission>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl Row {
    fn into_role(self) -> Result<Role, StoreError> {
        Ok(Role {
            id: self.id,
            org_id: self.org_id,
            name: self.name,
            description: self.description,
            permissions: self.permissions.0,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

const COLUMNS: &str = "id, org_id, name, description, permissions, created_at, updated_at";

fn name_taken(e: sqlx::Error) -> StoreError {
    StoreError::unique(e, DomainError::NameTaken)
}

impl Store {
    /// Creates a custom role (permissions already validated against the catalog).
    pub async fn create_role(
        &self,
        ctx: &TenantCtx,
        name: &str,
        description: &str,
        permissions: &[Permission],
    ) -> Result<Role, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        let sql = format!(
            "INSERT INTO roles (org_id, id, name, description, permissions, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING {COLUMNS}"
        );
        let row: Row = on_conn!(tx.conn(), c => sqlx::query_as(&sql)
            .bind(ctx.org_id())
            .bind(RoleId::new())
            .bind(name)
            .bind(description)
            .bind(JsonText(permissions))
            .bind(now())
            .fetch_one(&mut *c)
            .await)
        .map_err(name_taken)?;
        let entry = AuditEntry::new("role.created", "role", row.id)
            .with_metadata(serde_json::json!({ "name": name, "permissions": permissions }));
        tx.audit(entry).await?;
        tx.commit().await?;
        row.into_role()
    }

    /// The organization's custom roles, by name.
    pub async fn list_roles(&self, ctx: &TenantCtx) -> Result<Vec<Role>, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Read).await?;
        let sql = format!("SELECT {COLUMNS} FROM roles WHERE org_id = $1 ORDER BY name");
        let rows: Vec<Row> = on_conn!(tx.conn(), c => sqlx::query_as(&sql).bind(ctx.org_id()).fetch_all(&mut *c).await)?;
        tx.commit().await?;
        rows.into_iter().map(Row::into_role).collect()
    }

    /// One custom role.
    pub async fn get_role(&self, ctx: &TenantCtx, id: RoleId) -> Result<Role, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Read).await?;
        let sql = format!("SELECT {COLUMNS} FROM roles WHERE org_id = $1 AND id = $2");
        let row: Option<Row> = on_conn!(tx.conn(), c => sqlx::query_as(&sql).bind(ctx.org_id()).bind(id).fetch_optional(&mut *c).await)?;
        tx.commit().await?;
        row.ok_or(StoreError::NotFound)?.into_role()
    }

    /// Changes a custom role; members holding it get the new permissions at once.
    pub async fn update_role(
        &self,
        ctx: &TenantCtx,
        id: RoleId,
        name: Option<&str>,
        description: Option<&str>,
        permissions: Option<&[Permission]>,
    ) -> Result<Role, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        let sql = format!(
            "UPDATE roles SET name = coalesce($3, name), description = coalesce($4, description), \
             permissions = coalesce($5, permissions), updated_at = $6 WHERE org_id = $1 AND id = $2 RETURNING {COLUMNS}"
        );
        let perms = permissions.map(JsonText);
        let row: Option<Row> = on_conn!(tx.conn(), c => sqlx::query_as(&sql)
            .bind(ctx.org_id())
            .bind(id)
            .bind(name)
            .bind(description)
            .bind(&perms)
            .bind(now())
            .fetch_optional(&mut *c)
            .await)
        .map_err(name_taken)?;
        let row = row.ok_or(StoreError::NotFound)?;
        let entry = AuditEntry::new("role.updated", "role", id)
            .with_metadata(serde_json::json!({ "name": name, "permissions": permissions }));
        tx.audit(entry).await?;
        tx.commit().await?;
        row.into_role()
    }

    /// Deletes a custom role nobody holds.
    pub async fn delete_role(&self, ctx: &TenantCtx, id: RoleId) -> Result<(), StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        let used: i64 = on_conn!(tx.conn(), c => sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM memberships WHERE org_id = $1 AND custom_role_id = $2) \
                  + (SELECT count(*) FROM workspace_roles WHERE org_id = $1 AND custom_role_id = $2) \
                  + (SELECT count(*) FROM invitations WHERE org_id = $1 AND custom_role_id = $2)",
        )
        .bind(ctx.org_id())
        .bind(id)
        .fetch_one(&mut *c)
        .await)?;
        if used > 0 {
            return Err(DomainError::RoleInUse.into());
        }
        let n = on_conn!(tx.conn(), c => sqlx::query("DELETE FROM roles WHERE org_id = $1 AND id = $2")
            .bind(ctx.org_id())
            .bind(id)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        tx.audit(AuditEntry::new("role.deleted", "role", id))
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
