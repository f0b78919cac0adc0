//! Database access on either backend with one SQL text where the dialects agree.
//!
//! [`Db`] is a pool on SQLite or PostgreSQL. Queries are written once inside
//! [`on_conn!`], which compiles the same code against each backend's connection type;
//! only locking, row-level security and upserts need backend-specific SQL. Every query uses
//! `$n` placeholders, which both drivers accept.
//!
//! Transactions carry their tenant scope: [`Db::begin`] with [`Scope::Tenant`] sets the
//! PostgreSQL transaction-local `tenantry.org_id` that the row-level security policies
//! read, in the same round trip as `BEGIN`. A transaction without a scope sees no tenant
//! row at all (fail-closed).

pub mod backup;
pub mod cache;
mod connect;
mod guard;
pub mod notify;

use std::time::Duration;

use sqlx::{PgConnection, PgPool, Sqlite, SqliteConnection, SqlitePool, Transaction};

use crate::ids::{OrgId, UserId};

pub use connect::{connect, direct_options, migrate, wait_for_database};
pub use guard::{PgConn, ABORT_TIMEOUT};

/// A connection pool on one of the two backends. Cheap to clone.
#[derive(Clone, Debug)]
pub enum Db {
    /// Embedded SQLite (single instance).
    Sqlite(SqlitePool),
    /// PostgreSQL (any number of instances).
    Postgres(PgPool),
}

/// A borrowed connection of either backend; consumed by [`on_conn!`].
pub enum Conn<'c> {
    /// SQLite connection.
    Sqlite(&'c mut SqliteConnection),
    /// PostgreSQL connection.
    Postgres(&'c mut PgConnection),
}

/// Runs the same code against whichever backend `$conn` is on; `$c` is bound to
/// `&mut SqliteConnection` or `&mut PgConnection`.
macro_rules! on_conn {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::db::Conn::Sqlite($c) => $body,
            $crate::db::Conn::Postgres($c) => $body,
        }
    };
}
pub(crate) use on_conn;

/// Which tenant rows a transaction may see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Rows of one organization only.
    Tenant(OrgId),
    /// Rows of every organization: operator and system work only (admin API, job
    /// maintenance). Grants visibility explicitly rather than by a superuser role.
    System,
    /// One user's own memberships (and their organizations) in every tenant, read-only:
    /// for "my organizations".
    User(UserId),
    /// No tenant rows at all: for global tables such as users.
    Global,
}

/// Wraps one `SELECT` so that on PostgreSQL it runs as a single statement in one round trip,
/// without an explicit transaction, with the tenant scope set for that statement only: `$1`
/// is bound to the organization id, the select's own parameters start at `$2`.
///
/// The scope is set by `set_config(…, true)` in a one-row subquery that the select depends
/// on laterally, so PostgreSQL must evaluate it before reading any row; the setting ends
/// with the statement's implicit transaction, so nothing outlives it on the connection. If
/// the order were ever different, row-level security would see no scope and return no
/// rows: the failure mode is an empty result, never another tenant's data. Use it on the
/// pool, never inside a [`Tx`] (there the setting would last until the transaction ends).
pub fn single_statement_tenant_read(select: &str) -> String {
    format!(
        "SELECT q.* FROM (SELECT set_config('tenantry.org_id', $1::text, true) AS scope) s \
         CROSS JOIN LATERAL (SELECT * FROM ({select}) scoped WHERE s.scope IS NOT NULL OFFSET 0) q"
    )
}

/// Builds one statement that writes on PostgreSQL in a single round trip, atomic without an
/// explicit transaction (a statement is its own transaction): `ctes` are data-modifying
/// CTEs, each reading from the scope CTE `s` (`FROM s WHERE s.scope IS NOT NULL`), and
/// `select` reads their `RETURNING` rows. `$1` is bound to the organization id.
///
/// `s` is `MATERIALIZED` and every insert's rows come from it, so PostgreSQL sets the scope
/// before producing any row for row-level security to check; the setting ends with the
/// statement's implicit transaction. Were the order ever different, the policies' `WITH
/// CHECK` would see no scope and refuse the rows: the failure mode is an error, never a
/// write into another tenant. Use it on the pool, never inside a [`Tx`].
pub fn single_statement_tenant_write(ctes: &str, select: &str) -> String {
    format!(
        "WITH s AS MATERIALIZED (SELECT set_config('tenantry.org_id', $1::text, true) AS scope), \
         {ctes} {select}"
    )
}

/// Whether a transaction writes; SQLite takes the write lock up front for writers so
/// concurrent writers queue on the busy timeout instead of failing mid-transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read-only.
    Read,
    /// Reads and writes.
    Write,
}

