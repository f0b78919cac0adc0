//! The console's usage and jobs pages, over the API's own handlers.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{Datelike, NaiveDate};
use serde::Deserialize;

use super::pages::{org_chrome, page, Chrome, OrgView};
use crate::api::orgs::jobs::{cancel_job, list_jobs, retry_job, JobQuery};
use crate::api::orgs::usage::{get_usage, UsageQuery};
use crate::auth::{CurrentUser, OrgMember};
use crate::http::error::ApiError;
use crate::http::extract::{AppQuery, OrgPath};
use crate::ids::{JobId, OrgId};
use crate::rbac::Permission;
use crate::state::AppState;
use crate::store::jobs::JobStatus;

/// Chart geometry (SVG user units).
const CHART_HEIGHT: i64 = 120;
const BAR_WIDTH: i64 = 8;
const BAR_GAP: i64 = 2;

/// One day's bar.
struct Bar {
    x: i64,
    y: i64,
    height: i64,
    day: String,
    quantity: i64,
    current: bool,
}

/// One meter's chart and quota.
struct MeterView {
    meter: String,
    period_total: i64,
    limit: Option<u64>,
    width: i64,
    max: i64,
    bars: Vec<Bar>,
}

#[derive(Template)]
#[template(path = "console/usage.html")]
struct UsagePage {
    chrome: Chrome,
    view: OrgView,
    tab: &'static str,
    meters: Vec<MeterView>,
    resets_at: String,
    from: String,
    to: String,
}

/// The first day of the month before `day`'s.
fn previous_month_start(day: NaiveDate) -> NaiveDate {
    let first = day.with_day(1).unwrap_or(day);
    let before = first.pred_opt().unwrap_or(first);
    before.with_day(1).unwrap_or(before)
}

/// Daily usage per meter for this month and the previous one, as bar charts rendered here
/// (SVG, no script), and the quota of this month (`usage:read`).
pub(super) async fn usage(
    State(state): State<AppState>,
    user: CurrentUser,
    member: OrgMember,
) -> Result<Response, ApiError> {
    let (chrome, view) = org_chrome(&state, &user, &member).await?;
    let today = crate::store::now().date_naive();
    let from = previous_month_start(today);
    let query = UsageQuery {
        from: Some(from),
        to: Some(today),
        meter: None,
    };
    let axum::Json(report) = get_usage(State(state.clone()), member, AppQuery(query)).await?;
    let period_start = today.with_day(1).unwrap_or(today);
    let days: Vec<NaiveDate> = from.iter_days().take_while(|d| *d <= today).collect();
    let meters = report
        .meters
        .into_iter()
        .map(|m| {
            let by_day: std::collections::HashMap<&str, i64> = m
                .daily
                .iter()
                .map(|d| (d.day.as_str(), d.quantity))
                .collect();
            let max = by_day.values().copied().max().unwrap_or(0).max(1);
            let bars = days
                .iter()
                .zip(0_i64..)
                .map(|(day, i)| {
                    let key = day.to_string();
                    let quantity = by_day.get(key.as_str()).copied().unwrap_or(0);
                    let height = quantity.saturating_mul(CHART_HEIGHT) / max;
                    Bar {
                        x: i * (BAR_WIDTH + BAR_GAP),
                        y: CHART_HEIGHT - height,
                        height,
                        day: key,
                        quantity,
                        current: *day >= period_start,
                    }
                })
                .collect::<Vec<_>>();
            let count = i64::try_from(bars.len()).unwrap_or(i64::MAX);
            MeterView {
                meter: m.meter,
                period_total: m.period_total,
                limit: m.limit,
                width: count * (BAR_WIDTH + BAR_GAP),
                max,
                bars,
            }
        })
        .collect();
    page(&UsagePage {
        chrome,
        view,
        tab: "usage",
        meters,
        resets_at: report.resets_at.to_rfc3339(),
        from: report.from,
        to: report.to,
    })
}

/// One job of the jobs page.
struct JobLine {
    id: JobId,
    kind: String,
    status: &'static str,
    attempts: String,
    run_at: String,
    last_error: String,
    can_cancel: bool,
    can_retry: bool,
}

/// A status of the filter.
struct StatusOption {
    name: &'static str,
    selected: bool,
}

#[derive(Template)]
#[template(path = "console/jobs.html")]
struct JobsPage {
    chrome: Chrome,
    view: OrgView,
    tab: &'static str,
    jobs: Vec<JobLine>,
    statuses: Vec<StatusOption>,
    status: String,
    next: Option<String>,
}

/// The jobs page's query.
#[derive(Deserialize)]
pub(super) struct JobsPageQuery {
    #[serde(default)]
    status: String,
    cursor: Option<JobId>,
}

