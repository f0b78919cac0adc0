//! [`TenantTx`]: the envelope of every tenant-scoped store method. It opens the
//! transaction in the tenant's scope (which PostgreSQL's row-level security enforces),
//! appends audit records as the tenant's caller, and commits.

use std::ops::{Deref, DerefMut};

use super::audit::{self, AuditEntry};
use super::{Store, StoreError};
use crate::auth::TenantCtx;
use crate::db::{Access, Scope, Tx};
use crate::ids::AuditEventId;

/// A transaction in one tenant's scope, acting as that tenant's caller. Dereferences to
/// the [`Tx`] for queries; dropped without [`commit`](TenantTx::commit), it rolls back.
pub(crate) struct TenantTx<'a> {
    tx: Tx,
    ctx: &'a TenantCtx,
}

impl Store {
    /// Begins a transaction in `ctx`'s tenant scope.
    pub(crate) async fn tenant_tx<'a>(
        &self,
        ctx: &'a TenantCtx,
        access: Access,
    ) -> Result<TenantTx<'a>, StoreError> {
        let tx = self.db().begin(Scope::Tenant(ctx.org_id()), access).await?;
        Ok(TenantTx { tx, ctx })
    }
}

impl TenantTx<'_> {
    /// Appends `entry` to the tenant's audit chain, by the caller, in this transaction.
    pub(crate) async fn audit(&mut self, entry: AuditEntry) -> Result<AuditEventId, StoreError> {
        let ctx = self.ctx;
        audit::append(&mut self.tx, ctx.org_id(), ctx.actor(), ctx.meta(), entry).await
    }

    /// Commits.
    pub(crate) async fn commit(self) -> Result<(), StoreError> {
        Ok(self.tx.commit().await?)
    }
}

impl Deref for TenantTx<'_> {
    type Target = Tx;

    fn deref(&self) -> &Tx {
        &self.tx
    }
}

impl DerefMut for TenantTx<'_> {
    fn deref_mut(&mut self) -> &mut Tx {
        &mut self.tx
    }
}
