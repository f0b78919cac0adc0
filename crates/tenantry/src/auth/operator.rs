//! The operator credential: `Authorization: Bearer $INTERNAL_ADMIN_TOKEN`.

use super::credentials::bearer;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;

use super::{Actor, ActorKind, RequestMeta, TenantCtx};
use crate::http::error::ApiError;
use crate::http::meta::request_meta;
use crate::ids::OrgId;
use crate::state::AppState;

/// A request authenticated with the operator token.
#[derive(Clone, Debug)]
pub struct Operator {
    meta: RequestMeta,
}

impl Operator {
    /// Request facts for audit records.
    pub fn meta(&self) -> &RequestMeta {
        &self.meta
    }

    /// The actor recorded for operator actions.
    pub fn actor() -> Actor {
        Actor {
            kind: ActorKind::Operator,
            id: None,
        }
    }
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let presented = bearer(parts).ok_or_else(ApiError::missing_credentials)?;
        let expected = state.config.internal_admin_token.expose();
        if !crate::secrets::digest_eq(presented, expected) {
            return Err(ApiError::invalid_token(
                "The operator token (INTERNAL_ADMIN_TOKEN) is not valid.",
            ));
        }
        Ok(Operator {
            meta: request_meta(parts),
        })
    }
}

/// An operator acting on the organization named in the path (`{org_id}`).
#[derive(Clone, Debug)]
pub struct OperatorOrg(pub TenantCtx);

impl FromRequestParts<AppState> for OperatorOrg {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let operator = Operator::from_request_parts(parts, state).await?;
        let Path(params): Path<std::collections::HashMap<String, String>> =
            Path::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::not_found())?;
        // A malformed id is answered like a missing one.
        let org_id: OrgId = params
            .get("org_id")
            .and_then(|raw| raw.parse().ok())
            .ok_or_else(ApiError::not_found)?;
        Ok(OperatorOrg(TenantCtx::new(
            org_id,
            Operator::actor(),
            operator.meta,
        )))
    }
}

/// An operator reading the platform's own audit chain (sign-ins, failures, refresh-token
/// reuse, password resets), which belongs to no tenant.
#[derive(Clone, Debug)]
pub struct OperatorPlatform(pub TenantCtx);

impl FromRequestParts<AppState> for OperatorPlatform {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let operator = Operator::from_request_parts(parts, state).await?;
        Ok(OperatorPlatform(TenantCtx::new(
            OrgId::PLATFORM,
            Operator::actor(),
            operator.meta,
        )))
    }
}
