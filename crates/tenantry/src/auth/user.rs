//! The signed-in user: an access token (`Authorization: Bearer`) or a session cookie.
//! Cookie-authenticated requests that change state must carry the session's CSRF token
//! in `X-CSRF-Token`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum_extra::extract::CookieJar;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::credentials::{bearer, session_cookie_name};
use super::jwt::TokenError;
use super::RequestMeta;
use crate::http::error::ApiError;
use crate::http::meta::request_meta;
use crate::ids::{SessionId, UserId};
use crate::secrets::token_hash;
use crate::state::AppState;

/// Header carrying the CSRF token of cookie-authenticated requests.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How the user proved who they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    /// An access token issued from this refresh family.
    Token {
        /// Refresh family id.
        family: String,
    },
    /// A browser session.
    Session(SessionId),
}

/// A request from a signed-in user.
#[derive(Clone, Debug)]
pub struct CurrentUser {
    /// The user.
    pub id: UserId,
    /// The credential used.
    pub via: Via,
    /// Request facts for audit records.
    pub meta: RequestMeta,
}

/// The CSRF token bound to a session: HMAC-SHA256(`SESSION_SECRET`, session id).
pub fn csrf_token(secret: &str, session: SessionId) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(b"tenantry/csrf/");
    mac.update(session.to_string().as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let meta = request_meta(parts);
        if let Some(token) = bearer(parts) {
            let claims = state
                .keys
                .verify(&state.store, token)
                .await
                .map_err(|err| match err {
                    TokenError::Store(err) => ApiError::from(err),
                    TokenError::Expired => ApiError::token_expired(),
                    TokenError::Invalid(why) => {
                        tracing::debug!(error = %why, "access token refused");
                        ApiError::invalid_token("The access token is malformed, unsigned or not meant for this service.")
                    }
                })?;
            if state.store.revoked_families().is_revoked(&claims.sid) {
                return Err(ApiError::invalid_token(
                    "The access token was revoked (signed out, password changed or reset).",
                ));
            }
            let id: UserId = claims
                .sub
                .parse()
                .map_err(|_| ApiError::invalid_token("The access token names no valid user."))?;
            return Ok(Self {
                id,
                via: Via::Token { family: claims.sid },
                meta,
            });
        }
        let jar = CookieJar::from_headers(&parts.headers);
        let cookie = jar
            .get(session_cookie_name(&state.config.auth))
            .ok_or_else(ApiError::missing_credentials)?;
        let auth = &state.config.auth;
        let (session, user) = state
            .store
            .session_by_token(
                &token_hash(cookie.value()),
                auth.session_idle_timeout,
                auth.session_sliding,
            )
            .await?
            .ok_or_else(|| {
                ApiError::invalid_token("The session is unknown, expired or signed out.")
            })?;
        if !parts.method.is_safe() {
            let expected = csrf_token(state.config.session_secret.expose(), session.id);
            let presented = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !crate::secrets::digest_eq(presented, &expected) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "csrf_failed",
                    "A cookie-authenticated change needs the session's X-CSRF-Token header.",
                ));
            }
        }
        Ok(Self {
            id: user.id,
            via: Via::Session(session.id),
            meta,
        })
    }
}
