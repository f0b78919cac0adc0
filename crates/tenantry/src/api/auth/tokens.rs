//! Registration, token sign-in, refresh rotation, logout, JWKS.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use axum_extra::extract::CookieJar;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{client_ip, limit};
use crate::auth::password::check_policy;
use crate::auth::{CurrentUser, Via};
use crate::domain::{DisplayName, DomainError, Email};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::AppJson;
use crate::http::meta::request_meta;
use crate::secrets::{random_token, token_hash};
use crate::state::AppState;
use crate::store::identity::{LoginAttempt, Refresh, User};

/// Sign-up input.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterIn {
    /// Email address (unique, case-insensitively).
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    /// 8-128 characters, not a common password.
    #[schema(min_length = 8, max_length = 128)]
    pub password: String,
    /// Display name.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub name: String,
    /// Creates this organization, owned by the new user, in the same transaction.
    pub org: Option<crate::api::orgs::NewOrgIn>,
    /// Joins the organization of this invitation (sent to the same email).
    pub invitation_token: Option<String>,
}

/// Credentials.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginIn {
    /// Email address.
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    /// Password.
    pub password: String,
}

/// A token pair.
#[derive(Serialize, ToSchema)]
pub(super) struct TokensOut {
    /// The user.
    pub user: User,
    /// The organization created or joined at registration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_id: Option<crate::ids::OrgId>,
    /// EdDSA-signed JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Opaque, single-use refresh token.
    pub refresh_token: String,
}

/// A refresh token presented.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RefreshIn {
    /// The refresh token.
    pub refresh_token: String,
}

/// Logout input: the refresh token to revoke (optional with a session cookie).
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct LogoutIn {
    /// The refresh token whose family ends.
    pub refresh_token: Option<String>,
}

/// A new refresh token and its hash and expiry.
fn new_refresh(state: &AppState) -> (String, String, chrono::DateTime<Utc>) {
    let token = format!("rt_{}", random_token(32));
    let hash = token_hash(&token);
    let ttl = chrono::Duration::from_std(state.config.auth.refresh_token_ttl)
        .unwrap_or(chrono::Duration::days(30));
    (token, hash, crate::store::now() + ttl)
}

async fn tokens_for(
    state: &AppState,
    user: User,
    family: uuid::Uuid,
    refresh_token: String,
) -> Result<TokensOut, ApiError> {
    let (access_token, expires_in) = state
        .keys
        .issue(&state.store, user.id, &family.simple().to_string())
        .await
        .map_err(|e| ApiError::internal(&e))?;
    Ok(TokensOut {
        user,
        org_id: None,
        access_token,
        token_type: "Bearer",
        expires_in,
        refresh_token,
    })
}

/// Creates an account and signs it in; a verification email is queued.
#[utoipa::path(post, path = "/v1/auth/register", tag = "auth", request_body = RegisterIn,
    responses(
        (status = 201, description = "Account created", body = TokensOut),
        (status = 409, description = "`email_taken`", body = Problem),
        (status = 422, description = "Invalid input", body = Problem),
        (status = 429, description = "`rate_limited`", body = Problem)))]
pub(super) async fn register(
    State(state): State<AppState>,
    parts: axum::http::request::Parts,
    AppJson(body): AppJson<RegisterIn>,
) -> Result<(StatusCode, Json<TokensOut>), ApiError> {
    let meta = request_meta(&parts);
    let (user, org_id) = create_account(&state, body, &meta).await?;
    let (refresh, refresh_hash, expires) = new_refresh(&state);
    let attempt = LoginAttempt {
        email: &user.email,
        user: Some(user.id),
        method: "register",
        refresh: Some((&refresh_hash, expires)),
        session: None,
    };
    let grant = state.store.record_login(attempt, &meta).await?;
    let family = grant
        .family
        .ok_or_else(|| ApiError::internal(&"no refresh family"))?;
    let mut out = tokens_for(&state, user, family, refresh).await?;
    out.org_id = org_id;
    Ok((StatusCode::CREATED, Json(out)))
}

/// Creates an account from a registration (with its first organization, or joining the
/// invitation it names) and queues its verification email; the caller signs it in. The
/// API's `POST /v1/auth/register` and the console's sign-up use it.
pub(crate) async fn create_account(
    state: &AppState,
    body: RegisterIn,
    meta: &crate::auth::RequestMeta,
) -> Result<(User, Option<crate::ids::OrgId>), ApiError> {
    limit(
        state,
        &format!("register:ip:{}", client_ip(meta)),
        state.config.auth.register_ip_limit,
    )
    .await?;
    let email = Email::parse(&body.email).map_err(|m| ApiError::validation("email", m))?;
    let name = DisplayName::parse(&body.name).map_err(|m| ApiError::validation("name", m))?;
    check_policy(&body.password, email.as_str())
        .map_err(|m| ApiError::validation("password", m))?;
    let org = body
        .org
        .as_ref()
        .map(crate::api::orgs::parse_new_org)
        .transpose()?;
    if let Some(token) = &body.invitation_token {
        match state.store.invitation_email(&token_hash(token)).await? {
            Some(invited) if invited.eq_ignore_ascii_case(email.as_str()) => {}
            Some(_) => return Err(DomainError::InvitationEmailMismatch.into()),
            None => {
                return Err(ApiError::validation(
                    "invitation_token",
                    "the invitation is invalid, used or expired",
                ))
            }
        }
    }
    let hash = state.hasher.hash(body.password).await?;
    let (_, verify) = crate::services::identity::verification_for(
        &state.config.auth.public_base_url,
        email.as_str(),
    );
    let (user, created) = state
        .store
        .register_user(email.as_str(), name.as_str(), &hash, verify, org, meta)
        .await?;
    state.request_mail_delivery().await;
    let mut org_id = created.map(|o| o.id);
    if let Some(invitation) = &body.invitation_token {
        // Joining is its own transaction: if the plan is full now, the account stays and
        // the invitation can be accepted later.
        let joined = state
            .store
            .accept_invitation(&token_hash(invitation), user.id, email.as_str(), meta)
            .await?;
        org_id = Some(joined);
    }
    Ok((user, org_id))
}

