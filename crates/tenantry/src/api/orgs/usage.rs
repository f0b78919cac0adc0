//! Usage of an organization: report events, read totals per meter and day, the current
//! period and the plan's limit.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::OrgMember;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{AppJson, AppQuery};
use crate::ids::OrgId;
use crate::rbac::Permission;
use crate::state::AppState;
use crate::store::now;
use crate::store::usage::{day_of, Ingested, UsageEvent};
use crate::usage::API_CALLS;

/// Most events per ingestion request.
const MAX_EVENTS: usize = 1000;
/// Largest quantity of one event.
const MAX_QUANTITY: i64 = 1_000_000_000_000;
// A day's total per meter is capped by the store (`MAX_DAILY_TOTAL`), so sums never overflow.
/// How far back an event may be dated (days).
const MAX_AGE_DAYS: i64 = 35;
/// Longest range of a report (days).
const MAX_RANGE_DAYS: i64 = 366;

/// Events to record.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UsageEventsIn {
    /// 1-1000 events.
    #[schema(min_items = 1, max_items = 1000)]
    pub events: Vec<UsageEventIn>,
}

/// One event.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UsageEventIn {
    /// Meter name: lowercase letters, digits, `_ . : -`, starting with a letter, at most 64
    /// characters. `api_calls` is reserved for the service's own metering.
    #[schema(pattern = "^[a-z][a-z0-9_.:-]{0,63}$")]
    pub meter: String,
    /// Amount, 0 to 10^12 (default 1).
    #[serde(default = "one")]
    #[schema(minimum = 0, maximum = 1000000000000_i64)]
    pub quantity: i64,
    /// When it happened (RFC 3339; default now): at most 35 days ago, not in the future.
    pub timestamp: Option<DateTime<Utc>>,
    /// Unique per organization, 1-255 characters: an event whose key was recorded before is
    /// ignored, so a client can retry a batch safely.
    #[schema(min_length = 1, max_length = 255)]
    pub idempotency_key: String,
}

fn one() -> i64 {
    1
}

/// Report range.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct UsageQuery {
    /// First day (`YYYY-MM-DD`, UTC); default the first day of the current month.
    pub from: Option<NaiveDate>,
    /// Last day (`YYYY-MM-DD`, UTC); default today. At most 366 days after `from`.
    pub to: Option<NaiveDate>,
    /// Only this meter.
    pub meter: Option<String>,
}

/// Usage of one meter.
#[derive(Serialize, ToSchema)]
pub(crate) struct MeterUsage {
    /// Meter name.
    pub meter: String,
    /// Total in the current period (calendar month, UTC).
    pub period_total: i64,
    /// The plan's allowance per period (`api_calls` only; absent when unlimited).
    pub limit: Option<u64>,
    /// Per day within the requested range (days without usage are left out).
    pub daily: Vec<DayQuantity>,
}

/// A day's total.
#[derive(Serialize, ToSchema)]
pub(crate) struct DayQuantity {
    /// UTC day.
    pub day: String,
    /// Total.
    pub quantity: i64,
}

/// An organization's usage.
#[derive(Serialize, ToSchema)]
pub(crate) struct UsageReport {
    /// The organization's plan.
    #[schema(value_type = String)]
    pub plan: crate::rbac::Plan,
    /// First day of the current period.
    pub period_start: String,
    /// Start of the next period (when monthly allowances reset).
    pub resets_at: DateTime<Utc>,
    /// First day of the daily figures.
    pub from: String,
    /// Last day of the daily figures.
    pub to: String,
    /// Per meter, `api_calls` always included.
    pub meters: Vec<MeterUsage>,
}

fn valid_meter(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 64
        && bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b':' | b'-')
        })
}

/// Records usage events (`usage:write`), deduplicated by idempotency key.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/usage/events", tag = "usage", request_body = UsageEventsIn,
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id")),
    responses(
        (status = 200, description = "Recorded; `duplicates` were seen before and ignored", body = Ingested),
        (status = 422, description = "`validation_failed`", body = Problem)))]
