//! Members of the organization in the URL (`/v1/orgs/{org_id}/…`): the caller's
//! membership is checked before any tenant data is touched. A caller who is not a member
//! gets 404, exactly as for an organization that does not exist.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::StatusCode;

use super::{Actor, ActorKind, CurrentUser, TenantCtx};
use crate::http::error::ApiError;
use crate::ids::{OrgId, UserId, WorkspaceId};
use crate::rbac::{self, Permissions, RoleRef};
use crate::state::AppState;

/// A member of the organization in the path, with their effective permissions.
#[derive(Clone, Debug)]
pub struct OrgMember {
    /// Tenant context for store calls.
    pub ctx: TenantCtx,
    /// The user.
    pub user: UserId,
    /// Their organization role.
    pub role: RoleRef,
    /// What the role allows.
    pub permissions: Permissions,
}

/// Permissions of a role, given a custom role's stored permission list.
pub fn role_permissions(role: RoleRef, custom: Option<&str>) -> Permissions {
    match role {
        RoleRef::Builtin(name) => rbac::builtin(name).unwrap_or_default(),
        RoleRef::Custom(_) => custom
            .and_then(|json| serde_json::from_str::<Vec<String>>(json).ok())
            .unwrap_or_default()
            .iter()
            .filter_map(|p| rbac::permission(p))
            .collect(),
    }
}

impl OrgMember {
    /// 403 unless the member holds `permission`.
    pub fn require(&self, permission: &'static str) -> Result<(), ApiError> {
        if self.permissions.contains(permission) {
            return Ok(());
        }
        Err(forbidden(permission))
    }

    /// 403 unless the member holds `permission` in the organization or through their
    /// role in workspace `ws`.
    pub async fn require_in_workspace(
        &self,
        state: &AppState,
        ws: WorkspaceId,
        permission: &'static str,
    ) -> Result<(), ApiError> {
        if self.permissions.contains(permission) {
            return Ok(());
        }
        if let Some((role, custom)) = state.store.workspace_role(&self.ctx, ws, self.user).await? {
            if role_permissions(role, custom.as_deref()).contains(permission) {
                return Ok(());
            }
        }
        Err(forbidden(permission))
    }

    /// True for owners.
    pub fn is_owner(&self) -> bool {
        self.role.is_owner()
    }
}

fn forbidden(permission: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("This needs the `{permission}` permission."),
    )
    .with_extension("permission", serde_json::json!(permission))
}

impl FromRequestParts<AppState> for OrgMember {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let user = CurrentUser::from_request_parts(parts, state).await?;
        let Path(params): Path<HashMap<String, String>> = Path::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::not_found())?;
        let org: OrgId = params
            .get("org_id")
            .and_then(|raw| raw.parse().ok())
            .ok_or_else(ApiError::not_found)?;
        let access = state
            .store
            .member_access(org, user.id)
            .await?
            .ok_or_else(ApiError::not_found)?;
        let permissions = role_permissions(access.role, access.custom_permissions.as_deref());
        let actor = Actor {
            kind: ActorKind::User,
            id: Some(user.id.to_string()),
        };
        Ok(OrgMember {
            ctx: TenantCtx::new(org, actor, user.meta),
            user: user.id,
            role: access.role,
            permissions,
        })
    }
}
