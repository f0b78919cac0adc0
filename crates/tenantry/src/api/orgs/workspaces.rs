//! Workspaces and per-workspace member roles.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;

use super::parse_role;
use crate::auth::OrgMember;
use crate::domain::{DisplayName, Slug};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{AppJson, OrgPath};
use crate::http::list::List;
use crate::ids::{OrgId, UserId, WorkspaceId};
use crate::rbac::Permission;
use crate::services::access::ensure_role_grantable;
use crate::state::AppState;
use crate::store::workspaces::Workspace;

/// A new workspace.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WorkspaceIn {
    /// Display name.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub name: String,
    /// Slug, unique in the organization.
    #[schema(
        min_length = 2,
        max_length = 63,
        pattern = "^[a-z0-9][a-z0-9-]*[a-z0-9]$"
    )]
    pub slug: String,
}

/// Workspace changes.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WorkspacePatch {
    /// New name.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub name: Option<String>,
    /// New slug.
    #[schema(
        min_length = 2,
        max_length = 63,
        pattern = "^[a-z0-9][a-z0-9-]*[a-z0-9]$"
    )]
    pub slug: Option<String>,
}

/// Creates a workspace (`workspaces:write`).
#[utoipa::path(post, path = "/v1/orgs/{org_id}/workspaces", tag = "workspaces", request_body = WorkspaceIn,
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id")),
    responses(
        (status = 201, description = "Created", body = Workspace),
        (status = 409, description = "`slug_taken`", body = Problem)))]
pub(crate) async fn create_workspace(
    State(state): State<AppState>,
    member: OrgMember,
    AppJson(body): AppJson<WorkspaceIn>,
) -> Result<(StatusCode, Json<Workspace>), ApiError> {
    member.require(Permission::WorkspacesWrite)?;
    let name = DisplayName::parse(&body.name).map_err(|m| ApiError::validation("name", m))?;
    let slug = Slug::parse(&body.slug).map_err(|m| ApiError::validation("slug", m))?;
    Ok((
        StatusCode::CREATED,
        Json(
            state
                .store
                .create_workspace(&member.ctx, name, slug)
                .await?,
        ),
    ))
}

/// Lists workspaces (`workspaces:read`).
#[utoipa::path(get, path = "/v1/orgs/{org_id}/workspaces", tag = "workspaces",
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id")),
    responses((status = 200, description = "Workspaces", body = List<Workspace>)))]
pub(super) async fn list_workspaces(
    State(state): State<AppState>,
    member: OrgMember,
) -> Result<Json<List<Workspace>>, ApiError> {
    member.require(Permission::WorkspacesRead)?;
    Ok(Json(List::all(
        state.store.list_workspaces(&member.ctx).await?,
    )))
}

/// One workspace (`workspaces:read`, in the organization or the workspace).
#[utoipa::path(get, path = "/v1/orgs/{org_id}/workspaces/{ws_id}", tag = "workspaces",
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id"), ("ws_id" = WorkspaceId, Path, description = "Workspace id")),
    responses(
        (status = 200, description = "The workspace", body = Workspace),
        (status = 404, description = "Not found", body = Problem)))]
pub(super) async fn get_workspace(
    State(state): State<AppState>,
    member: OrgMember,
    OrgPath(ws): OrgPath<WorkspaceId>,
) -> Result<Json<Workspace>, ApiError> {
    member
        .require_in_workspace(&state, ws, Permission::WorkspacesRead)
        .await?;
    Ok(Json(state.store.get_workspace(&member.ctx, ws).await?))
}

/// Renames a workspace or changes its slug (`workspaces:write`, in the organization or
/// the workspace).
#[utoipa::path(patch, path = "/v1/orgs/{org_id}/workspaces/{ws_id}", tag = "workspaces", request_body = WorkspacePatch,
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id"), ("ws_id" = WorkspaceId, Path, description = "Workspace id")),
    responses(
        (status = 200, description = "Updated", body = Workspace),
        (status = 404, description = "Not found", body = Problem)))]
pub(crate) async fn update_workspace(
    State(state): State<AppState>,
    member: OrgMember,
    OrgPath(ws): OrgPath<WorkspaceId>,
    AppJson(body): AppJson<WorkspacePatch>,
) -> Result<Json<Workspace>, ApiError> {
    member
        .require_in_workspace(&state, ws, Permission::WorkspacesWrite)
        .await?;
    let name = body
        .name
        .as_deref()
        .map(DisplayName::parse)
        .transpose()
        .map_err(|m| ApiError::validation("name", m))?;
    let slug = body
        .slug
        .as_deref()
        .map(Slug::parse)
        .transpose()
        .map_err(|m| ApiError::validation("slug", m))?;
    Ok(Json(
        state
            .store
            .update_workspace(&member.ctx, ws, name, slug)
            .await?,
    ))
}

/// Deletes a workspace (`workspaces:write`).
#[utoipa::path(delete, path = "/v1/orgs/{org_id}/workspaces/{ws_id}", tag = "workspaces",
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id"), ("ws_id" = WorkspaceId, Path, description = "Workspace id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "Not found", body = Problem)))]
pub(crate) async fn delete_workspace(
    State(state): State<AppState>,
    member: OrgMember,
    OrgPath(ws): OrgPath<WorkspaceId>,
) -> Result<StatusCode, ApiError> {
    member
        .require_in_workspace(&state, ws, Permission::WorkspacesWrite)
        .await?;
    state.store.delete_workspace(&member.ctx, ws).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A role.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoleIn {
    /// A built-in role name or a custom role id.
    pub role: String,
}

/// Gives a member a role in this workspace on top of their organization role
/// (`members:update`).
#[utoipa::path(put, path = "/v1/orgs/{org_id}/workspaces/{ws_id}/members/{user_id}", tag = "workspaces", request_body = RoleIn,
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id"), ("ws_id" = WorkspaceId, Path, description = "Workspace id"),
           ("user_id" = UserId, Path, description = "Member")),
    responses(
        (status = 204, description = "Set"),
        (status = 404, description = "No such workspace or member", body = Problem)))]
pub(crate) async fn set_workspace_role(
    State(state): State<AppState>,
    member: OrgMember,
    OrgPath((ws, user)): OrgPath<(WorkspaceId, UserId)>,
    AppJson(body): AppJson<RoleIn>,
) -> Result<StatusCode, ApiError> {
    member.require(Permission::MembersUpdate)?;
    let role = parse_role("role", &body.role)?;
    ensure_role_grantable(&state.store, &member, role).await?;
    state
        .store
        .set_workspace_role(&member.ctx, ws, user, role)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a member's workspace role (`members:update`).
#[utoipa::path(delete, path = "/v1/orgs/{org_id}/workspaces/{ws_id}/members/{user_id}", tag = "workspaces",
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id"), ("ws_id" = WorkspaceId, Path, description = "Workspace id"),
           ("user_id" = UserId, Path, description = "Member")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such workspace role", body = Problem)))]
pub(crate) async fn remove_workspace_role(
    State(state): State<AppState>,
    member: OrgMember,
    OrgPath((ws, user)): OrgPath<(WorkspaceId, UserId)>,
) -> Result<StatusCode, ApiError> {
    member.require(Permission::MembersUpdate)?;
    state
        .store
        .remove_workspace_role(&member.ctx, ws, user)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