pub(super) async fn ingest_events(
    State(state): State<AppState>,
    member: OrgMember,
    AppJson(body): AppJson<UsageEventsIn>,
) -> Result<Json<Ingested>, ApiError> {
    member.require(Permission::UsageWrite)?;
    if body.events.is_empty() || body.events.len() > MAX_EVENTS {
        return Err(ApiError::validation("events", "send 1 to 1000 events"));
    }
    let at = now();
    let oldest = at - chrono::Duration::days(MAX_AGE_DAYS);
    let mut events = Vec::with_capacity(body.events.len());
    for (i, e) in body.events.into_iter().enumerate() {
        let field = |name: &str| format!("events[{i}].{name}");
        if !valid_meter(&e.meter) {
            return Err(ApiError::validation(&field("meter"), "lowercase letters, digits, `_ . : -`, starting with a letter, at most 64 characters"));
        }
        if e.meter == API_CALLS {
            return Err(ApiError::validation(
                &field("meter"),
                "`api_calls` is metered by the service itself",
            ));
        }
        if !(0..=MAX_QUANTITY).contains(&e.quantity) {
            return Err(ApiError::validation(
                &field("quantity"),
                "must be from 0 to 10^12",
            ));
        }
        let key = e.idempotency_key.trim();
        if key.is_empty() || key.len() > 255 || key.chars().any(char::is_control) {
            return Err(ApiError::validation(
                &field("idempotency_key"),
                "must be 1-255 characters, none of them control characters",
            ));
        }
        let occurred_at = e.timestamp.unwrap_or(at);
        if occurred_at > at + chrono::Duration::minutes(5) || occurred_at < oldest {
            return Err(ApiError::validation(
                &field("timestamp"),
                "must be within the last 35 days and not in the future",
            ));
        }
        events.push(UsageEvent {
            meter: e.meter,
            quantity: e.quantity,
            occurred_at,
            idempotency_key: key.to_owned(),
        });
    }
    Ok(Json(state.store.ingest_usage(&member.ctx, &events).await?))
}

/// Usage per meter and day, the current period's totals and the plan's limit
/// (`usage:read`). Exact: includes calls metered moments ago.
#[utoipa::path(get, path = "/v1/orgs/{org_id}/usage", tag = "usage",
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id"), UsageQuery),
    responses(
        (status = 200, description = "Usage", body = UsageReport),
        (status = 422, description = "`validation_failed`", body = Problem)))]
pub(crate) async fn get_usage(
    State(state): State<AppState>,
    member: OrgMember,
    AppQuery(q): AppQuery<UsageQuery>,
) -> Result<Json<UsageReport>, ApiError> {
    member.require(Permission::UsageRead)?;
    let at = now();
    let today = at.date_naive();
    let period_start = crate::usage::month_of(today);
    let from = q.from.unwrap_or(period_start);
    let to = q.to.unwrap_or(today);
    if to < from || (to - from).num_days() > MAX_RANGE_DAYS {
        return Err(ApiError::validation(
            "to",
            "must be on or after `from` and at most 366 days later",
        ));
    }
    // This instance's latest counts first, so the report is exact.
    state.usage.flush().await?;
    let org = member.ctx.org_id();
    let (plan, _) = state
        .store
        .plan_and_usage(org, API_CALLS, &period_start.to_string())
        .await?
        .ok_or_else(ApiError::not_found)?;
    let daily = state
        .store
        .usage_by_day(&member.ctx, &from.to_string(), &to.to_string())
        .await?;
    let period = state
        .store
        .usage_by_day(&member.ctx, &period_start.to_string(), &day_of(at))
        .await?;
    let mut meters: BTreeMap<String, MeterUsage> = BTreeMap::new();
    fn entry<'m>(meters: &'m mut BTreeMap<String, MeterUsage>, meter: &str) -> &'m mut MeterUsage {
        meters
            .entry(meter.to_owned())
            .or_insert_with(|| MeterUsage {
                meter: meter.to_owned(),
                period_total: 0,
                limit: None,
                daily: Vec::new(),
            })
    }
    entry(&mut meters, API_CALLS).limit = state.config.limits.api_calls_quota(plan);
    for row in period {
        let meter = entry(&mut meters, &row.meter);
        meter.period_total = meter.period_total.saturating_add(row.quantity);
    }
    for row in daily {
        entry(&mut meters, &row.meter).daily.push(DayQuantity {
            day: row.day,
            quantity: row.quantity,
        });
    }
    Ok(Json(UsageReport {
        plan,
        period_start: period_start.to_string(),
        resets_at: crate::usage::next_month_start(at),
        from: from.to_string(),
        to: to.to_string(),
        meters: meters
            .into_values()
            .filter(|m| q.meter.as_ref().is_none_or(|only| *only == m.meter))
            .collect(),
    }))
}
