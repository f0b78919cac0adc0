//! `/health`, `/ready` and `/metrics`.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::db::Db;
use crate::http::error::{ApiError, Problem};
use crate::state::AppState;

/// How long a readiness probe waits for each dependency.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(metrics))
        .routes(routes!(meta))
}

/// What a client (a UI, an SDK) needs to know about this deployment before signing in.
#[derive(Serialize, ToSchema)]
pub(crate) struct Meta {
    /// Version of the running binary.
    pub version: &'static str,
    /// `development` or `production`.
    pub environment: &'static str,
    /// True on a demo deployment (`DEMO_MODE`): show a banner; destructive actions answer
    /// 403 `demo_mode`.
    pub demo_mode: bool,
    /// How people and programs authenticate: `password` (sign-in with email and password,
    /// giving `bearer` access tokens with refresh tokens, or a `session` cookie),
    /// `api_key`, and `scim` for identity providers.
    pub auth_methods: Vec<&'static str>,
    /// Whether a billing provider (Stripe) is configured; otherwise plans change by hand.
    pub billing_configured: bool,
    /// Whether emails are sent (SMTP configured) rather than kept in the outbox.
    pub email_delivery: bool,
    /// Where the web console is.
    pub console_url: String,
    /// Where the OpenAPI document is.
    pub openapi_url: &'static str,
}

/// Public facts about the deployment: version, demo mode, enabled authentication methods,
/// whether billing is configured. Needs no credential.
#[utoipa::path(get, path = "/v1/meta", tag = "health",
    responses((status = 200, description = "The deployment", body = Meta)))]
async fn meta(State(state): State<AppState>) -> Json<Meta> {
    let config = &state.config;
    Json(Meta {
        version: env!("CARGO_PKG_VERSION"),
        environment: match config.mode {
            crate::config::Mode::Development => "development",
            crate::config::Mode::Production => "production",
        },
        demo_mode: config.demo_mode,
        auth_methods: vec!["password", "bearer", "session", "api_key", "scim"],
        billing_configured: state.billing.is_some(),
        email_delivery: config.auth.smtp_url.is_some(),
        console_url: format!("{}/app", config.auth.public_base_url.trim_end_matches('/')),
        openapi_url: "/openapi.json",
    })
}

/// Liveness answer.
#[derive(Serialize, ToSchema)]
pub(crate) struct Health {
    /// Always `ok`.
    pub status: &'static str,
    /// Version of the running binary.
    pub version: &'static str,
}

/// Liveness: the process serves HTTP. Checks no dependency.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "Alive", body = Health)))]
async fn health() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// Readiness answer.
#[derive(Serialize, ToSchema)]
pub(crate) struct Ready {
    /// `ready`.
    pub status: &'static str,
    /// Result per dependency: `ok`, `not_configured` or the failure.
    pub checks: Checks,
}

/// Result per dependency.
#[derive(Serialize, ToSchema)]
pub(crate) struct Checks {
    /// The database.
    pub database: String,
    /// Redis.
    pub redis: String,
}

/// Readiness: the database (and Redis, when configured) answer. 503 otherwise.
#[utoipa::path(get, path = "/ready", tag = "health",
    responses(
        (status = 200, description = "Ready to serve", body = Ready),
        (status = 503, description = "A dependency is down", body = Problem,
            content_type = "application/problem+json")))]
async fn ready(State(state): State<AppState>) -> Response {
    let db = state.store.db().ping(PROBE_TIMEOUT);
    let redis = async {
        match &state.redis {
            None => Ok(false),
            Some(redis) => redis.ping(PROBE_TIMEOUT).await.map(|()| true),
        }
    };
    let (db, redis) = tokio::join!(db, redis);
    let checks = Checks {
        database: db
            .as_ref()
            .map_or_else(|e| format!("error: {e}"), |()| "ok".to_owned()),
        redis: match &redis {
            Ok(true) => "ok".to_owned(),
            Ok(false) => "not_configured".to_owned(),
            Err(e) => format!("error: {e}"),
        },
    };
    if db.is_ok() && redis.is_ok() {
        return Json(Ready {
            status: "ready",
            checks,
        })
        .into_response();
    }
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_ready",
        "A dependency is unavailable.",
    )
    .with_extension("checks", serde_json::to_value(&checks).unwrap_or_default())
    .into_response()
}

/// Prometheus metrics in the text exposition format.
///
/// Open in development; with `METRICS_TOKEN` set it needs that bearer token, and in
/// production without one it needs the operator token.
#[utoipa::path(get, path = "/metrics", tag = "health",
    security((), ("metrics_token" = [])),
    responses((status = 200, description = "Prometheus text format", body = String,
        content_type = "text/plain; version=0.0.4"),
        (status = 401, description = "`missing_credentials`, `invalid_token`", body = crate::http::error::Problem)))]
async fn metrics(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<impl IntoResponse, crate::http::error::ApiError> {
    let required = match (&state.config.metrics_token, state.config.mode) {
        (Some(token), _) => Some(token),
        (None, crate::config::Mode::Production) => Some(&state.config.internal_admin_token),
        (None, crate::config::Mode::Development) => None,
    };
    if let Some(expected) = required {
        let presented = crate::auth::bearer_token(&headers)
            .ok_or_else(crate::http::error::ApiError::missing_credentials)?;
        if !crate::secrets::digest_eq(presented, expected.expose()) {
            return Err(crate::http::error::ApiError::invalid_token(
                "The metrics token is not valid.",
            ));
        }
    }
    let (size, idle) = match state.store.db() {
        Db::Sqlite(pool) => (pool.size(), pool.num_idle()),
        Db::Postgres(pool) => (pool.size(), pool.num_idle()),
    };
    metrics::gauge!("db_pool_connections").set(f64::from(size));
    metrics::gauge!("db_pool_idle_connections").set(u32::try_from(idle).unwrap_or(u32::MAX));
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    ))
}