/// An open transaction on either backend. Dropped without [`Tx::commit`], it is rolled
/// back; on PostgreSQL within [`ABORT_TIMEOUT`], or the connection is closed.
pub enum Tx {
    /// SQLite transaction.
    Sqlite(Transaction<'static, Sqlite>),
    /// PostgreSQL transaction (begun and ended by this module, on a [`PgConn`]).
    Postgres(PgConn),
}

impl Tx {
    /// The transaction's connection, for one query.
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Tx::Sqlite(tx) => Conn::Sqlite(tx),
            Tx::Postgres(tx) => Conn::Postgres(tx),
        }
    }

    /// Moves an open transaction to another tenant's scope (PostgreSQL; SQLite has no
    /// row-level security): for a transaction that creates an organization after
    /// platform-level work.
    pub async fn set_tenant(&mut self, org: OrgId) -> Result<(), sqlx::Error> {
        if let Tx::Postgres(tx) = self {
            sqlx::query("SELECT set_config('tenantry.org_id', $1, true)")
                .bind(org.as_uuid().to_string())
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Commits the transaction.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(mut tx) => {
                sqlx::Executor::execute(&mut *tx, "COMMIT").await?;
                tx.set_clean();
                Ok(())
            }
        }
    }
}

impl Db {
    /// Opens a transaction limited to `scope`.
    pub async fn begin(&self, scope: Scope, access: Access) -> Result<Tx, sqlx::Error> {
        match self {
            Db::Sqlite(pool) => {
                let begin = match access {
                    Access::Read => "BEGIN",
                    Access::Write => "BEGIN IMMEDIATE",
                };
                // sqlx's SQLite `begin_with` is not cancellation-safe: dropped after the
                // worker acknowledged BEGIN but before the `Transaction` exists, it returns
                // the connection to the pool inside a transaction, and every later begin on
                // it fails. A task of its own always completes: if this future is dropped,
                // the finished `Transaction` is dropped there and rolls back.
                let pool = pool.clone();
                let begun = tokio::spawn(async move { pool.begin_with(begin).await })
                    .await
                    .map_err(|_| sqlx::Error::WorkerCrashed)??;
                Ok(Tx::Sqlite(begun))
            }
            Db::Postgres(pool) => {
                let mode = match access {
                    Access::Read => "BEGIN READ ONLY",
                    Access::Write => "BEGIN",
                };
                // One round trip: the scope is set by the same simple query as BEGIN. The
                // interpolated values are a UUID and constants, never caller text.
                let statement = match scope {
                    Scope::Tenant(org) => format!(
                        "{mode}; SELECT set_config('tenantry.org_id', '{}', true)",
                        org.as_uuid()
                    ),
                    Scope::System => {
                        format!("{mode}; SELECT set_config('tenantry.system', 'on', true)")
                    }
                    Scope::User(user) => format!(
                        "{mode}; SELECT set_config('tenantry.user_id', '{}', true)",
                        user.as_uuid()
                    ),
                    Scope::Global => mode.to_owned(),
                };
                // Guarded before BEGIN is sent: dropped at any point from here on, the
                // connection is rolled back (or closed) rather than pooled mid-transaction.
                let mut conn = PgConn::dirty(pool.acquire().await?);
                sqlx::Executor::execute(&mut *conn, statement.as_str()).await?;
                Ok(Tx::Postgres(conn))
            }
        }
    }

    /// Checks the database answers within `timeout`.
    pub async fn ping(&self, timeout: Duration) -> Result<(), String> {
        let probe = async {
            match self {
                Db::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()),
                // Guarded: a probe abandoned at its timeout must not leave the connection
                // waiting on a silent peer inside the pool.
                Db::Postgres(pool) => {
                    let mut conn = PgConn::dirty(pool.acquire().await?);
                    sqlx::query("SELECT 1").execute(&mut *conn).await?;
                    conn.set_clean();
                    Ok(())
                }
            }
        };
        match tokio::time::timeout(timeout, probe).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".to_owned()),
        }
    }

    /// Closes every connection.
    pub async fn close(&self) {
        match self {
            Db::Sqlite(pool) => pool.close().await,
            Db::Postgres(pool) => pool.close().await,
        }
    }
}

/// True when the error means the database cannot be reached now (answered 503), rather
/// than that the query was wrong.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // PostgreSQL class 08 (connection exception), 53 (insufficient resources: too
            // many connections, out of memory or disk), 57P01-57P03 (shutdown, cannot
            // connect now); SQLite 5/6 (busy, locked) after the busy timeout ran out.
            let sqlstate = code.len() == 5;
            (sqlstate
                && (code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")))
                || code == "5"
                || code == "6"
        }),
        _ => false,
    }
}

