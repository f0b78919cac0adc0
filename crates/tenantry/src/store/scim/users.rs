//! Users provisioned through SCIM: a membership of the organization seen through SCIM,
//! with the document the identity provider sent. `active` is the membership's own state
//! (`memberships.deactivated_at`), never a copy.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::bump_version;
use crate::auth::TenantCtx;
use crate::db::{on_conn, Access, Tx};
use crate::domain::DomainError;
use crate::ids::{OrgId, ScimUserId, UserId};
use crate::rbac::RoleRef;
use crate::store::api_keys::announce_org_keys;
use crate::store::audit::AuditEntry;
use crate::store::members::{check_member_limit, insert_membership, lock_org_plan};
use crate::store::tenant_tx::TenantTx;
use crate::store::{now, Store, StoreError};
use crate::vocab::JsonText;

/// A provisioned user as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ScimUserRecord {
    /// The per-organization SCIM id.
    pub id: ScimUserId,
    /// The Tenantry user behind it.
    pub user_id: UserId,
    /// The SCIM document as last written (without `id` and `meta`).
    pub resource: JsonText<Value>,
    /// Bumped by every change: the ETag.
    pub version: i64,
    /// Provisioned at.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// False while the membership is deactivated.
    pub active: bool,
}

/// What a create or replace writes (already validated).
#[derive(Clone, Debug)]
pub struct ScimUserWrite {
    /// `userName`, unique per organization ignoring case.
    pub user_name: String,
    /// The email that names the Tenantry account (lowercase).
    pub email: String,
    /// Name for an account created by provisioning.
    pub display_name: String,
    /// `externalId`.
    pub external_id: Option<String>,
    /// Whether the membership is active.
    pub active: bool,
    /// The document to keep.
    pub resource: Value,
}

const SELECT: &str = "SELECT s.id, s.user_id, s.resource, s.version, s.created_at, s.updated_at, \
                      m.deactivated_at IS NULL AS active \
                      FROM scim_users s JOIN memberships m ON m.org_id = s.org_id AND m.user_id = s.user_id";

/// One provisioned user of `org`.
pub(super) async fn fetch(
    tx: &mut Tx,
    org: OrgId,
    id: ScimUserId,
) -> Result<ScimUserRecord, StoreError> {
    let sql = format!("{SELECT} WHERE s.org_id = $1 AND s.id = $2");
    let row: Option<ScimUserRecord> = on_conn!(tx.conn(), c => sqlx::query_as(&sql)
        .bind(org)
        .bind(id)
        .fetch_optional(&mut *c)
        .await)?;
    row.ok_or(StoreError::NotFound)
}

/// The membership role of `user` in `org`.
pub(super) async fn member_role(
    tx: &mut Tx,
    org: OrgId,
    user: UserId,
) -> Result<RoleRef, StoreError> {
    let row: Option<(String, Option<crate::ids::RoleId>)> = on_conn!(tx.conn(), c => sqlx::query_as(
        "SELECT role, custom_role_id FROM memberships WHERE org_id = $1 AND user_id = $2",
    )
    .bind(org)
    .bind(user)
    .fetch_optional(&mut *c)
    .await)?;
    let (role, custom) = row.ok_or(StoreError::NotFound)?;
    RoleRef::from_columns(&role, custom)
        .ok_or_else(|| StoreError::Corrupt(format!("membership role {role}")))
}

/// Refuses (409 `last_owner`) when `user` is an owner and no other active owner remains.
async fn ensure_not_last_owner(tx: &mut Tx, org: OrgId, user: UserId) -> Result<(), StoreError> {
    if !member_role(tx, org, user).await?.is_owner() {
        return Ok(());
    }
    lock_org_plan(tx, org).await?;
    let others: i64 = on_conn!(tx.conn(), c => sqlx::query_scalar(
        "SELECT count(*) FROM memberships WHERE org_id = $1 AND role = 'owner' \
         AND deactivated_at IS NULL AND user_id <> $2",
    )
    .bind(org)
    .bind(user)
    .fetch_one(&mut *c)
    .await)?;
    if others == 0 {
        return Err(DomainError::LastOwner.into());
    }
    Ok(())
}

