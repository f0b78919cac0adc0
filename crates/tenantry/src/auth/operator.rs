//! The operator credential: `Authorization: Bearer $INTERNAL_ADMIN_TOKEN`.

use super::credentials::bearer;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;

use super::{Actor, ActorKind, RequestMeta, TenantCtx};
use crate::http::error::ApiError;
use crate::http::meta::request_meta;
use crate::ids::OrgId;
use crate::state::AppState;

/// A request authenticated with the operator token.
#[derive(Clone, Debug)]
pub struct Operator {
    meta: RequestMeta,
}

impl Operator {
    /// Request facts for audit records.
    pub fn meta(&self) -> &RequestMeta {
        &self.meta
    }

    /// The actor recorded for operator actions.
    pub fn actor() -> Actor {
        Actor {
            kind: ActorKind::Operator,
            id: None,
        }
    }
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let presented = bearer(parts).ok_or_else(ApiError::missing_credentials)?;
        let expected = state.config.internal_admin_token.expose();
        if !crate::secrets::digest_eq(presented, expected) {
            return Err(ApiError::invalid_token(
                "The operator token (INTERNAL_ADMIN_TOKEN) is not valid.",
            ));
        }
        Ok(Operator {
            meta: request_meta(parts),
        })
    }
}

/// An operator acting on the organization named in the path (`{org_id}`).
#[derive(Clone, Debug)]
pub struct OperatorOrg(pub TenantCtx);

impl FromRequestParts<AppState> for OperatorOrg {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let operator = Operator::from_request_parts(parts, state).await?;
        let Path(params): Path<std::collections::HashMap<String, String>> =
            Path::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::not_found())?;
        // A malformed id is answered like a missing one.
        let org_id: OrgId = params
            .get("org_id")
            .and_then(|raw| raw.parse().ok())
            .ok_or_else(ApiError::not_found)?;
        Ok(OperatorOrg(TenantCtx::new(
            org_id,
            Operator::actor(),
            operator.meta,
        )))
    }
}

/// An operator reading the platform's own audit chain (sign-ins, failures, refresh-token
/// reuse, password resets), which belongs to no tenant.
#[derive(Clone, Debug)]
pub struct OperatorPlatform(pub TenantCtx);

impl FromRequestParts<AppState> for OperatorPlatform {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let operator = Operator::from_request_parts(parts, state).await?;
        Ok(OperatorPlatform(TenantCtx::new(
            OrgId::PLATFORM,
            Operator::actor(),
            operator.meta,
        )))
    }
}

/// The console's operator session cookie (path `/app/operator`).
pub(crate) const OPERATOR_COOKIE: &str = "tenantry_operator";
/// How long an operator stays signed in to the console.
pub(crate) const OPERATOR_SESSION: std::time::Duration = std::time::Duration::from_secs(8 * 3600);

/// HMAC over `label` and `value`, keyed with the session secret and bound to the operator
/// token: rotating `INTERNAL_ADMIN_TOKEN` ends every operator session.
fn operator_mac(state: &AppState, label: &str, value: &str) -> String {
    use hmac::Mac as _;
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(
        state.config.session_secret.expose().as_bytes(),
    )
    .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(label.as_bytes());
    mac.update(crate::secrets::token_hash(state.config.internal_admin_token.expose()).as_bytes());
    mac.update(value.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The cookie value of an operator console session ending at `expires` (unix seconds).
pub(crate) fn operator_session_value(state: &AppState, expires: i64) -> String {
    let expires = expires.to_string();
    let mac = operator_mac(state, "tenantry/operator-session/", &expires);
    format!("{expires}.{mac}")
}

/// The CSRF token of the operator console session `cookie`.
pub(crate) fn operator_csrf(state: &AppState, cookie: &str) -> String {
    operator_mac(state, "tenantry/operator-csrf/", cookie)
}

/// An operator signed in to the console with the operator token: the session cookie is
/// verified (and, for anything but a read, the form's CSRF token). 401 otherwise, which
/// the console answers with the operator sign-in page.
#[derive(Clone, Debug)]
pub struct OperatorSession {
    /// As the API's operator.
    pub operator: Operator,
    /// The session's CSRF token, for the page's forms.
    pub csrf: String,
}

impl FromRequestParts<AppState> for OperatorSession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let unauthenticated =
            || ApiError::invalid_token("Sign in to the operator console with the operator token.");
        let jar = axum_extra::extract::CookieJar::from_headers(&parts.headers);
        let cookie = jar
            .get(OPERATOR_COOKIE)
            .map(|c| c.value().to_owned())
            .ok_or_else(unauthenticated)?;
        let (expires, _) = cookie.split_once('.').ok_or_else(unauthenticated)?;
        let expires: i64 = expires.parse().map_err(|_| unauthenticated())?;
        let genuine = crate::secrets::digest_eq(&cookie, &operator_session_value(state, expires));
        if !genuine || expires < crate::store::now().timestamp() {
            return Err(unauthenticated());
        }
        let csrf = operator_csrf(state, &cookie);
        if parts.method != axum::http::Method::GET && parts.method != axum::http::Method::HEAD {
            let sent = parts
                .headers
                .get(crate::auth::user::CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !crate::secrets::digest_eq(sent, &csrf) {
                return Err(ApiError::new(
                    axum::http::StatusCode::FORBIDDEN,
                    "csrf_failed",
                    "The form's CSRF token is missing or not this session's; reload the page.",
                ));
            }
        }
        Ok(Self {
            operator: Operator {
                meta: request_meta(parts),
            },
            csrf,
        })
    }
}

impl OperatorSession {
    /// The operator acting on organization `org_id`.
    pub fn on_org(&self, org_id: OrgId) -> TenantCtx {
        TenantCtx::new(org_id, Operator::actor(), self.operator.meta.clone())
    }
}
