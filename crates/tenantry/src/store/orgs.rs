//! Organizations (tenants).

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::audit::{self, AuditEntry};
use super::{now, page_size, Store, StoreError};
use crate::auth::{Actor, Operator, RequestMeta, TenantCtx};
use crate::db::{on_conn, Access, Scope, Tx};
use crate::domain::{DisplayName, DomainError, Slug};
use crate::ids::OrgId;
use crate::rbac::Plan;
use crate::vocab::text_enum;

text_enum! {
    /// Whether an organization is in service.
    pub enum OrgStatus {
        /// In service.
        Active => "active",
        /// Suspended by the operator.
        Suspended => "suspended",
    }
}

/// An organization.
#[derive(Clone, Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Organization {
    /// Id.
    pub id: OrgId,
    /// Display name.
    pub name: String,
    /// Unique URL-safe name.
    pub slug: String,
    /// `free`, `pro` or `enterprise`.
    #[schema(value_type = String)]
    pub plan: Plan,
    /// `active` or `suspended`.
    #[schema(value_type = String)]
    pub status: OrgStatus,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, name, slug, plan, status, created_at, updated_at";

/// A new organization.
#[derive(Clone, Debug)]
pub struct NewOrg {
    /// Display name.
    pub name: DisplayName,
    /// Unique slug.
    pub slug: Slug,
}

impl Store {
    /// Creates an organization on behalf of an operator, audited in the same transaction.
    pub async fn create_org(&self, by: &Operator, new: NewOrg) -> Result<Organization, StoreError> {
        let id = OrgId::new();
        // The transaction is scoped to the organization it creates.
        let mut tx = self.db().begin(Scope::Tenant(id), Access::Write).await?;
        let org = insert_org(&mut tx, id, &new, &Operator::actor(), by.meta()).await?;
        tx.commit().await?;
        Ok(org)
    }

    /// The caller's organization.
    pub async fn get_org(&self, ctx: &TenantCtx) -> Result<Organization, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Read).await?;
        let sql = format!("SELECT {COLUMNS} FROM organizations WHERE id = $1");
        let org: Option<Organization> = on_conn!(tx.conn(), c => sqlx::query_as(&sql)
            .bind(ctx.org_id())
            .fetch_optional(&mut *c)
            .await)?;
        tx.commit().await?;
        org.ok_or(StoreError::NotFound)
    }

    /// Every organization, by id, for the operator API; with `query`, only those whose
    /// name, slug or a member's email contains it (case-insensitive).
    pub async fn list_all_orgs(
        &self,
        _by: &Operator,
        query: Option<&str>,
        after: Option<OrgId>,
        limit: Option<u32>,
    ) -> Result<Vec<Organization>, StoreError> {
        let pattern = query.map(|q| {
            let escaped = q
                .trim()
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        });
        let mut tx = self.db().begin(Scope::System, Access::Read).await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM organizations o WHERE ($1 IS NULL OR o.id > $1) AND ($3 IS NULL \
               OR lower(o.name) LIKE $3 ESCAPE '\\' OR o.slug LIKE $3 ESCAPE '\\' \
               OR EXISTS (SELECT 1 FROM memberships m JOIN users u ON u.id = m.user_id \
                          WHERE m.org_id = o.id AND lower(u.email) LIKE $3 ESCAPE '\\')) \
             ORDER BY o.id LIMIT $2"
        );
        let orgs: Vec<Organization> = on_conn!(tx.conn(), c => sqlx::query_as(&sql)
            .bind(after)
            .bind(page_size(limit))
            .bind(pattern.as_deref())
            .fetch_all(&mut *c)
            .await)?;
        tx.commit().await?;
        Ok(orgs)
    }
}

/// Inserts organization `id` and its `organization.created` record; the transaction must
/// be scoped to `id`.
pub(super) async fn insert_org(
    tx: &mut Tx,
    id: OrgId,
    new: &NewOrg,
    actor: &Actor,
    meta: &RequestMeta,
) -> Result<Organization, StoreError> {
    let sql = format!(
        "INSERT INTO organizations (id, name, slug, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $4) RETURNING {COLUMNS}"
    );
    let org: Organization = on_conn!(tx.conn(), c => sqlx::query_as(&sql)
        .bind(id)
        .bind(new.name.as_str())
        .bind(new.slug.as_str())
        .bind(now())
        .fetch_one(&mut *c)
        .await)
    .map_err(|e| StoreError::unique(e, DomainError::SlugTaken))?;
    let entry = AuditEntry::new("organization.created", "organization", id)
        .with_metadata(serde_json::json!({ "name": org.name, "slug": org.slug }));
    audit::append(tx, id, actor, meta, entry).await?;
    Ok(org)
}
