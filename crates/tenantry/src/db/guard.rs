//! PostgreSQL connections that cannot go back to the pool in an unknown state.
//!
//! A future holding a connection can be dropped at any `.await`: a request that timed out,
//! a client that disconnected, a shutdown. sqlx then returns the connection to the pool
//! and pings it first, without a time limit: on a connection whose peer went silent (a
//! failover, a lost NAT entry) that ping waits for the kernel's TCP timeout, about fifteen
//! minutes, and the pool slot with it. [`PgConn`] is marked dirty while it is inside a
//! transaction or a statement; dropped dirty, it is rolled back within [`ABORT_TIMEOUT`]
//! and only then returned, or closed if the database does not answer in time.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, Postgres};

/// How long a dropped connection may take to roll back before it is closed instead.
pub const ABORT_TIMEOUT: Duration = Duration::from_secs(2);

/// A pooled PostgreSQL connection that is cleaned up, within a bound, when dropped while
/// dirty.
pub struct PgConn {
    conn: Option<PoolConnection<Postgres>>,
    dirty: bool,
}

impl PgConn {
    /// Wraps a connection that is about to be used (dirty until [`PgConn::clean`]).
    pub fn dirty(conn: PoolConnection<Postgres>) -> Self {
        Self {
            conn: Some(conn),
            dirty: true,
        }
    }

    /// Marks the connection idle and hands it back.
    pub fn clean(mut self) -> PoolConnection<Postgres> {
        self.dirty = false;
        match self.conn.take() {
            Some(conn) => conn,
            None => unreachable!("a PgConn holds its connection until dropped"),
        }
    }

    /// Marks the connection idle (it returns to the pool when dropped).
    pub fn set_clean(&mut self) {
        self.dirty = false;
    }
}

impl Deref for PgConn {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        match &self.conn {
            Some(conn) => conn,
            None => unreachable!("a PgConn holds its connection until dropped"),
        }
    }
}

impl DerefMut for PgConn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match &mut self.conn {
            Some(conn) => conn,
            None => unreachable!("a PgConn holds its connection until dropped"),
        }
    }
}

impl Drop for PgConn {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if self.dirty {
            abort(conn);
        }
    }
}

/// Rolls back whatever `conn` was doing and returns it to the pool, or closes it when the
/// database does not answer within [`ABORT_TIMEOUT`].
fn abort(mut conn: PoolConnection<Postgres>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        // No runtime to wait on: close it (dropping a detached connection does no I/O).
        drop(conn.detach());
        return;
    };
    runtime.spawn(async move {
        // ROLLBACK outside a transaction only warns; it also drains any reply the dropped
        // statement left unread.
        let rolled_back = tokio::time::timeout(
            ABORT_TIMEOUT,
            sqlx::Executor::execute(&mut *conn, "ROLLBACK"),
        )
        .await;
        match rolled_back {
            Ok(Ok(_)) => drop(conn),
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "connection failed its rollback; closed");
                drop(conn.detach());
            }
            Err(_) => {
                tracing::warn!(
                    timeout_ms = u64::try_from(ABORT_TIMEOUT.as_millis()).unwrap_or(u64::MAX),
                    "database did not answer a rollback in time; connection closed"
                );
                drop(conn.detach());
            }
        }
    });
}
