//! SCIM tokens: per organization, stored as a public prefix and the SHA-256 of the whole
//! secret.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::TenantCtx;
use crate::db::{on_conn, Access, Scope};
use crate::domain::DomainError;
use crate::ids::{OrgId, ScimTokenId, UserId};
use crate::rbac::Plan;
use crate::store::audit::AuditEntry;
use crate::store::orgs::OrgStatus;
use crate::store::{now, Store, StoreError};

/// A SCIM token as listed (never with its secret or hash).
#[derive(Clone, Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct ScimToken {
    /// Id.
    pub id: ScimTokenId,
    /// Display name.
    pub name: String,
    /// Public start of the secret (`scim_…`), to recognise the token.
    pub prefix: String,
    /// The user who created it.
    pub created_by: Option<UserId>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Expiry, when it has one.
    pub expires_at: Option<DateTime<Utc>>,
    /// Last successful use (recorded at most once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// Revocation time.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A token as authentication needs it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ScimTokenCredential {
    /// Id.
    pub id: ScimTokenId,
    /// Organization.
    pub org_id: OrgId,
    /// SHA-256 of the secret.
    pub secret_hash: String,
    /// Expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// Revocation.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Last use.
    pub last_used_at: Option<DateTime<Utc>>,
    /// The organization's plan.
    pub plan: Plan,
    /// The operator's feature flag overrides for the organization.
    pub feature_overrides: crate::features::Overrides,
    /// The organization's status.
    pub org_status: OrgStatus,
}

/// An organization's plan, status and flag overrides, for the deployment-wide credential.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct OrgStanding {
    /// The plan.
    pub plan: Plan,
    /// The status.
    pub status: OrgStatus,
    /// The operator's feature flag overrides.
    pub feature_overrides: crate::features::Overrides,
}

const COLUMNS: &str =
    "id, name, prefix, created_by, created_at, expires_at, last_used_at, revoked_at";

impl Store {
    /// Stores a new SCIM token of the caller's organization, audited.
    pub async fn create_scim_token(
        &self,
        ctx: &TenantCtx,
        created_by: Option<UserId>,
        name: &str,
        (prefix, secret_hash): (&str, &str),
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<ScimToken, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        let sql = format!(
            "INSERT INTO scim_tokens (org_id, id, name, prefix, secret_hash, created_by, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"
        );
        let token: ScimToken = on_conn!(tx.conn(), c => sqlx::query_as(&sql)
            .bind(ctx.org_id())
            .bind(ScimTokenId::new())
            .bind(name)
            .bind(prefix)
            .bind(secret_hash)
            .bind(created_by)
            .bind(now())
            .bind(expires_at)
            .fetch_one(&mut *c)
            .await)
        .map_err(|e| StoreError::unique(e, DomainError::ApiKeyPrefixTaken))?;
        let entry = AuditEntry::new("scim_token.created", "scim_token", token.id).with_metadata(
            serde_json::json!({ "name": token.name, "prefix": token.prefix, "expires_at": token.expires_at }),
        );
        tx.audit(entry).await?;
        tx.commit().await?;
        Ok(token)
    }

    /// The organization's SCIM tokens, newest first (revoked ones included).
    pub async fn list_scim_tokens(&self, ctx: &TenantCtx) -> Result<Vec<ScimToken>, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Read).await?;
        let sql = format!("SELECT {COLUMNS} FROM scim_tokens WHERE org_id = $1 ORDER BY id DESC");
        let rows: Vec<ScimToken> = on_conn!(tx.conn(), c => sqlx::query_as(&sql)
            .bind(ctx.org_id())
            .fetch_all(&mut *c)
            .await)?;
        tx.commit().await?;
        Ok(rows)
    }

    /// Revokes a SCIM token at once (idempotent), audited the first time.
    pub async fn revoke_scim_token(
        &self,
        ctx: &TenantCtx,
        id: ScimTokenId,
    ) -> Result<ScimToken, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        let sql = format!(
            "UPDATE scim_tokens SET revoked_at = $3 WHERE org_id = $1 AND id = $2 AND revoked_at IS NULL \
             RETURNING {COLUMNS}"
        );
        let revoked: Option<ScimToken> = on_conn!(tx.conn(), c => sqlx::query_as(&sql)
            .bind(ctx.org_id())
            .bind(id)
            .bind(now())
            .fetch_optional(&mut *c)
            .await)?;
        let token = match revoked {
            Some(token) => {
                let entry = AuditEntry::new("scim_token.revoked", "scim_token", id).with_metadata(
                    serde_json::json!({ "name": token.name, "prefix": token.prefix }),
                );
                tx.audit(entry).await?;
                token
            }
            None => {
                let sql =
                    format!("SELECT {COLUMNS} FROM scim_tokens WHERE org_id = $1 AND id = $2");
                let found: Option<ScimToken> = on_conn!(tx.conn(), c => sqlx::query_as(&sql)
                    .bind(ctx.org_id())
                    .bind(id)
                    .fetch_optional(&mut *c)
                    .await)?;
                found.ok_or(StoreError::NotFound)?
            }
        };
        tx.commit().await?;
        Ok(token)
    }

    /// The SCIM token with public `prefix`, whatever its organization (the credential
    /// names it), with its organization's plan and status.
    pub async fn scim_token_credential(
        &self,
        prefix: &str,
    ) -> Result<Option<ScimTokenCredential>, StoreError> {
        let mut tx = self.db().begin(Scope::System, Access::Read).await?;
        let row: Option<ScimTokenCredential> = on_conn!(tx.conn(), c => sqlx::query_as(
            "SELECT t.id, t.org_id, t.secret_hash, t.expires_at, t.revoked_at, t.last_used_at, \
             o.plan, o.status AS org_status, o.feature_overrides \
             FROM scim_tokens t JOIN organizations o ON o.id = t.org_id WHERE t.prefix = $1",
        )
        .bind(prefix)
        .fetch_optional(&mut *c)
        .await)?;
        tx.commit().await?;
        Ok(row)
    }

    /// Records that a token was used at `at` (callers skip it when the recorded use is
    /// recent, so this is not a write per request).
    pub async fn touch_scim_token(
        &self,
        id: ScimTokenId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.db().begin(Scope::System, Access::Write).await?;
        on_conn!(tx.conn(), c => sqlx::query(
            "UPDATE scim_tokens SET last_used_at = $2 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
        )
        .bind(id)
        .bind(at)
        .execute(&mut *c)
        .await
        .map(|_| ()))?;
        tx.commit().await?;
        Ok(())
    }

    /// The plan and status of `org`, if it exists (for the deployment-wide credential,
    /// which names the organization in `X-Org-Id`).
    pub async fn org_standing(&self, org: OrgId) -> Result<Option<OrgStanding>, StoreError> {
        let mut tx = self.db().begin(Scope::System, Access::Read).await?;
        let row: Option<OrgStanding> = on_conn!(tx.conn(), c => sqlx::query_as(
            "SELECT plan, status, feature_overrides FROM organizations WHERE id = $1",
        )
        .bind(org)
        .fetch_optional(&mut *c)
        .await)?;
        tx.commit().await?;
        Ok(row)
    }
}
