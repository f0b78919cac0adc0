//! API keys: stored as a public prefix and the SHA-256 of the whole secret, never the
//! secret itself.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::audit::AuditEntry;
use super::{now, Store, StoreError};
use crate::auth::TenantCtx;
use crate::db::{on_conn, Access, Conn, Scope, Tx};
use crate::domain::DomainError;
use crate::ids::{ApiKeyId, OrgId, UserId};
use crate::rbac::{Permission, Permissions, Plan};
use crate::vocab::JsonText;

/// An API key as listed (never with its secret or hash).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ApiKey {
    /// Id.
    pub id: ApiKeyId,
    /// Owning organization.
    pub org_id: OrgId,
    /// Display name.
    pub name: String,
    /// Public start of the secret (`tk_…`), to recognise the key.
    pub prefix: String,
    /// Permissions the key holds.
    #[schema(value_type = Vec<String>)]
    pub scopes: Vec<Permission>,
    /// The key's own rate limit, when it has one.
    pub rate_limit: Option<KeyRateLimit>,
    /// The user who created it.
    pub created_by: Option<UserId>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Expiry, when it has one.
    pub expires_at: Option<DateTime<Utc>>,
    /// Last successful use (recorded every few seconds).
    pub last_used_at: Option<DateTime<Utc>>,
    /// Revocation time.
    pub revoked_at: Option<DateTime<Utc>>,
    /// After a rotation: until when the previous secret still works.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
}

/// A key's own rate limit.
#[derive(Clone, Copy, Debug, Serialize, serde::Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KeyRateLimit {
    /// Requests allowed per window.
    pub limit: u32,
    /// Window in seconds.
    pub window_sec: u32,
}

/// What a new key is made of (already validated).
#[derive(Clone, Debug)]
pub struct NewApiKey {
    /// Display name.
    pub name: String,
    /// Permissions.
    pub scopes: Vec<Permission>,
    /// Expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// Own rate limit.
    pub rate_limit: Option<KeyRateLimit>,
    /// Public prefix.
    pub prefix: String,
    /// SHA-256 of the secret.
    pub secret_hash: String,
}

/// A key as authentication needs it: hashes, org, scopes, plan.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct KeyCredential {
    /// Id.
    pub id: ApiKeyId,
    /// Organization.
    pub org_id: OrgId,
    /// SHA-256 of the current secret.
    pub secret_hash: String,
    /// SHA-256 of the previous secret during a rotation's grace period.
    pub previous_hash: Option<String>,
    /// End of that grace period.
    pub previous_expires_at: Option<DateTime<Utc>>,
    /// Scopes.
    pub scopes: JsonText<Permissions>,
    /// Own rate limit (requests).
    pub rate_limit: Option<i32>,
    /// Own rate window (seconds).
    pub rate_window_sec: Option<i32>,
    /// Expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// Revocation.
    pub revoked_at: Option<DateTime<Utc>>,
    /// The organization's plan.
    pub plan: Plan,
    /// Whether the operator has the organization suspended.
    pub org_status: super::orgs::OrgStatus,
    /// False while the membership of the user who created the key is deactivated: their
    /// keys stop working with it.
    pub creator_active: bool,
    /// The operator's feature flag overrides for the organization.
    pub feature_overrides: crate::features::Overrides,
}

impl KeyCredential {
    /// The key's own rate limit, when it has one.
    pub fn rate_limit(&self) -> Result<Option<KeyRateLimit>, StoreError> {
        rate_limit_of(self.rate_limit, self.rate_window_sec)
    }
}

