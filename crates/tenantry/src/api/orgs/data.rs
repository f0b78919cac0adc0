//! The example tenant resource, `/v1/orgs/{org_id}/data`: reachable with a user's token or
//! session or with an API key holding `data:read` / `data:write`, and metered per request
//! (the `api_calls` meter, limited by the plan's monthly quota). Copy this pattern for your
//! own tenant resources: `OrgMember` (who, which org, rate limits), `require` (permission),
//! [`metered`] (usage and quota), then store calls with the member's tenant context.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::auth::OrgMember;
use crate::domain::DisplayName;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{AppJson, AppQuery};
use crate::http::list::List;
use crate::ids::{DataItemId, OrgId};
use crate::state::AppState;
use crate::store::data::DataItem;
use crate::usage::Refusal;

/// Largest `value` accepted, serialized (bytes).
const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Counts one metered API call for the caller's organization, or answers 429
/// `quota_exceeded` when the plan's monthly quota is used up.
pub(crate) async fn metered(state: &AppState, member: &OrgMember) -> Result<(), ApiError> {
    match state.usage.admit(member.ctx.org_id()).await {
        Ok(()) => Ok(()),
        Err(Refusal::Store(err)) => Err(err.into()),
        Err(Refusal::Quota(q)) => {
            let wait = (q.resets_at - crate::store::now()).num_seconds().max(1);
            Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "quota_exceeded",
                format!(
                    "The plan's {} API calls for this month are used up; upgrade the plan or wait until {}.",
                    q.limit,
                    q.resets_at.to_rfc3339()
                ),
            )
            .with_extension("limit", serde_json::json!(q.limit))
            .with_extension("used", serde_json::json!(q.used))
            .with_extension("resets_at", serde_json::json!(q.resets_at))
            .with_header(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(wait),
            ))
        }
    }
}

/// A new item.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DataItemIn {
    /// Name, 1-100 characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub name: String,
    /// Any JSON value, up to 64 KiB.
    #[serde(default)]
    pub value: serde_json::Value,
}

/// Listing parameters.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DataQuery {
    /// The previous page's `next_cursor`: items older than it (`before` is accepted too).
    #[serde(alias = "before")]
    pub cursor: Option<DataItemId>,
    /// Page size, 1-200 (default 50).
    pub limit: Option<u32>,
}

/// Path of one item.
#[derive(Deserialize)]
pub struct ItemPath {
    org_id: String,
    item_id: String,
}

impl ItemPath {
    fn item(&self) -> Result<DataItemId, ApiError> {
        let _ = &self.org_id;
        self.item_id.parse().map_err(|_| ApiError::not_found())
    }
}

/// Creates an item (`data:write`; metered).
#[utoipa::path(post, path = "/v1/orgs/{org_id}/data", tag = "data", request_body = DataItemIn,
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id")),
    responses(
        (status = 201, description = "Created", body = DataItem),
        (status = 422, description = "`validation_failed`", body = Problem),
        (status = 429, description = "`rate_limited` or `quota_exceeded`", body = Problem)))]
pub(super) async fn create_item(
    State(state): State<AppState>,
    member: OrgMember,
    AppJson(body): AppJson<DataItemIn>,
) -> Result<(StatusCode, Json<DataItem>), ApiError> {
    member.require("data:write")?;
    let name = DisplayName::parse(&body.name).map_err(|m| ApiError::validation("name", m))?;
    if body.value.to_string().len() > MAX_VALUE_BYTES {
        return Err(ApiError::validation(
            "value",
            "must be at most 64 KiB of JSON",
        ));
    }
    metered(&state, &member).await?;
    let item = state
        .store
        .create_data_item(&member.ctx, name.as_str(), &body.value)
        .await?;
    Ok((StatusCode::CREATED, Json(item)))
}

/// Lists items (`data:read`; metered).
#[utoipa::path(get, path = "/v1/orgs/{org_id}/data", tag = "data",
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id"), DataQuery),
    responses(
        (status = 200, description = "Items, newest first", body = List<DataItem>),
        (status = 429, description = "`rate_limited` or `quota_exceeded`", body = Problem)))]
pub(super) async fn list_items(
    State(state): State<AppState>,
    member: OrgMember,
    AppQuery(q): AppQuery<DataQuery>,
) -> Result<Json<List<DataItem>>, ApiError> {
    member.require("data:read")?;
    metered(&state, &member).await?;
    let limit = crate::store::page_size(q.limit);
    let data = state
        .store
        .list_data_items(&member.ctx, q.cursor, q.limit)
        .await?;
    Ok(Json(List::page(data, limit, |i| i.id.to_string())))
}

/// One item (`data:read`; metered).
#[utoipa::path(get, path = "/v1/orgs/{org_id}/data/{item_id}", tag = "data",
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id"), ("item_id" = DataItemId, Path, description = "Item id")),
    responses(
        (status = 200, description = "The item", body = DataItem),
        (status = 404, description = "Not found", body = Problem),
        (status = 429, description = "`rate_limited` or `quota_exceeded`", body = Problem)))]
pub(super) async fn get_item(
    State(state): State<AppState>,
    member: OrgMember,
    Path(p): Path<ItemPath>,
) -> Result<Json<DataItem>, ApiError> {
    member.require("data:read")?;
    let id = p.item()?;
    metered(&state, &member).await?;
    Ok(Json(state.store.get_data_item(&member.ctx, id).await?))
}

/// Deletes an item (`data:write`; metered).
#[utoipa::path(delete, path = "/v1/orgs/{org_id}/data/{item_id}", tag = "data",
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id"), ("item_id" = DataItemId, Path, description = "Item id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "Not found", body = Problem),
        (status = 429, description = "`rate_limited` or `quota_exceeded`", body = Problem)))]
pub(super) async fn delete_item(
    State(state): State<AppState>,
    member: OrgMember,
    Path(p): Path<ItemPath>,
) -> Result<StatusCode, ApiError> {
    member.require("data:write")?;
    let id = p.item()?;
    metered(&state, &member).await?;
    state.store.delete_data_item(&member.ctx, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
