//! API key secrets and their verification.
//!
//! A secret is `tk_<16 hex>_<64 hex>`: the first part is the public prefix (stored, shown in
//! listings, the lookup key), the second 256 random bits. Only the prefix and the SHA-256 of
//! the whole secret are stored. Verified keys are cached for `API_KEY_CACHE_SEC` so the hot
//! path does not read the database; this instance forgets a key at once when it is revoked
//! or rotated here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::ids::{ApiKeyId, OrgId};
use crate::ratelimit::Rate;
use crate::rbac::{Permissions, Plan};
use crate::store::api_keys::KeyCredential;
use crate::store::orgs::OrgStatus;
use crate::store::{now, Store, StoreError};

/// Start of every API key secret.
pub const SECRET_START: &str = "tk_";
const PREFIX_LEN: usize = SECRET_START.len() + 16;
const SECRET_LEN: usize = PREFIX_LEN + 1 + 64;

/// A new secret and its public prefix.
pub fn generate() -> (String, String) {
    let prefix = format!("{SECRET_START}{}", crate::secrets::random_token(8));
    let secret = format!("{prefix}_{}", crate::secrets::random_token(32));
    (prefix, secret)
}

/// A fresh random part for an existing prefix (rotation).
pub fn regenerate(prefix: &str) -> String {
    format!("{prefix}_{}", crate::secrets::random_token(32))
}

/// True when a bearer token has the shape of an API key (not an access token).
pub fn looks_like_key(token: &str) -> bool {
    token.starts_with(SECRET_START)
}

/// The prefix of a well-formed secret.
fn prefix_of(secret: &str) -> Option<&str> {
    let well_formed = secret.len() == SECRET_LEN
        && secret.as_bytes().get(PREFIX_LEN) == Some(&b'_')
        && secret[SECRET_START.len()..]
            .bytes()
            .enumerate()
            .all(|(i, b)| i == PREFIX_LEN - SECRET_START.len() || b.is_ascii_hexdigit());
    well_formed.then(|| &secret[..PREFIX_LEN])
}

/// SHA-256 of a secret, hex: what is stored.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A verified key: who it is and what it may do.
#[derive(Clone, Debug)]
pub struct VerifiedKey {
    /// Id.
    pub id: ApiKeyId,
    /// Its organization.
    pub org_id: OrgId,
    /// Its scopes.
    pub scopes: Permissions,
    /// Its own rate, if any.
    pub rate: Option<Rate>,
    /// The organization's plan.
    pub plan: Plan,
    /// True while the operator has the organization suspended (the caller answers 403).
    pub suspended: bool,
    /// The organization's feature flags.
    pub features: crate::features::Features,
}

struct Cached {
    credential: KeyCredential,
    scopes: Permissions,
    rate: Option<Rate>,
    fetched: Instant,
}

/// Verified keys by prefix, and when keys were last used (written by the meter).
#[derive(Clone, Default)]
pub struct KeyCache {
    ttl: Duration,
    entries: Arc<RwLock<HashMap<String, Arc<Cached>>>>,
    used: Arc<Mutex<HashMap<ApiKeyId, DateTime<Utc>>>>,
    /// Bumped by every [`KeyCache::forget`]: a credential read before a revocation or
    /// rotation committed must not be cached after it.
    generation: Arc<std::sync::atomic::AtomicU64>,
}

