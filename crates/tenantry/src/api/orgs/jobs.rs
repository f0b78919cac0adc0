//! Background jobs of an organization.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::auth::OrgMember;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{AppJson, AppQuery, OrgPath};
use crate::http::list::List;
use crate::ids::{JobId, OrgId};
use crate::rbac::Permission;
use crate::state::AppState;
use crate::store::jobs::{Enqueued, Job, JobFilter, JobStatus};

/// Header carrying an idempotency key.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// A job to enqueue.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct JobIn {
    /// A public job type, e.g. `echo`.
    #[serde(rename = "type", alias = "kind")]
    pub kind: String,
    /// Input of the job type.
    #[serde(default)]
    pub payload: serde_json::Value,
    /// Earliest start (RFC 3339); default now.
    pub run_at: Option<DateTime<Utc>>,
    /// Runs allowed, 1-100 (default 5).
    #[schema(minimum = 1, maximum = 100)]
    pub max_attempts: Option<i32>,
    /// Idempotency key (or the `Idempotency-Key` header): the same key and request return
    /// the original job; the same key with another request is refused.
    #[schema(min_length = 1, max_length = 255)]
    pub idempotency_key: Option<String>,
}

/// A page of jobs.
/// Listing filters.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobQuery {
    /// Only jobs in this status.
    pub status: Option<String>,
    /// The previous page's `next_cursor`: jobs older than it (`before` is accepted too).
    #[serde(alias = "before")]
    pub cursor: Option<JobId>,
    /// Page size, 1-200 (default 50).
    pub limit: Option<u32>,
}

fn idempotency_key(headers: &HeaderMap, body: Option<String>) -> Result<Option<String>, ApiError> {
    let header = match headers.get(IDEMPOTENCY_KEY) {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::validation("Idempotency-Key", "must be visible ASCII"))?
                .to_owned(),
        ),
        None => None,
    };
    let key = match (header, body) {
        (Some(h), Some(b)) if h != b => {
            return Err(ApiError::validation(
                "idempotency_key",
                "differs from the Idempotency-Key header",
            ))
        }
        (h, b) => h.or(b),
    };
    if let Some(k) = &key {
        if k.is_empty() || k.len() > 255 {
            return Err(ApiError::validation(
                "idempotency_key",
                "must be 1-255 characters",
            ));
        }
    }
    Ok(key)
}

/// Enqueues a job (`jobs:write`). 201 when created; 200 with the original job when the
/// idempotency key was already used with the same request.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/jobs", tag = "jobs", request_body = JobIn,
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id"),
           ("Idempotency-Key" = Option<String>, Header, description = "Idempotency key")),
    responses(
        (status = 201, description = "Enqueued", body = Job),
        (status = 200, description = "Already enqueued with this key", body = Job),
        (status = 422, description = "Unknown type, bad payload, or key reused with another request", body = Problem)))]
pub(super) async fn enqueue_job(
    State(state): State<AppState>,
    member: OrgMember,
    headers: HeaderMap,
    AppJson(body): AppJson<JobIn>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    member.require(Permission::JobsWrite)?;
    let key = idempotency_key(&headers, body.idempotency_key)?;
    let mut new = state
        .jobs
        .public_job(&body.kind, body.payload)
        .map_err(|(field, why)| ApiError::validation(field, why))?;
    let max_attempts = body.max_attempts.unwrap_or(5);
    if !(1..=100).contains(&max_attempts) {
        return Err(ApiError::validation("max_attempts", "must be 1-100"));
    }
    new.run_at = body.run_at;
    new.max_attempts = max_attempts;
    new.idempotency_key = key;
    match state.store.enqueue_job(&member.ctx, &new).await? {
        Enqueued::Created(job) => {
            state.job_wake.notify_one();
            Ok((StatusCode::CREATED, Json(job)))
        }
        Enqueued::Existing(job) => Ok((StatusCode::OK, Json(job))),
    }
}

/// Lists jobs, newest first, with cursor pagination (`jobs:read`).
#[utoipa::path(get, path = "/v1/orgs/{org_id}/jobs", tag = "jobs",
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id"), JobQuery),
    responses((status = 200, description = "A page of jobs, newest first", body = List<Job>)))]
pub(crate) async fn list_jobs(
    State(state): State<AppState>,
    member: OrgMember,
    AppQuery(q): AppQuery<JobQuery>,
) -> Result<Json<List<Job>>, ApiError> {
    member.require(Permission::JobsRead)?;
    let status = q
        .status
        .as_deref()
        .map(|raw| {
            JobStatus::parse(raw).ok_or_else(|| {
                let names: Vec<&str> = JobStatus::ALL.iter().map(|s| s.as_str()).collect();
                ApiError::validation("status", format!("must be one of {}", names.join(", ")))
            })
        })
        .transpose()?;
    let limit = crate::store::page_size(q.limit);
    let filter = JobFilter {
        status,
        before: q.cursor,
        limit: q.limit,
    };
    let data = state.store.list_jobs(&member.ctx, &filter).await?;
    Ok(Json(List::page(data, limit, |j| j.id.to_string())))
}

/// One job (`jobs:read`).
#[utoipa::path(get, path = "/v1/orgs/{org_id}/jobs/{job_id}", tag = "jobs",
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id"), ("job_id" = JobId, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job", body = Job),
        (status = 404, description = "Not found", body = Problem)))]
pub(super) async fn get_job(
    State(state): State<AppState>,
    member: OrgMember,
    OrgPath(id): OrgPath<JobId>,
) -> Result<Json<Job>, ApiError> {
    member.require(Permission::JobsRead)?;
    Ok(Json(state.store.get_job(&member.ctx, id).await?))
}

/// Cancels a job that has not started (`jobs:write`).
#[utoipa::path(post, path = "/v1/orgs/{org_id}/jobs/{job_id}/cancel", tag = "jobs",
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id"), ("job_id" = JobId, Path, description = "Job id")),
    responses(
        (status = 200, description = "Cancelled", body = Job),
        (status = 409, description = "`job_state`: already running or finished", body = Problem)))]
pub(crate) async fn cancel_job(
    State(state): State<AppState>,
    member: OrgMember,
    OrgPath(id): OrgPath<JobId>,
) -> Result<Json<Job>, ApiError> {
    member.require(Permission::JobsWrite)?;
    Ok(Json(state.store.cancel_job(&member.ctx, id).await?))
}

/// Queues a dead or cancelled job again with fresh attempts (`jobs:write`).
#[utoipa::path(post, path = "/v1/orgs/{org_id}/jobs/{job_id}/retry", tag = "jobs",
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id"), ("job_id" = JobId, Path, description = "Job id")),
    responses(
        (status = 200, description = "Queued again", body = Job),
        (status = 409, description = "`job_state`: not dead or cancelled", body = Problem)))]
pub(crate) async fn retry_job(
    State(state): State<AppState>,
    member: OrgMember,
    OrgPath(id): OrgPath<JobId>,
) -> Result<Json<Job>, ApiError> {
    member.require(Permission::JobsWrite)?;
    let job = state.store.retry_job(&member.ctx, id).await?;
    state.job_wake.notify_one();
    Ok(Json(job))
}
