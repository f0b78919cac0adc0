//! Building the application and serving it until shutdown.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, StatusCode};
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::jwt::KeyRing;
use crate::auth::password::Hasher;
use crate::config::Config;
use crate::db::cache::RedisHandle;
use crate::db::{self, Db};
use crate::http::error::ApiError;
use crate::http::middleware;
use crate::http::openapi::ApiDoc;
use crate::jobs::{Registry, Worker};
use crate::ratelimit::RateLimiter;
use crate::state::AppState;
use crate::store::Store;

/// A built application, bound to its port, not yet serving.
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    shutdown: CancellationToken,
    mailer: Option<Arc<dyn crate::mail::Mailer>>,
    run_worker: bool,
}

impl Application {
    /// Applies migrations, connects (retrying while the database is unreachable) and binds.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let db = connect_and_migrate(&config).await?;
        Self::build_with_db(config, db).await
    }

    /// Binds an application over an already connected pool.
    pub async fn build_with_db(config: Config, db: Db) -> anyhow::Result<Self> {
        let redis = match &config.redis_url {
            Some(url) => Some(Arc::new(
                RedisHandle::new(url).context("REDIS_URL is invalid")?,
            )),
            None => None,
        };
        let store = Store::new(db)
            .listening_through(db::direct_options(&config)?)
            .remembering_revocations_for(
                config.auth.access_token_ttl + Duration::from_secs(crate::auth::jwt::LEEWAY_SECS),
            )
            .bounding_background_work(config.database_statement_timeout)
            .signing_audit_checkpoints_with(crate::store::audit_retention::CheckpointKey::derive(
                config.session_secret.expose(),
            ));
        store
            .revoked_families()
            .load(&store)
            .await
            .context("cannot read revoked sessions")?;
        let keys = KeyRing::load(&store, &config.auth)
            .await
            .context("cannot load signing keys")?;
        let hasher = Hasher::new(config.auth.password_hash_concurrency)
            .map_err(|e| anyhow::anyhow!("password hasher: {e}"))?;
        let mailer = crate::mail::mailer(&config.auth).context("SMTP_URL is invalid")?;
        let billing = crate::billing::Billing::from_config(&config.billing)
            .context("cannot set up the Stripe client")?;
        if let Some(stripe) = &config.billing.stripe {
            for missing in stripe.missing() {
                tracing::warn!(
                    variable = missing,
                    "Stripe is partly configured; billing features that need it are off"
                );
            }
        }
        let limiter = RateLimiter::new(redis.clone().map(|r| (r, config.redis_key_prefix.clone())));
        let api_keys = crate::auth::api_key::KeyCache::new(config.limits.api_key_cache);
        let usage =
            crate::usage::Meter::new(store.clone(), config.limits.clone(), api_keys.clone());
        let store_for_hub = store.clone();
        let config_buffer = config.realtime.send_buffer;
        let state = AppState::new(crate::state::Shared {
            config: Arc::new(config),
            store,
            redis,
            metrics: metrics_handle()?,
            keys: Arc::new(keys),
            hasher,
            limiter,
            api_keys,
            usage,
            jobs: Registry::builtin(),
            billing,
            job_wake: Arc::new(Notify::new()),
            hub: crate::realtime::Hub::new(store_for_hub, config_buffer),
        });
        let addr = format!("{}:{}", state.config.host, state.config.port);
        let listener = TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (HOST, PORT)"))?;
        Ok(Self {
            listener,
            router: router(state.clone()),
            state,
            shutdown: CancellationToken::new(),
            mailer,
            run_worker: true,
        })
    }

    /// The bound address (the real port when `PORT=0`).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Cancelling this token starts a graceful shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Runs without the embedded job worker (`serve --no-worker`).
    pub fn without_worker(mut self) -> Self {
        self.run_worker = false;
        self
    }

    /// The shared state (for embedding and tests).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until the shutdown token is cancelled, then stops accepting, lets in-flight
    /// requests finish for up to `SHUTDOWN_TIMEOUT_SEC`, and closes the pool.
    pub async fn run(self) -> anyhow::Result<()> {
        let Self {
            listener,
            router,
            state,
            shutdown,
            mailer,
            run_worker,
        } = self;
        let grace = state.config.shutdown_timeout;
        let worker = run_worker.then(|| {
            Worker::new(
                state.store.clone(),
                state.jobs.clone(),
                crate::jobs::JobServices {
                    mailer,
                    billing: state.billing.clone(),
                },
                state.config.worker.clone(),
                state.job_wake.clone(),
            )
            .spawn(shutdown.clone(), grace)
        });
        let stop_meter = CancellationToken::new();
        let meter = state.usage.spawn_flusher(stop_meter.clone());
        let key_changes = crate::auth::api_key::follow_key_changes(
            state.store.direct_options(),
            state.api_keys.clone(),
            stop_meter.clone(),
        );
        let revocations = state
            .store
            .revoked_families()
            .follow(state.store.clone(), stop_meter.clone());
        let mut realtime = state.hub.follow(
            state
                .config
                .redis_url
                .clone()
                .map(|url| (url, state.config.redis_key_prefix.clone())),
            stop_meter.clone(),
        );
        if let Some(redis) = &state.redis {
            realtime.push(crate::realtime::fanout::publish_to_redis(
                state.store.clone(),
                redis.clone(),
                state.config.redis_key_prefix.clone(),
                stop_meter.clone(),
            ));
        }
        let signal = shutdown.clone().cancelled_owned();
        let mut server = tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(signal)
            .await
        });
        let deadline = tokio::select! {
            result = &mut server => {
                result.context("server task failed")?.context("server failed")?;
                tokio::time::Instant::now() + grace
            }
            () = shutdown.cancelled() => {
                let deadline = tokio::time::Instant::now() + grace;
                tracing::info!(grace_secs = grace.as_secs(), "shutting down: draining in-flight requests");
                match tokio::time::timeout_at(deadline, &mut server).await {
                    Ok(result) => result.context("server task failed")?.context("server failed")?,
                    Err(_) => {
                        server.abort();
                        tracing::warn!("shutdown grace period over; abandoning remaining requests");
                    }
                }
                deadline
            }
        };
        // The rest of the shutdown (last usage flush, worker drain, closing the pool) talks
        // to the database, which may not answer: it gets what is left of the grace period,
        // and at least a moment for the final flush.
        let deadline = deadline.max(tokio::time::Instant::now() + FINAL_FLUSH_GRACE);
        let finish = async {
            // The last metered calls are written once no request can add more.
            stop_meter.cancel();
            if let Err(err) = meter.await {
                tracing::error!(error = %err, "usage flusher failed");
            }
            for task in [key_changes, revocations]
                .into_iter()
                .flatten()
                .chain(realtime)
            {
                let _ = task.await;
            }
            if let Some(worker) = worker {
                worker.join().await;
            }
            state.store.close().await;
        };
        if tokio::time::timeout_at(deadline, finish).await.is_err() {
            tracing::warn!(
                "shutdown grace period over while the database did not answer; stopping without it"
            );
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Least time the final usage flush gets after the requests drained, even when they took the
/// whole grace period.
const FINAL_FLUSH_GRACE: Duration = Duration::from_secs(2);

/// Runs migrations (waiting for the database as `serve` does) and opens the service pool.
pub async fn connect_and_migrate(config: &Config) -> anyhow::Result<Db> {
    db::wait_for_database(config).await?;
    db::migrate(config).await?;
    db::connect(config).await
}

/// The OpenAPI document and the router, split from one definition.
pub fn api_parts() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut spec) = utoipa_axum::router::OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(crate::api::router())
        .split_for_parts();
    crate::http::openapi::declare_common_responses(&mut spec);
    (router, spec)
}

