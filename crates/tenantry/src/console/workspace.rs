//! One workspace in the console: rename it, and give members a role of their own in it
//! (on top of their organization role), through the API's own handlers.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::pages::{org_chrome, page, role_choices, role_options, Chrome, OrgView, RoleOption};
use crate::api::orgs::workspaces::{
    remove_workspace_role, set_workspace_role, update_workspace, RoleIn, WorkspacePatch,
};
use crate::auth::{CurrentUser, OrgMember};
use crate::http::error::ApiError;
use crate::http::extract::{AppJson, OrgPath};
use crate::ids::{OrgId, UserId, WorkspaceId};
use crate::rbac::Permission;
use crate::state::AppState;
use crate::store::workspaces::Workspace;

/// A member with a role of their own here.
struct Override {
    user_id: UserId,
    name: String,
    email: String,
    role_label: String,
}

#[derive(Template)]
#[template(path = "console/workspace.html")]
struct WorkspacePage {
    chrome: Chrome,
    view: OrgView,
    tab: &'static str,
    workspace: Workspace,
    can_rename: bool,
    can_assign: bool,
    overrides: Vec<Override>,
    /// (user id, "name <email>") of the organization's members.
    members: Vec<(UserId, String)>,
    roles: Vec<RoleOption>,
}

fn workspace_id(raw: &str) -> Result<WorkspaceId, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found())
}

/// The workspace page (`workspaces:read`).
pub(super) async fn workspace(
    State(state): State<AppState>,
    user: CurrentUser,
    member: OrgMember,
    Path((_, ws)): Path<(OrgId, String)>,
) -> Result<Response, ApiError> {
    let ws = workspace_id(&ws)?;
    let (chrome, view) = org_chrome(&state, &user, &member).await?;
    member
        .require_in_workspace(&state, ws, Permission::WorkspacesRead)
        .await?;
    let workspace = state.store.get_workspace(&member.ctx, ws).await?;
    let can_rename = member
        .require_in_workspace(&state, ws, Permission::WorkspacesWrite)
        .await
        .is_ok();
    let can_assign = member.permissions.contains(&Permission::MembersUpdate);
    let choices = role_choices(&state, &member).await?;
    let label = |value: &str| {
        choices
            .iter()
            .find(|(v, _)| v == value)
            .map_or_else(|| value.to_owned(), |(_, l)| l.clone())
    };
    let overrides = state
        .store
        .list_workspace_roles(&member.ctx, ws)
        .await?
        .into_iter()
        .map(|line| Override {
            role_label: label(&line.role_value()),
            user_id: line.user_id,
            name: line.name,
            email: line.email,
        })
        .collect();
    let members = if can_assign {
        state
            .store
            .list_members(&member.ctx)
            .await?
            .into_iter()
            .map(|m| (m.user_id, format!("{} <{}>", m.name, m.email)))
            .collect()
    } else {
        Vec::new()
    };
    page(&WorkspacePage {
        chrome,
        view,
        tab: "workspaces",
        workspace,
        can_rename,
        can_assign,
        overrides,
        members,
        roles: role_options(&choices, "member"),
    })
}

/// The rename form.
#[derive(Deserialize)]
pub(super) struct RenameForm {
    name: String,
    slug: String,
}

/// Renames the workspace through the API's own handler.
pub(super) async fn rename(
    State(state): State<AppState>,
    member: OrgMember,
    Path((org, ws)): Path<(OrgId, String)>,
    Form(form): Form<RenameForm>,
) -> Result<Response, ApiError> {
    let ws = workspace_id(&ws)?;
    let patch = WorkspacePatch {
        name: Some(form.name),
        slug: Some(form.slug),
    };
    let axum::Json(_renamed) =
        update_workspace(State(state), member, OrgPath(ws), AppJson(patch)).await?;
    Ok(Redirect::to(&format!("/app/orgs/{org}/workspaces/{ws}")).into_response())
}

/// The role form.
#[derive(Deserialize)]
pub(super) struct AssignForm {
    user_id: String,
    role: String,
}

/// Gives a member a role in the workspace through the API's own handler.
pub(super) async fn assign(
    State(state): State<AppState>,
    member: OrgMember,
    Path((org, ws)): Path<(OrgId, String)>,
    Form(form): Form<AssignForm>,
) -> Result<Response, ApiError> {
    let ws = workspace_id(&ws)?;
    let user: UserId = form
        .user_id
        .parse()
        .map_err(|_| ApiError::validation("user_id", "not a member"))?;
    set_workspace_role(
        State(state),
        member,
        OrgPath((ws, user)),
        AppJson(RoleIn { role: form.role }),
    )
    .await?;
    Ok(Redirect::to(&format!("/app/orgs/{org}/workspaces/{ws}")).into_response())
}

/// Removes a member's workspace role through the API's own handler.
pub(super) async fn unassign(
    State(state): State<AppState>,
    member: OrgMember,
    Path((org, ws, user)): Path<(OrgId, String, String)>,
) -> Result<Response, ApiError> {
    let ws = workspace_id(&ws)?;
    let user: UserId = user.parse().map_err(|_| ApiError::not_found())?;
    remove_workspace_role(State(state), member, OrgPath((ws, user))).await?;
    Ok(Redirect::to(&format!("/app/orgs/{org}/workspaces/{ws}")).into_response())
}
