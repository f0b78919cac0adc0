//! The operator API (`/v1/admin/…`), authenticated with `INTERNAL_ADMIN_TOKEN`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::audit::{AuditQuery, AuditRequest};
use crate::auth::{Operator, OperatorOrg, OperatorPlatform};
use crate::domain::{DisplayName, Slug};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{AppJson, AppQuery};
use crate::http::list::List;
use crate::ids::OrgId;
use crate::state::AppState;
use crate::store::audit::{AuditEvent, ChainReport};
use crate::store::orgs::{NewOrg, Organization};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_org, list_orgs))
        .routes(routes!(get_org))
        .routes(routes!(list_org_audit_events))
        .routes(routes!(verify_org_audit_chain))
        .routes(routes!(set_org_plan))
        .routes(routes!(list_platform_audit_events))
        .routes(routes!(verify_platform_audit_chain))
}

/// A new organization.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OrgIn {
    /// Display name, 1-100 characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub name: String,
    /// Unique slug: 2-63 of a-z, 0-9 and inner hyphens.
    #[schema(
        min_length = 2,
        max_length = 63,
        pattern = "^[a-z0-9][a-z0-9-]*[a-z0-9]$"
    )]
    pub slug: String,
}

/// Creates an organization.
#[utoipa::path(post, path = "/v1/admin/orgs", tag = "operator", operation_id = "admin_create_org",
    security(("operator_token" = [])),
    request_body = OrgIn,
    responses(
        (status = 201, description = "Created", body = Organization),
        (status = 401, description = "Bad operator token", body = Problem),
        (status = 409, description = "Slug taken (`slug_taken`)", body = Problem),
        (status = 422, description = "Invalid input", body = Problem)))]
async fn create_org(
    State(state): State<AppState>,
    operator: Operator,
    AppJson(body): AppJson<OrgIn>,
) -> Result<(StatusCode, Json<Organization>), ApiError> {
    let name = DisplayName::parse(&body.name).map_err(|m| ApiError::validation("name", m))?;
    let slug = Slug::parse(&body.slug).map_err(|m| ApiError::validation("slug", m))?;
    let org = state
        .store
        .create_org(&operator, NewOrg { name, slug })
        .await?;
    Ok((StatusCode::CREATED, Json(org)))
}

/// Page of a listing.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct OrgPage {
    /// The previous page's `next_cursor`: organizations after this id (`after` is
    /// accepted too).
    #[serde(alias = "after")]
    pub cursor: Option<OrgId>,
    /// Page size, 1-200 (default 50).
    pub limit: Option<u32>,
    /// Only organizations whose name, slug or a member's email contains this
    /// (case-insensitive), 1-200 characters.
    pub q: Option<String>,
}

/// Lists every organization, ordered by id; `q` searches names, slugs and members' emails.
#[utoipa::path(get, path = "/v1/admin/orgs", tag = "operator",
    security(("operator_token" = [])),
    params(OrgPage),
    responses(
        (status = 200, description = "A page of organizations, by id", body = List<Organization>),
        (status = 401, description = "Bad operator token", body = Problem),
        (status = 422, description = "`q` longer than 200 characters", body = Problem)))]
async fn list_orgs(
    State(state): State<AppState>,
    operator: Operator,
    AppQuery(page): AppQuery<OrgPage>,
) -> Result<Json<List<Organization>>, ApiError> {
    let query = page.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    if query.is_some_and(|q| q.chars().count() > 200) {
        return Err(ApiError::validation("q", "at most 200 characters"));
    }
    let orgs = state
        .store
        .list_all_orgs(&operator, query, page.cursor, page.limit)
        .await?;
    Ok(Json(List::page(
        orgs,
        crate::store::page_size(page.limit),
        |o| o.id.to_string(),
    )))
}

/// Gets one organization.
#[utoipa::path(get, path = "/v1/admin/orgs/{org_id}", tag = "operator", operation_id = "admin_get_org",
    security(("operator_token" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id")),
    responses(
        (status = 200, description = "The organization", body = Organization),
        (status = 404, description = "No such organization", body = Problem)))]
async fn get_org(
    State(state): State<AppState>,
    OperatorOrg(ctx): OperatorOrg,
) -> Result<Json<Organization>, ApiError> {
    Ok(Json(state.store.get_org(&ctx).await?))
}

