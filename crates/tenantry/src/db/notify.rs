//! Following a PostgreSQL `NOTIFY` channel, for every listener of the service (job
//! wake-ups, API key changes, revoked sessions).
//!
//! Each follower has a connection of its own, outside the service pool, which it would
//! otherwise hold for good (LISTEN needs no row access, so no role switch either). A
//! listening connection is idle by nature, so one whose peer went silent would never
//! notice: every [`LIVENESS`] without a notification it runs a query bounded by
//! [`CHECK_TIMEOUT`], and reconnects when that fails. After every (re)connection
//! `on_connect` runs, so a follower can make up for what it missed while not listening.

use std::future::Future;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Quiet time after which a listening connection is checked.
pub const LIVENESS: Duration = Duration::from_secs(30);
/// Bound of connecting, subscribing and each liveness check.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause before reconnecting.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Calls `on_notify` with the payload of every notification on `channel` until `stop`,
/// over a connection made with `direct` (a session of its own, past any pooler: see
/// [`crate::store::Store::direct_options`]); `None` without it (SQLite: one process,
/// nothing to hear from).
pub fn follow<C, F, E, N>(
    direct: Option<PgConnectOptions>,
    channel: &'static str,
    stop: CancellationToken,
    on_connect: C,
    on_notify: N,
) -> Option<JoinHandle<()>>
where
    C: Fn() -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), E>> + Send,
    E: From<sqlx::Error> + std::error::Error + Send + 'static,
    N: Fn(&str) + Send + Sync + 'static,
{
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(direct?);
    Some(tokio::spawn(async move {
        while !stop.is_cancelled() {
            tokio::select! {
                () = stop.cancelled() => break,
                Err(err) = listen(&pool, channel, &on_connect, &on_notify) => {
                    tracing::warn!(channel, error = %crate::telemetry::error_chain(&err), "notifications interrupted; reconnecting");
                }
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(RETRY_AFTER) => {}
            }
        }
        pool.close().await;
    }))
}

/// Listens until the connection fails.
async fn listen<C, F, E, N>(
    pool: &PgPool,
    channel: &'static str,
    on_connect: &C,
    on_notify: &N,
) -> Result<std::convert::Infallible, E>
where
    C: Fn() -> F,
    F: Future<Output = Result<(), E>>,
    E: From<sqlx::Error>,
    N: Fn(&str),
{
    let mut listener = bounded(PgListener::connect_with(pool)).await?;
    bounded(listener.listen(channel)).await?;
    on_connect().await?;
    loop {
        match tokio::time::timeout(LIVENESS, listener.recv()).await {
            Ok(notification) => on_notify(notification.map_err(E::from)?.payload()),
            Err(_) => {
                bounded(sqlx::Executor::execute(&mut listener, "SELECT 1")).await?;
            }
        }
    }
}

/// `work` within [`CHECK_TIMEOUT`]; past it, a pool timeout.
async fn bounded<T>(work: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T, sqlx::Error> {
    match tokio::time::timeout(CHECK_TIMEOUT, work).await {
        Ok(result) => result,
        Err(_) => Err(sqlx::Error::PoolTimedOut),
    }
}
