//! The SCIM client credential: one place that decides which organization a request to
//! `/scim/v2/…` provisions. A per-organization token (`scim_<16 hex>_<64 hex>`) names its
//! organization itself; the deployment-wide `SCIM_BEARER_TOKEN` names it through the
//! `X-Org-Id` header. Nothing else does: there is no organization in SCIM URLs.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};

use super::credentials::bearer;
use super::{Actor, ActorKind, TenantCtx};
use crate::http::meta::request_meta;
use crate::ids::OrgId;
use crate::rbac::Plan;
use crate::scim::ScimError;
use crate::secrets::{digest_eq, random_token, token_hash};
use crate::state::AppState;
use crate::store::now;
use crate::store::orgs::OrgStatus;

/// Start of every SCIM token secret.
pub const SECRET_START: &str = "scim_";
const PREFIX_LEN: usize = SECRET_START.len() + 16;
const SECRET_LEN: usize = PREFIX_LEN + 1 + 64;

/// How stale a token's recorded last use may get before a request records it again.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// Header naming the organization with the deployment-wide token.
const ORG_HEADER: &str = "x-org-id";

/// A new token secret (256 random bits) and its public prefix.
pub fn generate() -> (String, String) {
    let prefix = format!("{SECRET_START}{}", random_token(8));
    let secret = format!("{prefix}_{}", random_token(32));
    (prefix, secret)
}

/// The prefix of a well-formed secret.
fn prefix_of(secret: &str) -> Option<&str> {
    let prefix = secret.get(..PREFIX_LEN)?;
    let well_formed = secret.len() == SECRET_LEN
        && prefix.starts_with(SECRET_START)
        && secret.as_bytes().get(PREFIX_LEN) == Some(&b'_')
        && prefix[SECRET_START.len()..]
            .bytes()
            .chain(secret[PREFIX_LEN + 1..].bytes())
            .all(|b| b.is_ascii_hexdigit());
    well_formed.then_some(prefix)
}

/// A verified SCIM client of one organization.
#[derive(Clone, Debug)]
pub struct ScimClient {
    /// Tenant context for store calls; the actor is `scim` with the token id (or
    /// `deployment` for `SCIM_BEARER_TOKEN`).
    pub ctx: TenantCtx,
    /// The organization's plan.
    pub plan: Plan,
    /// Base of this request's resource locations (`…/scim/v2`).
    pub base_url: String,
}

impl ScimClient {
    fn new(
        (parts, state): (&Parts, &AppState),
        org: OrgId,
        actor_id: String,
        plan: Plan,
        status: OrgStatus,
        overrides: crate::features::Overrides,
    ) -> Result<Self, ScimError> {
        if status == OrgStatus::Suspended {
            return Err(crate::http::error::ApiError::org_suspended().into());
        }
        let flag = crate::features::Flag::Scim;
        if !crate::features::Features::new(plan, overrides).enabled(flag) {
            return Err(crate::http::error::ApiError::feature_disabled(flag).into());
        }
        let actor = Actor {
            kind: ActorKind::Scim,
            id: Some(actor_id),
        };
        Ok(Self {
            ctx: TenantCtx::new(org, actor, request_meta(parts)),
            plan,
            base_url: crate::scim::base_url(parts, state),
        })
    }

    /// A per-organization token: unknown, wrong, revoked and expired tokens are all 401.
    async fn from_token(parts: &Parts, state: &AppState, secret: &str) -> Result<Self, ScimError> {
        let prefix = prefix_of(secret).ok_or_else(ScimError::unauthorized)?;
        let token = state
            .store
            .scim_token_credential(prefix)
            .await?
            .ok_or_else(ScimError::unauthorized)?;
        let at = now();
        let valid = digest_eq(&token_hash(secret), &token.secret_hash)
            && token.revoked_at.is_none()
            && token.expires_at.is_none_or(|until| until > at);
        if !valid {
            return Err(ScimError::unauthorized());
        }
        if is_stale(token.last_used_at, at) {
            // Bookkeeping: a busy database delays the record, never the request.
            if let Err(err) = state.store.touch_scim_token(token.id, at).await {
                tracing::warn!(error = %crate::telemetry::error_chain(&err), "SCIM token last use not recorded");
            }
        }
        Self::new(
            (parts, state),
            token.org_id,
            token.id.to_string(),
            token.plan,
            token.org_status,
            token.feature_overrides,
        )
    }

    /// The deployment-wide token with `X-Org-Id`: an unknown or malformed organization is
    /// 404, like a resource of another organization.
    async fn from_deployment_token(parts: &Parts, state: &AppState) -> Result<Self, ScimError> {
        let org: OrgId = parts
            .headers
            .get(ORG_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(ScimError::not_found)?;
        let standing = state
            .store
            .org_standing(org)
            .await?
            .ok_or_else(ScimError::not_found)?;
        Self::new(
            (parts, state),
            org,
            "deployment".to_owned(),
            standing.plan,
            standing.status,
            standing.feature_overrides,
        )
    }
}

fn is_stale(last: Option<DateTime<Utc>>, at: DateTime<Utc>) -> bool {
    let every = chrono::Duration::from_std(TOUCH_EVERY).unwrap_or_default();
    last.is_none_or(|last| at - last >= every)
}

impl FromRequestParts<AppState> for ScimClient {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ScimError> {
        let secret = bearer(parts).ok_or_else(ScimError::unauthorized)?;
        let client = if secret.starts_with(SECRET_START) {
            Self::from_token(parts, state, secret).await?
        } else {
            let deployment = state
                .config
                .scim_bearer_token
                .as_ref()
                .is_some_and(|expected| digest_eq(secret, expected.expose()));
            if !deployment {
                return Err(ScimError::unauthorized());
            }
            Self::from_deployment_token(parts, state).await?
        };
        let org_key = format!("org:{}", client.ctx.org_id());
        let checks = [(org_key.as_str(), state.config.limits.org_rate(client.plan))];
        if let Some(decision) = state.limiter.check(&checks).await {
            if !decision.allowed {
                return Err(crate::http::ratelimit::refused(&decision).into());
            }
        }
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_have_a_public_prefix_and_256_random_bits() {
        let (prefix, secret) = generate();
        assert_eq!(prefix_of(&secret), Some(prefix.as_str()));
        assert_eq!(secret.len() - prefix.len() - 1, 64);
        assert_eq!(prefix_of("scim_short"), None);
        assert_eq!(prefix_of(&secret.replace('_', "-")), None);
    }
}
