//! The SCIM wire protocol: request bodies (`application/scim+json` or `application/json`),
//! answers in `application/scim+json` with `ETag`, `If-Match` preconditions, and absolute
//! resource locations.

use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{ScimError, SCIM_JSON};
use crate::state::AppState;

/// A JSON request body: 415 unless SCIM or plain JSON, 400 `invalidSyntax` when it does
/// not parse or is not an object.
pub(super) struct ScimBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for ScimBody {
    type Rejection = ScimError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ScimError> {
        let essence = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase());
        if !matches!(
            essence.as_deref(),
            Some("application/scim+json" | "application/json")
        ) {
            return Err(ScimError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                None,
                "Send `Content-Type: application/scim+json` (or application/json).",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|r| ScimError::new(r.status(), None, r.body_text()))?;
        if crate::http::extract::has_escaped_nul(&bytes) {
            return Err(ScimError::bad_request(
                "invalidValue",
                "Text may not contain the NUL character (U+0000).",
            ));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(value) if value.is_object() => Ok(Self(value)),
            Ok(_) => Err(ScimError::bad_request(
                "invalidSyntax",
                "The body must be a JSON object.",
            )),
            Err(e) => Err(ScimError::bad_request(
                "invalidSyntax",
                format!("The body is not valid JSON: {e}"),
            )),
        }
    }
}

/// A SCIM answer: status, body, and the resource's version as `ETag` (and `Location` on
/// creation).
pub(super) struct ScimResponse {
    status: StatusCode,
    body: Value,
}

impl ScimResponse {
    /// 200 with `body`.
    pub(super) fn ok(body: Value) -> Self {
        Self {
            status: StatusCode::OK,
            body,
        }
    }

    /// 201 with the created resource.
    pub(super) fn created(body: Value) -> Self {
        Self {
            status: StatusCode::CREATED,
            body,
        }
    }
}

impl IntoResponse for ScimResponse {
    fn into_response(self) -> Response {
        let etag = self.body["meta"]["version"]
            .as_str()
            .and_then(|v| HeaderValue::from_str(v).ok());
        let location = (self.status == StatusCode::CREATED)
            .then(|| self.body["meta"]["location"].as_str())
            .flatten()
            .and_then(|v| HeaderValue::from_str(v).ok());
        let mut response = (self.status, self.body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
        if let Some(etag) = etag {
            headers.insert(header::ETAG, etag);
        }
        if let Some(location) = location {
            headers.insert(header::LOCATION, location);
        }
        response
    }
}

/// The weak ETag of version `n`.
pub(super) fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// The version `If-Match` requires, if the header is there: `*` requires none; an ETag
/// that is not one of ours can never match (so it gives 412, not a silent write).
pub(super) fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ScimError> {
    let Some(raw) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let raw = raw.to_str().unwrap_or_default().trim();
    if raw == "*" {
        return Ok(None);
    }
    let version = raw
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse::<i64>()
        .map_err(|_| stale())?;
    Ok(Some(version))
}

/// 412: the resource is not at the version the client named.
pub(super) fn stale() -> ScimError {
    ScimError::new(
        StatusCode::PRECONDITION_FAILED,
        Some("invalidVers"),
        "The resource changed since the version given in If-Match; read it again.",
    )
}

/// Base of resource locations: `PUBLIC_BASE_URL` (or `API_BASE_URL`) when configured,
/// else the request's `Host` (https when cookies are secure, as in production), followed
/// by `/scim/v2`.
pub(crate) fn base_url(parts: &axum::http::request::Parts, state: &AppState) -> String {
    let auth = &state.config.auth;
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        // Only a plain host[:port] may end up in a Location header.
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        });
    let origin = match host {
        Some(host) if !auth.public_base_url_set => {
            let scheme = if auth.cookie_secure { "https" } else { "http" };
            format!("{scheme}://{host}")
        }
        _ => auth.public_base_url.trim_end_matches('/').to_owned(),
    };
    format!("{origin}/scim/v2")
}

/// `meta` of a resource.
pub(super) fn meta(
    base: &str,
    resource_type: &str,
    id: &str,
    created: chrono::DateTime<chrono::Utc>,
    modified: chrono::DateTime<chrono::Utc>,
    version: i64,
) -> Value {
    let collection = if resource_type == "User" {
        "Users"
    } else {
        "Groups"
    };
    serde_json::json!({
        "resourceType": resource_type,
        "created": created.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "lastModified": modified.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "location": format!("{base}/{collection}/{id}"),
        "version": etag(version),
    })
}

/// How often a PATCH without `If-Match` re-reads and retries when a concurrent change
/// moved the resource on between its read and its write.
const PATCH_ATTEMPTS: usize = 3;

/// Runs a read-modify-write `attempt` (it writes at the version it read): with
/// `If-Match`, once; without, again after a concurrent change (412), a few times.
pub(super) async fn read_modify_write<T, Fut>(
    required: Option<i64>,
    mut attempt: impl FnMut() -> Fut,
) -> Result<T, ScimError>
where
    Fut: std::future::Future<Output = Result<T, ScimError>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Err(err)
                if required.is_none()
                    && tries < PATCH_ATTEMPTS
                    && err.status() == StatusCode::PRECONDITION_FAILED => {}
            answer => return answer,
        }
    }
}
