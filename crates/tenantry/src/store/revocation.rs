//! Revoked refresh families, so their access tokens stop working at once.
//!
//! An access token names the refresh family it was issued from (`sid`). Logout, a password
//! reset or change, and a detected refresh-token reuse revoke families; from then on the
//! family's access tokens are refused on every instance, without a database read per
//! request: the instance that revoked adds the family at commit, and on PostgreSQL every
//! other instance learns it from `NOTIFY` ([`REVOKED_FAMILIES_CHANNEL`]). A family is
//! remembered until every access token issued from it has expired. At start, and whenever
//! the notification connection is re-established, the families revoked within that time are
//! read from the database, so a restart or a lost notification forgets nothing.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::store::{Store, StoreError};

/// `NOTIFY` channel announcing a revoked family (payload: its id, 32 hex digits).
pub const REVOKED_FAMILIES_CHANNEL: &str = "tenantry_revoked_families";

/// Families whose access tokens are refused; cheap to clone.
#[derive(Clone, Debug)]
pub struct RevokedFamilies {
    /// Read on every token-authenticated request, written on revocations.
    inner: Arc<RwLock<HashMap<String, Instant>>>,
    /// How long a revoked family is remembered: the access-token lifetime plus leeway.
    remember: Duration,
}

impl RevokedFamilies {
    /// An empty set remembering each family for `remember`.
    pub fn new(remember: Duration) -> Self {
        Self {
            inner: Arc::default(),
            remember,
        }
    }

    /// Refuses the family's access tokens from now on.
    pub fn revoke(&self, family: &str) {
        self.revoke_all([family.to_owned()]);
    }

    /// Refuses the access tokens of every family in `families`; forgets the families whose
    /// tokens have all expired.
    pub fn revoke_all(&self, families: impl IntoIterator<Item = String>) {
        // A poisoned lock only means a thread panicked while inserting.
        let mut entries = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        entries.retain(|_, until| *until > now);
        for family in families {
            entries.insert(family, now + self.remember);
        }
    }

    /// Whether access tokens of `family` are refused.
    pub fn is_revoked(&self, family: &str) -> bool {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(family)
            .is_some_and(|until| *until > Instant::now())
    }

    /// Reads the families revoked within the remembered time.
    pub async fn load(&self, store: &Store) -> Result<(), StoreError> {
        let since = crate::store::now()
            - chrono::Duration::from_std(self.remember)
                .unwrap_or_else(|_| chrono::Duration::hours(1));
        let families = store.families_revoked_since(since).await?;
        self.revoke_all(families.iter().map(|f| f.simple().to_string()));
        Ok(())
    }

    /// On PostgreSQL, adds every family another instance revokes (`NOTIFY`), re-reading
    /// the recent revocations on every (re)connection, until `stop`.
    pub fn follow(
        &self,
        store: Store,
        stop: tokio_util::sync::CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let (loader, families) = (self.clone(), self.clone());
        crate::db::notify::follow(
            store.direct_options(),
            REVOKED_FAMILIES_CHANNEL,
            stop,
            move || {
                let (loader, store) = (loader.clone(), store.clone());
                async move { loader.load(&store).await }
            },
            move |family| families.revoke(family),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_remembered_for_the_token_lifetime() {
        let set = RevokedFamilies::new(Duration::from_millis(30));
        set.revoke("f1");
        assert!(set.is_revoked("f1"));
        assert!(!set.is_revoked("f2"));
        std::thread::sleep(Duration::from_millis(40));
        assert!(!set.is_revoked("f1"), "forgotten once its tokens expired");
    }
}
