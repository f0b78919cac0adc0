//! `Idempotency-Key` on every creating request (`POST /v1/…`).
//!
//! The first use of a key runs the request; its change claims the key in the same
//! transaction ([`crate::store::idempotency`]) and its successful response is recorded. A
//! later request with the same key from the same sender:
//!
//! - with the same method, path and body gets the recorded response again, marked
//!   `Idempotent-Replayed: true`; a response that carried a secret (an API key, a token) is
//!   not stored, so its replay is 409 `idempotent_response_withheld`;
//! - while the first still runs, or when its change committed but its response was lost
//!   (a timeout at commit), is 409 `idempotency_key_in_use`: it never runs twice;
//! - with another request is 422 `idempotency_key_reused`.
//!
//! Keys are kept 24 hours. The jobs and usage-event endpoints keep their own, in-row
//! idempotency and are left alone here.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use crate::auth::sender::{sender, Sender};
use crate::domain::DomainError;
use crate::state::AppState;
use crate::store::idempotency::{Claim, StoredKey};

/// The request header.
pub(crate) const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Longest accepted key.
const MAX_KEY_LEN: usize = 255;
/// Largest response body recorded for replays.
const MAX_RECORDED_BODY: usize = 1024 * 1024;
/// Top-level response fields that carry a secret shown once; such responses are not stored.
const SECRET_FIELDS: [&str; 6] = [
    "secret",
    "token",
    "access_token",
    "refresh_token",
    "csrf_token",
    "password",
];

/// Applies `Idempotency-Key` to creating requests (see the module documentation).
pub(crate) async fn idempotent_creates(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    let guarded = req.method() == Method::POST
        && path.starts_with("/v1/")
        && !path.ends_with("/jobs")
        && !path.ends_with("/usage/events");
    let Some(raw) = req.headers().get(IDEMPOTENCY_KEY).filter(|_| guarded) else {
        return next.run(req).await;
    };
    let key = match parse_key(raw) {
        Ok(key) => key,
        Err(err) => return err.into_response(),
    };
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, state.config.body_limit_bytes).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "The request body is too large.",
            )
            .into_response()
        }
    };
    let scope = match sender(&parts, &state).await {
        Ok(Sender::Known(scope)) => scope,
        Ok(Sender::Anonymous) => "anonymous".to_owned(),
        // The handler answers the bad credential; nothing is claimed.
        Ok(Sender::Invalid) => {
            return next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(err) => return err.into_response(),
    };
    let fingerprint = fingerprint(&parts, &bytes);
    match state.store.idempotency_key(&scope, &key).await {
        Ok(Some(stored)) => return replay(stored, &fingerprint),
        Ok(None) => {}
        Err(err) => return ApiError::from(err).into_response(),
    }
    let claim = Claim::new(scope, key, fingerprint);
    let response = claim
        .clone()
        .scope(next.run(Request::from_parts(parts, Body::from(bytes))))
        .await;
    if claim.is_claimed() && response.status().is_success() {
        record(&state, &claim, response).await
    } else {
        response
    }
}

fn parse_key(raw: &HeaderValue) -> Result<String, ApiError> {
    let key = raw.to_str().ok().map(str::trim).unwrap_or_default();
    let valid = !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    if !valid {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
            "Idempotency-Key must be 1-255 visible ASCII characters.",
        ));
    }
    Ok(key.to_owned())
}

/// SHA-256 of method, path with query, content type and body.
fn fingerprint(parts: &axum::http::request::Parts, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(parts.method.as_str().as_bytes());
    hash.update(b"\n");
    let target = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |p| p.as_str());
    hash.update(target.as_bytes());
    hash.update(b"\n");
    if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
        hash.update(ct.as_bytes());
    }
    hash.update(b"\n");
    hash.update(body);
    hex::encode(hash.finalize())
}

fn replay(stored: StoredKey, fingerprint: &str) -> Response {
    if stored.fingerprint != fingerprint {
        return ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "This Idempotency-Key was already used with a different request.",
        )
        .into_response();
    }
    let Some(status) = stored
        .status
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
    else {
        return ApiError::from(DomainError::IdempotencyKeyInUse).into_response();
    };
    let Some(body) = stored.body else {
        return ApiError::conflict(
            "idempotent_response_withheld",
            "The request was processed; its response carried a secret, which is shown only once.",
        )
        .into_response();
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    if let Some(ct) = stored
        .content_type
        .and_then(|ct| HeaderValue::from_str(&ct).ok())
    {
        headers.insert(header::CONTENT_TYPE, ct);
    }
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

/// Records a successful response for replays (its body unless it carries a secret).
async fn record(state: &AppState, claim: &Claim, response: Response) -> Response {
    let (parts, body) = response.into_parts();
    let small = axum::body::HttpBody::size_hint(&body)
        .upper()
        .is_some_and(|n| u64::try_from(MAX_RECORDED_BODY).is_ok_and(|max| n <= max));
    if !small {
        // Not kept: the change stays claimed, and a retry gets 409 rather than a rerun.
        return Response::from_parts(parts, body);
    }
    let bytes = match axum::body::to_bytes(body, MAX_RECORDED_BODY).await {
        Ok(bytes) => bytes,
        Err(err) => return ApiError::internal(&err).into_response(),
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let kept = (!carries_secret(&bytes)).then_some(&bytes[..]);
    if let Err(err) = state
        .store
        .record_idempotent_response(
            &claim.scope,
            &claim.key,
            parts.status.as_u16(),
            content_type,
            kept,
        )
        .await
    {
        // The change is claimed either way; a retry gets 409 instead of the replay.
        tracing::warn!(error = %crate::telemetry::error_chain(&err), "cannot record the response of an idempotent request");
    }
    Response::from_parts(parts, Body::from(bytes))
}

fn carries_secret(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body)
        .is_ok_and(|object| SECRET_FIELDS.iter().any(|f| object.contains_key(*f)))
}
