//! Rate limits over HTTP: the per-address limit on every request, the `RateLimit` headers
//! of the strictest limit a request was counted against, and the 429 answer.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::ratelimit::Decision;

/// Whole seconds, rounded up, at least one.
fn whole_secs_at_least_one(d: std::time::Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

/// 429 `rate_limited` with `Retry-After` and the IETF `RateLimit` headers.
pub(crate) fn refused(decision: &Decision) -> ApiError {
    let retry = whole_secs_at_least_one(decision.retry_after);
    let mut err = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("Too many requests; retry in {retry} seconds."),
    );
    for (name, value) in headers(decision) {
        err = err.with_header(name, value);
    }
    err
}

/// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` and (when refused)
/// `Retry-After`.
fn headers(d: &Decision) -> Vec<(HeaderName, HeaderValue)> {
    // Refused, the limit is usable again when the client may retry: both headers say so.
    let reset = if d.allowed {
        d.reset.as_secs() + u64::from(d.reset.subsec_nanos() > 0)
    } else {
        whole_secs_at_least_one(d.retry_after)
    };
    let mut out = vec![
        (
            HeaderName::from_static("ratelimit-limit"),
            HeaderValue::from(d.limit),
        ),
        (
            HeaderName::from_static("ratelimit-remaining"),
            HeaderValue::from(d.remaining),
        ),
        (
            HeaderName::from_static("ratelimit-reset"),
            HeaderValue::from(reset),
        ),
    ];
    if !d.allowed {
        out.push((axum::http::header::RETRY_AFTER, HeaderValue::from(reset)));
    }
    out
}

/// Where the rate-limit decisions of a request are collected, so a successful response
/// carries the `RateLimit` headers of its strictest limit.
#[derive(Clone, Default)]
pub(crate) struct RateLimitSlot(std::sync::Arc<std::sync::Mutex<Option<Decision>>>);

impl RateLimitSlot {
    /// Adds a decision; the stricter one is reported.
    pub(crate) fn record(&self, decision: Decision) {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *slot = Some(slot.map_or(decision, |d| d.stricter(decision)));
    }

    fn get(&self) -> Option<Decision> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Paths never limited per address: probes and scrapes.
const UNLIMITED_PATHS: [&str; 3] = ["/health", "/ready", "/metrics"];

/// The per-address limit (`IP_RATE_LIMIT`) on every request, and the `RateLimit` headers
/// of the strictest limit a request was counted against.
pub(crate) async fn limit_requests(
    axum::extract::State(state): axum::extract::State<crate::state::AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let slot = RateLimitSlot::default();
    req.extensions_mut().insert(slot.clone());
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let client =
        peer.map(|peer| super::meta::client_ip(peer, req.headers(), &state.config.trusted_proxies));
    if let Some(ip) = client {
        req.extensions_mut().insert(super::meta::ClientIp(ip));
    }
    if !UNLIMITED_PATHS.contains(&req.uri().path()) {
        let key = client.map_or_else(|| "ip:unknown".to_owned(), super::meta::limit_key);
        if let Some(decision) = state
            .limiter
            .check(&[(key.as_str(), state.config.limits.ip)])
            .await
        {
            if !decision.allowed {
                return refused(&decision).into_response();
            }
            slot.record(decision);
        }
    }
    let mut response = next.run(req).await;
    if let Some(decision) = slot.get() {
        if !response.headers().contains_key("ratelimit-limit") {
            for (name, value) in headers(&decision) {
                response.headers_mut().insert(name, value);
            }
        }
    }
    response
}
