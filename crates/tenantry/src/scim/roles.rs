//! Which role a provisioned user gets from the mapped groups they are in.
//!
//! Order, most privileged first: `admin`, custom roles, `member`, `billing`, `readonly`.
//! `owner` is never granted nor taken away by SCIM. Among several custom roles the first
//! group in name order wins. A user in no mapped group is a `member`.

use crate::rbac::{BuiltinRole, RoleRef};

/// Rank of a role in the order above (higher is more privileged).
fn rank(role: RoleRef) -> u8 {
    match role {
        RoleRef::Builtin(BuiltinRole::Owner) => 6,
        RoleRef::Builtin(BuiltinRole::Admin) => 5,
        RoleRef::Custom(_) => 4,
        RoleRef::Builtin(BuiltinRole::Member) => 3,
        RoleRef::Builtin(BuiltinRole::Billing) => 2,
        RoleRef::Builtin(BuiltinRole::Readonly) => 1,
    }
}

/// The most privileged of `mapped` (in group-name order), or `member` when empty.
pub fn strongest(mapped: &[RoleRef]) -> RoleRef {
    mapped
        .iter()
        .copied()
        .fold(None, |best: Option<RoleRef>, role| match best {
            Some(b) if rank(b) >= rank(role) => Some(b),
            _ => Some(role),
        })
        .unwrap_or(RoleRef::Builtin(BuiltinRole::Member))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_privileged_mapped_role_wins() {
        let admin = RoleRef::Builtin(BuiltinRole::Admin);
        let billing = RoleRef::Builtin(BuiltinRole::Billing);
        let readonly = RoleRef::Builtin(BuiltinRole::Readonly);
        assert_eq!(strongest(&[]), RoleRef::Builtin(BuiltinRole::Member));
        assert_eq!(strongest(&[readonly, billing]), billing);
        assert_eq!(strongest(&[billing, admin, readonly]), admin);
        let first = RoleRef::Custom(crate::ids::RoleId::new());
        let second = RoleRef::Custom(crate::ids::RoleId::new());
        assert_eq!(strongest(&[first, second, billing]), first);
    }
}
