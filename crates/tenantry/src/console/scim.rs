//! The organization's SCIM page (`scim:manage`): the base URL for the identity provider,
//! tokens (the secret shown once, revocation) and the group-to-role mappings, through the
//! API's own handlers.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::pages::{org_chrome, page, Chrome, OrgView};
use crate::auth::{CurrentUser, OrgMember};
use crate::features::Flag;
use crate::http::error::ApiError;
use crate::http::extract::{AppJson, OrgPath};
use crate::ids::{OrgId, ScimTokenId};
use crate::rbac::Permission;
use crate::scim::manage::{
    create_scim_token, get_scim_role_mappings, revoke_scim_token, set_scim_role_mappings,
    RoleMappingBody, ScimTokenIn,
};
use crate::state::AppState;
use crate::store::scim::tokens::ScimToken;

#[derive(Template)]
#[template(path = "console/scim.html")]
struct ScimPage {
    chrome: Chrome,
    view: OrgView,
    tab: &'static str,
    base_url: String,
    enabled: bool,
    tokens: Vec<ScimToken>,
    mappings: String,
    new_secret: Option<String>,
}

async fn scim_page(
    state: &AppState,
    parts: &Parts,
    user: &CurrentUser,
    member: &OrgMember,
    new_secret: Option<String>,
) -> Result<Response, ApiError> {
    let (chrome, view) = org_chrome(state, user, member).await?;
    member.require(Permission::ScimManage)?;
    let tokens = state.store.list_scim_tokens(&member.ctx).await?;
    let axum::Json(mappings) = get_scim_role_mappings(State(state.clone()), member.clone()).await?;
    let mappings = mappings
        .data
        .iter()
        .map(|m| format!("{} = {}", m.group, m.role))
        .collect::<Vec<_>>()
        .join("\n");
    page(&ScimPage {
        chrome,
        view,
        tab: "scim",
        base_url: crate::scim::base_url(parts, state),
        enabled: member.features.enabled(Flag::Scim),
        tokens,
        mappings,
        new_secret,
    })
}

/// The SCIM page.
pub(super) async fn scim(
    State(state): State<AppState>,
    parts: Parts,
    user: CurrentUser,
    member: OrgMember,
) -> Result<Response, ApiError> {
    scim_page(&state, &parts, &user, &member, None).await
}

/// The new token form's field.
#[derive(Deserialize)]
pub(super) struct NewTokenForm {
    name: String,
}

/// Creates a token, then shows the page with its secret, once.
pub(super) async fn create_token(
    State(state): State<AppState>,
    parts: Parts,
    user: CurrentUser,
    member: OrgMember,
    Form(form): Form<NewTokenForm>,
) -> Result<Response, ApiError> {
    let input = ScimTokenIn {
        name: form.name,
        expires_at: None,
    };
    let (_, axum::Json(created)) =
        create_scim_token(State(state.clone()), member.clone(), AppJson(input)).await?;
    scim_page(&state, &parts, &user, &member, Some(created.secret)).await
}

/// Revokes a token.
pub(super) async fn revoke_token(
    State(state): State<AppState>,
    member: OrgMember,
    Path((org, token)): Path<(OrgId, String)>,
) -> Result<Response, ApiError> {
    let token: ScimTokenId = token.parse().map_err(|_| ApiError::not_found())?;
    let axum::Json(_revoked) = revoke_scim_token(State(state), member, OrgPath(token)).await?;
    Ok(Redirect::to(&format!("/app/orgs/{org}/scim")).into_response())
}

/// The mappings form: one `group = role` per line.
#[derive(Deserialize)]
pub(super) struct MappingsForm {
    mappings: String,
}

/// Replaces the group-to-role mappings with the lines of the form.
pub(super) async fn set_mappings(
    State(state): State<AppState>,
    member: OrgMember,
    Path(org): Path<OrgId>,
    Form(form): Form<MappingsForm>,
) -> Result<Response, ApiError> {
    let mut body = Vec::new();
    for line in form
        .mappings
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        let (group, role) = line.rsplit_once('=').ok_or_else(|| {
            ApiError::validation("mappings", format!("`{line}` is not `group = role`"))
        })?;
        body.push(RoleMappingBody {
            group: group.trim().to_owned(),
            role: role.trim().to_owned(),
        });
    }
    let axum::Json(_saved) = set_scim_role_mappings(State(state), member, AppJson(body)).await?;
    Ok(Redirect::to(&format!("/app/orgs/{org}/scim")).into_response())
}
