//! API keys of an organization: create (secret shown once), list, get, revoke, rotate.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{api_key, OrgMember};
use crate::domain::access::{grantable, parse_permissions};
use crate::domain::error::Grant;
use crate::domain::DisplayName;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{AppJson, OrgPath};
use crate::http::list::List;
use crate::ids::{ApiKeyId, OrgId};
use crate::rbac::Permission;
use crate::state::AppState;
use crate::store::api_keys::{ApiKey, KeyRateLimit, NewApiKey};
use crate::store::now;

/// Longest grace period of a rotation (7 days).
const MAX_GRACE: Duration = Duration::from_secs(7 * 86_400);
/// Grace period of a rotation unless asked otherwise (1 hour).
const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

/// A new API key.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApiKeyIn {
    /// Display name.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub name: String,
    /// Permissions of the key: a non-empty subset of the creator's own.
    #[schema(value_type = Vec<String>)]
    pub scopes: Vec<String>,
    /// Expiry (RFC 3339, in the future); none means the key does not expire.
    pub expires_at: Option<DateTime<Utc>>,
    /// The key's own rate limit instead of `API_KEY_RATE_LIMIT`.
    pub rate_limit: Option<KeyRateLimit>,
}

/// A key with its secret: returned once, at creation or rotation.
#[derive(Serialize, ToSchema)]
pub(crate) struct ApiKeyWithSecret {
    /// The key.
    #[serde(flatten)]
    pub key: ApiKey,
    /// The secret (`<prefix>_<random>`). It is not stored and cannot be shown again.
    pub secret: String,
}

/// Rotation options.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RotateIn {
    /// How long the previous secret keeps working, 0-604800 seconds (default 3600).
    pub grace_period_sec: Option<u64>,
}

/// A key's own rate may be stricter than `API_KEY_RATE_LIMIT`, never looser (unless that
/// limit is off).
fn check_rate(rate: KeyRateLimit, default: crate::ratelimit::Rate) -> Result<(), ApiError> {
    if rate.limit == 0
        || rate.limit > i32::MAX.unsigned_abs()
        || rate.window_sec == 0
        || rate.window_sec > 86_400
    {
        return Err(ApiError::validation(
            "rate_limit",
            "needs limit from 1 to 2147483647 and window_sec from 1 to 86400",
        ));
    }
    // limit / window <= default.limit / default.window, in integers.
    let looser = default.is_limited()
        && u128::from(rate.limit) * default.window.as_millis()
            > u128::from(default.limit) * u128::from(rate.window_sec) * 1000;
    if looser {
        return Err(ApiError::validation(
            "rate_limit",
            format!(
                "may not exceed the deployment's API key limit of {} requests per {} s",
                default.limit,
                default.window.as_secs()
            ),
        ));
    }
    Ok(())
}

/// 403 unless the caller holds every scope of `key`: managing a key (revoking it, or
/// rotating it and so learning a new secret) must not reach beyond one's own permissions.
fn ensure_covers(member: &OrgMember, key: &ApiKey) -> Result<(), ApiError> {
    Ok(grantable(
        Grant::ManagedKey,
        &member.permissions,
        key.scopes.iter().copied(),
    )?)
}

/// Creates an API key (`api_keys:write`). The secret is in this response only.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/api-keys", tag = "api-keys", request_body = ApiKeyIn,
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id")),
    responses(
        (status = 201, description = "Created; `secret` is shown once", body = ApiKeyWithSecret),
        (status = 403, description = "`forbidden`: a scope the caller does not hold", body = Problem),
        (status = 422, description = "`validation_failed`", body = Problem)))]
pub(crate) async fn create_api_key(
    State(state): State<AppState>,
    member: OrgMember,
    AppJson(body): AppJson<ApiKeyIn>,
) -> Result<(StatusCode, Json<ApiKeyWithSecret>), ApiError> {
    member.require(Permission::ApiKeysWrite)?;
    let name = DisplayName::parse(&body.name).map_err(|m| ApiError::validation("name", m))?;
    if body.scopes.is_empty() {
        return Err(ApiError::validation(
            "scopes",
            "name at least one permission of the catalog (GET /v1/permissions)",
        ));
    }
    let scopes = parse_permissions(&body.scopes).map_err(|scope| {
        ApiError::validation(
            "scopes",
            format!("`{scope}` is not a permission of the catalog"),
        )
    })?;
    grantable(Grant::KeyScope, &member.permissions, scopes.iter().copied())?;
    if body.expires_at.is_some_and(|at| at <= now()) {
        return Err(ApiError::validation("expires_at", "must be in the future"));
    }
    if let Some(rate) = body.rate_limit {
        check_rate(rate, state.config.limits.api_key)?;
    }
    let (prefix, secret) = api_key::generate();
    let new = NewApiKey {
        name: name.as_str().to_owned(),
        scopes,
        expires_at: body.expires_at,
        rate_limit: body.rate_limit,
        secret_hash: api_key::secret_hash(&secret),
        prefix,
    };
    let key = state
        .store
        .create_api_key(&member.ctx, member.user_id(), &new)
        .await?;
    Ok((StatusCode::CREATED, Json(ApiKeyWithSecret { key, secret })))
}