/// The constraint name when the error is a unique-key violation.
pub fn unique_violation(err: &sqlx::Error) -> Option<String> {
    let sqlx::Error::Database(db) = err else {
        return None;
    };
    if !db.is_unique_violation() {
        return None;
    }
    Some(
        db.constraint()
            .map(str::to_owned)
            .unwrap_or_else(|| db.message().to_owned()),
    )
}

/// Connections kept checked out between single-statement reads and writes.
///
/// Returning a connection to the sqlx pool costs a round trip (the pool pings it on
/// release: on PostgreSQL a network round trip, on SQLite two thread hand-offs to the
/// connection's worker thread), as much as the statement itself. The hottest statements,
/// which run outside any transaction ([`single_statement_tenant_read`] on PostgreSQL, a
/// single `SELECT` on SQLite), instead hand their connection back here for the next such
/// statement. The pool never starves for it:
///
/// - a connection is kept only while the pool has spare capacity (an idle connection or
///   room to open one), and at most half the pool is kept;
/// - a kept connection unused for [`HOT_IDLE`] goes back to the pool (a sweeper checks every
///   [`HOT_IDLE`]), so when reads stop, transactions get every connection back at once;
/// - a connection whose statement failed is never kept (it goes back to the pool, which
///   tests it), and [`HotConnections::drain`] returns all before the pool closes.
#[derive(Debug)]
pub struct HotConnections<DB: sqlx::Database> {
    slots: std::sync::Mutex<Vec<(sqlx::pool::PoolConnection<DB>, std::time::Instant)>>,
    sweeping: std::sync::atomic::AtomicBool,
}

impl<DB: sqlx::Database> Default for HotConnections<DB> {
    fn default() -> Self {
        Self {
            slots: std::sync::Mutex::new(Vec::new()),
            sweeping: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

/// How long a kept connection may sit unused before it goes back to the pool.
pub const HOT_IDLE: Duration = Duration::from_millis(250);

impl HotConnections<sqlx::Postgres> {
    /// A kept connection, or one from the pool; dirty until handed back with
    /// [`HotConnections::give_back`], so a failed or cancelled statement cleans it up.
    pub async fn take(&self, pool: &sqlx::PgPool) -> Result<PgConn, sqlx::Error> {
        Ok(PgConn::dirty(self.take_kept(pool).await?))
    }

    /// Keeps a connection whose statement succeeded (see [`HotConnections::keep`]).
    pub fn give_back(self: &std::sync::Arc<Self>, conn: PgConn, pool: &sqlx::PgPool) {
        self.keep(conn.clean(), pool);
    }
}

impl<DB: sqlx::Database> HotConnections<DB> {
    /// A kept connection, or one from the pool. Hand it back with
    /// [`HotConnections::keep`] only after its statement succeeded.
    pub async fn take_kept(
        &self,
        pool: &sqlx::Pool<DB>,
    ) -> Result<sqlx::pool::PoolConnection<DB>, sqlx::Error> {
        loop {
            let kept = self.slots().pop();
            match kept {
                Some((conn, since)) if since.elapsed() < HOT_IDLE => return Ok(conn),
                // Stale: back to the pool, which tests it before reuse.
                Some((stale, _)) => drop(stale),
                None => return pool.acquire().await,
            }
        }
    }

    /// Keeps a connection whose statement succeeded, or returns it to the pool when the
    /// pool has no spare capacity or half of it is kept already.
    pub fn keep(
        self: &std::sync::Arc<Self>,
        conn: sqlx::pool::PoolConnection<DB>,
        pool: &sqlx::Pool<DB>,
    ) {
        let max = pool.options().get_max_connections();
        let spare = pool.num_idle() > 0 || pool.size() < max;
        let cap = usize::try_from(max / 2).unwrap_or(usize::MAX);
        if !spare {
            return;
        }
        {
            let mut slots = self.slots();
            if slots.len() >= cap {
                return;
            }
            slots.push((conn, std::time::Instant::now()));
        }
        if !self
            .sweeping
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            let weak = std::sync::Arc::downgrade(self);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(HOT_IDLE).await;
                    let Some(hot) = weak.upgrade() else { return };
                    hot.slots().retain(|(_, since)| since.elapsed() < HOT_IDLE);
                }
            });
        }
    }

    /// Returns every kept connection to the pool (before it closes).
    pub fn drain(&self) {
        self.slots().clear();
    }

    fn slots(
        &self,
    ) -> std::sync::MutexGuard<'_, Vec<(sqlx::pool::PoolConnection<DB>, std::time::Instant)>> {
        // A poisoned lock only means a thread panicked while pushing or popping.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
}
