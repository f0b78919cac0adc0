//! `tenantry seed`: demo data for local development.

use anyhow::{bail, Context};

use crate::auth::Operator;
use crate::config::Config;
use crate::domain::{DisplayName, Slug};
use crate::startup::connect_and_migrate;
use crate::store::orgs::NewOrg;
use crate::store::{Store, StoreError};

/// Creates the demo organization "Acme" (slug `acme`) with workspace "Core", once.
pub async fn run(config: &Config) -> anyhow::Result<()> {
    if !crate::cli::seeding_allowed(config) {
        bail!("seed is refused in production mode (TENANTRY_ENV=production)");
    }
    let store = Store::new(connect_and_migrate(config).await?);
    let operator = Operator::system_seed();
    let new = NewOrg {
        name: DisplayName::parse("Acme").map_err(anyhow::Error::msg)?,
        slug: Slug::parse("acme").map_err(anyhow::Error::msg)?,
    };
    match store.create_org(&operator, new).await {
        Ok(org) => {
            let ctx = crate::auth::TenantCtx::system(org.id);
            store
                .create_workspace(
                    &ctx,
                    DisplayName::parse("Core").map_err(anyhow::Error::msg)?,
                    Slug::parse("core").map_err(anyhow::Error::msg)?,
                )
                .await
                .context("cannot create the demo workspace")?;
            tracing::info!(org_id = %org.id, "demo organization `acme` created");
        }
        Err(StoreError::Conflict(_)) => tracing::info!("demo organization `acme` already exists"),
        Err(err) => return Err(err).context("cannot create the demo organization"),
    }
    store.db().close().await;
    Ok(())
}