/// The organization's jobs, newest first, filtered by status, with their attempts and last
/// error (`jobs:read`); retry and cancel for `jobs:write`.
pub(super) async fn jobs(
    State(state): State<AppState>,
    user: CurrentUser,
    member: OrgMember,
    Query(q): Query<JobsPageQuery>,
) -> Result<Response, ApiError> {
    let (chrome, view) = org_chrome(&state, &user, &member).await?;
    let can_write = member.permissions.contains(&Permission::JobsWrite);
    let query = JobQuery {
        status: (!q.status.is_empty()).then(|| q.status.clone()),
        cursor: q.cursor,
        limit: Some(50),
    };
    let axum::Json(list) = list_jobs(State(state), member, AppQuery(query)).await?;
    let jobs = list
        .data
        .into_iter()
        .map(|j| JobLine {
            id: j.id,
            kind: j.kind,
            status: j.status.as_str(),
            attempts: format!("{} of {}", j.attempts, j.max_attempts),
            run_at: j.run_at.to_rfc3339(),
            last_error: j.last_error.unwrap_or_default(),
            can_cancel: can_write && j.status == JobStatus::Available,
            can_retry: can_write && matches!(j.status, JobStatus::Dead | JobStatus::Cancelled),
        })
        .collect();
    let statuses = JobStatus::ALL
        .iter()
        .map(|s| StatusOption {
            name: s.as_str(),
            selected: s.as_str() == q.status,
        })
        .collect();
    page(&JobsPage {
        chrome,
        view,
        tab: "jobs",
        jobs,
        statuses,
        status: q.status,
        next: list.next_cursor,
    })
}

/// Cancels a job through the API's own handler.
pub(super) async fn cancel(
    State(state): State<AppState>,
    member: OrgMember,
    Path((org, id)): Path<(OrgId, String)>,
) -> Result<Response, ApiError> {
    let id: JobId = id.parse().map_err(|_| ApiError::not_found())?;
    let axum::Json(_cancelled) = cancel_job(State(state), member, OrgPath(id)).await?;
    Ok(Redirect::to(&format!("/app/orgs/{org}/jobs")).into_response())
}

/// Queues a dead or cancelled job again through the API's own handler.
pub(super) async fn retry(
    State(state): State<AppState>,
    member: OrgMember,
    Path((org, id)): Path<(OrgId, String)>,
) -> Result<Response, ApiError> {
    let id: JobId = id.parse().map_err(|_| ApiError::not_found())?;
    let axum::Json(_queued) = retry_job(State(state), member, OrgPath(id)).await?;
    Ok(Redirect::to(&format!("/app/orgs/{org}/jobs")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_previous_month_starts_on_its_first_day() {
        let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(previous_month_start(day("2026-03-15")), day("2026-02-01"));
        assert_eq!(previous_month_start(day("2026-01-01")), day("2025-12-01"));
    }
}

/// One line of the activity page.
struct FeedLine {
    id: String,
    at: String,
    kind: &'static str,
    summary: String,
}

#[derive(Template)]
#[template(path = "console/activity.html")]
struct FeedPage {
    chrome: Chrome,
    view: OrgView,
    tab: &'static str,
    activities: Vec<FeedLine>,
    /// The first page, which updates live.
    live: bool,
    /// May send a broadcast.
    can_broadcast: bool,
    /// The newest shown: the live stream resumes after it, so nothing falls between.
    newest: Option<String>,
    next: Option<i64>,
}

/// The activity page's query.
#[derive(Deserialize)]
pub(super) struct FeedQuery {
    cursor: Option<i64>,
}

/// Activities shown per page.
const FEED_PAGE: u32 = 50;

/// The activity feed (every member), newest first; the first page updates live over the
/// WebSocket (`console.js`), resuming after the newest activity it shows.
pub(super) async fn feed(
    State(state): State<AppState>,
    user: CurrentUser,
    member: OrgMember,
    Query(q): Query<FeedQuery>,
) -> Result<Response, ApiError> {
    let (chrome, view) = org_chrome(&state, &user, &member).await?;
    let activities = state
        .store
        .list_activities(&member.ctx, q.cursor, Some(FEED_PAGE))
        .await?;
    let full = activities.len() == usize::try_from(FEED_PAGE).unwrap_or(usize::MAX);
    let next = full.then(|| activities.last().map(|a| a.seq)).flatten();
    // Only the first page is live: older pages are history.
    let newest = q
        .cursor
        .is_none()
        .then(|| activities.first().map(|a| a.id.to_string()))
        .flatten();
    let activities = activities
        .into_iter()
        .map(|a| FeedLine {
            id: a.id.to_string(),
            at: a.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            kind: a.kind,
            summary: a.summary,
        })
        .collect();
    page(&FeedPage {
        chrome,
        view,
        tab: "activity",
        activities,
        live: q.cursor.is_none(),
        can_broadcast: member.permissions.contains(&Permission::OrgBroadcast),
        newest,
        next,
    })
}

/// The broadcast form.
#[derive(Deserialize)]
pub(super) struct BroadcastForm {
    message: String,
}

/// Sends a broadcast from the activity page (`org:broadcast`), as the API does.
pub(super) async fn broadcast(
    State(state): State<AppState>,
    member: OrgMember,
    axum::Form(form): axum::Form<BroadcastForm>,
) -> Result<Response, ApiError> {
    crate::api::orgs::activity::send_broadcast(&state, &member, &form.message).await?;
    let org = member.ctx.org_id();
    Ok(Redirect::to(&format!("/app/orgs/{org}/activity")).into_response())
}
