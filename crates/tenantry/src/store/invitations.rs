//! Invitations: single-use, expiring, hashed tokens that make someone a member.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::audit::{self, AuditEntry};
use super::members::{check_member_limit, ensure_role_exists, insert_membership, lock_org_plan};
use super::orgs::OrgStatus;
use super::outbox::{self, OutboundEmail};
use super::{now, Store, StoreError};
use crate::auth::{Actor, ActorKind, RequestMeta, TenantCtx};
use crate::db::{on_conn, Access, Scope, Tx};
use crate::domain::DomainError;
use crate::ids::{InvitationId, OrgId, RoleId, UserId};
use crate::rbac::RoleRef;

/// An invitation as listed (never with its token).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Invitation {
    /// Id.
    pub id: InvitationId,
    /// Organization.
    pub org_id: OrgId,
    /// Invited address.
    pub email: String,
    /// Role granted on acceptance.
    pub role: String,
    /// `pending`, `accepted`, `revoked` or `expired`.
    pub status: &'static str,
    /// Sent at.
    pub created_at: DateTime<Utc>,
    /// Expires at.
    pub expires_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: InvitationId,
    org_id: OrgId,
    email: String,
    role: String,
    custom_role_id: Option<RoleId>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    accepted_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl Row {
    fn role(&self) -> Option<RoleRef> {
        RoleRef::from_columns(&self.role, self.custom_role_id)
    }

    fn status(&self, at: DateTime<Utc>) -> &'static str {
        if self.accepted_at.is_some() {
            "accepted"
        } else if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at <= at {
            "expired"
        } else {
            "pending"
        }
    }

    fn into_invitation(self, at: DateTime<Utc>) -> Invitation {
        let status = self.status(at);
        let role = self
            .role()
            .map_or_else(|| self.role.clone(), |r| r.to_string());
        Invitation {
            id: self.id,
            org_id: self.org_id,
            email: self.email,
            role,
            status,
            created_at: self.created_at,
            expires_at: self.expires_at,
        }
    }
}

const COLUMNS: &str =
    "id, org_id, email, role, custom_role_id, created_at, expires_at, accepted_at, revoked_at";

/// A token to store with the invitation and the message carrying it.
#[derive(Clone, Debug)]
pub struct InvitationToken {
    /// SHA-256 of the token.
    pub hash: String,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
    /// The email with the link.
    pub email: OutboundEmail,
}

async fn get_row(tx: &mut Tx, org: OrgId, id: InvitationId) -> Result<Row, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM invitations WHERE org_id = $1 AND id = $2");
    let row: Option<Row> = on_conn!(tx.conn(), c => sqlx::query_as(&sql).bind(org).bind(id).fetch_optional(&mut *c).await)?;
    row.ok_or(StoreError::NotFound)
}

impl Store {
    /// Invites `email` with `role`; refused when the plan's member limit (counting pending
    /// invitations) is reached, the person is a member, or a pending invitation exists.
    pub async fn create_invitation(
        &self,
        ctx: &TenantCtx,
        email: &str,
        role: RoleRef,
        token: &InvitationToken,
    ) -> Result<Invitation, StoreError> {
        let org = ctx.org_id();
        let mut tx = self.db().begin(Scope::Tenant(org), Access::Write).await?;
        let plan = lock_org_plan(&mut tx, org).await?;
        if let RoleRef::Custom(id) = role {
            ensure_role_exists(&mut tx, org, id).await?;
        }
        let member: Option<i32> = on_conn!(tx.conn(), c => sqlx::query_scalar(
            "SELECT 1 FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 AND u.email = $2",
        )
        .bind(org)
        .bind(email)
        .fetch_optional(&mut *c)
        .await)?;
        if member.is_some() {
            return Err(DomainError::AlreadyMember.into());
        }
        let pending: Option<i32> = on_conn!(tx.conn(), c => sqlx::query_scalar(
            "SELECT 1 FROM invitations WHERE org_id = $1 AND email = $2 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $3",
        )
        .bind(org)
        .bind(email)
        .bind(now())
        .fetch_optional(&mut *c)
        .await)?;
        if pending.is_some() {
            return Err(DomainError::AlreadyInvited.into());
        }
        check_member_limit(&mut tx, org, plan, true).await?;
        let (name, custom) = role.columns();
        let sql = format!(
            "INSERT INTO invitations (org_id, id, email, role, custom_role_id, token_hash, invited_by, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {COLUMNS}"
        );
        let invited_by = ctx
            .actor()
            .id
            .as_deref()
            .and_then(|id| id.parse::<UserId>().ok());
        let at = now();
        let row: Row = on_conn!(tx.conn(), c => sqlx::query_as(&sql)
            .bind(org)
            .bind(InvitationId::new())
            .bind(email)
            .bind(name)
            .bind(custom)
            .bind(&token.hash)
            .bind(invited_by)
            .bind(at)
            .bind(token.expires_at)
            .fetch_one(&mut *c)
            .await)?;
        outbox::enqueue(&mut tx, &token.email).await?;
        let entry = AuditEntry::new("invitation.created", "invitation", row.id)
            .with_metadata(serde_json::json!({ "email": email, "role": role.to_string() }));
        audit::append(&mut tx, org, ctx.actor(), ctx.meta(), entry).await?;
        tx.commit().await?;
        Ok(row.into_invitation(at))
    }

