//! The HTTP API: one router per domain, merged here.

pub mod admin;
pub mod auth;
pub mod health;
pub mod orgs;

use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

/// Every documented route.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(health::router())
        .merge(admin::router())
        .merge(auth::router())
        .merge(orgs::router())
}
