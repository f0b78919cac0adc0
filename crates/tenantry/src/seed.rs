//! `tenantry seed`: demo data for local development.

use anyhow::{bail, Context};

use crate::auth::password::Hasher;
use crate::auth::{RequestMeta, TenantCtx};
use crate::config::Config;
use crate::domain::{DisplayName, Slug};
use crate::rbac::RoleRef;
use crate::secrets::{random_token, token_hash};
use crate::startup::connect_and_migrate;
use crate::store::identity::{EmailPurpose, EmailToken};
use crate::store::invitations::InvitationToken;
use crate::store::orgs::NewOrg;
use crate::store::outbox::OutboundEmail;
use crate::store::{now, Store, StoreError};

/// The demo password (local development only; seed is refused in production).
const DEMO_PASSWORD: &str = "password123";

/// Creates organization "Acme" (slug `acme`, workspace "Core") owned by
/// `owner@example.com`, with `admin@example.com` and `member@example.com` as members, all
/// with password `password123`. Does nothing if the owner exists.
pub(crate) async fn run(config: &Config) -> anyhow::Result<()> {
    if config.mode == crate::config::Mode::Production {
        bail!("seed is refused in production mode (TENANTRY_ENV=production)");
    }
    let store = Store::new(connect_and_migrate(config).await?);
    let result = seed(&store, config).await;
    store.close().await;
    result
}

async fn seed(store: &Store, config: &Config) -> anyhow::Result<()> {
    if store.user_for_login("owner@example.com").await?.is_some() {
        tracing::info!("demo data already present");
        return Ok(());
    }
    let hasher = Hasher::new(1).map_err(|e| anyhow::anyhow!("{e}"))?;
    let hash = hasher
        .hash(DEMO_PASSWORD.to_owned())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let meta = RequestMeta::default();
    let acme = NewOrg {
        name: DisplayName::parse("Acme").map_err(anyhow::Error::msg)?,
        slug: Slug::parse("acme").map_err(anyhow::Error::msg)?,
    };
    let (_, org) = register(
        store,
        "owner@example.com",
        "Olivia Owner",
        &hash,
        Some(acme),
        &meta,
    )
    .await?;
    let org = org.context("the demo organization was not created")?;
    let ctx = TenantCtx::system(org.id);
    let core = (
        DisplayName::parse("Core").map_err(anyhow::Error::msg)?,
        Slug::parse("core").map_err(anyhow::Error::msg)?,
    );
    store
        .create_workspace(&ctx, core.0, core.1)
        .await
        .context("cannot create the demo workspace")?;
    for (email, name, role) in [
        ("admin@example.com", "Adam Admin", "admin"),
        ("member@example.com", "Mia Member", "member"),
    ] {
        let (user, _) = register(store, email, name, &hash, None, &meta).await?;
        let token = random_token(32);
        let invitation = InvitationToken {
            hash: token_hash(&token),
            expires_at: now() + chrono::Duration::days(1),
            email: OutboundEmail {
                to: email.to_owned(),
                subject: "You joined Acme".to_owned(),
                body: "`tenantry seed` added you to the demo organization Acme.\n".to_owned(),
            },
        };
        let role = RoleRef::parse(role).map_err(anyhow::Error::msg)?;
        store
            .create_invitation(&ctx, email, role, &invitation)
            .await?;
        store
            .accept_invitation(&invitation.hash, user.id, email, &meta)
            .await?;
    }
    tracing::info!(org_id = %org.id, base = %config.auth.public_base_url, "demo organization `acme` created; sign in as owner@example.com / password123");
    Ok(())
}

async fn register(
    store: &Store,
    email: &str,
    name: &str,
    hash: &str,
    org: Option<NewOrg>,
    meta: &RequestMeta,
) -> Result<
    (
        crate::store::identity::User,
        Option<crate::store::orgs::Organization>,
    ),
    StoreError,
> {
    // The verification token is born expired: demo accounts are not meant to be verified.
    let verify = EmailToken {
        purpose: EmailPurpose::VerifyEmail,
        hash: token_hash(&random_token(32)),
        expires_at: now(),
    };
    let email_msg = OutboundEmail {
        to: email.to_owned(),
        subject: "Your Tenantry demo account".to_owned(),
        body: format!("A demo account for {email} was created by `tenantry seed`.\n"),
    };
    store
        .register_user(email, name, hash, (verify, email_msg), org, meta)
        .await
}
