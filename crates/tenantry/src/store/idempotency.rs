//! Idempotency keys of creating requests.
//!
//! The HTTP layer ([`crate::http::idempotency`]) looks a key up before the request runs and
//! records the response after it. The key itself is claimed here, inside the transaction of
//! the change it guards: the first audit record a request appends also inserts the claim
//! ([`claim_in`]), so the change and the claim commit together. A request whose change
//! committed can therefore never run twice — even when its client saw a timeout or a 503 —
//! and two concurrent requests with one key cannot both commit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{now, Store, StoreError};
use crate::db::{on_conn, unique_violation, Access, Scope, Tx};
use crate::domain::DomainError;

/// How long a key is remembered.
pub const KEEP_HOURS: i64 = 24;

tokio::task_local! {
    static CLAIM: Arc<Claim>;
}

/// The key of the request being served, claimed by its first audited change.
#[derive(Debug)]
pub struct Claim {
    /// Who sent it (`user:…`, `key:…`, `operator`, `anonymous`).
    pub scope: String,
    /// The `Idempotency-Key`.
    pub key: String,
    /// SHA-256 of the request (method, path, body).
    pub fingerprint: String,
    claimed: AtomicBool,
}

impl Claim {
    /// A claim not yet made.
    pub fn new(scope: String, key: String, fingerprint: String) -> Arc<Self> {
        Arc::new(Self {
            scope,
            key,
            fingerprint,
            claimed: AtomicBool::new(false),
        })
    }

    /// Whether a change of this request claimed the key.
    pub fn is_claimed(&self) -> bool {
        self.claimed.load(Ordering::Acquire)
    }

    /// Runs `work` (the request) with this claim available to its transactions.
    pub async fn scope<F: std::future::Future>(self: Arc<Self>, work: F) -> F::Output {
        CLAIM.scope(self, work).await
    }
}

/// A key seen before.
#[derive(Debug, sqlx::FromRow)]
pub struct StoredKey {
    /// Fingerprint of the request that used it.
    pub fingerprint: String,
    /// Status of the recorded response; `None` while it runs (or if it was lost).
    pub status: Option<i32>,
    /// Content type of the recorded response.
    pub content_type: Option<String>,
    /// The recorded body; `None` when it carried a secret, which is shown only once.
    pub body: Option<Vec<u8>>,
}

/// Whether the request being served has an idempotency key its first audited change has yet
/// to claim: such a change runs in a transaction with [`claim_in`].
pub(super) fn claim_outstanding() -> bool {
    CLAIM
        .try_with(|claim| !claim.claimed.load(Ordering::Acquire))
        .unwrap_or(false)
}

/// Inserts the claim of the request being served, once, in the transaction of its first
/// audited change; a key already claimed (by a concurrent request) is a conflict, and the
/// change rolls back with it.
pub(super) async fn claim_in(tx: &mut Tx) -> Result<(), StoreError> {
    let Ok(claim) = CLAIM.try_with(Arc::clone) else {
        return Ok(());
    };
    if claim.claimed.swap(true, Ordering::AcqRel) {
        return Ok(());
    }
    let at = now();
    on_conn!(tx.conn(), c => sqlx::query(
        "DELETE FROM idempotency_keys WHERE scope = $1 AND idem_key = $2 AND created_at < $3",
    )
    .bind(&claim.scope)
    .bind(&claim.key)
    .bind(expiry(at))
    .execute(&mut *c)
    .await
    .map(|_| ()))?;
    let inserted = on_conn!(tx.conn(), c => sqlx::query(
        "INSERT INTO idempotency_keys (scope, idem_key, fingerprint, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(&claim.scope)
    .bind(&claim.key)
    .bind(&claim.fingerprint)
    .bind(at)
    .execute(&mut *c)
    .await
    .map(|_| ()));
    match inserted {
        Ok(_) => Ok(()),
        Err(err) if unique_violation(&err).is_some() => {
            Err(DomainError::IdempotencyKeyInUse.into())
        }
        Err(err) => Err(err.into()),
    }
}

fn expiry(at: DateTime<Utc>) -> DateTime<Utc> {
    at - chrono::Duration::hours(KEEP_HOURS)
}

impl Store {
    /// The unexpired use of `key` by `scope`, if any.
    pub async fn idempotency_key(
        &self,
        scope: &str,
        key: &str,
    ) -> Result<Option<StoredKey>, StoreError> {
        let mut tx = self.db().begin(Scope::Global, Access::Read).await?;
        let found = on_conn!(tx.conn(), c => sqlx::query_as(
            "SELECT fingerprint, status, content_type, body FROM idempotency_keys \
             WHERE scope = $1 AND idem_key = $2 AND created_at >= $3",
        )
        .bind(scope)
        .bind(key)
        .bind(expiry(now()))
        .fetch_optional(&mut *c)
        .await)?;
        tx.commit().await?;
        Ok(found)
    }

    /// Records the response of the request that claimed `key` (`body` `None`: withheld).
    pub async fn record_idempotent_response(
        &self,
        scope: &str,
        key: &str,
        status: u16,
        content_type: Option<&str>,
        body: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let mut tx = self.db().begin(Scope::Global, Access::Write).await?;
        on_conn!(tx.conn(), c => sqlx::query(
            "UPDATE idempotency_keys SET status = $3, content_type = $4, body = $5 \
             WHERE scope = $1 AND idem_key = $2 AND status IS NULL",
        )
        .bind(scope)
        .bind(key)
        .bind(i32::from(status))
        .bind(content_type)
        .bind(body)
        .execute(&mut *c)
        .await
        .map(|_| ()))?;
        tx.commit().await?;
        Ok(())
    }

    /// Forgets keys older than [`KEEP_HOURS`]; returns how many.
    pub async fn prune_idempotency_keys(&self) -> Result<u64, StoreError> {
        let mut tx = self.db().begin(Scope::Global, Access::Write).await?;
        let n = on_conn!(tx.conn(), c => sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(expiry(now()))
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))?;
        tx.commit().await?;
        Ok(n)
    }
}