/// Deactivates or reactivates the membership when `active` differs from its state,
/// audited; the user's API keys of the organization verify differently from commit on.
/// True when it changed.
async fn set_active(
    tx: &mut TenantTx<'_>,
    org: OrgId,
    record: &ScimUserRecord,
    active: bool,
) -> Result<bool, StoreError> {
    if record.active == active {
        return Ok(false);
    }
    if !active {
        ensure_not_last_owner(tx, org, record.user_id).await?;
    }
    let at = (!active).then(now);
    on_conn!(tx.conn(), c => sqlx::query(
        "UPDATE memberships SET deactivated_at = $3, updated_at = $4 WHERE org_id = $1 AND user_id = $2",
    )
    .bind(org)
    .bind(record.user_id)
    .bind(at)
    .bind(now())
    .execute(&mut *c)
    .await
    .map(|_| ()))?;
    announce_org_keys(tx, org, Some(record.user_id)).await?;
    let action = if active {
        "scim.user_reactivated"
    } else {
        "scim.user_deactivated"
    };
    tx.audit(
        AuditEntry::new(action, "user", record.user_id)
            .with_metadata(serde_json::json!({ "scim_id": record.id })),
    )
    .await?;
    Ok(true)
}

/// The account with `email` when it is a member of `org`, or a new one (without a usable
/// password) when there is none; true when it was created. An account outside `org` is
/// 409 `email_taken`.
async fn account_for(
    tx: &mut Tx,
    org: OrgId,
    write: &ScimUserWrite,
    password_hash: &str,
) -> Result<(UserId, bool), StoreError> {
    let found: Option<UserId> = on_conn!(tx.conn(), c => sqlx::query_scalar(
        "SELECT id FROM users WHERE email = $1",
    )
    .bind(&write.email)
    .fetch_optional(&mut *c)
    .await)?;
    if let Some(id) = found {
        // Only a member of this organization is linked: anyone else's account is theirs
        // to bring (through an invitation), never taken over or added without consent,
        // and nothing of it (its name, its other organizations) reaches this one. The
        // 409 says no more than registration's `email_taken` already does.
        let member: Option<i32> = on_conn!(tx.conn(), c => sqlx::query_scalar(
            "SELECT 1 FROM memberships WHERE org_id = $1 AND user_id = $2",
        )
        .bind(org)
        .bind(id)
        .fetch_optional(&mut *c)
        .await)?;
        if member.is_none() {
            return Err(DomainError::EmailTaken.into());
        }
        return Ok((id, false));
    }
    let id = UserId::new();
    on_conn!(tx.conn(), c => sqlx::query(
        "INSERT INTO users (id, email, name, password_hash, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)",
    )
    .bind(id)
    .bind(&write.email)
    .bind(&write.display_name)
    .bind(password_hash)
    .bind(now())
    .execute(&mut *c)
    .await
    .map(|_| ()))
    .map_err(|e| StoreError::unique(e, DomainError::EmailTaken))?;
    Ok((id, true))
}