impl KeyCache {
    /// A cache trusting entries for `ttl` (zero: no caching).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            ..Self::default()
        }
    }

    /// Checks `secret`; `None` for unknown, wrong, revoked or expired keys (the caller
    /// answers 401 for all of them alike).
    pub async fn verify(
        &self,
        store: &Store,
        secret: &str,
    ) -> Result<Option<VerifiedKey>, StoreError> {
        let Some(prefix) = prefix_of(secret) else {
            return Ok(None);
        };
        let cached = self
            .entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(prefix)
            .filter(|c| c.fetched.elapsed() < self.ttl)
            .cloned();
        let entry = match cached {
            Some(entry) => entry,
            None => {
                let generation = self.generation.load(std::sync::atomic::Ordering::Acquire);
                let Some(credential) = store.api_key_credential(prefix).await? else {
                    return Ok(None);
                };
                let scopes = credential.scopes.0.clone();
                let rate = credential.rate_limit()?.map(|r| Rate {
                    limit: r.limit,
                    window: Duration::from_secs(u64::from(r.window_sec)),
                });
                let entry = Arc::new(Cached {
                    credential,
                    scopes,
                    rate,
                    fetched: Instant::now(),
                });
                if !self.ttl.is_zero() {
                    let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
                    // Checked under the write lock `forget` also takes: no stale insert
                    // can slip in after a forget.
                    let unchanged =
                        self.generation.load(std::sync::atomic::Ordering::Acquire) == generation;
                    if entries.len() >= 100_000 {
                        entries.retain(|_, c| c.fetched.elapsed() < self.ttl);
                    }
                    if unchanged {
                        entries.insert(prefix.to_owned(), entry.clone());
                    }
                }
                entry
            }
        };
        let key = &entry.credential;
        let at = now();
        let hash = secret_hash(secret);
        let current = same(&hash, &key.secret_hash);
        let previous = key.previous_expires_at.is_some_and(|until| until > at)
            && key.previous_hash.as_deref().is_some_and(|h| same(&hash, h));
        let active = key.revoked_at.is_none()
            && key.expires_at.is_none_or(|until| until > at)
            && key.creator_active;
        if !(current || previous) || !active {
            return Ok(None);
        }
        self.used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.id, at);
        Ok(Some(VerifiedKey {
            id: key.id,
            org_id: key.org_id,
            scopes: entry.scopes.clone(),
            rate: entry.rate,
            plan: key.plan,
            suspended: key.org_status == OrgStatus::Suspended,
            features: crate::features::Features::new(key.plan, key.feature_overrides.clone()),
        }))
    }

    /// Forgets a key (after it was revoked or rotated here).
    pub fn forget(&self, prefix: &str) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        entries.remove(prefix);
    }

    /// Forgets every cached key.
    pub fn forget_all(&self) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        entries.clear();
    }

    /// Keys used since the last call, with when.
    pub fn take_used(&self) -> Vec<(ApiKeyId, DateTime<Utc>)> {
        std::mem::take(&mut *self.used.lock().unwrap_or_else(|e| e.into_inner()))
            .into_iter()
            .collect()
    }
}

/// On PostgreSQL, drops cached keys as soon as any instance revokes or rotates them
/// (`NOTIFY tenantry_api_keys`), until `stop`. Without it (or while reconnecting) the cache
/// time bounds how long another instance trusts a key; anything revoked while no one
/// listened is forgotten wholesale on every (re)connection.
pub fn follow_key_changes(
    direct: Option<sqlx::postgres::PgConnectOptions>,
    cache: KeyCache,
    stop: tokio_util::sync::CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    if cache.ttl.is_zero() {
        return None;
    }
    let forget = cache.clone();
    crate::db::notify::follow(
        direct,
        crate::store::api_keys::KEY_CHANGES_CHANNEL,
        stop,
        move || {
            forget.forget_all();
            std::future::ready(Ok::<(), sqlx::Error>(()))
        },
        move |prefix| cache.forget(prefix),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_have_a_public_prefix_and_256_random_bits() {
        let (prefix, secret) = generate();
        assert_eq!(prefix_of(&secret), Some(prefix.as_str()));
        assert_eq!(secret.len(), SECRET_LEN);
        assert!(looks_like_key(&secret));
        let rotated = regenerate(&prefix);
        assert_eq!(prefix_of(&rotated), Some(prefix.as_str()));
        assert_ne!(rotated, secret);
        assert_eq!(prefix_of("tk_short"), None);
        let mut bad = secret.clone();
        bad.replace_range(30..31, "z");
        assert_eq!(prefix_of(&bad), None);
    }
}
