//! Organizations as users see them, memberships and plans.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::audit::AuditEntry;
use super::orgs::{NewOrg, OrgStatus, Organization};
use super::{now, Store, StoreError};
use crate::auth::{Actor, ActorKind, RequestMeta, TenantCtx};
use crate::db::{on_conn, Access, Scope, Tx};
use crate::domain::{access, DomainError};
use crate::ids::{OrgId, RoleId, UserId};
use crate::rbac::{Permissions, Plan, RoleRef};
use crate::vocab::JsonText;

/// What a user holds in one organization.
#[derive(Clone, Debug)]
pub struct MemberAccess {
    /// The role.
    pub role: RoleRef,
    /// What the role allows.
    pub permissions: Permissions,
    /// The organization's plan.
    pub plan: Plan,
    /// True while the operator has the organization suspended.
    pub suspended: bool,
    /// Its feature flags.
    pub features: crate::features::Features,
}

/// A role as stored (`role`, `custom_role_id`, and a custom role's permissions), with
/// what it allows.
#[derive(Clone, Debug)]
pub struct RoleGrant {
    /// The role.
    pub role: RoleRef,
    /// What it allows.
    pub permissions: Permissions,
}

/// A membership's role columns and the organization's plan.
type AccessColumns = (
    String,
    Option<RoleId>,
    Option<JsonText<Permissions>>,
    Plan,
    OrgStatus,
    crate::features::Overrides,
);

/// The stored columns of a role assignment as one [`RoleGrant`].
pub(super) type RoleColumns = (String, Option<RoleId>, Option<JsonText<Permissions>>);

impl RoleGrant {
    /// Decodes the stored columns; an unknown role name is corrupt.
    pub(super) fn from_columns(
        (role, custom, permissions): RoleColumns,
    ) -> Result<Self, StoreError> {
        let role = RoleRef::from_columns(&role, custom)
            .ok_or_else(|| StoreError::Corrupt(format!("role {role}")))?;
        Ok(Self {
            role,
            permissions: role.permissions(permissions.map(|p| p.0)),
        })
    }
}

/// An organization with the caller's role in it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct MyOrganization {
    /// The organization.
    #[serde(flatten)]
    pub org: Organization,
    /// The caller's role: a built-in name or a custom role id.
    pub role: String,
}

/// A member as listed.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Member {
    /// The user.
    pub user_id: UserId,
    /// Email.
    pub email: String,
    /// Name.
    pub name: String,
    /// Role: a built-in name or a custom role id.
    pub role: String,
    /// Joined at.
    pub joined_at: DateTime<Utc>,
    /// When a SCIM client deactivated the membership (absent while active): a deactivated
    /// member answers like a non-member until reactivated.
    pub deactivated_at: Option<DateTime<Utc>>,
}

const ORG_COLUMNS: &str = "o.id, o.name, o.slug, o.plan, o.status, o.created_at, o.updated_at";

/// Inserts a membership.
pub(super) async fn insert_membership(
    tx: &mut Tx,
    org: OrgId,
    user: UserId,
    role: RoleRef,
) -> Result<(), StoreError> {
    let (role, custom) = role.columns();
    let at = now();
    on_conn!(tx.conn(), c => sqlx::query(
        "INSERT INTO memberships (org_id, user_id, role, custom_role_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)",
    )
    .bind(org)
    .bind(user)
    .bind(role)
    .bind(custom)
    .bind(at)
    .execute(&mut *c)
    .await
    .map(|_| ()))
    .map_err(|e| StoreError::unique(e, DomainError::AlreadyMember))
}

/// Locks the organization row for the rest of the transaction and returns its plan, so
/// member-limit checks cannot race.
pub(super) async fn lock_org_plan(tx: &mut Tx, org: OrgId) -> Result<Plan, StoreError> {
    let plan: Option<Plan> = on_conn!(tx.conn(), c => sqlx::query_scalar(
        "UPDATE organizations SET updated_at = updated_at WHERE id = $1 RETURNING plan",
    )
    .bind(org)
    .fetch_optional(&mut *c)
    .await)?;
    plan.ok_or(StoreError::NotFound)
}

