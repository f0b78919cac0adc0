//! Callers of the organization in the URL (`/v1/orgs/{org_id}/…`): a signed-in member, or
//! one of the organization's API keys. Membership (or the key's own organization) is
//! checked before any tenant data is touched; anyone else gets 404, exactly as for an
//! organization that does not exist. The key's and the organization's rate limits are
//! counted here.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::StatusCode;

use super::credentials::bearer;
use super::{api_key, Actor, ActorKind, CurrentUser, TenantCtx};
use crate::features::{Features, Flag};
use crate::http::error::ApiError;
use crate::http::meta::request_meta;
use crate::http::ratelimit::RateLimitSlot;
use crate::ids::{ApiKeyId, OrgId, UserId, WorkspaceId};
use crate::ratelimit::Rate;
use crate::rbac::{Permission, Permissions, Plan, RoleRef};
use crate::state::AppState;

/// A caller of the organization in the path, with their effective permissions.
#[derive(Clone, Debug)]
pub struct OrgMember {
    /// Tenant context for store calls.
    pub ctx: TenantCtx,
    /// Who calls.
    pub principal: Principal,
    /// What the role (or the key's scopes) allows.
    pub permissions: Permissions,
    /// The organization's feature flags.
    pub features: Features,
}

/// The principal behind an organization request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Principal {
    /// A member, with their organization role.
    User {
        /// The user.
        id: UserId,
        /// Their role.
        role: RoleRef,
    },
    /// One of the organization's API keys.
    ApiKey(ApiKeyId),
}

impl OrgMember {
    /// 403 unless the member holds `permission`.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.permissions.contains(&permission) {
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
        permission: Permission,
    ) -> Result<(), ApiError> {
        if self.permissions.contains(&permission) {
            return Ok(());
        }
        if let Some(user) = self.user_id() {
            if let Some(role) = state.store.workspace_role(&self.ctx, ws, user).await? {
                if role.permissions.contains(&permission) {
                    return Ok(());
                }
            }
        }
        Err(forbidden(permission))
    }

    /// 403 `feature_disabled` unless `flag` is on for the organization.
    pub fn require_feature(&self, flag: Flag) -> Result<(), ApiError> {
        if self.features.enabled(flag) {
            return Ok(());
        }
        Err(ApiError::feature_disabled(flag))
    }

    /// True for owners (never for API keys).
    pub fn is_owner(&self) -> bool {
        matches!(self.principal, Principal::User { role, .. } if role.is_owner())
    }

    /// The signed-in user, when the caller is not an API key.
    pub fn user_id(&self) -> Option<UserId> {
        match self.principal {
            Principal::User { id, .. } => Some(id),
            Principal::ApiKey(_) => None,
        }
    }
}

fn forbidden(permission: Permission) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("This needs the `{permission}` permission."),
    )
    .with_extension("permission", serde_json::json!(permission))
}

fn path_org(params: &HashMap<String, String>) -> Result<OrgId, ApiError> {
    params
        .get("org_id")
        .and_then(|raw| raw.parse().ok())
        .ok_or_else(ApiError::not_found)
}

impl OrgMember {
    /// The caller of `parts` (an API key of `org`, or a signed-in member of it) with
    /// their permissions, the organization's plan and the key's own rate limit; 404 for
    /// anyone else. No rate limit is counted: [`OrgMember`]'s extractor does that.
    pub(crate) async fn resolve(
        parts: &mut Parts,
        state: &AppState,
        org: OrgId,
    ) -> Result<(Self, Plan, Option<(String, Rate)>), ApiError> {
        let limits = &state.config.limits;
        match bearer(parts).filter(|t| api_key::looks_like_key(t)) {
            Some(secret) => {
                let key = state
                    .api_keys
                    .verify(&state.store, secret)
                    .await?
                    .ok_or_else(ApiError::invalid_api_key)?;
                // A key of another organization learns nothing about this one.
                if org != key.org_id {
                    return Err(ApiError::not_found());
                }
                if key.suspended {
                    return Err(ApiError::org_suspended());
                }
                let actor = Actor {
                    kind: ActorKind::ApiKey,
                    id: Some(key.id.to_string()),
                };
                let member = OrgMember {
                    ctx: TenantCtx::new(key.org_id, actor, request_meta(parts)),
                    principal: Principal::ApiKey(key.id),
                    permissions: key.scopes,
                    features: key.features,
                };
                let rate = key.rate.unwrap_or(limits.api_key);
                Ok((member, key.plan, Some((format!("key:{}", key.id), rate))))
            }
            None => {
                let user = CurrentUser::from_request_parts(parts, state).await?;
                let access = state
                    .store
                    .member_access(org, user.id)
                    .await?
                    .ok_or_else(ApiError::not_found)?;
                if access.suspended {
                    return Err(ApiError::org_suspended());
                }
                let actor = Actor {
                    kind: ActorKind::User,
                    id: Some(user.id.to_string()),
                };
                let member = OrgMember {
                    ctx: TenantCtx::new(org, actor, user.meta),
                    principal: Principal::User {
                        id: user.id,
                        role: access.role,
                    },
                    permissions: access.permissions,
                    features: access.features,
                };
                Ok((member, access.plan, None))
            }
        }
    }
}

impl FromRequestParts<AppState> for OrgMember {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Path(params): Path<HashMap<String, String>> = Path::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::not_found())?;
        let limits = &state.config.limits;
        let org = path_org(&params)?;
        let (member, plan, key_rate) = Self::resolve(parts, state, org).await?;
        let org_key = format!("org:{}", member.ctx.org_id());
        let mut checks = vec![(org_key.as_str(), limits.org_rate(plan))];
        if let Some((key, rate)) = &key_rate {
            checks.push((key.as_str(), *rate));
        }
        if let Some(decision) = state.limiter.check(&checks).await {
            if !decision.allowed {
                return Err(crate::http::ratelimit::refused(&decision));
            }
            if let Some(slot) = parts.extensions.get::<RateLimitSlot>() {
                slot.record(decision);
            }
        }
        Ok(member)
    }
}