/// The complete router with every layer.
pub fn router(state: AppState) -> Router {
    let (api, spec) = api_parts();
    let declared = crate::http::query::DeclaredQueries::from_spec(&spec);
    let request_id = HeaderName::from_static(crate::http::meta::REQUEST_ID);
    let timeout = state.config.request_timeout;
    let body_limit = state.config.body_limit_bytes;
    api.merge(SwaggerUi::new("/docs").url("/openapi.json", spec))
        .merge(crate::console::router(&state))
        .merge(crate::scim::router())
        .merge(crate::api::billing::legacy_webhook_router())
        .merge(crate::realtime::ws::legacy_router())
        .merge(crate::api::support::legacy_router())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such route.") })
        .layer(
            ServiceBuilder::new()
                .layer(SetSensitiveRequestHeadersLayer::new([
                    axum::http::header::AUTHORIZATION,
                    axum::http::header::COOKIE,
                ]))
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(middleware::request_span))
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(axum::middleware::from_fn(middleware::render_problems))
                .layer(axum::middleware::from_fn(middleware::track_metrics))
                .layer(axum::middleware::from_fn(move |req, next| {
                    crate::http::query::refuse_unknown_query(declared.clone(), req, next)
                }))
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    crate::http::ratelimit::limit_requests,
                ))
                .layer(CatchPanicLayer::custom(middleware::panic_response))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::SERVICE_UNAVAILABLE,
                    timeout,
                ))
                // Inside the timeout: a request cut off at commit leaves its key claimed.
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    crate::http::idempotency::idempotent_creates,
                ))
                .layer(DefaultBodyLimit::max(body_limit)),
        )
        .with_state(state)
}

/// The Prometheus recorder. The `metrics` facade is process-wide by design, so one
/// recorder is installed per process and shared by every application in it.
fn metrics_handle() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let buckets = [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("duration_seconds".to_owned()), &buckets)?
        .build_recorder();
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        // Another thread installed one first; use that one's handle.
        return HANDLE
            .get()
            .cloned()
            .context("metrics recorder installed elsewhere");
    }
    let handle = HANDLE.get_or_init(|| handle).clone();
    // Upkeep drains histogram buffers; rendering does it too, this bounds memory.
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".to_owned())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(5));
            upkeep.run_upkeep();
        })?;
    Ok(handle)
}