/// Checks credentials with per-IP and per-identifier limits, in constant time whether or
/// not the account exists, and audits the attempt. Returns the user on success.
pub(crate) async fn authenticate(
    state: &AppState,
    body: LoginIn,
    method: &'static str,
    meta: &crate::auth::RequestMeta,
) -> Result<User, ApiError> {
    let auth = &state.config.auth;
    limit(
        state,
        &format!("login:ip:{}", client_ip(meta)),
        auth.login_ip_limit,
    )
    .await?;
    let identifier = body.email.trim().to_lowercase();
    limit(
        state,
        &format!("login:id:{identifier}"),
        auth.login_identifier_limit,
    )
    .await?;
    let found = state.store.user_for_login(&identifier).await?;
    let (user, stored) = match found {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    let ok = state.hasher.verify(body.password, stored).await?;
    match user.filter(|_| ok) {
        Some(user) => Ok(user),
        None => {
            let attempt = LoginAttempt {
                email: body.email.trim(),
                user: None,
                method,
                refresh: None,
                session: None,
            };
            state.store.record_login(attempt, meta).await?;
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "Email or password is incorrect.",
            ))
        }
    }
}

/// Signs in with email and password; returns an access and a refresh token.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginIn,
    responses(
        (status = 200, description = "Signed in", body = TokensOut),
        (status = 401, description = "`invalid_credentials`", body = Problem),
        (status = 429, description = "`rate_limited`", body = Problem)))]
pub(super) async fn login(
    State(state): State<AppState>,
    parts: axum::http::request::Parts,
    AppJson(body): AppJson<LoginIn>,
) -> Result<Json<TokensOut>, ApiError> {
    let meta = request_meta(&parts);
    let email = body.email.clone();
    let user = authenticate(&state, body, "token", &meta).await?;
    let (refresh, refresh_hash, expires) = new_refresh(&state);
    let attempt = LoginAttempt {
        email: &email,
        user: Some(user.id),
        method: "token",
        refresh: Some((&refresh_hash, expires)),
        session: None,
    };
    let grant = state.store.record_login(attempt, &meta).await?;
    let family = grant
        .family
        .ok_or_else(|| ApiError::internal(&"no refresh family"))?;
    Ok(Json(tokens_for(&state, user, family, refresh).await?))
}

/// Exchanges a refresh token for a new pair. Each refresh token works once; presenting a
/// spent one revokes its whole family.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshIn,
    responses(
        (status = 200, description = "New tokens", body = TokensOut),
        (status = 401, description = "`invalid_refresh_token` or `refresh_token_reused`", body = Problem)))]
pub(super) async fn refresh(
    State(state): State<AppState>,
    parts: axum::http::request::Parts,
    AppJson(body): AppJson<RefreshIn>,
) -> Result<Json<TokensOut>, ApiError> {
    let meta = request_meta(&parts);
    let (next, next_hash, expires) = new_refresh(&state);
    match state
        .store
        .rotate_refresh(&token_hash(&body.refresh_token), &next_hash, expires, &meta)
        .await?
    {
        Refresh::Rotated { user, family } => {
            let user = state.store.get_user(user).await?;
            Ok(Json(tokens_for(&state, user, family, next).await?))
        }
        Refresh::Reused => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "refresh_token_reused",
            "This refresh token was already used; its session has been revoked.",
        )),
        Refresh::Invalid => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_refresh_token",
            "The refresh token is unknown, expired or revoked.",
        )),
    }
}

/// Signs out: revokes the refresh token's family, or ends the cookie session.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", request_body = LogoutIn,
    responses(
        (status = 204, description = "Signed out"),
        (status = 401, description = "No credential to revoke", body = Problem)))]
pub(super) async fn logout(
    State(state): State<AppState>,
    parts: axum::http::request::Parts,
    jar: CookieJar,
    raw: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let meta = request_meta(&parts);
    let body: LogoutIn = if raw.is_empty() {
        LogoutIn::default()
    } else {
        serde_json::from_slice(&raw).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                e.to_string(),
            )
        })?
    };
    if let Some(token) = body.refresh_token {
        if !state
            .store
            .logout_refresh(&token_hash(&token), &meta)
            .await?
        {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_refresh_token",
                "The refresh token is unknown or already revoked.",
            ));
        }
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let mut parts = parts;
    let user = <CurrentUser as axum::extract::FromRequestParts<AppState>>::from_request_parts(
        &mut parts, &state,
    )
    .await?;
    let Via::Session(session) = user.via else {
        return Err(ApiError::validation(
            "refresh_token",
            "is required to sign out a token session",
        ));
    };
    state.store.logout_session(user.id, session, &meta).await?;
    let jar = jar.remove(crate::auth::credentials::session_cookie(
        &state.config.auth,
        String::new(),
    ));
    Ok((StatusCode::NO_CONTENT, jar).into_response())
}

/// The public keys that verify access tokens (RFC 7517).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth",
    responses((status = 200, description = "JWK Set", body = Object)))]
pub(super) async fn jwks(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(state.keys.jwks().await)
}
