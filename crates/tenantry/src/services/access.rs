//! Granting: roles, custom roles' permissions and API keys' scopes never reach beyond what
//! the grantor holds.

use crate::auth::OrgMember;
use crate::domain::access::{grantable, owner_rule};
use crate::domain::error::Grant;
use crate::domain::DomainError;
use crate::rbac::RoleRef;
use crate::store::{Store, StoreError};

/// Refuses to give `role` (to a member, an invitee or a workspace member) unless `member`
/// holds all it allows; owners may give any role, and only owners give the owner role.
pub(crate) async fn ensure_role_grantable(
    store: &Store,
    member: &OrgMember,
    role: RoleRef,
) -> Result<(), StoreError> {
    if member.is_owner() {
        return Ok(());
    }
    owner_rule(false, None, Some(role))?;
    let granted = match role {
        RoleRef::Builtin(builtin) => builtin.permissions(),
        RoleRef::Custom(id) => match store.get_role(&member.ctx, id).await {
            Ok(custom) => custom.permissions.into_iter().collect(),
            Err(StoreError::NotFound) => {
                return Err(StoreError::Invalid(
                    "role",
                    "no such role in this organization".to_owned(),
                ))
            }
            Err(err) => return Err(err),
        },
    };
    grantable(Grant::Role, &member.permissions, granted).map_err(|_| {
        DomainError::NotHeld {
            grant: Grant::Role,
            permission: None,
        }
        .into()
    })
}