/// Searches or exports an organization's audit records, newest first by default.
#[utoipa::path(get, path = "/v1/admin/orgs/{org_id}/audit-events", tag = "operator",
    security(("operator_token" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id"), AuditQuery),
    responses(
        (status = 200, description = "A page of audit records; with `format`, the export",
            content((List<AuditEvent> = "application/json"), (String = "text/csv"), (String = "application/x-ndjson"))),
        (status = 404, description = "No such organization", body = Problem),
        (status = 422, description = "Bad filter", body = Problem)))]
async fn list_org_audit_events(
    State(state): State<AppState>,
    OperatorOrg(ctx): OperatorOrg,
    AppQuery(q): AppQuery<AuditQuery>,
) -> Result<Response, ApiError> {
    state.store.get_org(&ctx).await?;
    crate::api::audit::answer(&state, &ctx, AuditRequest::try_from(q)?, || Ok(())).await
}

/// Recomputes an organization's audit hash chain.
#[utoipa::path(get, path = "/v1/admin/orgs/{org_id}/audit-events/verify", tag = "operator",
    security(("operator_token" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id")),
    responses(
        (status = 200, description = "Verification result", body = ChainReport),
        (status = 404, description = "No such organization", body = Problem)))]
async fn verify_org_audit_chain(
    State(state): State<AppState>,
    OperatorOrg(ctx): OperatorOrg,
) -> Result<Json<ChainReport>, ApiError> {
    state.store.get_org(&ctx).await?;
    Ok(Json(state.store.verify_audit_chain(&ctx).await?))
}

/// The platform's audit records (sign-ins and their failures, registrations, refresh-token
/// reuse, password resets, retention), newest first by default; with `format`, exported.
#[utoipa::path(get, path = "/v1/admin/audit-events", tag = "operator",
    security(("operator_token" = [])),
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of platform audit records; with `format`, the export",
            content((List<AuditEvent> = "application/json"), (String = "text/csv"), (String = "application/x-ndjson"))),
        (status = 401, description = "Bad operator token", body = Problem),
        (status = 422, description = "Bad filter", body = Problem)))]
async fn list_platform_audit_events(
    State(state): State<AppState>,
    OperatorPlatform(ctx): OperatorPlatform,
    AppQuery(q): AppQuery<AuditQuery>,
) -> Result<Response, ApiError> {
    crate::api::audit::answer(&state, &ctx, AuditRequest::try_from(q)?, || Ok(())).await
}

/// Recomputes the platform's audit hash chain.
#[utoipa::path(get, path = "/v1/admin/audit-events/verify", tag = "operator",
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "Verification result", body = ChainReport),
        (status = 401, description = "Bad operator token", body = Problem)))]
async fn verify_platform_audit_chain(
    State(state): State<AppState>,
    OperatorPlatform(ctx): OperatorPlatform,
) -> Result<Json<ChainReport>, ApiError> {
    Ok(Json(state.store.verify_audit_chain(&ctx).await?))
}

/// An operator's plan change.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdminPlanIn {
    /// `free`, `pro` or `enterprise`.
    #[schema(pattern = "^(free|pro|enterprise)$")]
    pub plan: String,
    /// Change the plan even when the organization has more members than the new plan
    /// allows (default false; existing members stay, new ones are refused).
    #[serde(default)]
    pub force: bool,
}

/// Sets an organization's plan (audited with the operator as actor).
#[utoipa::path(put, path = "/v1/admin/orgs/{org_id}/plan", tag = "operator",
    security(("operator_token" = [])),
    request_body = AdminPlanIn,
    params(("org_id" = OrgId, Path, description = "Organization id")),
    responses(
        (status = 200, description = "Plan changed", body = Organization),
        (status = 401, description = "Bad operator token", body = Problem),
        (status = 404, description = "No such organization", body = Problem),
        (status = 409, description = "`plan_seats_exceeded`: more members than the plan allows", body = Problem),
        (status = 422, description = "Unknown plan", body = Problem)))]
async fn set_org_plan(
    State(state): State<AppState>,
    OperatorOrg(ctx): OperatorOrg,
    AppJson(body): AppJson<AdminPlanIn>,
) -> Result<Json<Organization>, ApiError> {
    let plan =
        crate::rbac::Plan::from_input(&body.plan).map_err(|m| ApiError::validation("plan", m))?;
    Ok(Json(state.store.set_plan(&ctx, plan, body.force).await?))
}
