//! Middleware: problem rendering, metrics, tracing spans.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Span;

use super::error::{ApiError, PROBLEM_JSON};
use super::meta::REQUEST_ID;

/// Largest framework error text copied into a problem's `detail`.
const MAX_DETAIL_BYTES: usize = 2048;

/// Writes every error response as problem+json: [`ApiError`]s from handlers and
/// extractors, and bare error statuses from the framework (404, 405, 408, panics).
///
/// It also sets `Cache-Control: no-store` on every API response (`/v1/…`) that sets no
/// policy of its own: they carry tokens, secrets shown once and tenant data, which no
/// shared or browser cache may keep. (One layer for both: this one sees every response.)
pub(crate) async fn render_problems(req: Request, next: Next) -> Response {
    // SCIM clients get SCIM errors, also from the shared layers (address limit, timeout).
    if req.uri().path().starts_with("/scim/v2/") {
        return crate::scim::scim_errors(next.run(req).await).await;
    }
    let api = req.uri().path().starts_with("/v1/");
    let mut response = render(req, next).await;
    if api && !response.headers().contains_key(header::CACHE_CONTROL) {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn render(req: Request, next: Next) -> Response {
    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let response = next.run(req).await;
    if let Some(err) = response.extensions().get::<ApiError>().cloned() {
        return problem_response(&err, request_id, response);
    }
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    // A console page (HTML) is its own rendering of the problem.
    let is_page = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"text/html"));
    // SCIM answers its own error shape (RFC 7644 §3.12).
    let is_scim = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(crate::scim::SCIM_JSON.as_bytes()));
    if is_problem || is_page || is_scim {
        return response;
    }
    let is_text = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"text/plain"));
    let (parts, body) = response.into_parts();
    let detail = if is_text {
        axum::body::to_bytes(body, MAX_DETAIL_BYTES)
            .await
            .ok()
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .filter(|text| !text.is_empty())
    } else {
        None
    };
    let err = ApiError::from_status(parts.status, detail);
    problem_response(&err, request_id, Response::from_parts(parts, Body::empty()))
}

fn problem_response(err: &ApiError, request_id: Option<String>, original: Response) -> Response {
    let problem = err.to_problem(request_id);
    let (mut parts, _) = original.into_parts();
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    parts.status = err.status();
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    parts.headers.remove(header::CONTENT_LENGTH);
    if parts.status == axum::http::StatusCode::UNAUTHORIZED
        && !parts.headers.contains_key(header::WWW_AUTHENTICATE)
    {
        // RFC 9110: every 401 names the scheme that would be accepted.
        parts.headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(crate::http::error::BEARER_CHALLENGE),
        );
    }
    parts.extensions.remove::<ApiError>();
    Response::from_parts(parts, Body::from(body))
}

/// Records `http_requests_total` and `http_request_duration_seconds` per route template
/// (never the raw path, which would carry ids).
pub(crate) async fn track_metrics(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().to_string();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The tracing span of a request: every log line inside carries the request id.
pub(crate) fn request_span(req: &Request) -> Span {
    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %req.method(),
        path = %req.uri().path(),
    )
}

/// Response for a panicking handler; the panic itself is logged by the hook below.
pub(crate) fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}
