//! Demo mode (`DEMO_MODE=true`): a deployment anyone may try, where what cannot be undone
//! is refused with 403 `demo_mode` for every caller of an organization (the operator API
//! stays whole). The API handlers and the console call these same checks.

use crate::auth::TenantCtx;
use crate::config::Config;
use crate::domain::DomainError;
use crate::ids::{ApiKeyId, UserId};
use crate::store::{now, Store, StoreError};

/// Refuses an action that is destructive whatever its target (deleting the organization,
/// changing billing) in demo mode.
pub(crate) fn refuse(config: &Config) -> Result<(), DomainError> {
    if config.demo_mode {
        return Err(DomainError::DemoMode);
    }
    Ok(())
}

/// Refuses, in demo mode, to remove or demote `target` when they are an owner.
pub(crate) async fn protect_owner(
    config: &Config,
    store: &Store,
    ctx: &TenantCtx,
    target: UserId,
) -> Result<(), StoreError> {
    if !config.demo_mode {
        return Ok(());
    }
    let access = store.member_access(ctx.org_id(), target).await?;
    if access.is_some_and(|a| a.role.is_owner()) {
        return Err(DomainError::DemoMode.into());
    }
    Ok(())
}

/// Refuses, in demo mode, to revoke `key` when it is the organization's last working key.
pub(crate) async fn protect_last_key(
    config: &Config,
    store: &Store,
    ctx: &TenantCtx,
    key: ApiKeyId,
) -> Result<(), StoreError> {
    if !config.demo_mode {
        return Ok(());
    }
    let at = now();
    let working: Vec<ApiKeyId> = store
        .list_api_keys(ctx)
        .await?
        .into_iter()
        .filter(|k| k.revoked_at.is_none() && k.expires_at.is_none_or(|until| until > at))
        .map(|k| k.id)
        .collect();
    if working == [key] {
        return Err(DomainError::DemoMode.into());
    }
    Ok(())
}
