//! Organizations of the signed-in user, the permission catalog, plan and audit.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::api::audit::{AuditQuery, AuditRequest};
use crate::auth::{CurrentUser, OrgMember};
use crate::domain::{DisplayName, Slug};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{AppJson, AppQuery};
use crate::http::list::List;
use crate::ids::OrgId;
use crate::rbac::{self, CatalogOut, Permission};
use crate::state::AppState;
use crate::store::audit::AuditEvent;
use crate::store::members::MyOrganization;
use crate::store::orgs::{NewOrg, Organization};

/// The permission catalog and the built-in roles.
#[utoipa::path(get, path = "/v1/permissions", tag = "organizations",
    responses((status = 200, description = "Catalog", body = CatalogOut)))]
pub(super) async fn permission_catalog() -> Json<CatalogOut> {
    Json(rbac::catalog())
}

/// A new organization.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewOrgIn {
    /// Display name.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub name: String,
    /// Unique slug.
    #[schema(
        min_length = 2,
        max_length = 63,
        pattern = "^[a-z0-9][a-z0-9-]*[a-z0-9]$"
    )]
    pub slug: String,
}

/// Parses organization input (422 per field).
pub(crate) fn parse_new_org(body: &NewOrgIn) -> Result<NewOrg, ApiError> {
    Ok(NewOrg {
        name: DisplayName::parse(&body.name).map_err(|m| ApiError::validation("name", m))?,
        slug: Slug::parse(&body.slug).map_err(|m| ApiError::validation("slug", m))?,
    })
}

/// Creates an organization; the caller becomes its owner.
#[utoipa::path(post, path = "/v1/orgs", tag = "organizations", request_body = NewOrgIn,
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 201, description = "Created", body = Organization),
        (status = 409, description = "`slug_taken`", body = Problem),
        (status = 422, description = "Invalid input", body = Problem)))]
pub(super) async fn create_org(
    State(state): State<AppState>,
    user: CurrentUser,
    AppJson(body): AppJson<NewOrgIn>,
) -> Result<(StatusCode, Json<Organization>), ApiError> {
    let new = parse_new_org(&body)?;
    let org = state
        .store
        .create_org_for_user(user.id, new, &user.meta)
        .await?;
    Ok((StatusCode::CREATED, Json(org)))
}

/// The organizations the caller belongs to, with their role in each.
#[utoipa::path(get, path = "/v1/orgs", tag = "organizations",
    security(("bearer" = []), ("session" = [])),
    responses((status = 200, description = "Organizations", body = List<MyOrganization>)))]
pub(super) async fn list_my_orgs(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<List<MyOrganization>>, ApiError> {
    Ok(Json(List::all(state.store.my_orgs(user.id).await?)))
}

/// One organization (`org:read`).
#[utoipa::path(get, path = "/v1/orgs/{org_id}", tag = "organizations",
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id")),
    responses(
        (status = 200, description = "The organization", body = Organization),
        (status = 404, description = "No such organization, or not a member", body = Problem)))]
pub(super) async fn get_org(
    State(state): State<AppState>,
    member: OrgMember,
) -> Result<Json<Organization>, ApiError> {
    member.require(Permission::OrgRead)?;
    Ok(Json(state.store.get_org(&member.ctx).await?))
}

/// Organization changes.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OrgPatch {
    /// New name.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub name: Option<String>,
    /// New slug.
    #[schema(
        min_length = 2,
        max_length = 63,
        pattern = "^[a-z0-9][a-z0-9-]*[a-z0-9]$"
    )]
    pub slug: Option<String>,
}

/// Renames the organization or changes its slug (`org:update`).
#[utoipa::path(patch, path = "/v1/orgs/{org_id}", tag = "organizations", request_body = OrgPatch,
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id")),
    responses(
        (status = 200, description = "Updated", body = Organization),
        (status = 403, description = "Missing permission", body = Problem),
        (status = 409, description = "`slug_taken`", body = Problem)))]
