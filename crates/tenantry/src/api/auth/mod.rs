//! Identity endpoints: `/v1/auth/…`, `/v1/me…` and the JWKS.

pub(crate) mod email;
pub(crate) mod me;
pub(crate) mod tokens;

use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::password::HashError;
use crate::auth::RequestMeta;
use crate::http::error::ApiError;
use crate::ratelimit::Rate;
use crate::state::AppState;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(tokens::register))
        .routes(routes!(tokens::login))
        .routes(routes!(tokens::refresh))
        .routes(routes!(tokens::logout))
        .routes(routes!(tokens::jwks))
        .routes(routes!(me::create_session))
        .routes(routes!(me::csrf))
        .routes(routes!(me::me))
        .routes(routes!(me::list_sessions))
        .routes(routes!(me::revoke_session))
        .routes(routes!(me::revoke_other_sessions))
        .routes(routes!(me::change_password))
        .routes(routes!(email::send_verification))
        .routes(routes!(email::verify_email))
        .routes(routes!(email::request_password_reset))
        .routes(routes!(email::reset_password))
}

/// Counts one attempt against `rate` for `key`; 429 when over.
pub(crate) async fn limit(state: &AppState, key: &str, limit: u32) -> Result<(), ApiError> {
    let rate = Rate {
        limit,
        window: state.config.auth.rate_window,
    };
    match state.limiter.check(&[(key, rate)]).await {
        Some(decision) if !decision.allowed => Err(crate::http::ratelimit::refused(&decision)),
        _ => Ok(()),
    }
}

/// The client address used as a rate-limit key.
pub(crate) fn client_ip(meta: &RequestMeta) -> &str {
    meta.ip.as_deref().unwrap_or("unknown")
}

/// Hashing errors: shed load as 503 with `Retry-After`, anything else is a server fault.
impl From<HashError> for ApiError {
    #[track_caller]
    fn from(err: HashError) -> Self {
        match err {
            HashError::Busy => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "Too many sign-ins at once; retry shortly.",
            )
            .with_header(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            ),
            HashError::Failed(why) => ApiError::internal(&why),
        }
    }
}