/// The stored rate columns as a limit; negative values are corrupt, not defaults.
fn rate_limit_of(
    limit: Option<i32>,
    window: Option<i32>,
) -> Result<Option<KeyRateLimit>, StoreError> {
    let (Some(limit), Some(window)) = (limit, window) else {
        return Ok(None);
    };
    match (u32::try_from(limit), u32::try_from(window)) {
        (Ok(limit), Ok(window_sec)) if window_sec > 0 => {
            Ok(Some(KeyRateLimit { limit, window_sec }))
        }
        _ => Err(StoreError::Corrupt(format!(
            "api key rate limit {limit} per {window} s"
        ))),
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    id: ApiKeyId,
    org_id: OrgId,
    name: String,
    prefix: String,
    scopes: JsonText<Vec<Permission>>,
    rate_limit: Option<i32>,
    rate_window_sec: Option<i32>,
    created_by: Option<UserId>,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    previous_expires_at: Option<DateTime<Utc>>,
}

impl Row {
    fn into_key(self) -> Result<ApiKey, StoreError> {
        Ok(ApiKey {
            id: self.id,
            org_id: self.org_id,
            name: self.name,
            prefix: self.prefix,
            scopes: self.scopes.0,
            rate_limit: rate_limit_of(self.rate_limit, self.rate_window_sec)?,
            created_by: self.created_by,
            created_at: self.created_at,
            expires_at: self.expires_at,
            last_used_at: self.last_used_at,
            revoked_at: self.revoked_at,
            previous_secret_expires_at: self.previous_expires_at,
        })
    }
}

const COLUMNS: &str =
    "id, org_id, name, prefix, scopes, rate_limit, rate_window_sec, created_by, created_at, \
                       expires_at, last_used_at, revoked_at, previous_expires_at";

/// PostgreSQL channel announcing revoked or rotated key prefixes, so every instance drops
/// its cached verification at once.
pub const KEY_CHANGES_CHANNEL: &str = "tenantry_api_keys";

/// Announces (at commit, on PostgreSQL) that the key with `prefix` changed.
async fn announce(tx: &mut Tx, prefix: &str) -> Result<(), StoreError> {
    if let Tx::Postgres(pg) = tx {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(KEY_CHANGES_CHANNEL)
            .bind(prefix)
            .execute(&mut **pg)
            .await?;
    }
    Ok(())
}

/// Announces (at commit, on PostgreSQL) that every key of the organization changed, or only
/// those `creator` made: they verify differently after a suspension or a deactivation.
pub(super) async fn announce_org_keys(
    tx: &mut Tx,
    org: OrgId,
    creator: Option<UserId>,
) -> Result<(), StoreError> {
    if let Tx::Postgres(pg) = tx {
        sqlx::query(
            "SELECT pg_notify($1, prefix) FROM api_keys \
             WHERE org_id = $2 AND ($3::uuid IS NULL OR created_by = $3)",
        )
        .bind(KEY_CHANGES_CHANNEL)
        .bind(org)
        .bind(creator)
        .execute(&mut **pg)
        .await?;
    }
    Ok(())
}

impl Store {
    /// Stores a new key of the caller's organization, audited.
    pub async fn create_api_key(
        &self,
        ctx: &TenantCtx,
        created_by: Option<UserId>,
        new: &NewApiKey,
    ) -> Result<ApiKey, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        let (limit, window) = new.rate_limit.map_or((None, None), |r| {
            (
                Some(i32::try_from(r.limit).unwrap_or(i32::MAX)),
                Some(i32::try_from(r.window_sec).unwrap_or(i32::MAX)),
            )
        });
        let sql = format!(
            "INSERT INTO api_keys (org_id, id, name, prefix, secret_hash, scopes, rate_limit, rate_window_sec, created_by, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING {COLUMNS}"
        );
        let row: Row = on_conn!(tx.conn(), c => sqlx::query_as(&sql)
            .bind(ctx.org_id())
            .bind(ApiKeyId::new())
            .bind(&new.name)
            .bind(&new.prefix)
            .bind(&new.secret_hash)
            .bind(JsonText(&new.scopes))
            .bind(limit)
            .bind(window)
            .bind(created_by)
            .bind(now())
            .bind(new.expires_at)
            .fetch_one(&mut *c)
            .await)
        .map_err(|e| StoreError::unique(e, DomainError::ApiKeyPrefixTaken))?;
        let key = row.into_key()?;
        let entry = AuditEntry::new("api_key.created", "api_key", key.id).with_metadata(
            serde_json::json!({ "name": key.name, "prefix": key.prefix, "scopes": key.scopes, "expires_at": key.expires_at }),
        );
        tx.audit(entry).await?;
        tx.commit().await?;
        Ok(key)
    }

    /// The caller's organization's keys, newest first (revoked ones included).
    pub async fn list_api_keys(&self, ctx: &TenantCtx) -> Result<Vec<ApiKey>, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Read).await?;
        let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE org_id = $1 ORDER BY id DESC");
        let rows: Vec<Row> = on_conn!(tx.conn(), c => sqlx::query_as(&sql)
            .bind(ctx.org_id())
            .fetch_all(&mut *c)
            .await)?;
        tx.commit().await?;
        rows.into_iter().map(Row::into_key).collect()
    }

    /// One key of the caller's organization.
    pub async fn get_api_key(&self, ctx: &TenantCtx, id: ApiKeyId) -> Result<ApiKey, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Read).await?;
        let key = fetch(&mut tx, ctx.org_id(), id).await?;
        tx.commit().await?;
        key.ok_or(StoreError::NotFound)
    }

    /// Revokes a key at once (idempotent), audited the first time.
    pub async fn revoke_api_key(
        &self,
        ctx: &TenantCtx,
        id: ApiKeyId,
    ) -> Result<ApiKey, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        let at = now();
        let n = on_conn!(tx.conn(), c => sqlx::query(
            "UPDATE api_keys SET revoked_at = $3, previous_hash = NULL, previous_expires_at = NULL \
             WHERE org_id = $1 AND id = $2 AND revoked_at IS NULL",
        )
        .bind(ctx.org_id())
        .bind(id)
        .bind(at)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
        let key = fetch(&mut tx, ctx.org_id(), id)
            .await?
            .ok_or(StoreError::NotFound)?;
        if n == 1 {
            let entry = AuditEntry::new("api_key.revoked", "api_key", id)
                .with_metadata(serde_json::json!({ "name": key.name, "prefix": key.prefix }));
            tx.audit(entry).await?;
            announce(&mut tx, &key.prefix).await?;
        }
        tx.commit().await?;
        Ok(key)
    }

    /// Gives a key a new secret (same id and prefix); the previous secret keeps working
    /// until `grace_until`. Revoked or expired keys cannot be rotated.
    pub async fn rotate_api_key(
        &self,
        ctx: &TenantCtx,
        id: ApiKeyId,
        secret_hash: &str,
        grace_until: DateTime<Utc>,
    ) -> Result<ApiKey, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        let at = now();
        let n = on_conn!(tx.conn(), c => sqlx::query(
            "UPDATE api_keys SET previous_hash = secret_hash, previous_expires_at = $4, secret_hash = $3 \
             WHERE org_id = $1 AND id = $2 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $5)",
        )
        .bind(ctx.org_id())
        .bind(id)
        .bind(secret_hash)
        .bind(grace_until)
        .bind(at)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
        let key = fetch(&mut tx, ctx.org_id(), id)
            .await?
            .ok_or(StoreError::NotFound)?;
        if n == 0 {
            return Err(DomainError::ApiKeyInactive.into());
        }
        let entry = AuditEntry::new("api_key.rotated", "api_key", id).with_metadata(
            serde_json::json!({ "name": key.name, "prefix": key.prefix, "previous_secret_expires_at": grace_until }),
        );
        tx.audit(entry).await?;
        announce(&mut tx, &key.prefix).await?;
        tx.commit().await?;
        Ok(key)
    }

    /// The key with public `prefix`, whatever its organization (the credential names it),
    /// with its organization's plan.
    pub async fn api_key_credential(
        &self,
        prefix: &str,
    ) -> Result<Option<KeyCredential>, StoreError> {
        let mut tx = self.db().begin(Scope::System, Access::Read).await?;
        let row: Option<KeyCredential> = on_conn!(tx.conn(), c => sqlx::query_as(
            "SELECT k.id, k.org_id, k.secret_hash, k.previous_hash, k.previous_expires_at, k.scopes, k.rate_limit, \
             k.rate_window_sec, k.expires_at, k.revoked_at, o.plan, o.status AS org_status, o.feature_overrides, \
             NOT EXISTS (SELECT 1 FROM memberships m WHERE m.org_id = k.org_id \
                         AND m.user_id = k.created_by AND m.deactivated_at IS NOT NULL) AS creator_active \
             FROM api_keys k JOIN organizations o ON o.id = k.org_id WHERE k.prefix = $1",
        )
        .bind(prefix)
        .fetch_optional(&mut *c)
        .await)?;
        tx.commit().await?;
        Ok(row)
    }

    /// Records when keys were last used (batched by the meter).
    pub async fn touch_api_keys(
        &self,
        used: &[(ApiKeyId, DateTime<Utc>)],
    ) -> Result<(), StoreError> {
        if used.is_empty() {
            return Ok(());
        }
        let mut tx = self.db().begin(Scope::System, Access::Write).await?;
        match tx.conn() {
            // One statement for the whole batch: a flush touches every key used since the
            // last one, which is one key per organization for a busy instance.
            Conn::Postgres(c) => {
                let ids: Vec<uuid::Uuid> = used.iter().map(|(id, _)| id.as_uuid()).collect();
                let ats: Vec<DateTime<Utc>> = used.iter().map(|(_, at)| *at).collect();
                sqlx::query(
                    "UPDATE api_keys k SET last_used_at = u.at \
                     FROM UNNEST($1::uuid[], $2::timestamptz[]) AS u(id, at) \
                     WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.at)",
                )
                .bind(&ids)
                .bind(&ats)
                .execute(&mut *c)
                .await?;
            }
            Conn::Sqlite(c) => {
                for (id, at) in used {
                    sqlx::query(
                        "UPDATE api_keys SET last_used_at = $2 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
                    )
                    .bind(*id)
                    .bind(*at)
                    .execute(&mut *c)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

async fn fetch(tx: &mut Tx, org: OrgId, id: ApiKeyId) -> Result<Option<ApiKey>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE org_id = $1 AND id = $2");
    let row: Option<Row> = on_conn!(tx.conn(), c => sqlx::query_as(&sql)
        .bind(org)
        .bind(id)
        .fetch_optional(&mut *c)
        .await)?;
    row.map(Row::into_key).transpose()
}
