//! SCIM 2.0 provisioning: tokens, the Okta and Entra flows with the bodies they send,
//! filters, paging, attribute selection, errors, ETags, deprovisioning cutting off a live
//! session and API key, group-to-role mapping, and tenant isolation of the credential.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{Org, TestApp, User};

mod access;
mod groups;
mod protocol;
mod users;

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// An owner, their organization on the enterprise plan (no member limit), and a SCIM
/// token of it.
async fn setup(app: &TestApp, slug: &str) -> (User, Org, String) {
    let owner = app.user(&format!("owner@{slug}.example")).await;
    let org = app.org_of(&owner, slug).await;
    let res = app
        .admin_put(
            &format!("/v1/admin/orgs/{org}/plan"),
            &json!({"plan": "enterprise"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let token = scim_token(app, &owner, &org).await;
    (owner, org, token)
}

async fn scim_token(app: &TestApp, owner: &str, org: &str) -> String {
    let res = app
        .as_(owner)
        .post(
            format!("/v1/orgs/{org}/scim/tokens"),
            json!({"name": "IdP"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await;
    body["secret"].as_str().unwrap().to_owned()
}

/// A SCIM request with `application/scim+json`, answering (status, headers, body).
async fn scim(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
    extra: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = app
        .client
        .request(method, app.url(&format!("/scim/v2{path}")))
        .bearer_auth(token);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    if let Some(body) = body {
        req = req
            .header("content-type", "application/scim+json")
            .body(body.to_string());
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    if status != 204 {
        assert_eq!(
            headers["content-type"], "application/scim+json",
            "{status} {text}"
        );
    }
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    (status, headers, body)
}

async fn get(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    let (status, _, body) = scim(app, token, Method::GET, path, None, &[]).await;
    (status, body)
}

/// Asserts a SCIM error with `status` and, when given, `scim_type`.
fn assert_error(status: u16, body: &Value, want: u16, scim_type: Option<&str>) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["schemas"], json!([ERROR]), "{body}");
    assert_eq!(body["status"], want.to_string(), "{body}");
    if let Some(t) = scim_type {
        assert_eq!(body["scimType"], t, "{body}");
    }
}

fn okta_user(email: &str) -> Value {
    json!({
        "schemas": [USER],
        "userName": email,
        "name": {"givenName": "Ann", "familyName": "Lee"},
        "emails": [{"primary": true, "value": email, "type": "work"}],
        "displayName": "Ann Lee",
        "locale": "en-US",
        "externalId": "00u1abcd",
        "groups": [],
        "password": "never-stored-1!",
        "active": true
    })
}

async fn create_user(app: &TestApp, token: &str, body: Value) -> Value {
    let (status, headers, body) = scim(app, token, Method::POST, "/Users", Some(body), &[]).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(headers["etag"].to_str().unwrap(), body["meta"]["version"]);
    assert_eq!(
        headers["location"].to_str().unwrap(),
        body["meta"]["location"]
    );
    body
}

/// Roles of members of `org` by email, as the members API lists them.
async fn roles(app: &TestApp, owner: &str, org: &str) -> std::collections::HashMap<String, String> {
    let listed: Value = app
        .as_(owner)
        .get(format!("/v1/orgs/{org}/members"))
        .await
        .json()
        .await;
    listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["email"].as_str().unwrap().to_owned(),
                m["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn audit_actions(app: &TestApp, owner: &str, org: &str) -> Vec<Value> {
    let events: Value = app
        .as_(owner)
        .get(format!("/v1/orgs/{org}/audit-events?limit=200"))
        .await
        .json()
        .await;
    events["data"].as_array().unwrap().clone()
}
