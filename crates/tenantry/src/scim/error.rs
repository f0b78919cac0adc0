//! SCIM errors (RFC 7644 §3.12): `{"schemas":[…Error],"status":"409","scimType":…,"detail":…}`
//! as `application/scim+json`. Store and authentication failures are translated here so
//! every answer under `/scim/v2` has this shape.

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::SCIM_JSON;
use crate::domain::DomainError;
use crate::http::error::ApiError;
use crate::store::StoreError;

/// URN of the error message schema.
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// An error answered to a SCIM client.
#[derive(Clone, Debug)]
pub struct ScimError {
    status: StatusCode,
    scim_type: Option<&'static str>,
    detail: Option<String>,
    challenge: bool,
    /// Headers of the error it translates (a rate limit's `Retry-After`, `RateLimit-*`).
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ScimError {
    /// An error with a status, an optional `scimType` and a detail.
    pub fn new(
        status: StatusCode,
        scim_type: Option<&'static str>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            scim_type,
            detail: Some(detail.into()),
            challenge: false,
            headers: Vec::new(),
        }
    }

    /// 400 with a `scimType`.
    pub fn bad_request(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some(scim_type), detail)
    }

    /// 404: no such resource in this organization (or in another one: the same answer).
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, None, "The resource does not exist.")
    }

    /// 401: a missing, unknown, revoked or expired SCIM credential.
    pub fn unauthorized() -> Self {
        Self {
            challenge: true,
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                None,
                "A valid SCIM bearer token is required.",
            )
        }
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<ApiError> for ScimError {
    fn from(err: ApiError) -> Self {
        let status = err.status();
        // Server faults stay opaque (ApiError logged their cause when it was made).
        let detail = (!status.is_server_error()).then(|| match err.detail() {
            Some(detail) => format!("{}: {detail}", err.code()),
            None => err.code().to_owned(),
        });
        let scim_type = match err.code() {
            "version_mismatch" => {
                return Self::new(
                    StatusCode::PRECONDITION_FAILED,
                    Some("invalidVers"),
                    detail.unwrap_or_default(),
                )
            }
            "name_taken" | "email_taken" | "already_member" => Some("uniqueness"),
            "validation_failed" => {
                return Self::new(
                    StatusCode::BAD_REQUEST,
                    Some("invalidValue"),
                    detail.unwrap_or_default(),
                )
            }
            _ => None,
        };
        Self {
            status,
            scim_type,
            detail,
            challenge: status == StatusCode::UNAUTHORIZED,
            headers: err
                .headers()
                .iter()
                .filter(|(name, _)| *name != header::WWW_AUTHENTICATE)
                .cloned()
                .collect(),
        }
    }
}

impl From<StoreError> for ScimError {
    #[track_caller]
    fn from(err: StoreError) -> Self {
        ApiError::from(err).into()
    }
}

impl From<DomainError> for ScimError {
    fn from(err: DomainError) -> Self {
        ApiError::from(err).into()
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.as_u16().to_string(),
        });
        if let Some(scim_type) = self.scim_type {
            body["scimType"] = scim_type.into();
        }
        if let Some(detail) = self.detail {
            body["detail"] = detail.into();
        }
        let mut response = (self.status, body.to_string()).into_response();
        let headers = response.headers_mut();
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
        if self.challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"tenantry-scim\""),
            );
        }
        response
    }
}

/// Rewrites any other error answer under `/scim/v2` (an unknown method, a problem from a
/// shared layer) into a SCIM error, keeping its status and detail.
pub(crate) async fn scim_errors(response: Response) -> Response {
    let status = response.status();
    let is_scim = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(SCIM_JSON.as_bytes()));
    if !(status.is_client_error() || status.is_server_error()) || is_scim {
        return response;
    }
    let err = match response.extensions().get::<ApiError>() {
        Some(err) => ScimError::from(err.clone()),
        None => ScimError {
            status,
            scim_type: None,
            detail: status.canonical_reason().map(str::to_owned),
            challenge: false,
            headers: Vec::new(),
        },
    };
    let headers = response.headers().clone();
    let mut scim = err.into_response();
    for name in [
        header::RETRY_AFTER,
        header::ALLOW,
        HeaderName::from_static("ratelimit-limit"),
        HeaderName::from_static("ratelimit-remaining"),
        HeaderName::from_static("ratelimit-reset"),
    ] {
        if let Some(value) = headers.get(&name) {
            scim.headers_mut().insert(name, value.clone());
        }
    }
    scim
}