/// Refuses when `org` (on `plan`) already has `members + extra` at its limit.
pub(super) async fn check_member_limit(
    tx: &mut Tx,
    org: OrgId,
    plan: Plan,
    pending: bool,
) -> Result<(), StoreError> {
    let Some(limit) = plan.member_limit() else {
        return Ok(());
    };
    let members: i64 = on_conn!(tx.conn(), c => sqlx::query_scalar("SELECT count(*) FROM memberships WHERE org_id = $1")
        .bind(org)
        .fetch_one(&mut *c)
        .await)?;
    let invited: i64 = if pending {
        on_conn!(tx.conn(), c => sqlx::query_scalar(
            "SELECT count(*) FROM invitations WHERE org_id = $1 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(org)
        .bind(now())
        .fetch_one(&mut *c)
        .await)?
    } else {
        0
    };
    if members + invited >= limit {
        return Err(DomainError::PlanLimitReached.into());
    }
    Ok(())
}

fn user_actor(user: UserId) -> Actor {
    Actor {
        kind: ActorKind::User,
        id: Some(user.to_string()),
    }
}

impl Store {
    /// Creates an organization with `user` as its owner, audited.
    pub async fn create_org_for_user(
        &self,
        user: UserId,
        new: NewOrg,
        meta: &RequestMeta,
    ) -> Result<Organization, StoreError> {
        let id = OrgId::new();
        let mut tx = self.db().begin(Scope::Tenant(id), Access::Write).await?;
        let org = create_owned_org(&mut tx, id, user, &new, meta).await?;
        tx.commit().await?;
        Ok(org)
    }

    /// What `user` holds in `org`, if a member. The authorization check behind every
    /// organization URL.
    pub async fn member_access(
        &self,
        org: OrgId,
        user: UserId,
    ) -> Result<Option<MemberAccess>, StoreError> {
        const SQL: &str =
            "SELECT m.role, m.custom_role_id, r.permissions, o.plan, o.status, o.feature_overrides FROM memberships m \
             JOIN organizations o ON o.id = m.org_id \
             LEFT JOIN roles r ON r.org_id = m.org_id AND r.id = m.custom_role_id \
             WHERE m.org_id = $1 AND m.user_id = $2 AND m.deactivated_at IS NULL";
        let row: Option<AccessColumns> = match self.db() {
            // One statement is its own consistent snapshot in SQLite: no BEGIN and COMMIT
            // round trips.
            crate::db::Db::Sqlite(pool) => {
                sqlx::query_as(SQL)
                    .bind(org)
                    .bind(user)
                    .fetch_optional(pool)
                    .await?
            }
            crate::db::Db::Postgres(_) => {
                let mut tx = self.db().begin(Scope::Tenant(org), Access::Read).await?;
                let row = on_conn!(tx.conn(), c => sqlx::query_as(SQL)
                    .bind(org)
                    .bind(user)
                    .fetch_optional(&mut *c)
                    .await)?;
                tx.commit().await?;
                row
            }
        };
        let Some((role, custom, permissions, plan, status, overrides)) = row else {
            return Ok(None);
        };
        let grant = RoleGrant::from_columns((role, custom, permissions))?;
        Ok(Some(MemberAccess {
            role: grant.role,
            permissions: grant.permissions,
            plan,
            suspended: status == OrgStatus::Suspended,
            features: crate::features::Features::new(plan, overrides),
        }))
    }

    /// The organizations `user` belongs to, with their role.
    pub async fn my_orgs(&self, user: UserId) -> Result<Vec<MyOrganization>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            org: Organization,
            role: String,
            custom_role_id: Option<RoleId>,
        }
        let mut tx = self.db().begin(Scope::User(user), Access::Read).await?;
        let sql = format!(
            "SELECT {ORG_COLUMNS}, m.role, m.custom_role_id FROM memberships m \
             JOIN organizations o ON o.id = m.org_id WHERE m.user_id = $1 AND m.deactivated_at IS NULL \
             ORDER BY o.slug"
        );
        let rows: Vec<Row> =
            on_conn!(tx.conn(), c => sqlx::query_as(&sql).bind(user).fetch_all(&mut *c).await)?;
        tx.commit().await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let role = RoleRef::from_columns(&r.role, r.custom_role_id)
                    .map_or(r.role, |role| role.to_string());
                MyOrganization { org: r.org, role }
            })
            .collect())
    }

    /// Renames the organization or changes its slug.
    pub async fn update_org(
        &self,
        ctx: &TenantCtx,
        name: Option<String>,
        slug: Option<String>,
    ) -> Result<Organization, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        let sql = "UPDATE organizations SET name = coalesce($2, name), slug = coalesce($3, slug), updated_at = $4 \
                   WHERE id = $1 RETURNING id, name, slug, plan, status, created_at, updated_at";
        let org: Option<Organization> = on_conn!(tx.conn(), c => sqlx::query_as(sql)
            .bind(ctx.org_id())
            .bind(&name)
            .bind(&slug)
            .bind(now())
            .fetch_optional(&mut *c)
            .await)
        .map_err(|e| StoreError::unique(e, DomainError::SlugTaken))?;
        let org = org.ok_or(StoreError::NotFound)?;
        let entry = AuditEntry::new("organization.updated", "organization", ctx.org_id())
            .with_metadata(serde_json::json!({ "name": name, "slug": slug }));
        tx.audit(entry).await?;
        tx.commit().await?;
        Ok(org)
    }

    /// Deletes the organization and everything it owns; its audit log remains.
    pub async fn delete_org(&self, ctx: &TenantCtx) -> Result<(), StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        let entry = AuditEntry::new("organization.deleted", "organization", ctx.org_id());
        tx.audit(entry).await?;
        let n = on_conn!(tx.conn(), c => sqlx::query("DELETE FROM organizations WHERE id = $1")
            .bind(ctx.org_id())
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        tx.commit().await?;
        Ok(())
    }

    /// Changes the plan, audited. A plan allowing fewer members than the organization has
    /// is refused (`plan_seats_exceeded`) unless `force`d.
    pub async fn set_plan(
        &self,
        ctx: &TenantCtx,
        plan: Plan,
        force: bool,
    ) -> Result<Organization, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        let from = lock_org_plan(&mut tx, ctx.org_id()).await?;
        if let Some(limit) = plan.member_limit().filter(|_| !force) {
            let members: i64 = on_conn!(tx.conn(), c => sqlx::query_scalar("SELECT count(*) FROM memberships WHERE org_id = $1")
                .bind(ctx.org_id())
                .fetch_one(&mut *c)
                .await)?;
            if members > limit {
                return Err(DomainError::PlanSeatsExceeded {
                    members,
                    plan,
                    limit,
                }
                .into());
            }
        }
        let org: Organization = on_conn!(tx.conn(), c => sqlx::query_as(
            "UPDATE organizations SET plan = $2, updated_at = $3 WHERE id = $1 \
             RETURNING id, name, slug, plan, status, created_at, updated_at",
        )
        .bind(ctx.org_id())
        .bind(plan)
        .bind(now())
        .fetch_one(&mut *c)
        .await)?;
        let entry = AuditEntry::new("organization.plan_changed", "organization", ctx.org_id())
            .with_metadata(if force {
                serde_json::json!({ "from": from, "to": plan, "forced": true })
            } else {
                serde_json::json!({ "from": from, "to": plan })
            });
        tx.audit(entry).await?;
        tx.commit().await?;
        Ok(org)
    }

    /// The organization's members, by email.
    pub async fn list_members(&self, ctx: &TenantCtx) -> Result<Vec<Member>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            user_id: UserId,
            email: String,
            name: String,
            role: String,
            custom_role_id: Option<RoleId>,
            created_at: DateTime<Utc>,
            deactivated_at: Option<DateTime<Utc>>,
        }
        let mut tx = self.tenant_tx(ctx, Access::Read).await?;
        let rows: Vec<Row> = on_conn!(tx.conn(), c => sqlx::query_as(
            "SELECT m.user_id, u.email, u.name, m.role, m.custom_role_id, m.created_at, m.deactivated_at \
             FROM memberships m \
             JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 ORDER BY u.email",
        )
        .bind(ctx.org_id())
        .fetch_all(&mut *c)
        .await)?;
        tx.commit().await?;
        Ok(rows
            .into_iter()
            .map(|r| Member {
                user_id: r.user_id,
                email: r.email,
                name: r.name,
                role: RoleRef::from_columns(&r.role, r.custom_role_id)
                    .map_or(r.role, |x| x.to_string()),
                joined_at: r.created_at,
                deactivated_at: r.deactivated_at,
            })
            .collect())
    }

    /// Changes a member's role. Only owners grant, change or take the owner role; the
    /// last owner keeps it.
    pub async fn change_member_role(
        &self,
        ctx: &TenantCtx,
        target: UserId,
        role: RoleRef,
        by_owner: bool,
    ) -> Result<(), StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        let current = target_role(&mut tx, ctx.org_id(), target).await?;
        access::owner_rule(by_owner, Some(current), Some(role))?;
        if current.is_owner() && !role.is_owner() {
            ensure_another_owner(&mut tx, ctx.org_id()).await?;
        }
        if let RoleRef::Custom(id) = role {
            ensure_role_exists(&mut tx, ctx.org_id(), id).await?;
        }
        let (name, custom) = role.columns();
        on_conn!(tx.conn(), c => sqlx::query(
            "UPDATE memberships SET role = $3, custom_role_id = $4, updated_at = $5 WHERE org_id = $1 AND user_id = $2",
        )
        .bind(ctx.org_id())
        .bind(target)
        .bind(name)
        .bind(custom)
        .bind(now())
        .execute(&mut *c)
        .await
        .map(|_| ()))?;
        let entry = AuditEntry::new("member.role_changed", "user", target).with_metadata(
            serde_json::json!({ "from": current.to_string(), "to": role.to_string() }),
        );
        tx.audit(entry).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes a member. Only owners remove owners; the last owner stays.
    pub async fn remove_member(
        &self,
        ctx: &TenantCtx,
        target: UserId,
        by_owner: bool,
    ) -> Result<(), StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        let current = target_role(&mut tx, ctx.org_id(), target).await?;
        access::owner_rule(by_owner, Some(current), None)?;
        if current.is_owner() {
            ensure_another_owner(&mut tx, ctx.org_id()).await?;
        }
        on_conn!(tx.conn(), c => sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2")
            .bind(ctx.org_id())
            .bind(target)
            .execute(&mut *c)
            .await
            .map(|_| ()))?;
        let entry = AuditEntry::new("member.removed", "user", target)
            .with_metadata(serde_json::json!({ "role": current.to_string() }));
        tx.audit(entry).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Inserts an organization owned by `user`, audited; the transaction must be scoped to `id`.
