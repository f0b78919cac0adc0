//! Errors as RFC 9457 problem details with a stable machine `code`.
//!
//! Handlers return [`ApiError`]. It travels in the response extensions and the
//! [`render_problems`](super::middleware::render_problems) middleware writes the body, so
//! every error, including the framework's own (unknown route, wrong method, timeout,
//! panic), leaves as `application/problem+json` with the request id.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::error::Kind;
use crate::domain::DomainError;
use crate::store::StoreError;

/// `WWW-Authenticate` of a 401 without a more specific challenge (RFC 6750).
pub(crate) const BEARER_CHALLENGE: &str = "Bearer realm=\"tenantry\"";
const INVALID_TOKEN_CHALLENGE: &str = "Bearer realm=\"tenantry\", error=\"invalid_token\"";
const EXPIRED_TOKEN_CHALLENGE: &str =
    "Bearer realm=\"tenantry\", error=\"invalid_token\", error_description=\"The access token expired\"";

/// Media type of problem details.
pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// The body of every error response (RFC 9457).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Problem {
    /// URI naming the problem type: `urn:tenantry:problem:<code>`.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Short summary of the problem type.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// Explanation of this occurrence. Absent for server faults.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Stable machine-readable code, e.g. `not_found`, `validation_failed`.
    pub code: String,
    /// The request's id, also sent as `x-request-id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Problem-specific members, e.g. `errors` for validation failures.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extensions: serde_json::Map<String, serde_json::Value>,
}

/// An error answered to the client.
#[derive(Clone, Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: Option<String>,
    extensions: serde_json::Map<String, serde_json::Value>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    /// The headers the answer carries (`Retry-After`, `RateLimit-*`, `WWW-Authenticate`).
    pub fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }

    /// An error with a status, code and detail.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: Some(detail.into()),
            extensions: Default::default(),
            headers: Vec::new(),
        }
    }

    /// The status of this error.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Its stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// Its explanation (none for server faults).
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// 404: the resource does not exist or belongs to another tenant (indistinguishable).
    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "The resource does not exist.",
        )
    }

    /// 403 `org_suspended`: the operator has suspended the organization; only the operator
    /// API still reads it.
    pub fn org_suspended() -> Self {
        crate::domain::DomainError::OrgSuspended.into()
    }

    /// 403 `feature_disabled`: `flag` is off for the organization (by its plan or the
    /// operator).
    pub fn feature_disabled(flag: crate::features::Flag) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "feature_disabled",
            format!("The `{flag}` feature is not enabled for this organization."),
        )
        .with_extension("feature", serde_json::json!(flag))
    }

    /// 401 `missing_credentials`: the request carries no credential at all.
    pub fn missing_credentials() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "missing_credentials",
            "This request needs credentials: `Authorization: Bearer <access token or API key>` or a session cookie.",
        )
    }

    /// 401 `invalid_token`: the presented token or session is unknown, malformed, revoked
    /// or not meant for this service.
    pub fn invalid_token(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_token", detail).with_header(
            axum::http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static(INVALID_TOKEN_CHALLENGE),
        )
    }

    /// 401 `invalid_api_key`: the `tk_…` key is unknown, revoked or expired.
    pub fn invalid_api_key() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "The API key is unknown, revoked or expired.",
        )
        .with_header(
            axum::http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static(INVALID_TOKEN_CHALLENGE),
        )
    }

    /// 401 `token_expired`: the access token was valid but has expired; refresh it.
    pub fn token_expired() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "token_expired",
            "The access token has expired; get a new one with the refresh token.",
        )
        .with_header(
            axum::http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static(EXPIRED_TOKEN_CHALLENGE),
        )
    }

    /// 422 naming the invalid field.
    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        let mut err = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            format!("{field}: {message}"),
        );
        err.extensions.insert(
            "errors".to_owned(),
            serde_json::json!([{ "field": field, "message": message }]),
        );
        err
    }

    /// 409 with a stable code.
    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    /// 503: a dependency is unreachable; the client may retry.
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "A dependency is temporarily unavailable; retry shortly.",
        )
    }

    /// 500: logged here with its cause, answered without detail.
    #[track_caller]
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        let at = std::panic::Location::caller();
        tracing::error!(error = %cause, at = %at, "internal error");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal_error",
            detail: None,
            extensions: Default::default(),
            headers: Vec::new(),
        }
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Adds a problem-specific member.
    pub fn with_extension(mut self, key: &str, value: serde_json::Value) -> Self {
        self.extensions.insert(key.to_owned(), value);
        self
    }

    /// The problem body, given the request id.
    pub fn to_problem(&self, request_id: Option<String>) -> Problem {
        Problem {
            problem_type: format!("urn:tenantry:problem:{}", self.code),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.to_owned(),
            request_id,
            extensions: self.extensions.clone(),
        }
    }

    /// The generic error for a status produced outside handlers.
    pub fn from_status(status: StatusCode, detail: Option<String>) -> Self {
        let code = match status.as_u16() {
            400 => "bad_request",
            401 => "missing_credentials",
            403 => "forbidden",
            404 => "not_found",
            405 => "method_not_allowed",
            408 => "request_timeout",
            409 => "conflict",
            413 => "payload_too_large",
            415 => "unsupported_media_type",
            422 => "validation_failed",
            429 => "rate_limited",
            503 => "service_unavailable",
            504 => "timeout",
            s if s >= 500 => "internal_error",
            _ => "error",
        };
        let detail = if status.is_server_error() {
            None
        } else {
            detail
        };
        Self {
            status,
            code,
            detail,
            extensions: Default::default(),
            headers: Vec::new(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        for (name, value) in &self.headers {
            response.headers_mut().insert(name.clone(), value.clone());
        }
        response.extensions_mut().insert(self);
        response
    }
}

impl From<StoreError> for ApiError {
    #[track_caller]
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => Self::not_found(),
            StoreError::Domain(refusal) => refusal.into(),
            StoreError::Invalid(field, why) => Self::validation(field, why),
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable");
                Self::unavailable()
            }
            other => Self::internal(&crate::telemetry::error_chain(&other)),
        }
    }
}

impl From<DomainError> for ApiError {
    fn from(refusal: DomainError) -> Self {
        let status = match refusal.kind() {
            Kind::Forbidden => StatusCode::FORBIDDEN,
            Kind::Conflict => StatusCode::CONFLICT,
        };
        let err = Self::new(status, refusal.code(), refusal.detail());
        match refusal.permission() {
            Some(permission) => err.with_extension("permission", serde_json::json!(permission)),
            None => err,
        }
    }
}

impl From<crate::usage::Refusal> for ApiError {
    #[track_caller]
    fn from(refusal: crate::usage::Refusal) -> Self {
        let q = match refusal {
            crate::usage::Refusal::Store(err) => return err.into(),
            crate::usage::Refusal::Quota(q) => q,
        };
        let wait = (q.resets_at - crate::store::now()).num_seconds().max(1);
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "quota_exceeded",
            format!(
                "The plan's {} API calls for this month are used up; upgrade the plan or wait until {}.",
                q.limit,
                q.resets_at.to_rfc3339()
            ),
        )
        .with_extension("limit", serde_json::json!(q.limit))
        .with_extension("used", serde_json::json!(q.used))
        .with_extension("resets_at", serde_json::json!(q.resets_at))
        .with_header(
            axum::http::header::RETRY_AFTER,
            HeaderValue::from(wait),
        )
    }
}
