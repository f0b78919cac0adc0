//! Feature flags: what members see of their organization's, and the operator's overrides.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{OperatorOrg, OrgMember, TenantCtx};
use crate::features::{Flag, FlagState};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::AppJson;
use crate::ids::OrgId;
use crate::state::AppState;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_features))
        .routes(routes!(admin_list_features))
        .routes(routes!(set_feature, clear_feature))
}

/// The organization's feature flags: each one's value and whether the plan or an operator
/// override decides it (every member and every key of the organization).
#[utoipa::path(get, path = "/v1/orgs/{org_id}/features", tag = "organizations",
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id")),
    responses(
        (status = 200, description = "Every flag of the catalog", body = Vec<FlagState>),
        (status = 404, description = "No such organization", body = Problem)))]
async fn list_features(member: OrgMember) -> Json<Vec<FlagState>> {
    Json(member.features.all())
}

/// An organization's feature flags, as its members see them.
#[utoipa::path(get, path = "/v1/admin/orgs/{org_id}/features", tag = "operator",
    security(("operator_token" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id")),
    responses(
        (status = 200, description = "Every flag of the catalog", body = Vec<FlagState>),
        (status = 401, description = "Bad operator token", body = Problem),
        (status = 404, description = "No such organization", body = Problem)))]
async fn admin_list_features(
    State(state): State<AppState>,
    OperatorOrg(ctx): OperatorOrg,
) -> Result<Json<Vec<FlagState>>, ApiError> {
    Ok(Json(state.store.org_features(&ctx).await?.all()))
}

/// An override of one flag.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FeatureIn {
    /// On or off for this organization, whatever its plan says.
    pub enabled: bool,
}

/// `/v1/admin/orgs/{org_id}/features/{flag}`.
#[derive(Deserialize)]
pub(crate) struct FlagPath {
    /// Read by the operator extractor.
    #[serde(rename = "org_id")]
    _org_id: String,
    /// The flag's name.
    flag: String,
}

/// Sets or (with `None`) clears the override of the flag named `flag` (shared with the
/// console).
pub(crate) async fn set_override(
    state: &AppState,
    ctx: &TenantCtx,
    flag: &str,
    enabled: Option<bool>,
) -> Result<FlagState, ApiError> {
    let flag = flag_of(flag)?;
    let features = state.store.set_feature_override(ctx, flag, enabled).await?;
    state.api_keys.forget_all();
    Ok(features.state(flag))
}

fn flag_of(raw: &str) -> Result<Flag, ApiError> {
    Flag::parse(raw).ok_or_else(|| {
        let known: Vec<&str> = Flag::ALL.iter().map(|f| f.as_str()).collect();
        ApiError::validation("flag", format!("must be one of {}", known.join(", ")))
    })
}

/// Overrides one flag for the organization (audited; every instance applies it at once).
#[utoipa::path(put, path = "/v1/admin/orgs/{org_id}/features/{flag}", tag = "operator",
    security(("operator_token" = [])),
    request_body = FeatureIn,
    params(("org_id" = OrgId, Path, description = "Organization id"),
           ("flag" = String, Path, description = "Flag name, e.g. `scim`")),
    responses(
        (status = 200, description = "The flag now", body = FlagState),
        (status = 401, description = "Bad operator token", body = Problem),
        (status = 404, description = "No such organization", body = Problem),
        (status = 422, description = "Unknown flag", body = Problem)))]
async fn set_feature(
    State(state): State<AppState>,
    OperatorOrg(ctx): OperatorOrg,
    Path(path): Path<FlagPath>,
    AppJson(body): AppJson<FeatureIn>,
) -> Result<Json<FlagState>, ApiError> {
    Ok(Json(
        set_override(&state, &ctx, &path.flag, Some(body.enabled)).await?,
    ))
}

/// Removes the override of one flag: the organization's plan decides again.
#[utoipa::path(delete, path = "/v1/admin/orgs/{org_id}/features/{flag}", tag = "operator",
    security(("operator_token" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id"),
           ("flag" = String, Path, description = "Flag name, e.g. `scim`")),
    responses(
        (status = 200, description = "The flag now", body = FlagState),
        (status = 401, description = "Bad operator token", body = Problem),
        (status = 404, description = "No such organization", body = Problem),
        (status = 422, description = "Unknown flag", body = Problem)))]
async fn clear_feature(
    State(state): State<AppState>,
    OperatorOrg(ctx): OperatorOrg,
    Path(path): Path<FlagPath>,
) -> Result<Json<FlagState>, ApiError> {
    Ok(Json(set_override(&state, &ctx, &path.flag, None).await?))
}