/// Lists the organization's API keys, revoked ones included (`api_keys:read`).
#[utoipa::path(get, path = "/v1/orgs/{org_id}/api-keys", tag = "api-keys",
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id")),
    responses((status = 200, description = "Keys, newest first", body = List<ApiKey>)))]
pub(super) async fn list_api_keys(
    State(state): State<AppState>,
    member: OrgMember,
) -> Result<Json<List<ApiKey>>, ApiError> {
    member.require(Permission::ApiKeysRead)?;
    Ok(Json(List::all(
        state.store.list_api_keys(&member.ctx).await?,
    )))
}

/// One API key (`api_keys:read`).
#[utoipa::path(get, path = "/v1/orgs/{org_id}/api-keys/{key_id}", tag = "api-keys",
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id"), ("key_id" = ApiKeyId, Path, description = "Key id")),
    responses(
        (status = 200, description = "The key", body = ApiKey),
        (status = 404, description = "Not found", body = Problem)))]
pub(super) async fn get_api_key(
    State(state): State<AppState>,
    member: OrgMember,
    OrgPath(id): OrgPath<ApiKeyId>,
) -> Result<Json<ApiKey>, ApiError> {
    member.require(Permission::ApiKeysRead)?;
    Ok(Json(state.store.get_api_key(&member.ctx, id).await?))
}

/// Revokes an API key at once (`api_keys:write` and every scope of the key); revoking twice
/// is harmless.
#[utoipa::path(delete, path = "/v1/orgs/{org_id}/api-keys/{key_id}", tag = "api-keys",
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id"), ("key_id" = ApiKeyId, Path, description = "Key id")),
    responses(
        (status = 200, description = "The revoked key", body = ApiKey),
        (status = 403, description = "`forbidden`: the key holds a permission the caller does not", body = Problem),
        (status = 404, description = "Not found", body = Problem)))]
pub(crate) async fn revoke_api_key(
    State(state): State<AppState>,
    member: OrgMember,
    OrgPath(id): OrgPath<ApiKeyId>,
) -> Result<Json<ApiKey>, ApiError> {
    member.require(Permission::ApiKeysWrite)?;
    let current = state.store.get_api_key(&member.ctx, id).await?;
    ensure_covers(&member, &current)?;
    crate::services::demo::protect_last_key(&state.config, &state.store, &member.ctx, id).await?;
    let key = state.store.revoke_api_key(&member.ctx, id).await?;
    state.api_keys.forget(&key.prefix);
    Ok(Json(key))
}

/// Gives an API key a new secret (`api_keys:write` and every scope of the key); the
/// previous one keeps working for the grace period. Same id, prefix, scopes and limits.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/api-keys/{key_id}/rotate", tag = "api-keys", request_body = RotateIn,
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id"), ("key_id" = ApiKeyId, Path, description = "Key id")),
    responses(
        (status = 200, description = "The key and its new secret, shown once", body = ApiKeyWithSecret),
        (status = 403, description = "`forbidden`: the key holds a permission the caller does not", body = Problem),
        (status = 404, description = "Not found", body = Problem),
        (status = 409, description = "`api_key_inactive`: revoked or expired", body = Problem)))]
pub(crate) async fn rotate_api_key(
    State(state): State<AppState>,
    member: OrgMember,
    OrgPath(id): OrgPath<ApiKeyId>,
    body: Option<AppJson<RotateIn>>,
) -> Result<Json<ApiKeyWithSecret>, ApiError> {
    member.require(Permission::ApiKeysWrite)?;
    let body = body.map(|AppJson(b)| b).unwrap_or_default();
    let grace = match body.grace_period_sec {
        None => DEFAULT_GRACE,
        Some(secs) if Duration::from_secs(secs) <= MAX_GRACE => Duration::from_secs(secs),
        Some(_) => {
            return Err(ApiError::validation(
                "grace_period_sec",
                "must be from 0 to 604800 (7 days)",
            ))
        }
    };
    let current = state.store.get_api_key(&member.ctx, id).await?;
    ensure_covers(&member, &current)?;
    let secret = api_key::regenerate(&current.prefix);
    let until = now() + chrono::Duration::from_std(grace).unwrap_or_default();
    let key = state
        .store
        .rotate_api_key(&member.ctx, id, &api_key::secret_hash(&secret), until)
        .await?;
    state.api_keys.forget(&key.prefix);
    Ok(Json(ApiKeyWithSecret { key, secret }))
}
