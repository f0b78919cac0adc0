//! Public halves of access-token signing keys.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{now, Store, StoreError};
use crate::db::{on_conn, Access, Scope};

/// A signing key's public record.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct SigningKeyRow {
    /// Key id (`kid`).
    pub kid: String,
    /// Base64url Ed25519 public key.
    pub public_key: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it stopped signing.
    pub retired_at: Option<DateTime<Utc>>,
}

impl Store {
    /// Creates a key when none is active.
    pub async fn ensure_signing_key(
        &self,
        public_of: &(dyn Fn(&str) -> String + Sync),
    ) -> Result<(), StoreError> {
        let mut tx = self.db().begin(Scope::Global, Access::Write).await?;
        let active: Option<String> = on_conn!(tx.conn(), c => sqlx::query_scalar(
            "SELECT kid FROM signing_keys WHERE retired_at IS NULL LIMIT 1",
        )
        .fetch_optional(&mut *c)
        .await)?;
        if active.is_none() {
            insert_key(&mut tx, public_of).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Adds a new signing key and retires the others; returns the new `kid`.
    pub async fn rotate_signing_key(
        &self,
        public_of: &(dyn Fn(&str) -> String + Sync),
    ) -> Result<String, StoreError> {
        let mut tx = self.db().begin(Scope::Global, Access::Write).await?;
        on_conn!(tx.conn(), c => sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL")
            .bind(now())
            .execute(&mut *c)
            .await
            .map(|_| ()))?;
        let kid = insert_key(&mut tx, public_of).await?;
        tx.commit().await?;
        Ok(kid)
    }

    /// Keys that sign or still verify: unretired, or retired less than `grace` ago.
    pub async fn usable_signing_keys(
        &self,
        grace: Duration,
    ) -> Result<Vec<SigningKeyRow>, StoreError> {
        let cutoff = now() - chrono::Duration::from_std(grace).unwrap_or_default();
        let mut tx = self.db().begin(Scope::Global, Access::Read).await?;
        let rows = on_conn!(tx.conn(), c => sqlx::query_as(
            "SELECT kid, public_key, created_at, retired_at FROM signing_keys \
             WHERE retired_at IS NULL OR retired_at > $1 ORDER BY created_at",
        )
        .bind(cutoff)
        .fetch_all(&mut *c)
        .await)?;
        tx.commit().await?;
        Ok(rows)
    }
}

async fn insert_key(
    tx: &mut crate::db::Tx,
    public_of: &(dyn Fn(&str) -> String + Sync),
) -> Result<String, StoreError> {
    let kid = crate::secrets::random_token(8);
    let public = public_of(&kid);
    on_conn!(tx.conn(), c => sqlx::query("INSERT INTO signing_keys (kid, public_key, created_at) VALUES ($1, $2, $3)")
        .bind(&kid)
        .bind(&public)
        .bind(now())
        .execute(&mut *c)
        .await
        .map(|_| ()))?;
    Ok(kid)
}