impl Store {
    /// Every provisioned user of the organization, oldest first.
    pub async fn list_scim_users(
        &self,
        ctx: &TenantCtx,
    ) -> Result<Vec<ScimUserRecord>, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Read).await?;
        let sql = format!("{SELECT} WHERE s.org_id = $1 ORDER BY s.created_at, s.id");
        let rows: Vec<ScimUserRecord> = on_conn!(tx.conn(), c => sqlx::query_as(&sql)
            .bind(ctx.org_id())
            .fetch_all(&mut *c)
            .await)?;
        tx.commit().await?;
        Ok(rows)
    }

    /// One provisioned user of the organization.
    pub async fn get_scim_user(
        &self,
        ctx: &TenantCtx,
        id: ScimUserId,
    ) -> Result<ScimUserRecord, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Read).await?;
        let record = fetch(&mut tx, ctx.org_id(), id).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// Provisions a user: links the account with the email (creating one when there is
    /// none, with `password_hash` of a password nobody knows), makes it a member (role
    /// `member`) unless it already is, audited. 409 when the userName or the account is
    /// already provisioned in the organization.
    pub async fn create_scim_user(
        &self,
        ctx: &TenantCtx,
        write: &ScimUserWrite,
        password_hash: &str,
    ) -> Result<ScimUserRecord, StoreError> {
        let org = ctx.org_id();
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        let (user, _created) = account_for(&mut tx, org, write, password_hash).await?;
        let member: Option<i32> = on_conn!(tx.conn(), c => sqlx::query_scalar(
            "SELECT 1 FROM memberships WHERE org_id = $1 AND user_id = $2",
        )
        .bind(org)
        .bind(user)
        .fetch_optional(&mut *c)
        .await)?;
        if member.is_none() {
            let plan = lock_org_plan(&mut tx, org).await?;
            check_member_limit(&mut tx, org, plan, false).await?;
            insert_membership(
                &mut tx,
                org,
                user,
                RoleRef::Builtin(crate::rbac::BuiltinRole::Member),
            )
            .await?;
        }
        let id = ScimUserId::new();
        let at = now();
        on_conn!(tx.conn(), c => sqlx::query(
            "INSERT INTO scim_users (org_id, id, user_id, user_name, external_id, resource, version, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7)",
        )
        .bind(org)
        .bind(id)
        .bind(user)
        .bind(&write.user_name)
        .bind(&write.external_id)
        .bind(JsonText(&write.resource))
        .bind(at)
        .execute(&mut *c)
        .await
        .map(|_| ()))
        .map_err(|e| StoreError::unique(e, DomainError::NameTaken))?;
        tx.audit(
            AuditEntry::new("scim.user_provisioned", "user", user)
                .with_metadata(serde_json::json!({ "scim_id": id, "joined": member.is_none() })),
        )
        .await?;
        let record = fetch(&mut tx, org, id).await?;
        set_active(&mut tx, org, &record, write.active).await?;
        let record = fetch(&mut tx, org, id).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// Replaces a provisioned user's document (the account's own email and password are
    /// left alone: they are the person's, not the organization's) and applies `active`;
    /// true when that changed the membership's state.
    pub async fn replace_scim_user(
        &self,
        ctx: &TenantCtx,
        id: ScimUserId,
        expected: Option<i64>,
        write: &ScimUserWrite,
    ) -> Result<(ScimUserRecord, bool), StoreError> {
        let org = ctx.org_id();
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        bump_version(&mut tx, "scim_users", org, id.as_uuid(), expected).await?;
        on_conn!(tx.conn(), c => sqlx::query(
            "UPDATE scim_users SET user_name = $3, external_id = $4, resource = $5 WHERE org_id = $1 AND id = $2",
        )
        .bind(org)
        .bind(id)
        .bind(&write.user_name)
        .bind(&write.external_id)
        .bind(JsonText(&write.resource))
        .execute(&mut *c)
        .await
        .map(|_| ()))
        .map_err(|e| StoreError::unique(e, DomainError::NameTaken))?;
        let record = fetch(&mut tx, org, id).await?;
        let changed = set_active(&mut tx, org, &record, write.active).await?;
        tx.audit(
            AuditEntry::new("scim.user_updated", "user", record.user_id)
                .with_metadata(serde_json::json!({ "scim_id": id })),
        )
        .await?;
        let record = fetch(&mut tx, org, id).await?;
        tx.commit().await?;
        Ok((record, changed))
    }

    /// Deprovisions a user: removes the membership (and so the SCIM record) and revokes
    /// the API keys they created in the organization; the last owner stays. Returns the
    /// account's id.
    pub async fn delete_scim_user(
        &self,
        ctx: &TenantCtx,
        id: ScimUserId,
        expected: Option<i64>,
    ) -> Result<UserId, StoreError> {
        let org = ctx.org_id();
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        // Checks the version and locks the row in one statement: a change committed
        // meanwhile makes a conditional delete fail rather than slip through.
        bump_version(&mut tx, "scim_users", org, id.as_uuid(), expected).await?;
        let record = fetch(&mut tx, org, id).await?;
        ensure_not_last_owner(&mut tx, org, record.user_id).await?;
        let role = member_role(&mut tx, org, record.user_id).await?;
        announce_org_keys(&mut tx, org, Some(record.user_id)).await?;
        let revoked = on_conn!(tx.conn(), c => sqlx::query(
            "UPDATE api_keys SET revoked_at = $3, previous_hash = NULL, previous_expires_at = NULL \
             WHERE org_id = $1 AND created_by = $2 AND revoked_at IS NULL",
        )
        .bind(org)
        .bind(record.user_id)
        .bind(now())
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
        on_conn!(tx.conn(), c => sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2")
            .bind(org)
            .bind(record.user_id)
            .execute(&mut *c)
            .await
            .map(|_| ()))?;
        tx.audit(
            AuditEntry::new("scim.user_deprovisioned", "user", record.user_id).with_metadata(
                serde_json::json!({ "scim_id": id, "role": role.to_string(), "api_keys_revoked": revoked }),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(record.user_id)
    }
}
