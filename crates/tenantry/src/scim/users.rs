//! `/scim/v2/Users`: list, create, read, replace, patch and delete provisioned users.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;

use super::list::{case_exact, ListParams, Projection};
use super::protocol::{if_match, read_modify_write, ScimBody, ScimResponse};
use super::{patch, user_doc, ScimError};
use crate::auth::scim::ScimClient;
use crate::domain::DomainError;
use crate::ids::ScimUserId;
use crate::secrets::random_token;
use crate::state::AppState;
use crate::store::StoreError;

/// The query string as name/value pairs.
pub(super) fn query_pairs(raw: Option<String>) -> std::collections::HashMap<String, String> {
    url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// A SCIM id of this resource type; anything else names no resource (404).
pub(super) fn parse_id<T: std::str::FromStr>(raw: &str) -> Result<T, ScimError> {
    raw.parse().map_err(|_| ScimError::not_found())
}

/// Lists the organization's provisioned users.
pub(super) async fn list(
    State(state): State<AppState>,
    client: ScimClient,
    RawQuery(query): RawQuery,
) -> Result<ScimResponse, ScimError> {
    let params = ListParams::from_query(&query_pairs(query))?;
    let records = state.store.list_scim_users(&client.ctx).await?;
    let resources = records
        .iter()
        .map(|r| user_doc::resource(&client.base_url, r))
        .collect();
    Ok(ScimResponse::ok(params.respond(resources, &case_exact)))
}

/// Reads one provisioned user.
pub(super) async fn get_one(
    State(state): State<AppState>,
    client: ScimClient,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<ScimResponse, ScimError> {
    let projection = Projection::from_query(&query_pairs(query));
    let record = state
        .store
        .get_scim_user(&client.ctx, parse_id(&id)?)
        .await?;
    Ok(ScimResponse::ok(
        projection.apply(user_doc::resource(&client.base_url, &record)),
    ))
}

/// Provisions a user (linking the account with that email, or creating one).
pub(super) async fn create(
    State(state): State<AppState>,
    client: ScimClient,
    ScimBody(body): ScimBody,
) -> Result<ScimResponse, ScimError> {
    let write = user_doc::validate(body)?;
    // A password nobody knows: the person sets their own through password reset.
    let hash = state.hasher.hash(random_token(32)).await.map_err(|_| {
        ScimError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "The service is busy; retry shortly.",
        )
    })?;
    let record = state
        .store
        .create_scim_user(&client.ctx, &write, &hash)
        .await
        .map_err(uniqueness("userName or email"))?;
    if !record.active {
        state.api_keys.forget_all();
    }
    Ok(ScimResponse::created(user_doc::resource(
        &client.base_url,
        &record,
    )))
}

/// Replaces a user with the document sent.
pub(super) async fn replace(
    State(state): State<AppState>,
    client: ScimClient,
    Path(id): Path<String>,
    headers: HeaderMap,
    ScimBody(body): ScimBody,
) -> Result<ScimResponse, ScimError> {
    let id: ScimUserId = parse_id(&id)?;
    let expected = if_match(&headers)?;
    let write = user_doc::validate(body)?;
    write_user(&state, &client, id, expected, &write).await
}

/// Applies PATCH operations (RFC 7644 §3.5.2, with the shapes Okta and Entra send).
pub(super) async fn patch(
    State(state): State<AppState>,
    client: ScimClient,
    Path(id): Path<String>,
    headers: HeaderMap,
    ScimBody(body): ScimBody,
) -> Result<ScimResponse, ScimError> {
    let id: ScimUserId = parse_id(&id)?;
    let required = if_match(&headers)?;
    let ops = patch::parse_request(&body).map_err(patch_error)?;
    read_modify_write(required, || async {
        let record = state.store.get_scim_user(&client.ctx, id).await?;
        let mut doc = user_doc::resource(&client.base_url, &record);
        patch::apply(&mut doc, &ops, &case_exact).map_err(patch_error)?;
        let write = user_doc::validate(doc)?;
        let expected = Some(required.unwrap_or(record.version));
        write_user(&state, &client, id, expected, &write).await
    })
    .await
}

/// Deprovisions a user: their membership ends (204).
pub(super) async fn delete(
    State(state): State<AppState>,
    client: ScimClient,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ScimError> {
    let expected = if_match(&headers)?;
    let id = parse_id(&id)?;
    protect_owner_in_demo(&state, &client, id).await?;
    state
        .store
        .delete_scim_user(&client.ctx, id, expected)
        .await?;
    state.api_keys.forget_all();
    Ok(StatusCode::NO_CONTENT)
}

async fn write_user(
    state: &AppState,
    client: &ScimClient,
    id: ScimUserId,
    expected: Option<i64>,
    write: &crate::store::scim::users::ScimUserWrite,
) -> Result<ScimResponse, ScimError> {
    if !write.active {
        protect_owner_in_demo(state, client, id).await?;
    }
    let (record, changed) = state
        .store
        .replace_scim_user(&client.ctx, id, expected, write)
        .await
        .map_err(|e| uniqueness_of(e, "userName"))?;
    if changed {
        // This instance's cached verifications of the user's keys; other instances hear
        // of it at commit.
        state.api_keys.forget_all();
    }
    Ok(ScimResponse::ok(user_doc::resource(
        &client.base_url,
        &record,
    )))
}

/// In demo mode, an owner is neither deactivated nor deprovisioned (403 `demo_mode`), as
/// through the API.
async fn protect_owner_in_demo(
    state: &AppState,
    client: &ScimClient,
    id: ScimUserId,
) -> Result<(), ScimError> {
    if !state.config.demo_mode {
        return Ok(());
    }
    let record = state.store.get_scim_user(&client.ctx, id).await?;
    crate::services::demo::protect_owner(&state.config, &state.store, &client.ctx, record.user_id)
        .await?;
    Ok(())
}

/// 400 with the PATCH error's `scimType`.
pub(super) fn patch_error(err: patch::PatchError) -> ScimError {
    ScimError::bad_request(err.scim_type(), err.to_string())
}

/// A uniqueness refusal naming `what`.
pub(super) fn uniqueness(what: &'static str) -> impl Fn(StoreError) -> ScimError {
    move |err| uniqueness_of(err, what)
}

pub(super) fn uniqueness_of(err: StoreError, what: &str) -> ScimError {
    match err {
        StoreError::Domain(DomainError::EmailTaken) => ScimError::new(
            StatusCode::CONFLICT,
            Some("uniqueness"),
            "An account with this email exists outside this organization: invite it \
             (POST /v1/orgs/{org_id}/invitations); once its owner accepts, provisioning \
             links it.",
        ),
        StoreError::Domain(DomainError::NameTaken | DomainError::AlreadyMember) => ScimError::new(
            StatusCode::CONFLICT,
            Some("uniqueness"),
            format!("A resource with this {what} is already provisioned in this organization."),
        ),
        other => other.into(),
    }
}
