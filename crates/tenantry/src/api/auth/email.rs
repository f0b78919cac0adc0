//! Email verification and password reset with single-use, expiring, hashed tokens.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use super::limit;
use crate::auth::password::check_policy;
use crate::auth::CurrentUser;
use crate::domain::DomainError;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::AppJson;
use crate::http::meta::request_meta;
use crate::secrets::token_hash;
use crate::services::identity::{reset_for, verification_for};
use crate::state::AppState;

/// Sends a new verification email to the signed-in user.
#[utoipa::path(post, path = "/v1/auth/verify-email/send", tag = "auth",
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 202, description = "Queued"),
        (status = 409, description = "`already_verified`", body = Problem)))]
pub(super) async fn send_verification(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<StatusCode, ApiError> {
    limit(
        &state,
        &format!("verify:user:{}", user.id),
        state.config.auth.login_identifier_limit,
    )
    .await?;
    let account = state.store.get_user(user.id).await?;
    if account.email_verified_at.is_some() {
        return Err(DomainError::AlreadyVerified.into());
    }
    let (_, (stored, email)) = verification_for(&state.config.auth.public_base_url, &account.email);
    state
        .store
        .issue_email_token(user.id, &stored, &email)
        .await?;
    state.request_mail_delivery().await;
    Ok(StatusCode::ACCEPTED)
}

/// A one-time token from an email.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenIn {
    /// The token from the link.
    pub token: String,
}

fn invalid_token() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_token",
        "The link is invalid, used or expired.",
    )
}

/// Confirms an email address.
#[utoipa::path(post, path = "/v1/auth/verify-email", tag = "auth", request_body = TokenIn,
    responses(
        (status = 204, description = "Verified"),
        (status = 400, description = "`invalid_token`", body = Problem)))]
pub(crate) async fn verify_email(
    State(state): State<AppState>,
    parts: axum::http::request::Parts,
    AppJson(body): AppJson<TokenIn>,
) -> Result<StatusCode, ApiError> {
    let meta = request_meta(&parts);
    match state
        .store
        .verify_email(&token_hash(&body.token), &meta)
        .await?
    {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(invalid_token()),
    }
}

/// A reset request.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResetRequestIn {
    /// The account's email.
    #[schema(format = Email, max_length = 254)]
    pub email: String,
}

/// Emails a password-reset link if the account exists. Always 202, so the answer does
/// not reveal whether it does.
#[utoipa::path(post, path = "/v1/auth/password-reset/request", tag = "auth", request_body = ResetRequestIn,
    responses(
        (status = 202, description = "Accepted"),
        (status = 429, description = "`rate_limited`", body = Problem)))]
pub(crate) async fn request_password_reset(
    State(state): State<AppState>,
    parts: axum::http::request::Parts,
    AppJson(body): AppJson<ResetRequestIn>,
) -> Result<StatusCode, ApiError> {
    let meta = request_meta(&parts);
    let auth = &state.config.auth;
    limit(
        &state,
        &format!("reset:ip:{}", super::client_ip(&meta)),
        auth.login_ip_limit,
    )
    .await?;
    let identifier = body.email.trim().to_lowercase();
    limit(
        &state,
        &format!("reset:id:{identifier}"),
        auth.login_identifier_limit,
    )
    .await?;
    if let Some((user, _)) = state.store.user_for_login(&identifier).await? {
        let (_, (stored, email)) = reset_for(&auth.public_base_url, &user.email);
        state
            .store
            .issue_email_token(user.id, &stored, &email)
            .await?;
        state.request_mail_delivery().await;
    }
    Ok(StatusCode::ACCEPTED)
}

/// A reset.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResetIn {
    /// The token from the link.
    pub token: String,
    /// The new password.
    #[schema(min_length = 8, max_length = 128)]
    pub new_password: String,
}

/// Sets a new password from a reset link; every session and refresh token is revoked.
#[utoipa::path(post, path = "/v1/auth/password-reset", tag = "auth", request_body = ResetIn,
    responses(
        (status = 204, description = "Password set"),
        (status = 400, description = "`invalid_token`", body = Problem),
        (status = 422, description = "Password refused", body = Problem)))]
pub(crate) async fn reset_password(
    State(state): State<AppState>,
    parts: axum::http::request::Parts,
    AppJson(body): AppJson<ResetIn>,
) -> Result<StatusCode, ApiError> {
    let meta = request_meta(&parts);
    check_policy(&body.new_password, "").map_err(|m| ApiError::validation("new_password", m))?;
    let hash = state.hasher.hash(body.new_password).await?;
    match state
        .store
        .reset_password(&token_hash(&body.token), &hash, &meta)
        .await?
    {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(invalid_token()),
    }
}
