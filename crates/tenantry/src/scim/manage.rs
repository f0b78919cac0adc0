//! Managing SCIM for an organization (`scim:manage`): tokens (the secret is shown once)
//! and the group-to-role mappings.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{scim as credential, OrgMember};
use crate::domain::DisplayName;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{AppJson, OrgPath};
use crate::http::list::List;
use crate::ids::{OrgId, ScimTokenId};
use crate::rbac::{Permission, RoleRef};
use crate::secrets::token_hash;
use crate::state::AppState;
use crate::store::now;
use crate::store::scim::groups::RoleMapping;
use crate::store::scim::tokens::ScimToken;

/// Most group-to-role mappings an organization keeps.
const MAX_MAPPINGS: usize = 100;

/// The `/v1/orgs/{org_id}/scim/…` routes.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_scim_token, list_scim_tokens))
        .routes(routes!(revoke_scim_token))
        .routes(routes!(get_scim_role_mappings, set_scim_role_mappings))
}

/// A new SCIM token.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScimTokenIn {
    /// Display name, e.g. `Okta`.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// Expiry (RFC 3339, in the future); none means the token does not expire.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A token with its secret: returned once, at creation.
#[derive(Serialize, ToSchema)]
pub(crate) struct ScimTokenWithSecret {
    /// The token.
    #[serde(flatten)]
    pub token: ScimToken,
    /// The secret (`<prefix>_<random>`), the identity provider's bearer token. It is not
    /// stored and cannot be shown again.
    pub secret: String,
}

/// One group-to-role mapping.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoleMappingBody {
    /// The SCIM group's `displayName` (matched ignoring case).
    pub group: String,
    /// `admin`, `member`, `billing`, `readonly` or a custom role id (never `owner`).
    pub role: String,
}

/// Creates a SCIM token (`scim:manage`). The secret is in this response only.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/scim/tokens", tag = "scim", request_body = ScimTokenIn,
    security(("bearer" = []), ("session" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id")),
    responses(
        (status = 201, description = "Created; `secret` is shown once", body = ScimTokenWithSecret),
        (status = 403, description = "`forbidden`", body = Problem),
        (status = 422, description = "`validation_failed`", body = Problem)))]
pub(crate) async fn create_scim_token(
    State(state): State<AppState>,
    member: OrgMember,
    AppJson(body): AppJson<ScimTokenIn>,
) -> Result<(StatusCode, Json<ScimTokenWithSecret>), ApiError> {
    member.require(Permission::ScimManage)?;
    let name = DisplayName::parse(&body.name).map_err(|m| ApiError::validation("name", m))?;
    if body.expires_at.is_some_and(|at| at <= now()) {
        return Err(ApiError::validation("expires_at", "must be in the future"));
    }
    let (prefix, secret) = credential::generate();
    let token = state
        .store
        .create_scim_token(
            &member.ctx,
            member.user_id(),
            name.as_str(),
            (&prefix, &token_hash(&secret)),
            body.expires_at,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(ScimTokenWithSecret { token, secret }),
    ))
}

/// Lists the organization's SCIM tokens, revoked ones included (`scim:manage`).
#[utoipa::path(get, path = "/v1/orgs/{org_id}/scim/tokens", tag = "scim",
    security(("bearer" = []), ("session" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id")),
    responses((status = 200, description = "Tokens, newest first", body = List<ScimToken>)))]
pub(crate) async fn list_scim_tokens(
    State(state): State<AppState>,
    member: OrgMember,
) -> Result<Json<List<ScimToken>>, ApiError> {
    member.require(Permission::ScimManage)?;
    Ok(Json(List::all(
        state.store.list_scim_tokens(&member.ctx).await?,
    )))
}

/// Revokes a SCIM token at once (`scim:manage`); revoking twice is harmless.
#[utoipa::path(delete, path = "/v1/orgs/{org_id}/scim/tokens/{token_id}", tag = "scim",
    security(("bearer" = []), ("session" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id"), ("token_id" = ScimTokenId, Path, description = "Token id")),
    responses(
        (status = 200, description = "The revoked token", body = ScimToken),
        (status = 404, description = "Not found", body = Problem)))]
pub(crate) async fn revoke_scim_token(
    State(state): State<AppState>,
    member: OrgMember,
    OrgPath(id): OrgPath<ScimTokenId>,
) -> Result<Json<ScimToken>, ApiError> {
    member.require(Permission::ScimManage)?;
    Ok(Json(state.store.revoke_scim_token(&member.ctx, id).await?))
}

/// The group-to-role mappings (`scim:manage`).
#[utoipa::path(get, path = "/v1/orgs/{org_id}/scim/role-mappings", tag = "scim",
    security(("bearer" = []), ("session" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id")),
    responses((status = 200, description = "The mappings, by group name", body = List<RoleMappingBody>)))]
pub(crate) async fn get_scim_role_mappings(
    State(state): State<AppState>,
    member: OrgMember,
) -> Result<Json<List<RoleMappingBody>>, ApiError> {
    member.require(Permission::ScimManage)?;
    let mappings = state.store.list_scim_role_mappings(&member.ctx).await?;
    Ok(Json(List::all(
        mappings
            .into_iter()
            .map(|m| RoleMappingBody {
                group: m.group,
                role: m.role.to_string(),
            })
            .collect(),
    )))
}

/// Replaces every group-to-role mapping with the list sent (`scim:manage`). A provisioned
/// member's role is the most privileged of their mapped groups' (admin, custom roles,
/// member, billing, readonly); in no mapped group, `member`. Owners are never changed.
#[utoipa::path(put, path = "/v1/orgs/{org_id}/scim/role-mappings", tag = "scim", request_body = Vec<RoleMappingBody>,
    security(("bearer" = []), ("session" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id")),
    responses(
        (status = 200, description = "The mappings now", body = List<RoleMappingBody>),
        (status = 422, description = "`validation_failed`: owner, an unknown role, a duplicate group", body = Problem)))]
pub(crate) async fn set_scim_role_mappings(
    State(state): State<AppState>,
    member: OrgMember,
    AppJson(body): AppJson<Vec<RoleMappingBody>>,
) -> Result<Json<List<RoleMappingBody>>, ApiError> {
    member.require(Permission::ScimManage)?;
    if body.len() > MAX_MAPPINGS {
        return Err(ApiError::validation(
            "mappings",
            format!("at most {MAX_MAPPINGS}"),
        ));
    }
    let mut mappings = Vec::with_capacity(body.len());
    for m in &body {
        let group = DisplayName::parse(&m.group).map_err(|e| ApiError::validation("group", e))?;
        let role = crate::api::orgs::parse_role("role", &m.role)?;
        // A mapping grants its role through the identity provider: only a role the caller
        // could give by hand.
        crate::services::access::ensure_role_grantable(&state.store, &member, role).await?;
        if role == RoleRef::OWNER {
            return Err(ApiError::validation(
                "role",
                "owner cannot be granted through SCIM",
            ));
        }
        let group = group.as_str().to_owned();
        if mappings
            .iter()
            .any(|x: &RoleMapping| x.group.eq_ignore_ascii_case(&group))
        {
            return Err(ApiError::validation(
                "group",
                format!("`{group}` is mapped twice"),
            ));
        }
        mappings.push(RoleMapping { group, role });
    }
    state
        .store
        .set_scim_role_mappings(&member.ctx, &mappings)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Domain(crate::domain::DomainError::NameTaken) => {
                ApiError::validation("group", "a group is mapped twice")
            }
            other => other.into(),
        })?;
    get_scim_role_mappings(State(state), member).await
}
