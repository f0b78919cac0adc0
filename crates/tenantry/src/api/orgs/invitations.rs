//! Invitations: create, list, revoke, resend, accept.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::parse_role;
use crate::auth::{CurrentUser, OrgMember};
use crate::domain::Email;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{AppJson, OrgPath};
use crate::http::list::List;
use crate::ids::{InvitationId, OrgId};
use crate::rbac::Permission;
use crate::secrets::token_hash;
use crate::services::access::ensure_role_grantable;
use crate::services::invitations::new_token;
use crate::state::AppState;
use crate::store::invitations::Invitation;

/// An invitation to send.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct InvitationIn {
    /// Address to invite.
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    /// Role on acceptance: built-in name or custom role id.
    pub role: String,
}

/// A created invitation with its token, shown this once.
#[derive(Serialize, ToSchema)]
pub(crate) struct InvitationCreated {
    /// The invitation.
    #[serde(flatten)]
    pub invitation: Invitation,
    /// The one-time token (also emailed); only its hash is stored.
    pub token: String,
}

/// Invites someone (`members:invite`). Counts against the plan's member limit.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/invitations", tag = "members", request_body = InvitationIn,
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id")),
    responses(
        (status = 201, description = "Invited; the token is in the response once", body = InvitationCreated),
        (status = 403, description = "`plan_limit_reached` or `forbidden`", body = Problem),
        (status = 409, description = "`already_member` or `already_invited`", body = Problem)))]
pub(crate) async fn create_invitation(
    State(state): State<AppState>,
    member: OrgMember,
    AppJson(body): AppJson<InvitationIn>,
) -> Result<(StatusCode, Json<InvitationCreated>), ApiError> {
    member.require(Permission::MembersInvite)?;
    let email = Email::parse(&body.email).map_err(|m| ApiError::validation("email", m))?;
    let role = parse_role("role", &body.role)?;
    ensure_role_grantable(&state.store, &member, role).await?;
    let (token, stored) = new_token(
        &state.store,
        &state.config.auth.public_base_url,
        &member.ctx,
        email.as_str(),
    )
    .await?;
    let invitation = state
        .store
        .create_invitation(&member.ctx, email.as_str(), role, &stored)
        .await?;
    state.request_mail_delivery().await;
    Ok((
        StatusCode::CREATED,
        Json(InvitationCreated { invitation, token }),
    ))
}

/// Lists invitations (`members:invite`).
#[utoipa::path(get, path = "/v1/orgs/{org_id}/invitations", tag = "members",
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id")),
    responses((status = 200, description = "Invitations", body = List<Invitation>)))]
pub(super) async fn list_invitations(
    State(state): State<AppState>,
    member: OrgMember,
) -> Result<Json<List<Invitation>>, ApiError> {
    member.require(Permission::MembersInvite)?;
    Ok(Json(List::all(
        state.store.list_invitations(&member.ctx).await?,
    )))
}

/// Revokes a pending invitation (`members:invite`).
#[utoipa::path(delete, path = "/v1/orgs/{org_id}/invitations/{invitation_id}", tag = "members",
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id"), ("invitation_id" = InvitationId, Path, description = "Invitation")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "Not found", body = Problem),
        (status = 409, description = "`invitation_not_pending`", body = Problem)))]
pub(crate) async fn revoke_invitation(
    State(state): State<AppState>,
    member: OrgMember,
    OrgPath(id): OrgPath<InvitationId>,
) -> Result<StatusCode, ApiError> {
    member.require(Permission::MembersInvite)?;
    state.store.revoke_invitation(&member.ctx, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Re-sends an invitation with a new token and expiry (`members:invite`).
#[utoipa::path(post, path = "/v1/orgs/{org_id}/invitations/{invitation_id}/resend", tag = "members",
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id"), ("invitation_id" = InvitationId, Path, description = "Invitation")),
    responses(
        (status = 200, description = "Re-sent; the new token is in the response once", body = InvitationCreated),
        (status = 404, description = "Not found", body = Problem)))]
pub(crate) async fn resend_invitation(
    State(state): State<AppState>,
    member: OrgMember,
    OrgPath(id): OrgPath<InvitationId>,
) -> Result<Json<InvitationCreated>, ApiError> {
    member.require(Permission::MembersInvite)?;
    let (token, stored) = new_token(
        &state.store,
        &state.config.auth.public_base_url,
        &member.ctx,
        "",
    )
    .await?;
    let invitation = state
        .store
        .resend_invitation(&member.ctx, id, &stored)
        .await?;
    state.request_mail_delivery().await;
    Ok(Json(InvitationCreated { invitation, token }))
}

/// An invitation token.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AcceptIn {
    /// The token from the invitation.
    pub token: String,
}

/// The organization joined.
#[derive(Serialize, ToSchema)]
pub(crate) struct AcceptedOut {
    /// The organization.
    pub org_id: OrgId,
}

/// Accepts an invitation as the signed-in user (whose email must be the invited one).
#[utoipa::path(post, path = "/v1/invitations/accept", tag = "members", request_body = AcceptIn,
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "Joined", body = AcceptedOut),
        (status = 403, description = "`plan_limit_reached` or `invitation_email_mismatch`", body = Problem),
        (status = 422, description = "Invalid, used or expired token", body = Problem)))]
pub(crate) async fn accept_invitation(
    State(state): State<AppState>,
    user: CurrentUser,
    AppJson(body): AppJson<AcceptIn>,
) -> Result<Json<AcceptedOut>, ApiError> {
    let account = state.store.get_user(user.id).await?;
    let org_id = state
        .store
        .accept_invitation(
            &token_hash(&body.token),
            user.id,
            &account.email,
            &user.meta,
        )
        .await?;
    Ok(Json(AcceptedOut { org_id }))
}