pub(super) async fn create_owned_org(
    tx: &mut Tx,
    id: OrgId,
    user: UserId,
    new: &NewOrg,
    meta: &RequestMeta,
) -> Result<Organization, StoreError> {
    let org = super::orgs::insert_org(tx, id, new, &user_actor(user), meta).await?;
    insert_membership(tx, id, user, RoleRef::OWNER).await?;
    Ok(org)
}

async fn target_role(tx: &mut Tx, org: OrgId, user: UserId) -> Result<RoleRef, StoreError> {
    let row: Option<(String, Option<RoleId>)> = on_conn!(tx.conn(), c => sqlx::query_as(
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

async fn ensure_another_owner(tx: &mut Tx, org: OrgId) -> Result<(), StoreError> {
    lock_org_plan(tx, org).await?;
    let owners: i64 = on_conn!(tx.conn(), c => sqlx::query_scalar(
        "SELECT count(*) FROM memberships WHERE org_id = $1 AND role = 'owner' AND deactivated_at IS NULL",
    )
    .bind(org)
    .fetch_one(&mut *c)
    .await)?;
    if owners <= 1 {
        return Err(DomainError::LastOwner.into());
    }
    Ok(())
}

/// Fails with 422 on `role` when the custom role is not the organization's.
pub(super) async fn ensure_role_exists(
    tx: &mut Tx,
    org: OrgId,
    id: RoleId,
) -> Result<(), StoreError> {
    let found: Option<i32> = on_conn!(tx.conn(), c => sqlx::query_scalar("SELECT 1 FROM roles WHERE org_id = $1 AND id = $2")
        .bind(org)
        .bind(id)
        .fetch_optional(&mut *c)
        .await)?;
    found
        .map(|_| ())
        .ok_or_else(|| StoreError::Invalid("role", "no such role in this organization".to_owned()))
}
