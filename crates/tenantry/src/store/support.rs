//! What the operator needs to look at and act on one tenant: suspension and the counts
//! behind the support summary.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::api_keys::announce_org_keys;
use super::audit::AuditEntry;
use super::orgs::{OrgStatus, Organization};
use super::{now, Store, StoreError};
use crate::auth::TenantCtx;
use crate::db::{on_conn, Access};
use crate::features::{Features, Flag, Overrides};
use crate::rbac::Plan;
use crate::vocab::JsonText;

/// Counts of one organization taken in one snapshot.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SupportCounts {
    /// Active members per role name (`owner`, `admin`, … and `custom`).
    pub members_by_role: BTreeMap<String, i64>,
    /// Memberships deactivated (by SCIM) and not removed.
    pub members_deactivated: i64,
    /// Invitations neither accepted, revoked nor expired.
    pub pending_invitations: i64,
    /// API keys that still verify (not revoked, not expired).
    pub api_keys_active: i64,
    /// API keys revoked or expired.
    pub api_keys_inactive: i64,
    /// Jobs whose last run failed and that will run again.
    pub jobs_failing: i64,
    /// Jobs that ran out of attempts.
    pub jobs_dead: i64,
    /// When the organization's latest audit record was written.
    pub last_activity_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct CountsRow {
    pending_invitations: i64,
    members_deactivated: i64,
    api_keys_active: i64,
    api_keys_inactive: i64,
    jobs_failing: i64,
    jobs_dead: i64,
    last_activity_at: Option<DateTime<Utc>>,
}

impl Store {
    /// Suspends (`true`) or reactivates the organization, audited as the operator. Every
    /// instance stops trusting the organization's cached keys at commit. Setting the status
    /// it already has changes nothing and records nothing.
    pub async fn set_org_suspended(
        &self,
        ctx: &TenantCtx,
        suspended: bool,
        reason: Option<&str>,
    ) -> Result<Organization, StoreError> {
        let status = if suspended {
            OrgStatus::Suspended
        } else {
            OrgStatus::Active
        };
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        let changed: Option<Organization> = on_conn!(tx.conn(), c => sqlx::query_as(
            "UPDATE organizations SET status = $2, updated_at = $3 WHERE id = $1 AND status <> $2 \
             RETURNING id, name, slug, plan, status, created_at, updated_at",
        )
        .bind(ctx.org_id())
        .bind(status)
        .bind(now())
        .fetch_optional(&mut *c)
        .await)?;
        let Some(org) = changed else {
            tx.commit().await?;
            return self.get_org(ctx).await;
        };
        let action = if suspended {
            "organization.suspended"
        } else {
            "organization.reactivated"
        };
        let metadata = match reason {
            Some(reason) => serde_json::json!({ "reason": reason }),
            None => serde_json::json!({}),
        };
        tx.audit(AuditEntry::new(action, "organization", ctx.org_id()).with_metadata(metadata))
            .await?;
        announce_org_keys(&mut tx, ctx.org_id(), None).await?;
        tx.commit().await?;
        Ok(org)
    }