pub(crate) async fn update_org(
    State(state): State<AppState>,
    member: OrgMember,
    AppJson(body): AppJson<OrgPatch>,
) -> Result<Json<Organization>, ApiError> {
    member.require(Permission::OrgUpdate)?;
    let name = body
        .name
        .as_deref()
        .map(DisplayName::parse)
        .transpose()
        .map_err(|m| ApiError::validation("name", m))?;
    let slug = body
        .slug
        .as_deref()
        .map(Slug::parse)
        .transpose()
        .map_err(|m| ApiError::validation("slug", m))?;
    let org = state
        .store
        .update_org(
            &member.ctx,
            name.map(|n| n.as_str().to_owned()),
            slug.map(|s| s.as_str().to_owned()),
        )
        .await?;
    Ok(Json(org))
}

/// Deletes the organization and all its data (`org:delete`: owners). The audit log stays.
#[utoipa::path(delete, path = "/v1/orgs/{org_id}", tag = "organizations",
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Missing permission", body = Problem)))]
pub(crate) async fn delete_org(
    State(state): State<AppState>,
    member: OrgMember,
) -> Result<StatusCode, ApiError> {
    member.require(Permission::OrgDelete)?;
    crate::services::demo::refuse(&state.config)?;
    state.store.delete_org(&member.ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A plan change.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PlanIn {
    /// `free`, `pro` or `enterprise`.
    #[schema(pattern = "^(free|pro|enterprise|FREE|PRO|ENTERPRISE)$")]
    pub plan: String,
}

/// Changes the plan directly (`billing:manage`): a development convenience while no
/// billing provider is configured. In production only the operator changes plans
/// (`PUT /v1/admin/orgs/{org_id}/plan`). A downgrade below the members in use is refused.
#[utoipa::path(put, path = "/v1/orgs/{org_id}/plan", tag = "organizations", request_body = PlanIn,
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id")),
    responses(
        (status = 200, description = "Plan changed", body = Organization),
        (status = 403, description = "Missing permission, or production (`plan_change_operator_only`)", body = Problem),
        (status = 409, description = "`plan_seats_exceeded`: more members than the plan allows; `plan_managed_by_billing`: Stripe is configured, so the plan follows the subscription", body = Problem),
        (status = 422, description = "Unknown plan", body = Problem)))]
pub(super) async fn change_plan(
    State(state): State<AppState>,
    member: OrgMember,
    AppJson(body): AppJson<PlanIn>,
) -> Result<Json<Organization>, ApiError> {
    member.require(Permission::BillingManage)?;
    let plan =
        crate::rbac::Plan::from_input(&body.plan).map_err(|m| ApiError::validation("plan", m))?;
    let org = crate::services::plans::change_by_member(
        &state.store,
        &state.config,
        state.billing.is_some(),
        &member.ctx,
        plan,
    )
    .await?;
    Ok(Json(org))
}

/// Searches the organization's audit log, newest first by default (`audit:read`); with
/// `format=csv|json|ndjson`, exports every matching record (`audit:export`).
#[utoipa::path(get, path = "/v1/orgs/{org_id}/audit-events", tag = "organizations",
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id"), AuditQuery),
    responses(
        (status = 200, description = "A page of audit records; with `format`, the export",
            content((List<AuditEvent> = "application/json"), (String = "text/csv"), (String = "application/x-ndjson"))),
        (status = 403, description = "Missing permission, or (`feature_disabled`) exports are off for the organization", body = Problem),
        (status = 422, description = "Bad filter", body = Problem)))]
pub(super) async fn list_audit_events(
    State(state): State<AppState>,
    member: OrgMember,
    AppQuery(q): AppQuery<AuditQuery>,
) -> Result<Response, ApiError> {
    member.require(Permission::AuditRead)?;
    let request = AuditRequest::try_from(q)?;
    crate::api::audit::answer(&state, &member.ctx, request, || {
        member.require(Permission::AuditExport)?;
        member.require_feature(crate::features::Flag::AuditExport)
    })
    .await
}
