//! Who may grant what: the rules every grant goes through (API keys' scopes, custom
//! roles' permissions, roles of members, invitees and workspace members).

use super::error::Grant;
use super::DomainError;
use crate::rbac::{Permission, Permissions, RoleRef};

/// Nothing is granted beyond what the grantor holds: the first requested permission the
/// grantor lacks refuses the grant.
pub fn grantable(
    grant: Grant,
    held: &Permissions,
    requested: impl IntoIterator<Item = Permission>,
) -> Result<(), DomainError> {
    match requested.into_iter().find(|p| !held.contains(p)) {
        None => Ok(()),
        Some(missing) => Err(DomainError::NotHeld {
            grant,
            permission: Some(missing),
        }),
    }
}

/// The owner role is only granted, changed or taken away by an owner: `current` is the
/// role being replaced or removed (if any), `new` the role being given (if any).
pub fn owner_rule(
    by_owner: bool,
    current: Option<RoleRef>,
    new: Option<RoleRef>,
) -> Result<(), DomainError> {
    let touches_owner =
        current.is_some_and(RoleRef::is_owner) || new.is_some_and(RoleRef::is_owner);
    if touches_owner && !by_owner {
        return Err(DomainError::OwnerRequired);
    }
    Ok(())
}

/// Permission names from input, each of the catalog, without repeats, in input order;
/// the first unknown name is the error.
pub fn parse_permissions(names: &[String]) -> Result<Vec<Permission>, &str> {
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let permission = Permission::parse(name).ok_or(name.as_str())?;
        if !out.contains(&permission) {
            out.push(permission);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rbac::BuiltinRole;

    #[test]
    fn grants_stay_within_what_is_held() {
        let held = BuiltinRole::Member.permissions();
        assert!(grantable(Grant::Role, &held, [Permission::DataRead]).is_ok());
        assert_eq!(
            grantable(
                Grant::KeyScope,
                &held,
                [Permission::DataRead, Permission::AuditRead]
            ),
            Err(DomainError::NotHeld {
                grant: Grant::KeyScope,
                permission: Some(Permission::AuditRead)
            })
        );
    }

    #[test]
    fn only_owners_touch_the_owner_role() {
        let admin = RoleRef::Builtin(BuiltinRole::Admin);
        assert!(owner_rule(false, Some(admin), Some(admin)).is_ok());
        assert_eq!(
            owner_rule(false, Some(RoleRef::OWNER), Some(admin)),
            Err(DomainError::OwnerRequired)
        );
        assert_eq!(
            owner_rule(false, None, Some(RoleRef::OWNER)),
            Err(DomainError::OwnerRequired)
        );
        assert!(owner_rule(true, Some(RoleRef::OWNER), None).is_ok());
    }

    #[test]
    fn permissions_parse_in_order_without_repeats() {
        let names = ["data:read", "org:read", "data:read"].map(String::from);
        assert_eq!(
            parse_permissions(&names),
            Ok(vec![Permission::DataRead, Permission::OrgRead])
        );
        assert_eq!(parse_permissions(&["nope".to_owned()]), Err("nope"));
    }
}
