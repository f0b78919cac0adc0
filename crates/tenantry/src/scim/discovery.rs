//! Discovery (RFC 7644 §4): what this service provider supports, its resource types and
//! their schemas. They need the SCIM credential like everything else here.

use axum::extract::Path;
use serde_json::{json, Value};

use super::list::MAX_COUNT;
use super::protocol::ScimResponse;
use super::{ScimError, ENTERPRISE_SCHEMA, GROUP_SCHEMA, USER_SCHEMA};
use crate::auth::scim::ScimClient;

const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const CONFIG_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

/// What is supported: PATCH, filters (up to 1000 results), ETags; not bulk, sorting or
/// password changes.
pub(super) async fn service_provider_config(client: ScimClient) -> ScimResponse {
    ScimResponse::ok(json!({
        "schemas": [CONFIG_SCHEMA],
        "documentationUri": "https://github.com/tenantry/tenantry/blob/main/docs/scim.md",
        "patch": { "supported": true },
        "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
        "filter": { "supported": true, "maxResults": MAX_COUNT },
        "changePassword": { "supported": false },
        "sort": { "supported": false },
        "etag": { "supported": true },
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "A SCIM token of the organization (scim_…), created by an organization admin.",
            "primary": true
        }],
        "meta": { "resourceType": "ServiceProviderConfig", "location": format!("{}/ServiceProviderConfig", client.base_url) }
    }))
}

fn resource_types_of(base: &str) -> Vec<Value> {
    vec![
        json!({
            "schemas": [RESOURCE_TYPE_SCHEMA], "id": "User", "name": "User", "endpoint": "/Users",
            "description": "A member of the organization, provisioned by the identity provider",
            "schema": USER_SCHEMA,
            "schemaExtensions": [{ "schema": ENTERPRISE_SCHEMA, "required": false }],
            "meta": { "resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/User") }
        }),
        json!({
            "schemas": [RESOURCE_TYPE_SCHEMA], "id": "Group", "name": "Group", "endpoint": "/Groups",
            "description": "A group; mapped groups set their members' roles",
            "schema": GROUP_SCHEMA,
            "meta": { "resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/Group") }
        }),
    ]
}

fn list_of(items: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": items.len(),
        "itemsPerPage": items.len(),
        "startIndex": 1,
        "Resources": items,
    })
}

/// The User and Group resource types.
pub(super) async fn resource_types(client: ScimClient) -> ScimResponse {
    ScimResponse::ok(list_of(resource_types_of(&client.base_url)))
}

/// One resource type by name.
pub(super) async fn resource_type(
    client: ScimClient,
    Path(name): Path<String>,
) -> Result<ScimResponse, ScimError> {
    resource_types_of(&client.base_url)
        .into_iter()
        .find(|t| {
            t["id"]
                .as_str()
                .is_some_and(|id| id.eq_ignore_ascii_case(&name))
        })
        .map(ScimResponse::ok)
        .ok_or_else(ScimError::not_found)
}

/// An attribute definition: (name, type, multi-valued, required, case-exact, mutability,
/// uniqueness), with sub-attributes for complex ones.
fn attribute(
    name: &str,
    kind: &str,
    multi: bool,
    required: bool,
    mutability: &str,
    sub: Vec<Value>,
) -> Value {
    let mut a = json!({
        "name": name, "type": kind, "multiValued": multi, "required": required,
        "caseExact": matches!(name, "id" | "externalId" | "value"),
        "mutability": mutability, "returned": "default",
        "uniqueness": if name == "userName" || (name == "displayName" && required) { "server" } else { "none" },
    });
    if !sub.is_empty() {
        a["subAttributes"] = Value::Array(sub);
    }
    a
}

fn text(name: &str) -> Value {
    attribute(name, "string", false, false, "readWrite", vec![])
}

fn schemas_of(base: &str) -> Vec<Value> {
    let multi = |name: &str| {
        attribute(
            name,
            "complex",
            true,
            false,
            "readWrite",
            vec![
                text("value"),
                text("display"),
                text("type"),
                attribute("primary", "boolean", false, false, "readWrite", vec![]),
            ],
        )
    };
    let member_ref = attribute(
        "members",
        "complex",
        true,
        false,
        "readWrite",
        vec![
            attribute("value", "string", false, false, "immutable", vec![]),
            attribute("display", "string", false, false, "readOnly", vec![]),
            attribute("$ref", "reference", false, false, "immutable", vec![]),
        ],
    );
    let schema = |id: &str, name: &str, description: &str, attributes: Vec<Value>| {
        json!({
            "schemas": [SCHEMA_SCHEMA], "id": id, "name": name, "description": description,
            "attributes": attributes,
            "meta": { "resourceType": "Schema", "location": format!("{base}/Schemas/{id}") }
        })
    };
    vec![
        schema(
            USER_SCHEMA,
            "User",
            "User account",
            vec![
                attribute("userName", "string", false, true, "readWrite", vec![]),
                attribute(
                    "name",
                    "complex",
                    false,
                    false,
                    "readWrite",
                    vec![
                        text("formatted"),
                        text("familyName"),
                        text("givenName"),
                        text("middleName"),
                        text("honorificPrefix"),
                        text("honorificSuffix"),
                    ],
                ),
                text("displayName"),
                text("nickName"),
                text("title"),
                text("userType"),
                text("preferredLanguage"),
                text("locale"),
                text("timezone"),
                attribute("active", "boolean", false, false, "readWrite", vec![]),
                multi("emails"),
                multi("phoneNumbers"),
                text("externalId"),
            ],
        ),
        schema(
            GROUP_SCHEMA,
            "Group",
            "Group",
            vec![
                attribute("displayName", "string", false, true, "readWrite", vec![]),
                member_ref,
                text("externalId"),
            ],
        ),
        schema(
            ENTERPRISE_SCHEMA,
            "EnterpriseUser",
            "Enterprise User",
            vec![
                text("employeeNumber"),
                text("costCenter"),
                text("organization"),
                text("division"),
                text("department"),
                attribute(
                    "manager",
                    "complex",
                    false,
                    false,
                    "readWrite",
                    vec![text("value"), text("displayName")],
                ),
            ],
        ),
    ]
}

/// The User, Group and EnterpriseUser schemas.
pub(super) async fn schemas(client: ScimClient) -> ScimResponse {
    ScimResponse::ok(list_of(schemas_of(&client.base_url)))
}

/// One schema by URN.
pub(super) async fn schema(
    client: ScimClient,
    Path(urn): Path<String>,
) -> Result<ScimResponse, ScimError> {
    schemas_of(&client.base_url)
        .into_iter()
        .find(|s| {
            s["id"]
                .as_str()
                .is_some_and(|id| id.eq_ignore_ascii_case(&urn))
        })
        .map(ScimResponse::ok)
        .ok_or_else(ScimError::not_found)
}
