//! Plans changed by hand. Billing (when configured) and the operator API change plans as
//! well; a member may change it only outside production.

use crate::auth::TenantCtx;
use crate::config::{Config, Mode};
use crate::domain::DomainError;
use crate::rbac::Plan;
use crate::store::orgs::Organization;
use crate::store::{Store, StoreError};

/// A member (holding `billing:manage`) moves the organization to `plan`; refused when a
/// billing provider is configured (the plan follows the subscription), in production, in
/// demo mode, and
/// when the plan allows fewer members than the organization has.
pub(crate) async fn change_by_member(
    store: &Store,
    config: &Config,
    billing: bool,
    ctx: &TenantCtx,
    plan: Plan,
) -> Result<Organization, StoreError> {
    super::demo::refuse(config)?;
    if billing {
        return Err(DomainError::PlanManagedByBilling.into());
    }
    if config.mode == Mode::Production {
        return Err(DomainError::PlanChangeOperatorOnly.into());
    }
    store.set_plan(ctx, plan, false).await
}
