//! SCIM 2.0 service provider (RFC 7643/7644) under `/scim/v2`: Users, Groups and the
//! discovery endpoints, for identity providers such as Okta and Microsoft Entra ID.
//!
//! Resources are built as SCIM JSON from the database; filters and PATCH operations are
//! evaluated over that JSON ([`filter`], [`patch`]), then the result is validated and
//! written back. An organization's directory fits in memory, so a list loads the
//! organization's resources, filters, sorts by creation and pages.

mod discovery;
mod error;
pub mod filter;
mod groups;
mod list;
pub(crate) mod manage;
pub mod patch;
mod protocol;
pub mod roles;
mod user_doc;
mod users;

use axum::routing::get;
use axum::Router;

pub(crate) use error::scim_errors;
pub use error::ScimError;
pub(crate) use protocol::base_url;

use crate::state::AppState;

/// Media type of every SCIM answer.
pub const SCIM_JSON: &str = "application/scim+json";

/// URN of the core User schema.
pub(crate) const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// URN of the enterprise User extension.
pub(crate) const ENTERPRISE_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// URN of the core Group schema.
pub(crate) const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// The routes under `/scim/v2`, every answer (errors included) in SCIM's own shape.
pub(crate) fn router() -> Router<AppState> {
    let v2 = Router::new()
        .route("/Users", get(users::list).post(users::create))
        .route(
            "/Users/{id}",
            get(users::get_one)
                .put(users::replace)
                .patch(users::patch)
                .delete(users::delete),
        )
        .route("/Groups", get(groups::list).post(groups::create))
        .route(
            "/Groups/{id}",
            get(groups::get_one)
                .put(groups::replace)
                .patch(groups::patch)
                .delete(groups::delete),
        )
        .route(
            "/ServiceProviderConfig",
            get(discovery::service_provider_config),
        )
        .route("/ResourceTypes", get(discovery::resource_types))
        .route("/ResourceTypes/{name}", get(discovery::resource_type))
        .route("/Schemas", get(discovery::schemas))
        .route("/Schemas/{urn}", get(discovery::schema))
        .fallback(|| async { ScimError::not_found() })
        .layer(axum::middleware::map_response(error::scim_errors));
    Router::new().nest("/scim/v2", v2)
}
