//! Extractors whose rejections are problem details.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON body: syntax errors are 400 `malformed_json`, wrong shapes 422 `invalid_body`,
/// a NUL character in any string 400 `invalid_characters` (no backend stores one: PostgreSQL
/// refuses it, SQLite truncates at it), a missing content type 415, an oversized body 413.
pub(crate) struct AppJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Expected request with `Content-Type: application/json`",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|r| {
                let code = if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    "payload_too_large"
                } else {
                    "bad_request"
                };
                ApiError::new(r.status(), code, r.body_text())
            })?;
        if has_escaped_nul(&bytes) {
            return Err(nul_refused());
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// `application/json` or any `application/*+json`.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Whether a JSON text contains the escape `\u0000` (a raw NUL byte is not valid JSON):
/// a `\` starts an escape only when an even number of backslashes precedes it.
pub(crate) fn has_escaped_nul(json: &[u8]) -> bool {
    let mut i = 0;
    while i < json.len() {
        if json.get(i) == Some(&b'\\') {
            if json
                .get(i + 1..i + 6)
                .is_some_and(|esc| esc.eq_ignore_ascii_case(b"u0000"))
            {
                return true;
            }
            // Skip the escaped character, whatever it is.
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

fn nul_refused() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_characters",
        "Text may not contain the NUL character (U+0000).",
    )
}

/// An optional JSON body: a request without a body (and without a content type) gives
/// `None`; anything else is parsed as [`AppJson`] is.
impl<T: DeserializeOwned, S: Send + Sync> axum::extract::OptionalFromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, ApiError> {
        if req.headers().contains_key(axum::http::header::CONTENT_TYPE) {
            return <Self as FromRequest<S>>::from_request(req, state)
                .await
                .map(Some);
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|r| ApiError::new(r.status(), "bad_request", r.body_text()))?;
        if bytes.is_empty() {
            Ok(None)
        } else {
            Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Expected request with `Content-Type: application/json`",
            ))
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    let code = match &rejection {
        JsonRejection::JsonSyntaxError(_) => "malformed_json",
        JsonRejection::JsonDataError(_) => "invalid_body",
        JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        _ => "bad_request",
    };
    ApiError::new(status, code, rejection.body_text())
}

/// Query parameters: a bad value is 400 `invalid_query`.
pub(crate) struct AppQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for AppQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = parts.uri.query().unwrap_or_default();
        if raw.contains("%00") || raw.contains('\0') {
            return Err(nul_refused());
        }
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection @ QueryRejection::FailedToDeserializeQueryString(_)) => {
                Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_query",
                    rejection.body_text(),
                ))
            }
            Err(rejection) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                rejection.body_text(),
            )),
        }
    }
}

/// The ids after `/v1/orgs/{org_id}/` in the path, typed: a malformed id answers 404, as a
/// missing one does (the organization itself is checked by
/// [`OrgMember`](crate::auth::OrgMember)).
pub(crate) struct OrgPath<T>(pub T);

/// Ids that follow the organization in a path.
pub(crate) trait OrgSubIds: Sized {
    /// The whole path's ids, the organization's first.
    type Full: DeserializeOwned + Send;
    /// The ids after the organization.
    fn from_full(full: Self::Full) -> Self;
}

macro_rules! org_sub_ids {
    ($($id:ty),* $(,)?) => {
        $(
            impl OrgSubIds for $id {
                type Full = (crate::ids::OrgId, $id);
                fn from_full((_, id): Self::Full) -> Self {
                    id
                }
            }
        )*
    };
}

org_sub_ids!(
    crate::ids::ApiKeyId,
    crate::ids::DataItemId,
    crate::ids::InvitationId,
    crate::ids::JobId,
    crate::ids::RoleId,
    crate::ids::ScimTokenId,
    crate::ids::UserId,
    crate::ids::WorkspaceId,
);

impl OrgSubIds for (crate::ids::WorkspaceId, crate::ids::UserId) {
    type Full = (
        crate::ids::OrgId,
        crate::ids::WorkspaceId,
        crate::ids::UserId,
    );
    fn from_full((_, ws, user): Self::Full) -> Self {
        (ws, user)
    }
}

impl<T: OrgSubIds, S: Send + Sync> FromRequestParts<S> for OrgPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T::Full>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(full)| Self(T::from_full(full)))
            .map_err(|_| ApiError::not_found())
    }
}
