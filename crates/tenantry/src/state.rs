//! The application state shared by every handler.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{Notify, OnceCell};

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
    pub redis: Option<Arc<RedisHandle>>,
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
    /// Wakes this process's worker when a job is enqueued here.
    pub job_wake: Arc<Notify>,
}

impl AppState {
    /// Has a worker deliver queued mail now.
    pub async fn request_mail_delivery(&self) {
        crate::mail::request_delivery(&self.store, &self.job_wake).await;
    }
}

/// A lazily connected, self-reconnecting Redis connection.
pub struct RedisHandle {
    client: redis::Client,
    manager: OnceCell<redis::aio::ConnectionManager>,
}

impl RedisHandle {
    /// A handle that connects on first use.
    pub fn new(url: &str) -> redis::RedisResult<Self> {
        Ok(Self {
            client: redis::Client::open(url)?,
            manager: OnceCell::new(),
        })
    }

    /// The shared connection, connecting first if needed.
    pub async fn connection(&self) -> redis::RedisResult<redis::aio::ConnectionManager> {
        self.manager
            .get_or_try_init(|| async {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Duration::from_secs(2))
                    .set_response_timeout(Duration::from_secs(2))
                    .set_number_of_retries(1);
                redis::aio::ConnectionManager::new_with_config(self.client.clone(), config).await
            })
            .await
            .cloned()
    }

    /// Checks Redis answers `PING` within `timeout`.
    pub async fn ping(&self, timeout: Duration) -> Result<(), String> {
        let probe = async {
            let mut conn = self.connection().await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await
        };
        match tokio::time::timeout(timeout, probe).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".to_owned()),
        }
    }
}