    /// The organization's invitations, newest first.
    pub async fn list_invitations(&self, ctx: &TenantCtx) -> Result<Vec<Invitation>, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Read).await?;
        let sql =
            format!("SELECT {COLUMNS} FROM invitations WHERE org_id = $1 ORDER BY created_at DESC");
        let rows: Vec<Row> = on_conn!(tx.conn(), c => sqlx::query_as(&sql).bind(ctx.org_id()).fetch_all(&mut *c).await)?;
        tx.commit().await?;
        let at = now();
        Ok(rows.into_iter().map(|r| r.into_invitation(at)).collect())
    }

    /// Revokes a pending invitation.
    pub async fn revoke_invitation(
        &self,
        ctx: &TenantCtx,
        id: InvitationId,
    ) -> Result<(), StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        let row = get_row(&mut tx, ctx.org_id(), id).await?;
        if row.status(now()) != "pending" {
            return Err(DomainError::InvitationNotPending.into());
        }
        on_conn!(tx.conn(), c => sqlx::query("UPDATE invitations SET revoked_at = $3 WHERE org_id = $1 AND id = $2")
            .bind(ctx.org_id())
            .bind(id)
            .bind(now())
            .execute(&mut *c)
            .await
            .map(|_| ()))?;
        tx.audit(AuditEntry::new("invitation.revoked", "invitation", id))
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Issues a new token (the old one stops working) and a fresh expiry, and re-sends.
    pub async fn resend_invitation(
        &self,
        ctx: &TenantCtx,
        id: InvitationId,
        token: &InvitationToken,
    ) -> Result<Invitation, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        let row = get_row(&mut tx, ctx.org_id(), id).await?;
        if matches!(row.status(now()), "accepted" | "revoked") {
            return Err(DomainError::InvitationNotPending.into());
        }
        let mut email = token.email.clone();
        email.to = row.email.clone();
        let sql = format!("UPDATE invitations SET token_hash = $3, expires_at = $4 WHERE org_id = $1 AND id = $2 RETURNING {COLUMNS}");
        let row: Row = on_conn!(tx.conn(), c => sqlx::query_as(&sql)
            .bind(ctx.org_id())
            .bind(id)
            .bind(&token.hash)
            .bind(token.expires_at)
            .fetch_one(&mut *c)
            .await)?;
        outbox::enqueue(&mut tx, &email).await?;
        tx.audit(AuditEntry::new("invitation.resent", "invitation", id))
            .await?;
        tx.commit().await?;
        Ok(row.into_invitation(now()))
    }

    /// The email of a pending invitation, by token (for sign-up through an invitation).
    pub async fn invitation_email(&self, token_hash: &str) -> Result<Option<String>, StoreError> {
        let Some(row) = find_by_token(self, token_hash).await? else {
            return Ok(None);
        };
        Ok((row.status(now()) == "pending").then_some(row.email))
    }

    /// Makes `user` (whose address is `user_email`) a member through an invitation token.
    pub async fn accept_invitation(
        &self,
        token_hash: &str,
        user: UserId,
        user_email: &str,
        meta: &RequestMeta,
    ) -> Result<OrgId, StoreError> {
        let Some(found) = find_by_token(self, token_hash).await? else {
            return Err(StoreError::Invalid(
                "token",
                "the invitation is invalid, used or expired".to_owned(),
            ));
        };
        let org = found.org_id;
        let mut tx = self.db().begin(Scope::Tenant(org), Access::Write).await?;
        accept_in(&mut tx, org, found.id, user, user_email, meta).await?;
        tx.commit().await?;
        Ok(org)
    }
}

/// Finds an invitation by its token across organizations: the token is the credential,
/// so this lookup runs in system scope and returns only that invitation.
async fn find_by_token(store: &Store, token_hash: &str) -> Result<Option<Row>, StoreError> {
    let mut tx = store.db().begin(Scope::System, Access::Read).await?;
    let sql = format!("SELECT {COLUMNS} FROM invitations WHERE token_hash = $1");
    let row: Option<Row> = on_conn!(tx.conn(), c => sqlx::query_as(&sql).bind(token_hash).fetch_optional(&mut *c).await)?;
    tx.commit().await?;
    Ok(row)
}

/// Accepts invitation `id` of `org` for `user` inside a transaction scoped to `org`.
pub(super) async fn accept_in(
    tx: &mut Tx,
    org: OrgId,
    id: InvitationId,
    user: UserId,
    user_email: &str,
    meta: &RequestMeta,
) -> Result<(), StoreError> {
    let plan = lock_org_plan(tx, org).await?;
    let status: OrgStatus = on_conn!(tx.conn(), c => sqlx::query_scalar(
        "SELECT status FROM organizations WHERE id = $1",
    )
    .bind(org)
    .fetch_one(&mut *c)
    .await)?;
    if status == OrgStatus::Suspended {
        return Err(DomainError::OrgSuspended.into());
    }
    let row = get_row(tx, org, id).await?;
    if row.status(now()) != "pending" {
        return Err(StoreError::Invalid(
            "token",
            "the invitation is invalid, used or expired".to_owned(),
        ));
    }
    if !row.email.eq_ignore_ascii_case(user_email) {
        return Err(DomainError::InvitationEmailMismatch.into());
    }
    let role = row
        .role()
        .ok_or_else(|| StoreError::Corrupt("invitation role".to_owned()))?;
    check_member_limit(tx, org, plan, false).await?;
    insert_membership(tx, org, user, role).await?;
    on_conn!(tx.conn(), c => sqlx::query("UPDATE invitations SET accepted_at = $3, accepted_by = $4 WHERE org_id = $1 AND id = $2")
        .bind(org)
        .bind(id)
        .bind(now())
        .bind(user)
        .execute(&mut *c)
        .await
        .map(|_| ()))?;
    let actor = Actor {
        kind: ActorKind::User,
        id: Some(user.to_string()),
    };
    let entry = AuditEntry::new("member.joined", "user", user).with_metadata(
        serde_json::json!({ "invitation": id.to_string(), "role": role.to_string() }),
    );
    audit::append(tx, org, &actor, meta, entry).await?;
    Ok(())
}
