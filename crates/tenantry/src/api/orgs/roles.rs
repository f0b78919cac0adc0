//! Custom roles.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::OrgMember;
use crate::domain::access::{grantable, parse_permissions};
use crate::domain::error::Grant;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{AppJson, OrgPath};
use crate::http::list::List;
use crate::ids::{OrgId, RoleId};
use crate::rbac::{BuiltinRole, Permission};
use crate::state::AppState;
use crate::store::roles::Role;

/// A custom role.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoleDefIn {
    /// Name, unique in the organization.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Permissions from the catalog (`GET /v1/permissions`).
    pub permissions: Vec<String>,
}

/// Custom role changes.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RolePatch {
    /// New name.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New permissions.
    pub permissions: Option<Vec<String>>,
}

/// Validates permissions against the catalog and the caller's own permissions.
fn checked_permissions(
    member: &OrgMember,
    requested: &[String],
) -> Result<Vec<Permission>, ApiError> {
    let mut permissions = parse_permissions(requested).map_err(|name| {
        ApiError::validation("permissions", format!("`{name}` is not in the catalog"))
    })?;
    grantable(
        Grant::RolePermission,
        &member.permissions,
        permissions.iter().copied(),
    )?;
    permissions.sort_unstable();
    Ok(permissions)
}

fn checked_name(raw: &str) -> Result<String, ApiError> {
    let name =
        crate::domain::DisplayName::parse(raw).map_err(|m| ApiError::validation("name", m))?;
    if BuiltinRole::ALL
        .iter()
        .any(|b| b.as_str().eq_ignore_ascii_case(name.as_str()))
    {
        return Err(ApiError::validation(
            "name",
            "is the name of a built-in role",
        ));
    }
    Ok(name.as_str().to_owned())
}

/// Creates a custom role (`roles:write`).
#[utoipa::path(post, path = "/v1/orgs/{org_id}/roles", tag = "roles", request_body = RoleDefIn,
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id")),
    responses(
        (status = 201, description = "Created", body = Role),
        (status = 409, description = "`name_taken`", body = Problem),
        (status = 422, description = "Unknown permission", body = Problem)))]
pub(crate) async fn create_role(
    State(state): State<AppState>,
    member: OrgMember,
    AppJson(body): AppJson<RoleDefIn>,
) -> Result<(StatusCode, Json<Role>), ApiError> {
    member.require(Permission::RolesWrite)?;
    let name = checked_name(&body.name)?;
    let permissions = checked_permissions(&member, &body.permissions)?;
    let role = state
        .store
        .create_role(&member.ctx, &name, body.description.trim(), &permissions)
        .await?;
    Ok((StatusCode::CREATED, Json(role)))
}

/// Lists custom roles (`roles:read`).
#[utoipa::path(get, path = "/v1/orgs/{org_id}/roles", tag = "roles",
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id")),
    responses((status = 200, description = "Custom roles", body = List<Role>)))]
pub(super) async fn list_roles(
    State(state): State<AppState>,
    member: OrgMember,
) -> Result<Json<List<Role>>, ApiError> {
    member.require(Permission::RolesRead)?;
    Ok(Json(List::all(state.store.list_roles(&member.ctx).await?)))
}

/// One custom role (`roles:read`).
#[utoipa::path(get, path = "/v1/orgs/{org_id}/roles/{role_id}", tag = "roles",
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id"), ("role_id" = RoleId, Path, description = "Role id")),
    responses(
        (status = 200, description = "The role", body = Role),
        (status = 404, description = "Not found", body = Problem)))]
pub(super) async fn get_role(
    State(state): State<AppState>,
    member: OrgMember,
    OrgPath(id): OrgPath<RoleId>,
) -> Result<Json<Role>, ApiError> {
    member.require(Permission::RolesRead)?;
    Ok(Json(state.store.get_role(&member.ctx, id).await?))
}

/// Changes a custom role (`roles:write`).
#[utoipa::path(patch, path = "/v1/orgs/{org_id}/roles/{role_id}", tag = "roles", request_body = RolePatch,
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id"), ("role_id" = RoleId, Path, description = "Role id")),
    responses(
        (status = 200, description = "Updated", body = Role),
        (status = 404, description = "Not found", body = Problem)))]
pub(crate) async fn update_role(
    State(state): State<AppState>,
    member: OrgMember,
    OrgPath(id): OrgPath<RoleId>,
    AppJson(body): AppJson<RolePatch>,
) -> Result<Json<Role>, ApiError> {
    member.require(Permission::RolesWrite)?;
    let name = body.name.as_deref().map(checked_name).transpose()?;
    let permissions = body
        .permissions
        .as_deref()
        .map(|p| checked_permissions(&member, p))
        .transpose()?;
    let role = state
        .store
        .update_role(
            &member.ctx,
            id,
            name.as_deref(),
            body.description.as_deref(),
            permissions.as_deref(),
        )
        .await?;
    Ok(Json(role))
}

/// Deletes a custom role nobody holds (`roles:write`).
#[utoipa::path(delete, path = "/v1/orgs/{org_id}/roles/{role_id}", tag = "roles",
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id"), ("role_id" = RoleId, Path, description = "Role id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 409, description = "`role_in_use`", body = Problem)))]
pub(crate) async fn delete_role(
    State(state): State<AppState>,
    member: OrgMember,
    OrgPath(id): OrgPath<RoleId>,
) -> Result<StatusCode, ApiError> {
    member.require(Permission::RolesWrite)?;
    state.store.delete_role(&member.ctx, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
