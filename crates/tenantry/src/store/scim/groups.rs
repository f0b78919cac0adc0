//! SCIM groups, their members, and the organization's group-to-role mappings. Whenever
//! a provisioned user's groups (or the mappings) change, their membership role is
//! recomputed here, in the same transaction, and audited as `member.role_changed`.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use super::bump_version;
use super::users::member_role;
use crate::auth::TenantCtx;
use crate::db::{on_conn, Access, Tx};
use crate::domain::DomainError;
use crate::ids::{OrgId, RoleId, ScimGroupId, ScimUserId, UserId};
use crate::rbac::RoleRef;
use crate::store::audit::AuditEntry;
use crate::store::members::ensure_role_exists;
use crate::store::tenant_tx::TenantTx;
use crate::store::{now, Store, StoreError};

/// A group as stored, with its members.
#[derive(Clone, Debug)]
pub struct ScimGroupRecord {
    /// Id.
    pub id: ScimGroupId,
    /// `displayName`, unique per organization ignoring case.
    pub display_name: String,
    /// `externalId`.
    pub external_id: Option<String>,
    /// Bumped by every change: the ETag.
    pub version: i64,
    /// Created at.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Members: SCIM user id and userName, in userName order.
    pub members: Vec<(ScimUserId, String)>,
}

/// What a create or replace writes (already validated).
#[derive(Clone, Debug)]
pub struct ScimGroupWrite {
    /// `displayName`.
    pub display_name: String,
    /// `externalId`.
    pub external_id: Option<String>,
    /// Every member.
    pub members: BTreeSet<ScimUserId>,
}

/// A group-to-role mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleMapping {
    /// Group `displayName`.
    pub group: String,
    /// Role its members get (never owner).
    pub role: RoleRef,
}

