//! Cookie sessions and the signed-in user's own account.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use axum_extra::extract::CookieJar;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::tokens::{authenticate, LoginIn};
use crate::auth::credentials::session_cookie;
use crate::auth::password::check_policy;
use crate::auth::user::csrf_token;
use crate::auth::{CurrentUser, Via};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::AppJson;
use crate::http::list::List;
use crate::http::meta::request_meta;
use crate::ids::SessionId;
use crate::secrets::{random_token, token_hash};
use crate::state::AppState;
use crate::store::identity::{LoginAttempt, NewSession, Session, User};

/// A started browser session.
#[derive(Serialize, ToSchema)]
pub(super) struct SessionOut {
    /// The user.
    pub user: User,
    /// The session.
    pub session: Session,
    /// Send as `X-CSRF-Token` on every state-changing request made with the cookie.
    pub csrf_token: String,
}

/// Signs in with a cookie session (for browsers).
#[utoipa::path(post, path = "/v1/auth/sessions", tag = "auth", request_body = LoginIn,
    responses(
        (status = 201, description = "Session started; cookie set", body = SessionOut),
        (status = 401, description = "`invalid_credentials`", body = Problem),
        (status = 429, description = "`rate_limited`", body = Problem)))]
pub(super) async fn create_session(
    State(state): State<AppState>,
    parts: axum::http::request::Parts,
    jar: CookieJar,
    AppJson(body): AppJson<LoginIn>,
) -> Result<(StatusCode, CookieJar, Json<SessionOut>), ApiError> {
    let meta = request_meta(&parts);
    let email = body.email.clone();
    let user = authenticate(&state, body, "cookie", &meta).await?;
    let (jar, session) = start_session(&state, jar, user.id, &email, "cookie", &meta).await?;
    let csrf = csrf_token(state.config.session_secret.expose(), session.id);
    Ok((
        StatusCode::CREATED,
        jar,
        Json(SessionOut {
            user,
            session,
            csrf_token: csrf,
        }),
    ))
}

/// Starts a cookie session for `user` (signed in with `email` by `method`, audited as a
/// sign-in) and adds its cookie to `jar`. The API's `POST /v1/auth/sessions` and the
/// console's sign-in and sign-up use it.
pub(crate) async fn start_session(
    state: &AppState,
    jar: CookieJar,
    user: crate::ids::UserId,
    email: &str,
    method: &'static str,
    meta: &crate::auth::RequestMeta,
) -> Result<(CookieJar, Session), ApiError> {
    let value = random_token(32);
    let hash = token_hash(&value);
    let auth = &state.config.auth;
    let ttl = chrono::Duration::from_std(auth.session_ttl).unwrap_or(chrono::Duration::days(7));
    let new = NewSession {
        hash: &hash,
        expires_at: crate::store::now() + ttl,
        max_per_user: auth.session_max_per_user,
    };
    let attempt = LoginAttempt {
        email,
        user: Some(user),
        method,
        refresh: None,
        session: Some(new),
    };
    let grant = state.store.record_login(attempt, meta).await?;
    let session = grant
        .session
        .ok_or_else(|| ApiError::internal(&"no session"))?;
    Ok((jar.add(session_cookie(&state.config.auth, value)), session))
}

/// The CSRF token.
#[derive(Serialize, ToSchema)]
pub(super) struct CsrfOut {
    /// Send as `X-CSRF-Token`.
    pub csrf_token: String,
}

/// The CSRF token of the current cookie session.
#[utoipa::path(get, path = "/v1/auth/csrf", tag = "auth",
    responses(
        (status = 200, description = "Token", body = CsrfOut),
        (status = 401, description = "No session", body = Problem)))]
pub(super) async fn csrf(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<CsrfOut>, ApiError> {
    let Via::Session(session) = user.via else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_a_session",
            "Token requests need no CSRF token.",
        ));
    };
    Ok(Json(CsrfOut {
        csrf_token: csrf_token(state.config.session_secret.expose(), session),
    }))
}

/// The signed-in user.
#[utoipa::path(get, path = "/v1/me", tag = "auth",
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "The user", body = User),
        (status = 401, description = "Not signed in", body = Problem)))]
