//! How credentials travel: the `Authorization: Bearer` header and the session cookie.

use axum::http::request::Parts;
use axum_extra::extract::cookie::{Cookie, SameSite};

use crate::config::AuthConfig;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "tenantry_session";
/// Its name when the cookie is `Secure` and bound to no domain: the `__Host-` prefix makes
/// browsers refuse it from a sibling subdomain or over plain HTTP.
pub const HOST_SESSION_COOKIE: &str = "__Host-tenantry_session";

/// The session cookie's name under this configuration.
pub fn session_cookie_name(auth: &AuthConfig) -> &'static str {
    if auth.cookie_secure && auth.cookie_domain.is_none() {
        HOST_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    }
}

/// The session cookie: HttpOnly, SameSite=Lax, Secure per `COOKIE_SECURE`.
pub fn session_cookie(auth: &AuthConfig, value: String) -> Cookie<'static> {
    let mut cookie = Cookie::build((session_cookie_name(auth), value))
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(auth.cookie_secure)
        .path("/");
    if let Some(domain) = &auth.cookie_domain {
        cookie = cookie.domain(domain.clone());
    }
    let max_age = i64::try_from(auth.session_ttl.as_secs()).unwrap_or(i64::MAX);
    cookie.max_age(time::Duration::seconds(max_age)).build()
}

/// The token of an `Authorization: Bearer` header.
pub(crate) fn bearer(parts: &Parts) -> Option<&str> {
    bearer_token(&parts.headers)
}

/// The token of an `Authorization: Bearer` header in `headers`.
pub(crate) fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}
