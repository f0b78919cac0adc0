//! Role-based access control: a fixed permission catalog, built-in roles as permission
//! sets, and custom roles per organization. Authorization checks permissions, never role
//! names.

use std::collections::BTreeSet;

use serde::Serialize;
use utoipa::ToSchema;

use crate::vocab::text_enum;

text_enum! {
    /// A permission of the catalog. Authorization checks these, never role names.
    pub enum Permission {
        OrgRead => "org:read": "View the organization",
        OrgUpdate => "org:update": "Rename the organization or change its slug",
        OrgDelete => "org:delete": "Delete the organization",
        MembersRead => "members:read": "List members",
        MembersInvite => "members:invite": "Invite people, list, resend and revoke invitations",
        MembersUpdate => "members:update": "Change members' roles",
        MembersRemove => "members:remove": "Remove members",
        RolesRead => "roles:read": "List roles",
        RolesWrite => "roles:write": "Create, change and delete custom roles",
        WorkspacesRead => "workspaces:read": "View workspaces",
        WorkspacesWrite => "workspaces:write": "Create, change and delete workspaces",
        BillingRead => "billing:read": "View the plan and billing",
        BillingManage => "billing:manage": "Change the plan and billing details",
        AuditRead => "audit:read": "Read the audit log",
        AuditExport => "audit:export": "Export the audit log (CSV, JSON)",
        OrgBroadcast => "org:broadcast": "Send a message to every member of the organization",
        ApiKeysRead => "api_keys:read": "List API keys",
        ApiKeysWrite => "api_keys:write": "Create, rotate and revoke API keys",
        JobsRead => "jobs:read": "View background jobs",
        JobsWrite => "jobs:write": "Enqueue, cancel and retry background jobs",
        UsageRead => "usage:read": "View usage and quotas",
        UsageWrite => "usage:write": "Report usage events",
        DataRead => "data:read": "Read the example data resource",
        DataWrite => "data:write": "Create and delete items of the example data resource",
        ScimManage => "scim:manage": "Manage SCIM provisioning tokens and group-to-role mappings",
    }
}

impl Permission {
    /// True for the read-only permissions (`…:read`).
    pub fn is_read(self) -> bool {
        self.as_str().ends_with(":read")
    }
}

/// Sets of permissions list in name order, as the catalog publishes them.
impl Ord for Permission {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for Permission {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

text_enum! {
    /// The built-in roles.
    pub enum BuiltinRole {
        /// Everything, including deleting the organization and the owner role itself.
        Owner => "owner",
        /// Everything but deleting the organization.
        Admin => "admin",
        /// Day-to-day work: workspaces, jobs, data, reading the rest.
        Member => "member",
        /// The plan and billing.
        Billing => "billing",
        /// Reads everything but the audit log.
        Readonly => "readonly",
    }
}

impl BuiltinRole {
    /// The role's permissions.
    pub fn permissions(self) -> Permissions {
        use Permission::*;
        let all = Permission::ALL.iter().copied();
        match self {
            Self::Owner => all.collect(),
            Self::Admin => all.filter(|p| *p != OrgDelete).collect(),
            Self::Member => [
                OrgRead,
                MembersRead,
                RolesRead,
                WorkspacesRead,
                WorkspacesWrite,
                ApiKeysRead,
                JobsRead,
                JobsWrite,
                UsageRead,
                DataRead,
                DataWrite,
            ]
            .into(),
            Self::Billing => [OrgRead, MembersRead, BillingRead, BillingManage, UsageRead].into(),
            Self::Readonly => all.filter(|p| p.is_read() && *p != AuditRead).collect(),
        }
    }
}

/// A set of permissions.
pub type Permissions = BTreeSet<Permission>;

/// The catalog and built-in roles, as published.
#[derive(Serialize, ToSchema)]
pub struct CatalogOut {
    /// Every permission.
    pub permissions: Vec<PermissionOut>,
    /// Built-in roles and their permissions.
    pub roles: Vec<BuiltinRoleOut>,
}

/// A permission.
#[derive(Serialize, ToSchema)]
pub struct PermissionOut {
    /// Name, e.g. `members:invite`.
    #[schema(value_type = String)]
    pub name: Permission,
    /// What it allows.
    pub description: &'static str,
}

/// A built-in role.
#[derive(Serialize, ToSchema)]
pub struct BuiltinRoleOut {
    /// Role key.
    #[schema(value_type = String)]
    pub name: BuiltinRole,
    /// Its permissions.
    #[schema(value_type = Vec<String>)]
    pub permissions: Vec<Permission>,
}

/// The published catalog.
pub fn catalog() -> CatalogOut {
    CatalogOut {
        permissions: Permission::ALL
            .iter()
            .map(|&name| PermissionOut {
                name,
                description: name.description(),
            })
            .collect(),
        roles: BuiltinRole::ALL
            .iter()
            .map(|&name| BuiltinRoleOut {
                name,
                permissions: name.permissions().into_iter().collect(),
            })
            .collect(),
    }
}

text_enum! {
    /// A plan: what drives member limits, rate limits and quotas.
    pub enum Plan {
        /// The default plan.
        Free => "free",
        /// The paid plan.
        Pro => "pro",
        /// The largest plan: no member limit.
        Enterprise => "enterprise",
    }
}

impl Plan {
    /// The plan named `raw`, in any case (`PRO` as the original products write it).
    pub fn parse_any_case(raw: &str) -> Option<Self> {
        Self::parse(&raw.trim().to_ascii_lowercase())
    }

