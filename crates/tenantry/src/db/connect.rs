//! Opening pools, with retry at start, and applying migrations.

use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, Executor};

use super::Db;
use crate::config::{Config, DatabaseUrl, Pooler};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Opens the service pool once; fails at the first error.
pub async fn connect(config: &Config) -> anyhow::Result<Db> {
    match &config.database_url {
        DatabaseUrl::Sqlite(url) => {
            let options = sqlite_options(url)?;
            // No ping before every use (a round trip to the connection's worker thread
            // each time): the file does not go away under an open connection.
            let pool = SqlitePoolOptions::new()
                .max_connections(config.database_max_connections)
                .acquire_timeout(config.database_acquire_timeout)
                .test_before_acquire(false)
                .before_acquire(|conn, _meta| Box::pin(outside_transaction(conn)))
                .connect_with(options)
                .await
                .context("cannot open the SQLite database (DATABASE_URL)")?;
            Ok(Db::Sqlite(pool))
        }
        DatabaseUrl::Postgres(url) => {
            let options = PgConnectOptions::from_str(url).context("DATABASE_URL is invalid")?;
            let pooled = config.database_pooler == Pooler::PgBouncer;
            let options = if pooled {
                // PgBouncer refuses startup options it does not track (the timeouts) and
                // `extra_float_digits` unless told to ignore it; nothing here needs either.
                options.extra_float_digits(None)
            } else {
                session_timeouts(options, config.database_statement_timeout)
            };
            let role = config.database_app_role.clone();
            // No ping before every use (a round trip each time): a connection broken since
            // its last use fails its query (503) and is discarded, and the next one is fresh.
            let pool = PgPoolOptions::new()
                .max_connections(config.database_max_connections)
                .acquire_timeout(config.database_acquire_timeout)
                .test_before_acquire(false)
                .after_connect(move |conn, _meta| {
                    let role = role.clone();
                    Box::pin(async move {
                        if let Some(role) = role {
                            // The role name was validated as [A-Za-z0-9_]+ in config.
                            conn.execute(format!("SET ROLE {role}").as_str()).await?;
                        }
                        Ok(())
                    })
                })
                .connect_with(options)
                .await
                .context("cannot connect to PostgreSQL (DATABASE_URL)")?;
            refuse_rls_bypass(&pool).await?;
            if pooled {
                warn_without_timeouts(&pool, config.database_statement_timeout).await?;
            }
            Ok(Db::Postgres(pool))
        }
    }
}

/// A pooled SQLite connection is handed out only outside a transaction: one left inside
/// (by a cancelled begin) is closed rather than reused, where every begin would fail.
async fn outside_transaction(conn: &mut sqlx::SqliteConnection) -> Result<bool, sqlx::Error> {
    if !conn.is_in_transaction() {
        return Ok(true);
    }
    // The depth is updated by the connection's worker thread: a rollback queued by a
    // dropped transaction may still be on its way, and a ping waits for it.
    conn.ping().await?;
    if conn.is_in_transaction() {
        tracing::warn!("pooled SQLite connection was left inside a transaction; closed");
        return Ok(false);
    }
    Ok(true)
}

/// Server-side bounds for every session: no statement, and no session idle inside a
/// transaction, outlives `limit` (0 = none). Sent in the startup packet, so they cost no
/// round trip.
fn session_timeouts(options: PgConnectOptions, limit: Duration) -> PgConnectOptions {
    if limit.is_zero() {
        return options;
    }
    let ms = limit.as_millis().to_string();
    options.options([
        ("statement_timeout", ms.as_str()),
        ("idle_in_transaction_session_timeout", ms.as_str()),
    ])
}

/// Behind PgBouncer the service cannot set its timeouts per session; the role's own
/// settings (`ALTER ROLE … SET statement_timeout`) or PgBouncer's `query_timeout` stand in.
/// Says so once when the server applies none.
async fn warn_without_timeouts(pool: &sqlx::PgPool, wanted: Duration) -> anyhow::Result<()> {
    if wanted.is_zero() {
        return Ok(());
    }
    let (statement, idle): (String, String) = sqlx::query_as(
        "SELECT current_setting('statement_timeout'), current_setting('idle_in_transaction_session_timeout')",
    )
    .fetch_one(pool)
    .await
    .context("cannot read the session's timeouts")?;
    if statement == "0" || idle == "0" {
        tracing::warn!(
            statement_timeout = %statement,
            idle_in_transaction_session_timeout = %idle,
            "behind PgBouncer, DATABASE_STATEMENT_TIMEOUT_SEC cannot be sent per session: set \
             both on the service role (ALTER ROLE … SET …) or use PgBouncer's query_timeout \
             and idle_transaction_timeout"
        );
    }
    Ok(())
}

/// The connection for what needs a session of its own (`LISTEN`): `DATABASE_DIRECT_URL`,
/// else behind PgBouncer the migration URL (also direct); `None` to use the service's own
/// connection settings.
pub fn direct_options(config: &Config) -> anyhow::Result<Option<PgConnectOptions>> {
    let url = match (&config.database_direct_url, config.database_pooler) {
        (Some(url), _) => url,
        (None, Pooler::PgBouncer) => match &config.database_migration_url {
            Some(url) => url,
            None => return Ok(None),
        },
        (None, Pooler::None) => return Ok(None),
    };
    match url {
        DatabaseUrl::Postgres(url) => PgConnectOptions::from_str(url)
            .map(Some)
            .context("DATABASE_DIRECT_URL is invalid"),
        DatabaseUrl::Sqlite(_) => Ok(None),
    }
}

