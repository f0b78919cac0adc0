//! The operator's support tools: one organization's summary, suspension and reactivation.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::billing::{billing_view, BillingOut};
use crate::auth::{OperatorOrg, TenantCtx};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::AppJson;
use crate::ids::OrgId;
use crate::state::AppState;
use crate::store::audit::{AuditEvent, AuditFilter};
use crate::store::jobs::{Job, JobFilter, JobStatus};
use crate::store::orgs::Organization;
use crate::store::support::SupportCounts;

/// Records and jobs the summary lists at most of each kind.
const RECENT: u32 = 10;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(org_summary))
        .routes(routes!(suspend_org))
        .routes(routes!(reactivate_org))
}

/// `/admin/orgs/{org_id}/summary`, the original product's path, outside the document.
pub(crate) fn legacy_router() -> axum::Router<AppState> {
    axum::Router::new().route(
        "/admin/orgs/{org_id}/summary",
        axum::routing::get(org_summary),
    )
}

/// What the operator needs to know about an organization at a glance.
#[derive(Serialize, ToSchema)]
pub(crate) struct OrgSummary {
    /// The organization, with its status (`active` or `suspended`).
    pub organization: Organization,
    /// Plan, subscription, seats and this month's usage against the quota.
    pub billing: BillingOut,
    /// Members, invitations, keys and jobs counted.
    #[serde(flatten)]
    pub counts: SupportCounts,
    /// The latest audit records, newest first.
    pub recent_audit_events: Vec<AuditEvent>,
    /// Jobs whose last run failed and that will run again, most recent first.
    pub failing_jobs: Vec<Job>,
    /// Jobs that ran out of attempts, newest first.
    pub dead_jobs: Vec<Job>,
}

/// An organization's support summary: plan and subscription, members by role, pending
/// invitations, API keys, usage against the quota, recent audit records, failing and dead
/// jobs, last activity. Also at `/admin/orgs/{org_id}/summary`.
#[utoipa::path(get, path = "/v1/admin/orgs/{org_id}/summary", tag = "operator",
    security(("operator_token" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id")),
    responses(
        (status = 200, description = "The summary", body = OrgSummary),
        (status = 401, description = "Bad operator token", body = Problem),
        (status = 404, description = "No such organization", body = Problem)))]
pub(crate) async fn org_summary(
    State(state): State<AppState>,
    OperatorOrg(ctx): OperatorOrg,
) -> Result<Json<OrgSummary>, ApiError> {
    Ok(Json(summary(&state, &ctx).await?))
}

/// The support summary of `ctx`'s organization (shared with the console).
pub(crate) async fn summary(state: &AppState, ctx: &TenantCtx) -> Result<OrgSummary, ApiError> {
    let organization = state.store.get_org(ctx).await?;
    // This instance's latest counts first, so the usage is exact.
    state.usage.flush().await?;
    let billing = billing_view(state, ctx).await?;
    let counts = state.store.support_counts(ctx).await?;
    let recent = AuditFilter {
        limit: Some(RECENT),
        ..AuditFilter::default()
    };
    let recent_audit_events = state.store.list_audit_events(ctx, &recent).await?;
    let failing_jobs = state.store.failing_jobs(ctx, i64::from(RECENT)).await?;
    let dead = JobFilter {
        status: Some(JobStatus::Dead),
        before: None,
        limit: Some(RECENT),
    };
    let dead_jobs = state.store.list_jobs(ctx, &dead).await?;
    Ok(OrgSummary {
        organization,
        billing,
        counts,
        recent_audit_events,
        failing_jobs,
        dead_jobs,
    })
}

/// Why the operator suspends an organization.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct SuspendIn {
    /// Kept in the audit record, at most 500 characters.
    #[schema(max_length = 500)]
    pub reason: Option<String>,
}

/// Suspends an organization: every member, API key and SCIM token of it is answered 403
/// `org_suspended` and its jobs wait; the operator API still reads it. Suspending a
/// suspended organization changes nothing.
#[utoipa::path(post, path = "/v1/admin/orgs/{org_id}/suspend", tag = "operator",
    security(("operator_token" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id")),
    request_body(content = Option<SuspendIn>, description = "Optional reason"),
    responses(
        (status = 200, description = "Suspended", body = Organization),
        (status = 401, description = "Bad operator token", body = Problem),
        (status = 404, description = "No such organization", body = Problem),
        (status = 422, description = "Reason too long", body = Problem)))]
async fn suspend_org(
    State(state): State<AppState>,
    OperatorOrg(ctx): OperatorOrg,
    body: Option<AppJson<SuspendIn>>,
) -> Result<Json<Organization>, ApiError> {
    let reason = body.map(|AppJson(b)| b).unwrap_or_default().reason;
    Ok(Json(
        set_suspended(&state, &ctx, true, reason.as_deref()).await?,
    ))
}

/// Suspends or reactivates `ctx`'s organization (shared with the console).
pub(crate) async fn set_suspended(
    state: &AppState,
    ctx: &TenantCtx,
    suspended: bool,
    reason: Option<&str>,
) -> Result<Organization, ApiError> {
    let reason = reason.map(str::trim).filter(|r| !r.is_empty());
    if reason.is_some_and(|r| r.chars().count() > 500) {
        return Err(ApiError::validation("reason", "at most 500 characters"));
    }
    let org = state
        .store
        .set_org_suspended(ctx, suspended, reason)
        .await?;
    state.api_keys.forget_all();
    Ok(org)
}

/// Reactivates a suspended organization: its credentials work again and its jobs run.
#[utoipa::path(post, path = "/v1/admin/orgs/{org_id}/reactivate", tag = "operator",
    security(("operator_token" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id")),
    responses(
        (status = 200, description = "Active", body = Organization),
        (status = 401, description = "Bad operator token", body = Problem),
        (status = 404, description = "No such organization", body = Problem)))]
async fn reactivate_org(
    State(state): State<AppState>,
    OperatorOrg(ctx): OperatorOrg,
) -> Result<Json<Organization>, ApiError> {
    Ok(Json(set_suspended(&state, &ctx, false, None).await?))
}