#[derive(sqlx::FromRow)]
struct GroupRow {
    id: ScimGroupId,
    display_name: String,
    external_id: Option<String>,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// Groups of `org` (one when `id` is given) with their members.
async fn load(
    tx: &mut Tx,
    org: OrgId,
    id: Option<ScimGroupId>,
) -> Result<Vec<ScimGroupRecord>, StoreError> {
    let rows: Vec<GroupRow> = on_conn!(tx.conn(), c => sqlx::query_as(
        "SELECT id, display_name, external_id, version, created_at, updated_at FROM scim_groups \
         WHERE org_id = $1 AND ($2 IS NULL OR id = $2) ORDER BY created_at, id",
    )
    .bind(org)
    .bind(id)
    .fetch_all(&mut *c)
    .await)?;
    let members: Vec<(ScimGroupId, ScimUserId, String)> = on_conn!(tx.conn(), c => sqlx::query_as(
        "SELECT gm.group_id, gm.scim_user_id, s.user_name FROM scim_group_members gm \
         JOIN scim_users s ON s.org_id = gm.org_id AND s.id = gm.scim_user_id \
         WHERE gm.org_id = $1 AND ($2 IS NULL OR gm.group_id = $2) ORDER BY s.user_name",
    )
    .bind(org)
    .bind(id)
    .fetch_all(&mut *c)
    .await)?;
    let mut by_group: HashMap<ScimGroupId, Vec<(ScimUserId, String)>> = HashMap::new();
    for (group, user, name) in members {
        by_group.entry(group).or_default().push((user, name));
    }
    Ok(rows
        .into_iter()
        .map(|r| ScimGroupRecord {
            members: by_group.remove(&r.id).unwrap_or_default(),
            id: r.id,
            display_name: r.display_name,
            external_id: r.external_id,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
        .collect())
}

async fn load_one(tx: &mut Tx, org: OrgId, id: ScimGroupId) -> Result<ScimGroupRecord, StoreError> {
    load(tx, org, Some(id))
        .await?
        .into_iter()
        .next()
        .ok_or(StoreError::NotFound)
}

/// Replaces the member set of `group`; every member must be a provisioned user of `org`.
async fn write_members(
    tx: &mut Tx,
    org: OrgId,
    group: ScimGroupId,
    members: &BTreeSet<ScimUserId>,
) -> Result<(), StoreError> {
    on_conn!(tx.conn(), c => sqlx::query("DELETE FROM scim_group_members WHERE org_id = $1 AND group_id = $2")
        .bind(org)
        .bind(group)
        .execute(&mut *c)
        .await
        .map(|_| ()))?;
    for member in members {
        // INSERT … SELECT: a member id of another organization (or none) inserts nothing.
        let n = on_conn!(tx.conn(), c => sqlx::query(
            "INSERT INTO scim_group_members (org_id, group_id, scim_user_id) \
             SELECT org_id, $2, id FROM scim_users WHERE org_id = $1 AND id = $3",
        )
        .bind(org)
        .bind(group)
        .bind(*member)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
        if n == 0 {
            return Err(StoreError::Invalid(
                "members",
                format!("{member} is not a user of this organization"),
            ));
        }
    }
    Ok(())
}

/// Recomputes the role of each provisioned user in `users` from the mapped groups they
/// are in (`member` when none); owners are never changed. Audited per change.
async fn sync_roles(
    tx: &mut TenantTx<'_>,
    org: OrgId,
    users: &BTreeSet<ScimUserId>,
) -> Result<(), StoreError> {
    for scim_id in users {
        let user: Option<UserId> = on_conn!(tx.conn(), c => sqlx::query_scalar(
            "SELECT user_id FROM scim_users WHERE org_id = $1 AND id = $2",
        )
        .bind(org)
        .bind(*scim_id)
        .fetch_optional(&mut *c)
        .await)?;
        let Some(user) = user else { continue };
        let current = member_role(tx, org, user).await?;
        if current.is_owner() {
            continue;
        }
        let mapped: Vec<(String, Option<RoleId>)> = on_conn!(tx.conn(), c => sqlx::query_as(
            "SELECT r.role, r.custom_role_id FROM scim_group_members gm \
             JOIN scim_groups g ON g.org_id = gm.org_id AND g.id = gm.group_id \
             JOIN scim_role_mappings r ON r.org_id = g.org_id AND r.group_name = g.display_name \
             WHERE gm.org_id = $1 AND gm.scim_user_id = $2 ORDER BY g.display_name",
        )
        .bind(org)
        .bind(*scim_id)
        .fetch_all(&mut *c)
        .await)?;
        let roles = mapped
            .iter()
            .map(|(role, custom)| {
                RoleRef::from_columns(role, *custom)
                    .ok_or_else(|| StoreError::Corrupt(format!("scim role mapping {role}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let wanted = crate::scim::roles::strongest(&roles);
        if wanted == current {
            continue;
        }
        let (name, custom) = wanted.columns();
        on_conn!(tx.conn(), c => sqlx::query(
            "UPDATE memberships SET role = $3, custom_role_id = $4, updated_at = $5 WHERE org_id = $1 AND user_id = $2",
        )
        .bind(org)
        .bind(user)
        .bind(name)
        .bind(custom)
        .bind(now())
        .execute(&mut *c)
        .await
        .map(|_| ()))?;
        tx.audit(AuditEntry::new("member.role_changed", "user", user).with_metadata(
            serde_json::json!({ "from": current.to_string(), "to": wanted.to_string(), "via": "scim" }),
        ))
        .await?;
    }
    Ok(())
}

/// Every provisioned user of `org` who is in at least one group.
async fn grouped_users(tx: &mut Tx, org: OrgId) -> Result<BTreeSet<ScimUserId>, StoreError> {
    let users: Vec<ScimUserId> = on_conn!(tx.conn(), c => sqlx::query_scalar(
        "SELECT DISTINCT scim_user_id FROM scim_group_members WHERE org_id = $1",
    )
    .bind(org)
    .fetch_all(&mut *c)
    .await)?;
    Ok(users.into_iter().collect())
}

fn member_ids(group: &ScimGroupRecord) -> BTreeSet<ScimUserId> {
    group.members.iter().map(|(id, _)| *id).collect()
}

impl Store {
    /// Every group of the organization with its members, oldest first.
    pub async fn list_scim_groups(
        &self,
        ctx: &TenantCtx,
    ) -> Result<Vec<ScimGroupRecord>, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Read).await?;
        let groups = load(&mut tx, ctx.org_id(), None).await?;
        tx.commit().await?;
        Ok(groups)
    }

    /// One group of the organization.
    pub async fn get_scim_group(
        &self,
        ctx: &TenantCtx,
        id: ScimGroupId,
    ) -> Result<ScimGroupRecord, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Read).await?;
        let group = load_one(&mut tx, ctx.org_id(), id).await?;
        tx.commit().await?;
        Ok(group)
    }

    /// Creates a group with its members, audited; their roles follow the mappings.
    pub async fn create_scim_group(
        &self,
        ctx: &TenantCtx,
        write: &ScimGroupWrite,
    ) -> Result<ScimGroupRecord, StoreError> {
        let org = ctx.org_id();
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        let id = ScimGroupId::new();
        on_conn!(tx.conn(), c => sqlx::query(
            "INSERT INTO scim_groups (org_id, id, display_name, external_id, version, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 1, $5, $5)",
        )
        .bind(org)
        .bind(id)
        .bind(&write.display_name)
        .bind(&write.external_id)
        .bind(now())
        .execute(&mut *c)
        .await
        .map(|_| ()))
        .map_err(|e| StoreError::unique(e, DomainError::NameTaken))?;
        write_members(&mut tx, org, id, &write.members).await?;
        sync_roles(&mut tx, org, &write.members).await?;
        tx.audit(AuditEntry::new("scim.group_created", "scim_group", id).with_metadata(
            serde_json::json!({ "display_name": write.display_name, "members": write.members.len() }),
        ))
        .await?;
        let group = load_one(&mut tx, org, id).await?;
        tx.commit().await?;
        Ok(group)
    }

    /// Replaces a group's name and members, audited; the roles of everyone who was or is
    /// in it follow the mappings.
    pub async fn replace_scim_group(
        &self,
        ctx: &TenantCtx,
        id: ScimGroupId,
        expected: Option<i64>,
        write: &ScimGroupWrite,
    ) -> Result<ScimGroupRecord, StoreError> {
        let org = ctx.org_id();
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        bump_version(&mut tx, "scim_groups", org, id.as_uuid(), expected).await?;
        let before = load_one(&mut tx, org, id).await?;
        on_conn!(tx.conn(), c => sqlx::query(
            "UPDATE scim_groups SET display_name = $3, external_id = $4 WHERE org_id = $1 AND id = $2",
        )
        .bind(org)
        .bind(id)
        .bind(&write.display_name)
        .bind(&write.external_id)
        .execute(&mut *c)
        .await
        .map(|_| ()))
        .map_err(|e| StoreError::unique(e, DomainError::NameTaken))?;
        write_members(&mut tx, org, id, &write.members).await?;
        let mut affected = member_ids(&before);
        affected.extend(write.members.iter().copied());
        sync_roles(&mut tx, org, &affected).await?;
        tx.audit(AuditEntry::new("scim.group_updated", "scim_group", id).with_metadata(
            serde_json::json!({ "display_name": write.display_name, "members": write.members.len() }),
        ))
        .await?;
        let group = load_one(&mut tx, org, id).await?;
        tx.commit().await?;
        Ok(group)
    }

    /// Deletes a group, audited; its former members' roles follow the mappings.
    pub async fn delete_scim_group(
        &self,
        ctx: &TenantCtx,
        id: ScimGroupId,
        expected: Option<i64>,
    ) -> Result<(), StoreError> {
        let org = ctx.org_id();
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        // Version check and row lock in one statement (see `delete_scim_user`).
        bump_version(&mut tx, "scim_groups", org, id.as_uuid(), expected).await?;
        let before = load_one(&mut tx, org, id).await?;
        on_conn!(tx.conn(), c => sqlx::query("DELETE FROM scim_groups WHERE org_id = $1 AND id = $2")
            .bind(org)
            .bind(id)
            .execute(&mut *c)
            .await
            .map(|_| ()))?;
        sync_roles(&mut tx, org, &member_ids(&before)).await?;
        tx.audit(
            AuditEntry::new("scim.group_deleted", "scim_group", id)
                .with_metadata(serde_json::json!({ "display_name": before.display_name })),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The organization's group-to-role mappings, by group name.
    pub async fn list_scim_role_mappings(
        &self,
        ctx: &TenantCtx,
    ) -> Result<Vec<RoleMapping>, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Read).await?;
        let rows: Vec<(String, String, Option<RoleId>)> = on_conn!(tx.conn(), c => sqlx::query_as(
            "SELECT group_name, role, custom_role_id FROM scim_role_mappings WHERE org_id = $1 ORDER BY group_name",
        )
        .bind(ctx.org_id())
        .fetch_all(&mut *c)
        .await)?;
        tx.commit().await?;
        rows.into_iter()
            .map(|(group, role, custom)| {
                let role = RoleRef::from_columns(&role, custom)
                    .ok_or_else(|| StoreError::Corrupt(format!("scim role mapping {role}")))?;
                Ok(RoleMapping { group, role })
            })
            .collect()
    }

    /// Replaces every mapping, audited; the roles of grouped users follow at once.
    pub async fn set_scim_role_mappings(
        &self,
        ctx: &TenantCtx,
        mappings: &[RoleMapping],
    ) -> Result<(), StoreError> {
        let org = ctx.org_id();
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        on_conn!(tx.conn(), c => sqlx::query("DELETE FROM scim_role_mappings WHERE org_id = $1")
            .bind(org)
            .execute(&mut *c)
            .await
            .map(|_| ()))?;
        for mapping in mappings {
            if let RoleRef::Custom(id) = mapping.role {
                ensure_role_exists(&mut tx, org, id).await?;
            }
            let (role, custom) = mapping.role.columns();
            on_conn!(tx.conn(), c => sqlx::query(
                "INSERT INTO scim_role_mappings (org_id, group_name, role, custom_role_id) VALUES ($1, $2, $3, $4)",
            )
            .bind(org)
            .bind(&mapping.group)
            .bind(role)
            .bind(custom)
            .execute(&mut *c)
            .await
            .map(|_| ()))
            .map_err(|e| StoreError::unique(e, DomainError::NameTaken))?;
        }
        let users = grouped_users(&mut tx, org).await?;
        sync_roles(&mut tx, org, &users).await?;
        let listed: Vec<serde_json::Value> = mappings
            .iter()
            .map(|m| serde_json::json!({ "group": m.group, "role": m.role.to_string() }))
            .collect();
        tx.audit(
            AuditEntry::new("scim.role_mappings_updated", "organization", org)
                .with_metadata(serde_json::json!({ "mappings": listed })),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