    /// The plan named in input, for a 422 on failure.
    pub fn from_input(raw: &str) -> Result<Self, String> {
        Self::parse_any_case(raw).ok_or_else(|| "must be free, pro or enterprise".to_owned())
    }

    /// Position in [`Plan::ALL`], for per-plan settings.
    pub const fn index(self) -> usize {
        match self {
            Self::Free => 0,
            Self::Pro => 1,
            Self::Enterprise => 2,
        }
    }

    /// Members allowed (`None` = unlimited).
    pub const fn member_limit(self) -> Option<i64> {
        match self {
            Self::Free => Some(3),
            Self::Pro => Some(10),
            Self::Enterprise => None,
        }
    }
}

/// A role as members and invitations carry it: built-in or a custom role of the org.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleRef {
    /// A built-in role.
    Builtin(BuiltinRole),
    /// A custom role.
    Custom(crate::ids::RoleId),
}

impl RoleRef {
    /// The owner role.
    pub const OWNER: Self = Self::Builtin(BuiltinRole::Owner);

    /// Parses `owner`…`readonly` or a custom role id `rol_…`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if let Some(role) = BuiltinRole::parse(raw) {
            return Ok(Self::Builtin(role));
        }
        raw.parse().map(Self::Custom).map_err(|_| {
            let names: Vec<&str> = BuiltinRole::ALL.iter().map(|r| r.as_str()).collect();
            format!(
                "must be one of {} or a custom role id (rol_…)",
                names.join(", ")
            )
        })
    }

    /// The stored columns `(role, custom_role_id)`.
    pub fn columns(self) -> (&'static str, Option<crate::ids::RoleId>) {
        match self {
            Self::Builtin(role) => (role.as_str(), None),
            Self::Custom(id) => ("custom", Some(id)),
        }
    }

    /// From the stored columns.
    pub fn from_columns(role: &str, custom: Option<crate::ids::RoleId>) -> Option<Self> {
        match (role, custom) {
            ("custom", Some(id)) => Some(Self::Custom(id)),
            (name, None) => BuiltinRole::parse(name).map(Self::Builtin),
            _ => None,
        }
    }

    /// What the role allows, given a custom role's stored permissions.
    pub fn permissions(self, custom: Option<Permissions>) -> Permissions {
        match self {
            Self::Builtin(role) => role.permissions(),
            Self::Custom(_) => custom.unwrap_or_default(),
        }
    }

    /// True for the owner role.
    pub fn is_owner(self) -> bool {
        self == Self::OWNER
    }
}

impl std::fmt::Display for RoleRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Builtin(role) => f.write_str(role.as_str()),
            Self::Custom(id) => write!(f, "{id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_roles() {
        use Permission::*;
        let of = BuiltinRole::permissions;
        assert_eq!(of(BuiltinRole::Owner).len(), Permission::ALL.len());
        assert!(of(BuiltinRole::Owner).contains(&OrgDelete));
        assert!(!of(BuiltinRole::Admin).contains(&OrgDelete));
        assert!(of(BuiltinRole::Readonly).iter().all(|p| p.is_read()));
        assert!(!of(BuiltinRole::Readonly).contains(&AuditRead));
        assert!(of(BuiltinRole::Member).is_subset(&of(BuiltinRole::Admin)));
        assert_eq!(BuiltinRole::parse("nobody"), None);
    }

    #[test]
    fn names_round_trip_and_sets_sort_by_name() {
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()), Some(*p));
        }
        let names: Vec<&str> = BuiltinRole::Billing
            .permissions()
            .into_iter()
            .map(Permission::as_str)
            .collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        assert_eq!(Plan::parse_any_case(" PRO "), Some(Plan::Pro));
        assert_eq!(Plan::parse("PRO"), None);
    }
}
