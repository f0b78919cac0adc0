//! Role-based access control: a fixed permission catalog, built-in roles as permission
//! sets, and custom roles per organization. Authorization checks permissions, never role
//! names.

use std::collections::BTreeSet;

use serde::Serialize;
use utoipa::ToSchema;

/// Every permission, with what it allows.
pub const CATALOG: &[(&str, &str)] = &[
    ("org:read", "View the organization"),
    ("org:update", "Rename the organization or change its slug"),
    ("org:delete", "Delete the organization"),
    ("members:read", "List members"),
    (
        "members:invite",
        "Invite people, list, resend and revoke invitations",
    ),
    ("members:update", "Change members' roles"),
    ("members:remove", "Remove members"),
    ("roles:read", "List roles"),
    ("roles:write", "Create, change and delete custom roles"),
    ("workspaces:read", "View workspaces"),
    ("workspaces:write", "Create, change and delete workspaces"),
    ("billing:read", "View the plan and billing"),
    ("billing:manage", "Change the plan and billing details"),
    ("audit:read", "Read the audit log"),
    ("api_keys:read", "List API keys"),
    ("api_keys:write", "Create, rotate and revoke API keys"),
    ("jobs:read", "View background jobs"),
    ("jobs:write", "Enqueue, cancel and retry background jobs"),
    ("usage:read", "View usage and quotas"),
    ("usage:write", "Report usage events"),
    ("data:read", "Read the example data resource"),
    (
        "data:write",
        "Create and delete items of the example data resource",
    ),
];

/// The built-in roles.
pub const BUILTIN_ROLES: [&str; 5] = ["owner", "admin", "member", "billing", "readonly"];

/// A set of permissions.
pub type Permissions = BTreeSet<&'static str>;

/// True when `name` is in the catalog.
pub fn is_permission(name: &str) -> bool {
    CATALOG.iter().any(|(p, _)| *p == name)
}

/// The catalog's own `&'static str` for `name`.
pub fn permission(name: &str) -> Option<&'static str> {
    CATALOG.iter().map(|(p, _)| *p).find(|p| *p == name)
}

/// The permissions of a built-in role (`None` for an unknown name).
pub fn builtin(role: &str) -> Option<Permissions> {
    let all = || CATALOG.iter().map(|(p, _)| *p);
    let set: Permissions = match role {
        "owner" => all().collect(),
        "admin" => all().filter(|p| *p != "org:delete").collect(),
        "member" => [
            "org:read",
            "members:read",
            "roles:read",
            "workspaces:read",
            "workspaces:write",
            "api_keys:read",
            "jobs:read",
            "jobs:write",
            "usage:read",
            "data:read",
            "data:write",
        ]
        .into(),
        "billing" => [
            "org:read",
            "members:read",
            "billing:read",
            "billing:manage",
            "usage:read",
        ]
        .into(),
        "readonly" => all()
            .filter(|p| p.ends_with(":read") && *p != "audit:read")
            .collect(),
        _ => return None,
    };
    Some(set)
}

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
    pub name: &'static str,
    /// What it allows.
    pub description: &'static str,
}

/// A built-in role.
#[derive(Serialize, ToSchema)]
pub struct BuiltinRoleOut {
    /// Role key.
    pub name: &'static str,
    /// Its permissions.
    pub permissions: Vec<&'static str>,
}

/// The published catalog.
pub fn catalog() -> CatalogOut {
    CatalogOut {
        permissions: CATALOG
            .iter()
            .map(|(name, description)| PermissionOut { name, description })
            .collect(),
        roles: BUILTIN_ROLES
            .iter()
            .map(|name| BuiltinRoleOut {
                name,
                permissions: builtin(name).unwrap_or_default().into_iter().collect(),
            })
            .collect(),
    }
}

/// The plan limits.
pub mod plans {
    /// Plan names.
    pub const PLANS: [&str; 3] = ["free", "pro", "enterprise"];

    /// The plan named `raw`, in any case (`PRO` as the original products write it).
    pub fn parse(raw: &str) -> Option<&'static str> {
        PLANS
            .iter()
            .find(|p| p.eq_ignore_ascii_case(raw.trim()))
            .copied()
    }

    /// Position of `plan` in [`PLANS`] (unknown plans count as the first).
    pub fn index(plan: &str) -> usize {
        PLANS.iter().position(|p| *p == plan).unwrap_or(0)
    }

    /// Members allowed on `plan` (`None` = unlimited).
    pub fn member_limit(plan: &str) -> Option<i64> {
        match plan {
            "free" => Some(3),
            "pro" => Some(10),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_roles_use_catalog_permissions_only() {
        for role in BUILTIN_ROLES {
            let set = builtin(role).unwrap();
            assert!(set.iter().all(|p| is_permission(p)), "{role}");
        }
        assert!(builtin("owner").unwrap().contains("org:delete"));
        assert!(!builtin("admin").unwrap().contains("org:delete"));
        assert!(builtin("readonly")
            .unwrap()
            .iter()
            .all(|p| p.ends_with(":read")));
        assert!(builtin("member")
            .unwrap()
            .is_subset(&builtin("admin").unwrap()));
        assert!(builtin("nobody").is_none());
    }
}

/// A role as members and invitations carry it: built-in or a custom role of the org.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleRef {
    /// One of [`BUILTIN_ROLES`].
    Builtin(&'static str),
    /// A custom role.
    Custom(crate::ids::RoleId),
}

impl RoleRef {
    /// Parses `owner`…`readonly` or a custom role id `rol_…`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if let Some(name) = BUILTIN_ROLES.iter().find(|r| **r == raw) {
            return Ok(Self::Builtin(name));
        }
        raw.parse().map(Self::Custom).map_err(|_| {
            format!(
                "must be one of {} or a custom role id (rol_…)",
                BUILTIN_ROLES.join(", ")
            )
        })
    }

    /// The stored columns `(role, custom_role_id)`.
    pub fn columns(self) -> (&'static str, Option<crate::ids::RoleId>) {
        match self {
            Self::Builtin(name) => (name, None),
            Self::Custom(id) => ("custom", Some(id)),
        }
    }

    /// From the stored columns.
    pub fn from_columns(role: &str, custom: Option<crate::ids::RoleId>) -> Option<Self> {
        match (role, custom) {
            ("custom", Some(id)) => Some(Self::Custom(id)),
            (name, None) => BUILTIN_ROLES
                .iter()
                .find(|r| **r == name)
                .map(|r| Self::Builtin(r)),
            _ => None,
        }
    }

    /// True for the owner role.
    pub fn is_owner(self) -> bool {
        self == Self::Builtin("owner")
    }
}

impl std::fmt::Display for RoleRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Builtin(name) => f.write_str(name),
            Self::Custom(id) => write!(f, "{id}"),
        }
    }
}
