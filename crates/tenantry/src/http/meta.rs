//! Request facts kept with audit records.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::http::request::Parts;

use crate::auth::RequestMeta;

/// Header carrying the request id.
pub const REQUEST_ID: &str = "x-request-id";

/// Client address, user agent (at most 256 characters) and request id of a request.
pub fn request_meta(parts: &Parts) -> RequestMeta {
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    RequestMeta {
        ip: parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string()),
        user_agent: header("user-agent").map(|ua| ua.chars().take(256).collect()),
        request_id: header(REQUEST_ID).map(str::to_owned),
    }
}
