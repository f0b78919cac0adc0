//! Members: list, change role, remove.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::parse_role;
use super::workspaces::RoleIn;
use crate::auth::OrgMember;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{AppJson, OrgPath};
use crate::http::list::List;
use crate::ids::{OrgId, UserId};
use crate::rbac::Permission;
use crate::services::access::ensure_role_grantable;
use crate::state::AppState;
use crate::store::members::Member;

/// Lists members (`members:read`).
#[utoipa::path(get, path = "/v1/orgs/{org_id}/members", tag = "members",
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id")),
    responses((status = 200, description = "Members", body = List<Member>)))]
pub(super) async fn list_members(
    State(state): State<AppState>,
    member: OrgMember,
) -> Result<Json<List<Member>>, ApiError> {
    member.require(Permission::MembersRead)?;
    Ok(Json(List::all(
        state.store.list_members(&member.ctx).await?,
    )))
}

/// Changes a member's role (`members:update`; only owners touch the owner role; a role
/// can only be granted by someone holding all its permissions).
#[utoipa::path(patch, path = "/v1/orgs/{org_id}/members/{user_id}", tag = "members", request_body = RoleIn,
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id"), ("user_id" = UserId, Path, description = "Member")),
    responses(
        (status = 204, description = "Changed"),
        (status = 403, description = "`forbidden` or `owner_required`", body = Problem),
        (status = 404, description = "Not a member", body = Problem),
        (status = 409, description = "`last_owner`", body = Problem)))]
pub(crate) async fn change_member_role(
    State(state): State<AppState>,
    member: OrgMember,
    OrgPath(target): OrgPath<UserId>,
    AppJson(body): AppJson<RoleIn>,
) -> Result<StatusCode, ApiError> {
    member.require(Permission::MembersUpdate)?;
    let role = parse_role("role", &body.role)?;
    ensure_role_grantable(&state.store, &member, role).await?;
    if !role.is_owner() {
        crate::services::demo::protect_owner(&state.config, &state.store, &member.ctx, target)
            .await?;
    }
    state
        .store
        .change_member_role(&member.ctx, target, role, member.is_owner())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a member (`members:remove`, or anyone leaving on their own; only owners remove
/// owners; the last owner stays).
#[utoipa::path(delete, path = "/v1/orgs/{org_id}/members/{user_id}", tag = "members",
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id"), ("user_id" = UserId, Path, description = "Member")),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "`forbidden` or `owner_required`", body = Problem),
        (status = 404, description = "Not a member", body = Problem),
        (status = 409, description = "`last_owner`", body = Problem)))]
pub(crate) async fn remove_member(
    State(state): State<AppState>,
    member: OrgMember,
    OrgPath(target): OrgPath<UserId>,
) -> Result<StatusCode, ApiError> {
    let leaving = Some(target) == member.user_id();
    if !leaving {
        member.require(Permission::MembersRemove)?;
    }
    crate::services::demo::protect_owner(&state.config, &state.store, &member.ctx, target).await?;
    state
        .store
        .remove_member(&member.ctx, target, member.is_owner())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