/// Row-level security is void for a superuser or a BYPASSRLS role, so the service
/// refuses to run as one.
async fn refuse_rls_bypass(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    let (name, bypass): (String, bool) = sqlx::query_as(
        "SELECT current_user::text, rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(pool)
    .await
    .context("cannot read the database role")?;
    if bypass {
        bail!(
            "the service's PostgreSQL role `{name}` is a superuser or has BYPASSRLS, which would \
             disable tenant isolation; set DATABASE_APP_ROLE or connect as an ordinary role"
        );
    }
    Ok(())
}

/// Waits until the database accepts a connection, retrying with exponential backoff for
/// up to `DATABASE_CONNECT_RETRY_SEC`. Probes with the migration URL, which exists before
/// the service role does.
pub async fn wait_for_database(config: &Config) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(250);
    loop {
        match probe(config).await {
            Ok(()) => return Ok(()),
            Err(err)
                if retryable(&err) && started.elapsed() + delay < config.database_connect_retry =>
            {
                tracing::warn!(
                    error = %format!("{err:#}"),
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "database not reachable yet; retrying"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(err) => {
                return Err(err.context(format!(
                    "database still unreachable after {}s (DATABASE_CONNECT_RETRY_SEC)",
                    config.database_connect_retry.as_secs()
                )))
            }
        }
    }
}

/// One connection attempt, bounded by the acquire timeout.
async fn probe(config: &Config) -> anyhow::Result<()> {
    let url = config
        .database_migration_url
        .as_ref()
        .unwrap_or(&config.database_url);
    let attempt = async {
        match url {
            DatabaseUrl::Sqlite(url) => {
                let conn = sqlite_options(url)?
                    .connect()
                    .await
                    .context("cannot open the SQLite database")?;
                conn.close().await.context("closing the probe connection")
            }
            DatabaseUrl::Postgres(url) => {
                let options = PgConnectOptions::from_str(url).context("database URL is invalid")?;
                let conn = options
                    .connect()
                    .await
                    .context("cannot connect to PostgreSQL")?;
                conn.close().await.context("closing the probe connection")
            }
        }
    };
    match tokio::time::timeout(config.database_acquire_timeout, attempt).await {
        Ok(result) => result,
        Err(_) => {
            Err(anyhow::Error::new(sqlx::Error::PoolTimedOut)
                .context("connection attempt timed out"))
        }
    }
}

/// Only an unreachable database is worth waiting for; a refused role or a bad URL is not.
fn retryable(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<sqlx::Error>()
            .is_some_and(super::is_unavailable)
    })
}

/// Applies pending migrations: on SQLite through the database file, on PostgreSQL as the
/// schema owner (`DATABASE_MIGRATION_URL`, else `DATABASE_URL` without `SET ROLE`).
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let url = config
        .database_migration_url
        .as_ref()
        .unwrap_or(&config.database_url);
    match url {
        DatabaseUrl::Sqlite(url) => {
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(sqlite_options(url)?)
                .await
                .context("cannot open the SQLite database for migrations")?;
            SQLITE_MIGRATIONS
                .run(&pool)
                .await
                .context("SQLite migrations failed")?;
            pool.close().await;
        }
        DatabaseUrl::Postgres(url) => {
            let options = PgConnectOptions::from_str(url).context("migration URL is invalid")?;
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await
                .context("cannot connect to PostgreSQL for migrations")?;
            POSTGRES_MIGRATIONS
                .run(&pool)
                .await
                .context("PostgreSQL migrations failed")?;
            pool.close().await;
        }
    }
    Ok(())
}

fn sqlite_options(url: &str) -> anyhow::Result<SqliteConnectOptions> {
    let options = SqliteConnectOptions::from_str(url)
        .context("DATABASE_URL is not a valid SQLite URL")?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true);
    let file = options.get_filename();
    if let Some(dir) = file.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create directory {}", dir.display()))?;
        }
    }
    if file.as_os_str() != ":memory:" && !file.as_os_str().is_empty() {
        owner_only(file)?;
    }
    Ok(options)
}

/// The database file readable and writable by its owner only (0600), created so before
/// SQLite opens it; SQLite gives its `-wal` and `-shm` files the database file's mode.
fn owner_only(file: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    // Opened (and closed) only when it does not exist yet: closing any descriptor of a file
    // drops every POSIX lock this process holds on it, including those of a pool that
    // already has the database open, which would let another process write at the same
    // time and corrupt it.
    if !file.exists() {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(file)
            .with_context(|| format!("cannot create the SQLite database {}", file.display()))?;
    }
    let mut paths = vec![file.to_path_buf()];
    for suffix in ["-wal", "-shm"] {
        let mut name = file.as_os_str().to_owned();
        name.push(suffix);
        paths.push(name.into());
    }
    for path in paths.iter().filter(|p| p.exists()) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict {} to its owner", path.display()))?;
    }
    Ok(())
}
