//! `/scim/v2/Groups`: list, create, read, replace, patch and delete groups. Membership
//! of a group mapped to a role (`/v1/orgs/{org_id}/scim/role-mappings`) sets members' roles.

use std::collections::BTreeSet;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{json, Value};

use super::list::{attr, case_exact, ListParams, Projection};
use super::protocol::{if_match, meta, read_modify_write, ScimBody, ScimResponse};
use super::users::{parse_id, patch_error, query_pairs, uniqueness};
use super::{patch, ScimError, GROUP_SCHEMA};
use crate::auth::scim::ScimClient;
use crate::ids::{ScimGroupId, ScimUserId};
use crate::state::AppState;
use crate::store::scim::groups::{ScimGroupRecord, ScimGroupWrite};

/// Most members one request may name (a larger directory is sent in several PATCHes).
const MAX_MEMBERS: usize = 1000;

/// Longest `displayName` kept.
const MAX_NAME: usize = 256;

/// Validates a Group document.
fn validate(doc: &Value) -> Result<ScimGroupWrite, ScimError> {
    let display_name = attr(doc, "displayName")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|n| !n.is_empty() && n.chars().count() <= MAX_NAME)
        .ok_or_else(|| {
            ScimError::bad_request(
                "invalidValue",
                "displayName is required (at most 256 characters)",
            )
        })?
        .to_owned();
    let external_id = match attr(doc, "externalId") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(ScimError::bad_request(
                "invalidValue",
                "externalId must be a string",
            ))
        }
    };
    let members = match attr(doc, "members") {
        None | Some(Value::Null) => BTreeSet::new(),
        Some(Value::Array(items)) if items.len() > MAX_MEMBERS => {
            return Err(ScimError::bad_request(
                "invalidValue",
                format!("at most {MAX_MEMBERS} members per request"),
            ))
        }
        Some(Value::Array(items)) => items
            .iter()
            .map(|m| {
                attr(m, "value")
                    .and_then(Value::as_str)
                    .and_then(|v| v.parse::<ScimUserId>().ok())
                    .ok_or_else(|| {
                        ScimError::bad_request(
                            "invalidValue",
                            "each member needs the `value` of a provisioned User's id",
                        )
                    })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(ScimError::bad_request(
                "invalidValue",
                "members must be an array",
            ))
        }
    };
    Ok(ScimGroupWrite {
        display_name,
        external_id,
        members,
    })
}

/// The resource answered for a stored group.
fn resource(base: &str, group: &ScimGroupRecord) -> Value {
    let id = group.id.to_string();
    let members: Vec<Value> = group
        .members
        .iter()
        .map(|(user, name)| json!({ "value": user.to_string(), "display": name, "$ref": format!("{base}/Users/{user}"), "type": "User" }))
        .collect();
    let mut doc = json!({
        "schemas": [GROUP_SCHEMA],
        "id": id,
        "displayName": group.display_name,
        "members": members,
        "meta": meta(base, "Group", &id, group.created_at, group.updated_at, group.version),
    });
    if let Some(external) = &group.external_id {
        doc["externalId"] = external.as_str().into();
    }
    doc
}

/// Lists the organization's groups.
pub(super) async fn list(
    State(state): State<AppState>,
    client: ScimClient,
    RawQuery(query): RawQuery,
) -> Result<ScimResponse, ScimError> {
    let params = ListParams::from_query(&query_pairs(query))?;
    let groups = state.store.list_scim_groups(&client.ctx).await?;
    let resources = groups
        .iter()
        .map(|g| resource(&client.base_url, g))
        .collect();
    Ok(ScimResponse::ok(params.respond(resources, &case_exact)))
}

/// Reads one group.
pub(super) async fn get_one(
    State(state): State<AppState>,
    client: ScimClient,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<ScimResponse, ScimError> {
    let projection = Projection::from_query(&query_pairs(query));
    let group = state
        .store
        .get_scim_group(&client.ctx, parse_id(&id)?)
        .await?;
    Ok(ScimResponse::ok(
        projection.apply(resource(&client.base_url, &group)),
    ))
}

/// Creates a group.
pub(super) async fn create(
    State(state): State<AppState>,
    client: ScimClient,
    ScimBody(body): ScimBody,
) -> Result<ScimResponse, ScimError> {
    let write = validate(&body)?;
    let group = state
        .store
        .create_scim_group(&client.ctx, &write)
        .await
        .map_err(uniqueness("displayName"))?;
    Ok(ScimResponse::created(resource(&client.base_url, &group)))
}

/// Replaces a group with the document sent.
pub(super) async fn replace(
    State(state): State<AppState>,
    client: ScimClient,
    Path(id): Path<String>,
    headers: HeaderMap,
    ScimBody(body): ScimBody,
) -> Result<ScimResponse, ScimError> {
    let id: ScimGroupId = parse_id(&id)?;
    let expected = if_match(&headers)?;
    let write = validate(&body)?;
    let group = state
        .store
        .replace_scim_group(&client.ctx, id, expected, &write)
        .await
        .map_err(uniqueness("displayName"))?;
    Ok(ScimResponse::ok(resource(&client.base_url, &group)))
}

/// Applies PATCH operations: members add / remove / replace, displayName replace.
pub(super) async fn patch(
    State(state): State<AppState>,
    client: ScimClient,
    Path(id): Path<String>,
    headers: HeaderMap,
    ScimBody(body): ScimBody,
) -> Result<ScimResponse, ScimError> {
    let id: ScimGroupId = parse_id(&id)?;
    let required = if_match(&headers)?;
    let ops = patch::parse_request(&body).map_err(patch_error)?;
    read_modify_write(required, || async {
        let group = state.store.get_scim_group(&client.ctx, id).await?;
        let mut doc = resource(&client.base_url, &group);
        patch::apply(&mut doc, &ops, &case_exact).map_err(patch_error)?;
        let write = validate(&doc)?;
        let expected = Some(required.unwrap_or(group.version));
        let group = state
            .store
            .replace_scim_group(&client.ctx, id, expected, &write)
            .await
            .map_err(uniqueness("displayName"))?;
        Ok(ScimResponse::ok(resource(&client.base_url, &group)))
    })
    .await
}

/// Deletes a group (204); its members stay, their roles follow the mappings.
pub(super) async fn delete(
    State(state): State<AppState>,
    client: ScimClient,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ScimError> {
    let expected = if_match(&headers)?;
    state
        .store
        .delete_scim_group(&client.ctx, parse_id(&id)?, expected)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