    /// The organization's feature flags.
    pub async fn org_features(&self, ctx: &TenantCtx) -> Result<Features, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Read).await?;
        let row: Option<(Plan, Overrides)> = on_conn!(tx.conn(), c => sqlx::query_as(
            "SELECT plan, feature_overrides FROM organizations WHERE id = $1",
        )
        .bind(ctx.org_id())
        .fetch_optional(&mut *c)
        .await)?;
        tx.commit().await?;
        let (plan, overrides) = row.ok_or(StoreError::NotFound)?;
        Ok(Features::new(plan, overrides))
    }

    /// Sets the operator's override of `flag` for the organization (`None` clears it, so
    /// the plan decides again), audited; every instance drops the organization's cached
    /// keys at commit, so the change holds everywhere at once.
    pub async fn set_feature_override(
        &self,
        ctx: &TenantCtx,
        flag: Flag,
        enabled: Option<bool>,
    ) -> Result<Features, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        // Locks the row on both backends: concurrent overrides apply one after the other.
        let row: Option<(Plan, Overrides)> = on_conn!(tx.conn(), c => sqlx::query_as(
            "UPDATE organizations SET updated_at = updated_at WHERE id = $1 \
             RETURNING plan, feature_overrides",
        )
        .bind(ctx.org_id())
        .fetch_optional(&mut *c)
        .await)?;
        let (plan, JsonText(mut overrides)) = row.ok_or(StoreError::NotFound)?;
        let before = overrides.get(flag.as_str()).copied();
        match enabled {
            Some(on) => overrides.insert(flag.as_str().to_owned(), on),
            None => overrides.remove(flag.as_str()),
        };
        let overrides = JsonText(overrides);
        if before != enabled {
            on_conn!(tx.conn(), c => sqlx::query(
                "UPDATE organizations SET feature_overrides = $2, updated_at = $3 WHERE id = $1",
            )
            .bind(ctx.org_id())
            .bind(&overrides)
            .bind(now())
            .execute(&mut *c)
            .await
            .map(|_| ()))?;
            let entry = AuditEntry::new("organization.feature_set", "organization", ctx.org_id())
                .with_metadata(serde_json::json!({
                    "flag": flag,
                    "from": before,
                    "to": enabled,
                }));
            tx.audit(entry).await?;
            announce_org_keys(&mut tx, ctx.org_id(), None).await?;
        }
        tx.commit().await?;
        Ok(Features::new(plan, overrides))
    }

    /// The counts of the support summary.
    pub async fn support_counts(&self, ctx: &TenantCtx) -> Result<SupportCounts, StoreError> {
        let at = now();
        let mut tx = self.tenant_tx(ctx, Access::Read).await?;
        let roles: Vec<(String, i64)> = on_conn!(tx.conn(), c => sqlx::query_as(
            "SELECT role, count(*) FROM memberships WHERE org_id = $1 AND deactivated_at IS NULL \
             GROUP BY role ORDER BY role",
        )
        .bind(ctx.org_id())
        .fetch_all(&mut *c)
        .await)?;
        let row: CountsRow = on_conn!(tx.conn(), c => sqlx::query_as(
            "SELECT \
               (SELECT count(*) FROM invitations WHERE org_id = $1 AND accepted_at IS NULL \
                  AND revoked_at IS NULL AND expires_at > $2) AS pending_invitations, \
               (SELECT count(*) FROM memberships WHERE org_id = $1 AND deactivated_at IS NOT NULL) AS members_deactivated, \
               (SELECT count(*) FROM api_keys WHERE org_id = $1 AND revoked_at IS NULL \
                  AND (expires_at IS NULL OR expires_at > $2)) AS api_keys_active, \
               (SELECT count(*) FROM api_keys WHERE org_id = $1 AND (revoked_at IS NOT NULL \
                  OR expires_at <= $2)) AS api_keys_inactive, \
               (SELECT count(*) FROM jobs WHERE org_id = $1 AND status IN ('available', 'running') \
                  AND last_error IS NOT NULL) AS jobs_failing, \
               (SELECT count(*) FROM jobs WHERE org_id = $1 AND status = 'dead') AS jobs_dead, \
               (SELECT created_at FROM audit_events WHERE org_id = $1 ORDER BY id DESC LIMIT 1) AS last_activity_at",
        )
        .bind(ctx.org_id())
        .bind(at)
        .fetch_one(&mut *c)
        .await)?;
        tx.commit().await?;
        Ok(SupportCounts {
            members_by_role: roles.into_iter().collect(),
            members_deactivated: row.members_deactivated,
            pending_invitations: row.pending_invitations,
            api_keys_active: row.api_keys_active,
            api_keys_inactive: row.api_keys_inactive,
            jobs_failing: row.jobs_failing,
            jobs_dead: row.jobs_dead,
            last_activity_at: row.last_activity_at,
        })
    }
}
