//! The example tenant resource, `/v1/orgs/{org_id}/data`: reachable with a user's token or
//! session or with an API key holding `data:read` / `data:write`, and metered per request
//! (the `api_calls` meter, limited by the plan's monthly quota). Copy this pattern for your
//! own tenant resources: `OrgMember` (who, which org, rate limits), `require` (permission),
//! `state.usage.admit` (usage and quota: 429 `quota_exceeded` past the plan's monthly
//! quota), then store calls with the member's tenant context.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::auth::OrgMember;
use crate::domain::DisplayName;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{AppJson, AppQuery, OrgPath};
use crate::http::list::List;
use crate::ids::{DataItemId, OrgId};
use crate::rbac::Permission;
use crate::state::AppState;
use crate::store::data::DataItem;

/// Largest `value` accepted, serialized (bytes).
const MAX_VALUE_BYTES: usize = 64 * 1024;

/// A new item.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DataItemIn {
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
pub(super) struct DataQuery {
    /// The previous page's `next_cursor`: items older than it (`before` is accepted too).
    #[serde(alias = "before")]
    pub cursor: Option<DataItemId>,
    /// Page size, 1-200 (default 50).
    pub limit: Option<u32>,
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
    member.require(Permission::DataWrite)?;
    let name = DisplayName::parse(&body.name).map_err(|m| ApiError::validation("name", m))?;
    if body.value.to_string().len() > MAX_VALUE_BYTES {
        return Err(ApiError::validation(
            "value",
            "must be at most 64 KiB of JSON",
        ));
    }
    state.usage.admit(member.ctx.org_id()).await?;
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
    member.require(Permission::DataRead)?;
    state.usage.admit(member.ctx.org_id()).await?;
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
    OrgPath(id): OrgPath<DataItemId>,
) -> Result<Json<DataItem>, ApiError> {
    member.require(Permission::DataRead)?;
    state.usage.admit(member.ctx.org_id()).await?;
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
    OrgPath(id): OrgPath<DataItemId>,
) -> Result<StatusCode, ApiError> {
    member.require(Permission::DataWrite)?;
    state.usage.admit(member.ctx.org_id()).await?;
    state.store.delete_data_item(&member.ctx, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
