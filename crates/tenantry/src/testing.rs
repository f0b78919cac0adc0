//! Test support (feature `test-support`): a fresh database per test on either backend,
//! dropped afterwards.
//!
//! PostgreSQL tests use `TENANTRY_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), a role allowed to create databases and
//! roles. If that server is unreachable the PostgreSQL variant of a test is skipped with a
//! message, unless `TENANTRY_TEST_REQUIRE_POSTGRES=1`, which makes it fail instead (CI).

#![expect(clippy::expect_used, reason = "test set-up fails loudly")]

use std::collections::HashMap;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor, PgConnection};

use crate::secrets::random_token;

/// Which backend a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A new SQLite file in a temporary directory.
    Sqlite,
    /// A new database on the test PostgreSQL server.
    Postgres,
}

/// A database that exists for one test.
pub struct TestDatabase {
    /// Temporary data directory (SQLite file, dev secrets).
    pub dir: tempfile::TempDir,
    /// The backend.
    pub backend: Backend,
    /// URL of the new database.
    pub url: String,
    pg_cleanup: Option<(String, String)>,
}

/// The PostgreSQL server tests create databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("TENANTRY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn postgres_required() -> bool {
    std::env::var("TENANTRY_TEST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1" || v == "true")
}

impl TestDatabase {
    /// Creates a fresh database, or `None` when PostgreSQL is unreachable and not required.
    pub async fn create(backend: Backend) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temporary directory");
        match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}/tenantry.db", dir.path().display());
                Some(Self {
                    dir,
                    backend,
                    url,
                    pg_cleanup: None,
                })
            }
            Backend::Postgres => {
                let admin = postgres_admin_url();
                let mut conn = match PgConnection::connect(&admin).await {
                    Ok(conn) => conn,
                    Err(err) if !postgres_required() => {
                        eprintln!("SKIPPED PostgreSQL test: cannot reach {admin}: {err}");
                        return None;
                    }
                    Err(err) => panic!(
                        "PostgreSQL is required (TENANTRY_TEST_REQUIRE_POSTGRES) but {admin} is unreachable: {err}"
                    ),
                };
                let name = format!("tenantry_test_{}", uuid::Uuid::new_v4().simple());
                conn.execute(format!("CREATE DATABASE {name}").as_str())
                    .await
                    .expect("create test database");
                let _ = conn.close().await;
                let options = PgConnectOptions::from_str(&admin)
                    .expect("admin URL")
                    .database(&name);
                let url = options.to_url_lossy().to_string();
                Some(Self {
                    dir,
                    backend,
                    url,
                    pg_cleanup: Some((admin, name)),
                })
            }
        }
    }

    /// Configuration variables for an app on this database: random secrets, port 0.
    pub fn vars(&self) -> HashMap<String, String> {
        HashMap::from([
            ("DATABASE_URL".to_owned(), self.url.clone()),
            ("DATA_DIR".to_owned(), self.dir.path().display().to_string()),
            ("HOST".to_owned(), "127.0.0.1".to_owned()),
            ("PORT".to_owned(), "0".to_owned()),
            ("SESSION_SECRET".to_owned(), random_token(32)),
            ("INTERNAL_ADMIN_TOKEN".to_owned(), random_token(32)),
            ("JWT_SIGNING_SECRET".to_owned(), random_token(32)),
            ("DATABASE_CONNECT_RETRY_SEC".to_owned(), "5".to_owned()),
            ("LOG_LEVEL".to_owned(), "warn".to_owned()),
            ("JOB_POLL_INTERVAL_MS".to_owned(), "100".to_owned()),
            ("JOB_RETRY_BASE_MS".to_owned(), "20".to_owned()),
        ])
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((admin, name)) = self.pg_cleanup.take() else {
            return;
        };
        // Drop runs outside async context; a helper thread with its own runtime drops the
        // database, terminating connections the test left open.
        let handle = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&admin).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    if let Err(err) = conn.execute(sql.as_str()).await {
                        eprintln!("cannot drop test database {name}: {err}");
                    }
                }
            });
        });
        let _ = handle.join();
    }
}
