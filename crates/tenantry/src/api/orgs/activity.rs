//! The activity feed and admin broadcasts.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::auth::OrgMember;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{AppJson, AppQuery};
use crate::http::list::List;
use crate::ids::OrgId;
use crate::rbac::Permission;
use crate::state::AppState;
use crate::store::activity::Activity;
use crate::store::audit::AuditEntry;

/// Longest broadcast message, in characters.
const MAX_MESSAGE: usize = 1000;

/// A page of the feed.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActivityQuery {
    /// The previous page's `next_cursor`: older activities (`before` is accepted too).
    #[serde(alias = "before")]
    pub cursor: Option<i64>,
    /// Page size, 1-200 (default 50).
    pub limit: Option<u32>,
}

/// The organization's activity feed, newest first (every member, `org:read`): joins,
/// removals, role and plan changes, broadcasts, invitations, API keys, workspaces, with the
/// people named resolved. Each activity is one audit record (same id), so the feed and the
/// live events (`/v1/ws`) never disagree.
#[utoipa::path(get, path = "/v1/orgs/{org_id}/activities", tag = "realtime",
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id"), ActivityQuery),
    responses(
        (status = 200, description = "A page of activities, newest first", body = List<Activity>),
        (status = 403, description = "Missing permission", body = Problem)))]
pub(super) async fn list_activities(
    State(state): State<AppState>,
    member: OrgMember,
    AppQuery(q): AppQuery<ActivityQuery>,
) -> Result<Json<List<Activity>>, ApiError> {
    member.require(Permission::OrgRead)?;
    let activities = state
        .store
        .list_activities(&member.ctx, q.cursor, q.limit)
        .await?;
    Ok(Json(List::page(
        activities,
        crate::store::page_size(q.limit),
        |a| a.seq.to_string(),
    )))
}

/// A message to every member.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BroadcastIn {
    /// 1-1000 characters; line breaks allowed, other control characters not.
    #[schema(min_length = 1, max_length = 1000)]
    pub message: String,
}

/// Sends a message to every member (`org:broadcast`: owners and admins): audited, then
/// delivered as a `BROADCAST_MESSAGE` activity `{message, sentBy, sentAt}` to every live
/// connection of the organization. Limited per organization (`BROADCAST_RATE_LIMIT`).
#[utoipa::path(post, path = "/v1/orgs/{org_id}/broadcast", tag = "realtime", request_body = BroadcastIn,
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id")),
    responses(
        (status = 201, description = "Sent: the activity as members receive it", body = Activity),
        (status = 403, description = "Missing permission, or (`feature_disabled`) broadcasts are off for the organization", body = Problem),
        (status = 422, description = "Empty, too long or with control characters", body = Problem),
        (status = 429, description = "Too many broadcasts", body = Problem)))]
pub(super) async fn broadcast(
    State(state): State<AppState>,
    member: OrgMember,
    AppJson(body): AppJson<BroadcastIn>,
) -> Result<(StatusCode, Json<Activity>), ApiError> {
    let activity = send_broadcast(&state, &member, &body.message).await?;
    Ok((StatusCode::CREATED, Json(activity)))
}

/// Checks, limits, records and delivers a broadcast (shared with the console).
pub(crate) async fn send_broadcast(
    state: &AppState,
    member: &OrgMember,
    message: &str,
) -> Result<Activity, ApiError> {
    member.require(Permission::OrgBroadcast)?;
    member.require_feature(crate::features::Flag::Broadcast)?;
    let message = message.trim();
    if message.is_empty() {
        return Err(ApiError::validation("message", "must not be empty"));
    }
    if message.chars().count() > MAX_MESSAGE {
        return Err(ApiError::validation(
            "message",
            format!("at most {MAX_MESSAGE} characters"),
        ));
    }
    if message
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(ApiError::validation(
            "message",
            "must not contain control characters",
        ));
    }
    let org = member.ctx.org_id();
    let key = format!("broadcast:{org}");
    if let Some(decision) = state
        .limiter
        .check(&[(key.as_str(), state.config.realtime.broadcast)])
        .await
    {
        if !decision.allowed {
            return Err(crate::http::ratelimit::refused(&decision));
        }
    }
    let entry = AuditEntry::new("organization.broadcast", "organization", org)
        .with_metadata(serde_json::json!({ "message": message }));
    let id = state.store.audit_action(&member.ctx, entry).await?;
    // Sealed now rather than at the sealer's next pass, so it reaches everyone at once.
    state.store.seal_before_reading(org).await?;
    state
        .store
        .audit_activity(&member.ctx, id)
        .await?
        .ok_or_else(|| ApiError::internal(&"the broadcast's record is missing"))
}
