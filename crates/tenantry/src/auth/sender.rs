//! Who sent a request, before any handler runs: the scope of its idempotency keys.

use axum::http::request::Parts;
use axum_extra::extract::CookieJar;

use super::credentials::bearer;
use super::credentials::session_cookie_name;
use super::jwt::TokenError;
use crate::http::error::ApiError;
use crate::secrets::token_hash;
use crate::state::AppState;

/// The sender of a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Sender {
    /// No credential at all.
    Anonymous,
    /// A verified principal: `user:<id>`, `key:<id>` or `operator`.
    Known(String),
    /// A credential that does not verify (the handler will answer 401).
    Invalid,
}

/// Verifies the request's credential as the extractors do (access token, API key,
/// operator token or session cookie). A credential that cannot be checked because a
/// dependency is down is an error (503), never [`Sender::Invalid`].
pub async fn sender(parts: &Parts, state: &AppState) -> Result<Sender, ApiError> {
    if let Some(token) = bearer(parts) {
        if super::api_key::looks_like_key(token) {
            let key = state.api_keys.verify(&state.store, token).await?;
            return Ok(key.map_or(Sender::Invalid, |k| Sender::Known(format!("key:{}", k.id))));
        }
        if crate::secrets::digest_eq(token, state.config.internal_admin_token.expose()) {
            return Ok(Sender::Known("operator".to_owned()));
        }
        return match state.keys.verify(&state.store, token).await {
            Ok(claims) if !state.store.revoked_families().is_revoked(&claims.sid) => {
                Ok(Sender::Known(format!("user:{}", claims.sub)))
            }
            Ok(_) | Err(TokenError::Invalid(_) | TokenError::Expired) => Ok(Sender::Invalid),
            Err(TokenError::Store(err)) => Err(err.into()),
        };
    }
    let jar = CookieJar::from_headers(&parts.headers);
    let Some(cookie) = jar.get(session_cookie_name(&state.config.auth)) else {
        return Ok(Sender::Anonymous);
    };
    let auth = &state.config.auth;
    let session = state
        .store
        .session_by_token(
            &token_hash(cookie.value()),
            auth.session_idle_timeout,
            auth.session_sliding,
        )
        .await?;
    Ok(session.map_or(Sender::Invalid, |(_, user)| {
        Sender::Known(format!("user:{}", user.id))
    }))
}
