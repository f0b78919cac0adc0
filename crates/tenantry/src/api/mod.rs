//! The HTTP API: one router per domain, merged here.

pub(crate) mod admin;
pub(crate) mod audit;
pub(crate) mod auth;
pub(crate) mod billing;
pub(crate) mod features;
pub(crate) mod health;
pub(crate) mod orgs;
pub(crate) mod support;

use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

/// Every documented route.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(health::router())
        .merge(admin::router())
        .merge(support::router())
        .merge(features::router())
        .merge(auth::router())
        .merge(orgs::router())
        .merge(billing::router())
        .merge(crate::scim::manage::router())
        .merge(crate::realtime::ws::router())
}
