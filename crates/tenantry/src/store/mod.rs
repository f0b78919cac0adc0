//! The storage layer: use-case sized methods, each one transaction, on either backend.
//!
//! Tenant-scoped methods take a [`TenantCtx`](crate::auth::TenantCtx) first, open their
//! transaction in that tenant's scope (which PostgreSQL's row-level security enforces) and
//! filter every query on `org_id` as well. Mutations append their audit record in the same
//! transaction.

pub mod activity;
pub mod api_keys;
pub mod audit;
pub mod audit_retention;
pub mod billing;
pub mod data;
mod error;
pub mod idempotency;
pub mod identity;
pub mod invitations;
pub mod jobs;
pub mod keys;
pub mod members;
pub mod orgs;
pub mod outbox;
pub mod revocation;
pub mod roles;
pub mod scim;
pub mod sessions;
pub mod support;
mod tenant_tx;
pub mod usage;
pub mod workspaces;

use chrono::{DateTime, SubsecRound, Utc};

use crate::db::Db;

pub use error::StoreError;

/// Storage for every domain. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
    hot: std::sync::Arc<crate::db::HotConnections<sqlx::Postgres>>,
    hot_sqlite: std::sync::Arc<crate::db::HotConnections<sqlx::Sqlite>>,
    revoked: crate::store::revocation::RevokedFamilies,
    background_timeout: std::time::Duration,
    /// Tells this process's listeners which chains the sealer moved (see
    /// [`Store::audit_seals`]).
    sealed: tokio::sync::broadcast::Sender<audit::SealedHead>,
    /// Signs the checkpoints audit retention leaves.
    checkpoint_key: Option<std::sync::Arc<audit_retention::CheckpointKey>>,
    /// Where listeners connect when not where the pool does (behind PgBouncer).
    direct: Option<sqlx::postgres::PgConnectOptions>,
}

impl Store {
    /// Wraps a connected pool.
    pub fn new(db: Db) -> Self {
        Self {
            db,
            hot: Default::default(),
            hot_sqlite: Default::default(),
            revoked: crate::store::revocation::RevokedFamilies::new(DEFAULT_REVOCATION_MEMORY),
            background_timeout: DEFAULT_BACKGROUND_TIMEOUT,
            sealed: tokio::sync::broadcast::channel(SEAL_SIGNALS).0,
            checkpoint_key: None,
            direct: None,
        }
    }

    /// Has listeners (`LISTEN`) connect with `direct` rather than as the pool does; `None`
    /// keeps the pool's settings.
    pub fn listening_through(mut self, direct: Option<sqlx::postgres::PgConnectOptions>) -> Self {
        self.direct = direct;
        self
    }

    /// The connection settings of a session of its own, for `LISTEN`: the direct ones when
    /// configured, else the pool's; `None` on SQLite.
    pub fn direct_options(&self) -> Option<sqlx::postgres::PgConnectOptions> {
        match &self.db {
            Db::Sqlite(_) => None,
            Db::Postgres(pool) => Some(
                self.direct
                    .clone()
                    .unwrap_or_else(|| (*pool.connect_options()).clone()),
            ),
        }
    }

    /// The heads of chains sealed by this process from now on, as they move.
    pub fn audit_seals(&self) -> tokio::sync::broadcast::Receiver<audit::SealedHead> {
        self.sealed.subscribe()
    }

    /// Bounds the database work of background loops (see [`Store::bounded`]); zero keeps
    /// the default.
    pub fn bounding_background_work(mut self, limit: std::time::Duration) -> Self {
        if !limit.is_zero() {
            self.background_timeout = limit;
        }
        self
    }

    /// Runs store work of a background loop (job bookkeeping, metering) within the
    /// configured bound: a request is bounded by its timeout, but a loop would otherwise
    /// wait on a connection whose peer went silent until the kernel gives up (minutes),
    /// holding a pool slot. Past the bound the work is dropped (its connection is rolled
    /// back or closed) and it is `Unavailable`, to be retried by the loop.
    pub async fn bounded<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.background_timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(sqlx::Error::PoolTimedOut)),
        }
    }

    /// Remembers revoked refresh families for `lifetime` (the access-token lifetime plus
    /// leeway) instead of the default.
    pub fn remembering_revocations_for(mut self, lifetime: std::time::Duration) -> Self {
        self.revoked = crate::store::revocation::RevokedFamilies::new(lifetime);
        self
    }

    /// Refresh families revoked recently, whose access tokens are refused.
    pub fn revoked_families(&self) -> &crate::store::revocation::RevokedFamilies {
        &self.revoked
    }

    /// The pool, for health checks and backend-specific work.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Connections kept for single-statement reads (PostgreSQL).
    pub(crate) fn hot(&self) -> &std::sync::Arc<crate::db::HotConnections<sqlx::Postgres>> {
        &self.hot
    }

    /// Connections kept for single-statement reads (SQLite).
    pub(crate) fn hot_sqlite(&self) -> &std::sync::Arc<crate::db::HotConnections<sqlx::Sqlite>> {
        &self.hot_sqlite
    }

    /// Returns held connections and closes the pool.
    pub async fn close(&self) {
        self.hot.drain();
        self.hot_sqlite.drain();
        self.db.close().await;
    }
}

/// The current time at the precision both backends keep (microseconds), so a value read
/// back equals the value written (the audit hash chain depends on it).
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// How long a revoked family is remembered unless configured: the default access-token
/// lifetime (15 minutes) plus leeway.
const DEFAULT_REVOCATION_MEMORY: std::time::Duration = std::time::Duration::from_secs(905);

/// Bound of background store work unless configured (`DATABASE_STATEMENT_TIMEOUT_SEC`).
const DEFAULT_BACKGROUND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Seal signals a slow listener of [`Store::audit_seals`] may fall behind by before it
/// misses some (it then catches up from the chain).
const SEAL_SIGNALS: usize = 1024;

/// Largest page any list returns.
pub const MAX_PAGE: i64 = 200;

/// Clamps a requested page size to `1..=MAX_PAGE` (default 50).
pub fn page_size(requested: Option<u32>) -> i64 {
    requested.map_or(50, i64::from).clamp(1, MAX_PAGE)
}
