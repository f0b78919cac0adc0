//! The leftover-jobs check: when a test's app goes away, its job queue must hold no job
//! left unprocessed (`available`, `running`) or given up (`dead`), unless the test said it
//! expects some ([`TestApp::expect_leftover_jobs`]).

use std::time::{Duration, Instant};

use super::{Backend, TestApp};

/// A job that was not processed to an end a test could have wanted.
#[derive(sqlx::FromRow)]
struct Leftover {
    /// Kind.
    pub kind: String,
    /// `available`, `running` or `dead`.
    pub status: String,
    /// Runs started.
    pub attempts: i32,
    /// Error of the last failed run.
    pub last_error: Option<String>,
}

/// Jobs a running worker still has to take (due and available, or running).
const PENDING: &str = "SELECT count(*) FROM jobs WHERE status = 'running' \
     OR (status = 'available' AND run_at <= $1)";
/// Every job not ended as succeeded or cancelled.
const LEFTOVER: &str = "SELECT kind, status, attempts, last_error FROM jobs \
     WHERE status IN ('available', 'running', 'dead') ORDER BY created_at";
/// After a graceful stop, never-started jobs may wait for the next process; a job still
/// running or failed and waiting for a retry was left behind.
const LEFTOVER_AFTER_STOP: &str = "SELECT kind, status, attempts, last_error FROM jobs \
     WHERE status IN ('running', 'dead') OR (status = 'available' AND attempts > 0) ORDER BY created_at";

/// How long a running app gets to finish its due jobs before the check.
const DRAIN: Duration = Duration::from_secs(15);

impl TestApp {
    /// Declares that this test leaves jobs unprocessed or dead on purpose.
    pub fn expect_leftover_jobs(&mut self) {
        self.leftover_jobs_expected = true;
    }

    /// Waits (bounded) until the worker has taken every due job (unless the app was
    /// stopped), then says which jobs were left behind if the test did not expect it. Done
    /// once, at [`TestApp::stop`] or when the app is dropped.
    pub(super) async fn check_jobs(&mut self, stopped: bool) -> Result<(), String> {
        if self.jobs_checked || self.leftover_jobs_expected {
            return Ok(());
        }
        self.jobs_checked = true;
        let db = OwnerDb::connect(self).await;
        let until = Instant::now() + DRAIN;
        let leftover = loop {
            if stopped {
                break db.leftover(LEFTOVER_AFTER_STOP).await;
            }
            // A running worker may still be taking (or have just been given) a job: wait
            // while anything is pending, and list what is left once nothing is.
            while db.count_pending().await > 0 && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let leftover = db.leftover(LEFTOVER).await;
            let settling = leftover.iter().any(|j| j.status != "dead");
            if !settling || Instant::now() >= until {
                break leftover;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        db.close().await;
        if leftover.is_empty() {
            return Ok(());
        }
        let jobs: Vec<String> = leftover
            .iter()
            .map(|j| {
                format!(
                    "{} {} after {} attempt(s), last error {:?}",
                    j.kind, j.status, j.attempts, j.last_error
                )
            })
            .collect();
        Err(format!(
            "jobs left behind (call expect_leftover_jobs() if this test means to): {jobs:#?}"
        ))
    }
}

/// A connection past row-level security (the database owner on PostgreSQL).
enum OwnerDb {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl OwnerDb {
    async fn connect(app: &TestApp) -> Self {
        match app.db.backend {
            Backend::Sqlite => Self::Sqlite(
                sqlx::SqlitePool::connect(&app.db.url)
                    .await
                    .expect("open the test database"),
            ),
            // The schema owner's connection when the test names one (an app on a database
            // other than its test database's, or behind a pooler).
            Backend::Postgres => Self::Postgres(
                sqlx::PgPool::connect(
                    app.vars
                        .get("DATABASE_MIGRATION_URL")
                        .unwrap_or(&app.db.url),
                )
                .await
                .expect("connect to the test database"),
            ),
        }
    }

    async fn count_pending(&self) -> i64 {
        let now = tenantry::store::now();
        match self {
            Self::Sqlite(pool) => sqlx::query_scalar(PENDING).bind(now).fetch_one(pool).await,
            Self::Postgres(pool) => sqlx::query_scalar(PENDING).bind(now).fetch_one(pool).await,
        }
        .expect("count pending jobs")
    }

    async fn leftover(&self, sql: &str) -> Vec<Leftover> {
        match self {
            Self::Sqlite(pool) => sqlx::query_as(sql).fetch_all(pool).await,
            Self::Postgres(pool) => sqlx::query_as(sql).fetch_all(pool).await,
        }
        .expect("list leftover jobs")
    }

    async fn close(self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres(pool) => pool.close().await,
        }
    }
}