pub(super) async fn me(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<User>, ApiError> {
    match state.store.get_user(user.id).await {
        Ok(user) => Ok(Json(user)),
        // A token for a deleted user proves nothing.
        Err(crate::store::StoreError::NotFound) => Err(ApiError::invalid_token(
            "The access token names a user that no longer exists.",
        )),
        Err(err) => Err(err.into()),
    }
}

/// A session in the listing.
#[derive(Serialize, ToSchema)]
pub(super) struct SessionItem {
    /// The session.
    #[serde(flatten)]
    pub session: Session,
    /// True for the session making this request.
    pub current: bool,
}

/// The signed-in user's live sessions.
#[utoipa::path(get, path = "/v1/me/sessions", tag = "auth",
    security(("bearer" = []), ("session" = [])),
    responses((status = 200, description = "Sessions, newest first", body = List<SessionItem>)))]
pub(super) async fn list_sessions(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<List<SessionItem>>, ApiError> {
    let sessions = state.store.list_sessions(user.id).await?;
    let current = match user.via {
        Via::Session(id) => Some(id),
        Via::Token { .. } => None,
    };
    Ok(Json(List::all(
        sessions
            .into_iter()
            .map(|s| SessionItem {
                current: Some(s.id) == current,
                session: s,
            })
            .collect(),
    )))
}

/// Revokes one of the signed-in user's sessions.
#[utoipa::path(delete, path = "/v1/me/sessions/{session_id}", tag = "auth",
    security(("bearer" = []), ("session" = [])),
    params(("session_id" = SessionId, Path, description = "Session id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such session of yours", body = Problem)))]
pub(super) async fn revoke_session(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: SessionId = id.parse().map_err(|_| ApiError::not_found())?;
    state.store.revoke_session(user.id, id, &user.meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// How many sessions were revoked.
#[derive(Serialize, ToSchema)]
pub(super) struct RevokedOut {
    /// Count.
    pub revoked: u64,
}

/// Revokes every session of the signed-in user except the current one.
#[utoipa::path(post, path = "/v1/me/sessions/revoke-others", tag = "auth",
    security(("session" = [])),
    responses(
        (status = 200, description = "Revoked", body = RevokedOut),
        (status = 400, description = "`not_a_session`: call with the session cookie", body = Problem)))]
pub(super) async fn revoke_other_sessions(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<RevokedOut>, ApiError> {
    let Via::Session(current) = user.via else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_a_session",
            "Call this with the session cookie.",
        ));
    };
    let revoked = state
        .store
        .revoke_other_sessions(user.id, current, &user.meta)
        .await?;
    Ok(Json(RevokedOut { revoked }))
}

/// Password change input.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangePasswordIn {
    /// The current password.
    pub current_password: String,
    /// The new password.
    #[schema(min_length = 8, max_length = 128)]
    pub new_password: String,
}

/// Changes the password; other sessions and all refresh tokens are revoked.
#[utoipa::path(post, path = "/v1/me/password", tag = "auth", request_body = ChangePasswordIn,
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 204, description = "Changed"),
        (status = 403, description = "`invalid_credentials`: current password wrong", body = Problem),
        (status = 422, description = "New password refused", body = Problem)))]
pub(crate) async fn change_password(
    State(state): State<AppState>,
    user: CurrentUser,
    AppJson(body): AppJson<ChangePasswordIn>,
) -> Result<StatusCode, ApiError> {
    let account = state.store.get_user(user.id).await?;
    check_policy(&body.new_password, &account.email)
        .map_err(|m| ApiError::validation("new_password", m))?;
    let stored = state.store.password_hash(user.id).await?;
    if !state
        .hasher
        .verify(body.current_password, Some(stored))
        .await?
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "invalid_credentials",
            "The current password is incorrect.",
        ));
    }
    let hash = state.hasher.hash(body.new_password).await?;
    let keep = match user.via {
        Via::Session(id) => Some(id),
        Via::Token { .. } => None,
    };
    state
        .store
        .change_password(user.id, &hash, keep, &user.meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
