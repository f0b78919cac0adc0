//! The application state shared by every handler.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::Notify;

use crate::auth::jwt::KeyRing;
use crate::auth::password::Hasher;
use crate::jobs::Registry;
use crate::ratelimit::RateLimiter;

use crate::config::Config;
use crate::store::Store;

/// Everything a handler may need, behind one reference count: axum clones the state for
/// every extractor and middleware, so a clone must cost one atomic increment.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// Wraps the parts.
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct Shared {
    /// Validated configuration.
    pub config: Arc<Config>,
    /// Storage.
    pub store: Store,
    /// Redis, when `REDIS_URL` is set.
    pub redis: Option<Arc<crate::db::cache::RedisHandle>>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Access-token keys.
    pub keys: Arc<KeyRing>,
    /// Password hashing on a bounded pool.
    pub hasher: Hasher,
    /// Rate limiter (in process, or shared through Redis).
    pub limiter: RateLimiter,
    /// Verified API keys, briefly cached.
    pub api_keys: crate::auth::api_key::KeyCache,
    /// Metering and quotas.
    pub usage: crate::usage::Meter,
    /// Job types known to this process.
    pub jobs: Registry,
    /// Billing, when any `STRIPE_*` variable is set.
    pub billing: Option<Arc<crate::billing::Billing>>,
    /// Wakes this process's worker when a job is enqueued here.
    pub job_wake: Arc<Notify>,
    /// Live events of this instance's connections.
    pub hub: crate::realtime::Hub,
}

impl AppState {
    /// Has a worker deliver queued mail now.
    pub async fn request_mail_delivery(&self) {
        crate::jobs::EmailDispatchJob::request_now(&self.store, &self.job_wake).await;
    }
}
