//! SCIM 2.0 provisioning: tokens, the Okta and Entra flows with the bodies they send,
//! filters, paging, attribute selection, errors, ETags, deprovisioning cutting off a live
//! session and API key, group-to-role mapping, and tenant isolation of the credential.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{key_with, Backend, Org, TestApp, User};
use crate::on_both_backends;

on_both_backends!(
    scim_tokens_are_managed_by_admins_and_shown_once,
    scim_okta_flow_provisions_updates_and_deprovisions,
    scim_entra_flow_with_its_patch_shapes,
    scim_filters_paging_attributes_and_errors,
    scim_etags_and_if_match,
    scim_deactivation_cuts_off_sessions_and_keys,
    scim_groups_set_roles_through_mappings,
    scim_credentials_are_tenant_bound,
    scim_deployment_token_with_org_header,
    scim_last_owner_stays,
);

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
        .client
        .put(app.url(&format!("/v1/admin/orgs/{org}/plan")))
        .bearer_auth(&app.admin_token)
        .json(&json!({"plan": "enterprise"}))
        .send()
        .await
        .unwrap();
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

async fn scim_tokens_are_managed_by_admins_and_shown_once(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("owner@acme.example").await;
    let org = app.org_of(&owner, "acme").await;
    let member = app.member(&org, "bob@acme.example", "member").await;
    let res = app
        .as_(&owner)
        .post(
            format!("/v1/orgs/{org}/scim/tokens"),
            json!({"name": "Okta"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await;
    let secret = created["secret"].as_str().unwrap();
    let prefix = created["prefix"].as_str().unwrap();
    assert!(prefix.starts_with("scim_") && secret.starts_with(&format!("{prefix}_")));
    assert_eq!(secret.len() - prefix.len() - 1, 64, "256 random bits");

    let listed: Value = app
        .as_(&owner)
        .get(format!("/v1/orgs/{org}/scim/tokens"))
        .await
        .json()
        .await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains(&secret[prefix.len() + 1..]));
    assert!(listed["data"][0]["last_used_at"].is_null());
    if let tenantry::db::Db::Sqlite(pool) = app.store.db() {
        let stored: String = sqlx::query_scalar("SELECT secret_hash FROM scim_tokens")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(stored, tenantry::secrets::token_hash(secret));
    }

    // Members lack `scim:manage`; the catalog lists it.
    app.as_(&member)
        .post(format!("/v1/orgs/{org}/scim/tokens"), json!({"name": "x"}))
        .await
        .problem(403, "forbidden")
        .await;
    let catalog: Value = app.as_(&owner).get("/v1/permissions").await.json().await;
    assert!(catalog.to_string().contains("scim:manage"));

    let (status, _) = get(&app, secret, "/Users").await;
    assert_eq!(status, 200);
    let listed: Value = app
        .as_(&owner)
        .get(format!("/v1/orgs/{org}/scim/tokens"))
        .await
        .json()
        .await;
    assert!(
        listed["data"][0]["last_used_at"].is_string(),
        "last use recorded"
    );

    let id = created["id"].as_str().unwrap();
    let res = app
        .as_(&owner)
        .delete(format!("/v1/orgs/{org}/scim/tokens/{id}"))
        .await;
    assert_eq!(res.status(), 200);
    let (status, body) = get(&app, secret, "/Users").await;
    assert_error(status, &body, 401, None);
    let actions: Vec<String> = audit_actions(&app, &owner, &org)
        .await
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert!(actions.contains(&"scim_token.created".to_owned()));
    assert!(actions.contains(&"scim_token.revoked".to_owned()));
}

async fn scim_okta_flow_provisions_updates_and_deprovisions(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let (owner, org, token) = setup(&app, "acme").await;
    // Okta first looks the user up by userName.
    let (status, found) = get(
        &app,
        &token,
        "/Users?filter=userName%20eq%20%22ann%40acme.example%22&startIndex=1&count=100",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(found["totalResults"], 0);
    assert_eq!(
        found["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"])
    );

    let created = create_user(&app, &token, okta_user("ann@acme.example")).await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(
        id.starts_with("scimusr_"),
        "a per-organization id, not the user id"
    );
    assert_eq!(created["active"], true);
    assert_eq!(created["userName"], "ann@acme.example");
    assert_eq!(created["meta"]["resourceType"], "User");
    assert!(created.get("password").is_none());
    // Without PUBLIC_BASE_URL, locations follow the request's Host.
    assert!(created["meta"]["location"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{}/scim/v2/Users/", app.base)));
    assert!(created["meta"]["location"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/scim/v2/Users/{id}")));
    assert_eq!(
        roles(&app, &owner, &org).await["ann@acme.example"],
        "member"
    );

    let (_, found) = get(
        &app,
        &token,
        "/Users?filter=userName%20eq%20%22ANN%40acme.example%22",
    )
    .await;
    assert_eq!(found["totalResults"], 1, "userName compares ignoring case");
    assert_eq!(found["Resources"][0]["id"], id.as_str());

    // Okta deactivates with a PATCH whose value is an object and which has no path.
    let (status, _, patched) = scim(
        &app,
        &token,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(json!({
            "schemas": [PATCH],
            "Operations": [{"op": "replace", "value": {"active": false}}]
        })),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["active"], false);

    // And updates profiles with PUT of the whole user.
    let mut body = okta_user("ann@acme.example");
    body["name"]["familyName"] = json!("Park");
    body["active"] = json!(true);
    let (status, _, put) = scim(
        &app,
        &token,
        Method::PUT,
        &format!("/Users/{id}"),
        Some(body),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(put["name"]["familyName"], "Park");
    assert_eq!(put["active"], true);
    let (_, read) = get(&app, &token, &format!("/Users/{id}")).await;
    assert_eq!(read, put);

    let (status, _, _) = scim(
        &app,
        &token,
        Method::DELETE,
        &format!("/Users/{id}"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 204);
    let (status, body) = get(&app, &token, &format!("/Users/{id}")).await;
    assert_error(status, &body, 404, None);
    assert!(!roles(&app, &owner, &org)
        .await
        .contains_key("ann@acme.example"));

    let actions: Vec<Value> = audit_actions(&app, &owner, &org).await;
    let provisioned = actions
        .iter()
        .find(|e| e["action"] == "scim.user_provisioned")
        .unwrap();
    assert_eq!(provisioned["actor"]["type"], "scim");
    assert!(provisioned["actor"]["id"]
        .as_str()
        .unwrap()
        .starts_with("scimtok_"));
    let feed: Value = app
        .as_(&owner)
        .get(format!("/v1/orgs/{org}/activities"))
        .await
        .json()
        .await;
    let kinds: Vec<&str> = feed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["type"].as_str().unwrap())
        .collect();
    for kind in [
        "USER_PROVISIONED",
        "USER_DEACTIVATED",
        "USER_REACTIVATED",
        "USER_DEPROVISIONED",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
}

async fn scim_entra_flow_with_its_patch_shapes(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let (owner, org, token) = setup(&app, "contoso").await;
    // Entra probes with a random userName, then looks up by externalId.
    let (status, probe) = get(
        &app,
        &token,
        "/Users?filter=userName+eq+%22a1b2c3d4-0000-4a4a-9d9d-000000000000%22",
    )
    .await;
    assert_eq!((status, probe["totalResults"].clone()), (200, json!(0)));
    let body = json!({
        "schemas": [USER, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "externalId": "e1f2-AAAA",
        "userName": "dana@contoso.example",
        "active": true,
        "displayName": "Dana Ruiz",
        "emails": [{"primary": true, "type": "work", "value": "dana@contoso.example"}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "Dana Ruiz", "familyName": "Ruiz", "givenName": "Dana"},
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Finance", "employeeNumber": "42"}
    });
    let created = create_user(&app, &token, body).await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["department"],
        "Finance"
    );

    let (_, found) = get(&app, &token, "/Users?filter=externalId+eq+%22e1f2-AAAA%22").await;
    assert_eq!(found["totalResults"], 1);
    let (_, found) = get(&app, &token, "/Users?filter=externalId+eq+%22e1f2-aaaa%22").await;
    assert_eq!(found["totalResults"], 0, "externalId is case-exact");

    // Entra capitalises ops and sends booleans as strings.
    let ops = json!({
        "schemas": [PATCH],
        "Operations": [
            {"op": "Replace", "path": "active", "value": "False"},
            {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "dana.ruiz@contoso.example"},
            {"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Sales"},
            {"op": "Add", "path": "displayName", "value": "Dana R."}
        ]
    });
    let (status, _, patched) = scim(
        &app,
        &token,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(ops),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["active"], false);
    assert_eq!(patched["displayName"], "Dana R.");
    assert_eq!(patched["emails"][0]["value"], "dana.ruiz@contoso.example");
    assert_eq!(
        patched["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["department"],
        "Sales"
    );
    let (_, found) = get(
        &app,
        &token,
        "/Users?filter=emails%5Btype+eq+%22work%22%5D.value+eq+%22DANA.RUIZ%40contoso.example%22",
    )
    .await;
    assert_eq!(found["totalResults"], 1, "emails compare ignoring case");
    let (_, found) = get(&app, &token, "/Users?filter=active+eq+false").await;
    assert_eq!(found["totalResults"], 1);

    let ops = json!({"schemas": [PATCH], "Operations": [{"op": "Replace", "path": "active", "value": "True"}]});
    let (status, _, patched) = scim(
        &app,
        &token,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(ops),
        &[],
    )
    .await;
    assert_eq!((status, patched["active"].clone()), (200, json!(true)));
    assert_eq!(
        roles(&app, &owner, &org).await["dana@contoso.example"],
        "member"
    );
}

async fn scim_filters_paging_attributes_and_errors(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let (_owner, _org, token) = setup(&app, "acme").await;
    for (i, name) in ["u1", "u2", "u3", "u4"].iter().enumerate() {
        let mut body = okta_user(&format!("{name}@acme.example"));
        body["externalId"] = json!(format!("ext-{i}"));
        create_user(&app, &token, body).await;
    }
    let (_, page) = get(&app, &token, "/Users?startIndex=2&count=2").await;
    assert_eq!(page["totalResults"], 4);
    assert_eq!(page["itemsPerPage"], 2);
    assert_eq!(page["startIndex"], 2);
    assert_eq!(
        page["Resources"][0]["userName"], "u2@acme.example",
        "creation order"
    );
    let (_, page) = get(&app, &token, "/Users?count=5000").await;
    assert_eq!(page["itemsPerPage"], 4);
    let (_, page) = get(&app, &token, "/Users?count=0").await;
    assert_eq!(
        (page["totalResults"].clone(), page["itemsPerPage"].clone()),
        (json!(4), json!(0))
    );

    let (_, found) = get(
        &app,
        &token,
        "/Users?filter=userName+eq+%22u1%40acme.example%22+or+externalId+eq+%22ext-2%22",
    )
    .await;
    assert_eq!(found["totalResults"], 2);
    let (_, found) = get(
        &app,
        &token,
        "/Users?filter=userName+eq+%22u1%40acme.example%22+and+active+eq+true",
    )
    .await;
    assert_eq!(found["totalResults"], 1);

    let (_, only) = get(&app, &token, "/Users?attributes=userName&count=1").await;
    let item = only["Resources"][0].as_object().unwrap();
    let mut keys: Vec<&str> = item.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["id", "schemas", "userName"]);
    let (_, without) = get(
        &app,
        &token,
        "/Users?excludedAttributes=emails,name&count=1",
    )
    .await;
    let item = &without["Resources"][0];
    assert!(item.get("emails").is_none() && item.get("name").is_none() && item["id"].is_string());
    let id = item["id"].as_str().unwrap();
    let (_, one) = get(
        &app,
        &token,
        &format!("/Users/{id}?attributes=name.givenName"),
    )
    .await;
    assert_eq!(one["name"], json!({"givenName": "Ann"}));

    let (status, body) = get(&app, &token, "/Users?filter=userName+eq").await;
    assert_error(status, &body, 400, Some("invalidFilter"));
    let (status, body) = get(&app, &token, "/Users?startIndex=abc").await;
    assert_error(status, &body, 400, Some("invalidValue"));
    let (status, body) = get(
        &app,
        &token,
        "/Users/scimusr_00000000000000000000000000000000",
    )
    .await;
    assert_error(status, &body, 404, None);
    let (status, body) = get(&app, &token, "/Users/not-an-id").await;
    assert_error(status, &body, 404, None);

    let res = app
        .client
        .post(app.url("/scim/v2/Users"))
        .bearer_auth(&token)
        .header("content-type", "application/scim+json")
        .body("{\"userName\": ")
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    assert_error(status, &body, 400, Some("invalidSyntax"));
    let (status, _, body) = scim(
        &app,
        &token,
        Method::POST,
        "/Users",
        Some(json!({"schemas": [USER]})),
        &[],
    )
    .await;
    assert_error(status, &body, 400, Some("invalidValue"));
    let (status, _, body) = scim(
        &app,
        &token,
        Method::POST,
        "/Users",
        Some(okta_user("U1@acme.example")),
        &[],
    )
    .await;
    assert_error(status, &body, 409, Some("uniqueness"));
    let (status, _, body) = scim(
        &app,
        &token,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(json!({"schemas": [PATCH], "Operations": [{"op": "jump"}]})),
        &[],
    )
    .await;
    assert_error(status, &body, 400, Some("invalidSyntax"));
    // Plain JSON is accepted too.
    let res = app
        .client
        .post(app.url("/scim/v2/Users"))
        .bearer_auth(&token)
        .json(&okta_user("json@acme.example"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
}

async fn scim_etags_and_if_match(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let (_owner, _org, token) = setup(&app, "acme").await;
    let created = create_user(&app, &token, okta_user("ann@acme.example")).await;
    let id = created["id"].as_str().unwrap();
    let v1 = created["meta"]["version"].as_str().unwrap().to_owned();
    assert!(v1.starts_with("W/\""));
    let (_, headers, _) = scim(
        &app,
        &token,
        Method::GET,
        &format!("/Users/{id}"),
        None,
        &[],
    )
    .await;
    assert_eq!(headers["etag"].to_str().unwrap(), v1);

    let mut body = okta_user("ann@acme.example");
    body["displayName"] = json!("Ann 2");
    let (status, headers, put) = scim(
        &app,
        &token,
        Method::PUT,
        &format!("/Users/{id}"),
        Some(body.clone()),
        &[("if-match", &v1)],
    )
    .await;
    assert_eq!(status, 200, "{put}");
    let v2 = headers["etag"].to_str().unwrap().to_owned();
    assert_ne!(v1, v2);
    let (status, _, stale) = scim(
        &app,
        &token,
        Method::PUT,
        &format!("/Users/{id}"),
        Some(body),
        &[("if-match", &v1)],
    )
    .await;
    assert_error(status, &stale, 412, None);
    let ops = json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "displayName", "value": "x"}]});
    let (status, _, stale) = scim(
        &app,
        &token,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(ops.clone()),
        &[("if-match", &v1)],
    )
    .await;
    assert_error(status, &stale, 412, None);
    let (status, _, _) = scim(
        &app,
        &token,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(ops),
        &[("if-match", &v2)],
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, stale) = scim(
        &app,
        &token,
        Method::DELETE,
        &format!("/Users/{id}"),
        None,
        &[("if-match", &v2)],
    )
    .await;
    assert_error(status, &stale, 412, None);
}

async fn scim_deactivation_cuts_off_sessions_and_keys(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let (_owner, org, token) = setup(&app, "acme").await;
    // Bob is already a member with a live session and an API key; he has another org.
    let bob = app.member(&org, "bob@acme.example", "admin").await;
    let key = key_with(&app, &bob, &org, &["data:read"]).await;
    let other = app.org_of(&bob, "bobs-own").await;
    assert_eq!(
        app.as_(&key)
            .get(format!("/v1/orgs/{org}/data"))
            .await
            .status(),
        200
    );

    // Provisioning his email links the existing account and keeps his role.
    let created = create_user(&app, &token, okta_user("bob@acme.example")).await;
    let id = created["id"].as_str().unwrap();
    let off = json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": false}]});
    let (status, _, _) = scim(
        &app,
        &token,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(off),
        &[],
    )
    .await;
    assert_eq!(status, 200);

    app.as_(&bob)
        .get(format!("/v1/orgs/{org}"))
        .await
        .problem(404, "not_found")
        .await;
    app.as_(&key)
        .get(format!("/v1/orgs/{org}/data"))
        .await
        .problem(401, "invalid_api_key")
        .await;
    assert_eq!(
        app.as_(&bob)
            .get(format!("/v1/orgs/{other}"))
            .await
            .status(),
        200
    );
    let res = app
        .anon()
        .post(
            "/v1/auth/refresh",
            json!({"refresh_token": bob.refresh_token}),
        )
        .await;
    assert_eq!(
        res.status(),
        200,
        "refresh still works for his other organizations"
    );

    let on =
        json!({"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": "True"}}]});
    let (status, _, _) = scim(
        &app,
        &token,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(on),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        app.as_(&bob).get(format!("/v1/orgs/{org}")).await.status(),
        200
    );
    assert_eq!(
        app.as_(&key)
            .get(format!("/v1/orgs/{org}/data"))
            .await
            .status(),
        200
    );

    // Deprovisioning ends the membership and revokes his keys there.
    let (status, _, _) = scim(
        &app,
        &token,
        Method::DELETE,
        &format!("/Users/{id}"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 204);
    app.as_(&bob)
        .get(format!("/v1/orgs/{org}"))
        .await
        .problem(404, "not_found")
        .await;
    app.as_(&key)
        .get(format!("/v1/orgs/{org}/data"))
        .await
        .problem(401, "invalid_api_key")
        .await;
}

async fn scim_groups_set_roles_through_mappings(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let (owner, org, token) = setup(&app, "acme").await;
    let res = app
        .as_(&owner)
        .put(
            format!("/v1/orgs/{org}/scim/role-mappings"),
            json!([
                {"group": "Admins", "role": "admin"}, {"group": "Readers", "role": "readonly"}
            ]),
        )
        .await;
    assert_eq!(res.status(), 200);
    let listed: Value = res.json().await;
    assert_eq!(
        listed["data"][0],
        json!({"group": "Admins", "role": "admin"})
    );
    app.as_(&owner)
        .put(
            format!("/v1/orgs/{org}/scim/role-mappings"),
            json!([{"group": "X", "role": "owner"}]),
        )
        .await
        .problem(422, "validation_failed")
        .await;
    let ann = create_user(&app, &token, okta_user("ann@acme.example")).await;
    let ann_id = ann["id"].as_str().unwrap();
    let owner_scim = create_user(&app, &token, okta_user("owner@acme.example")).await;

    // Okta creates the group with its members.
    let (status, _, group) = scim(&app, &token, Method::POST, "/Groups", Some(json!({
        "schemas": [GROUP], "displayName": "Admins",
        "members": [{"value": ann_id, "display": "ann@acme.example"}, {"value": owner_scim["id"]}]
    })), &[]).await;
    assert_eq!(status, 201, "{group}");
    let gid = group["id"].as_str().unwrap().to_owned();
    assert_eq!(group["members"].as_array().unwrap().len(), 2);
    let now = roles(&app, &owner, &org).await;
    assert_eq!(now["ann@acme.example"], "admin");
    assert_eq!(
        now["owner@acme.example"], "owner",
        "owners are never changed"
    );

    let (_, found) = get(&app, &token, "/Groups?filter=displayName+eq+%22admins%22").await;
    assert_eq!(found["totalResults"], 1);

    // Entra removes a member by filter, then adds them to Readers.
    let remove = json!({"schemas": [PATCH], "Operations": [{"op": "Remove", "path": format!("members[value eq \"{ann_id}\"]")}]});
    let (status, _, after) = scim(
        &app,
        &token,
        Method::PATCH,
        &format!("/Groups/{gid}"),
        Some(remove),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(
        roles(&app, &owner, &org).await["ann@acme.example"],
        "member"
    );
    let (_, _, readers) = scim(
        &app,
        &token,
        Method::POST,
        "/Groups",
        Some(json!({"schemas": [GROUP], "displayName": "Readers"})),
        &[],
    )
    .await;
    let rid = readers["id"].as_str().unwrap();
    let add = json!({"schemas": [PATCH], "Operations": [{"op": "Add", "path": "members", "value": [{"value": ann_id}]}]});
    let (status, _, _) = scim(
        &app,
        &token,
        Method::PATCH,
        &format!("/Groups/{rid}"),
        Some(add),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        roles(&app, &owner, &org).await["ann@acme.example"],
        "readonly"
    );
    // Okta renames with a path-less replace; the mapping follows the name.
    let rename = json!({"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"id": rid, "displayName": "Admins2"}}]});
    let (status, _, renamed) = scim(
        &app,
        &token,
        Method::PATCH,
        &format!("/Groups/{rid}"),
        Some(rename),
        &[],
    )
    .await;
    assert_eq!(
        (status, renamed["displayName"].clone()),
        (200, json!("Admins2"))
    );
    assert_eq!(
        roles(&app, &owner, &org).await["ann@acme.example"],
        "member"
    );

    let (status, _, dup) = scim(
        &app,
        &token,
        Method::POST,
        "/Groups",
        Some(json!({"schemas": [GROUP], "displayName": "admins"})),
        &[],
    )
    .await;
    assert_error(status, &dup, 409, Some("uniqueness"));
    let (status, _, _) = scim(
        &app,
        &token,
        Method::DELETE,
        &format!("/Groups/{gid}"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 204);

    let feed: Value = app
        .as_(&owner)
        .get(format!("/v1/orgs/{org}/activities"))
        .await
        .json()
        .await;
    assert!(feed["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["type"] == "ROLE_CHANGED" && a["actor"]["type"] == "scim"));
}

async fn scim_credentials_are_tenant_bound(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let (_owner_a, org_a, token_a) = setup(&app, "alpha").await;
    let (_owner_b, _org_b, token_b) = setup(&app, "beta").await;
    let in_b = create_user(&app, &token_b, okta_user("bea@beta.example")).await;
    let id_b = in_b["id"].as_str().unwrap();
    let (status, body) = get(&app, &token_a, &format!("/Users/{id_b}")).await;
    assert_error(status, &body, 404, None);
    let (status, _, body) = scim(
        &app,
        &token_a,
        Method::DELETE,
        &format!("/Users/{id_b}"),
        None,
        &[],
    )
    .await;
    assert_error(status, &body, 404, None);
    let (_, listed) = get(&app, &token_a, "/Users").await;
    assert_eq!(listed["totalResults"], 0);
    // Provisioning an address that has an account elsewhere reveals nothing of it.
    let linked = create_user(
        &app,
        &token_a,
        json!({"schemas": [USER], "userName": "bea@beta.example"}),
    )
    .await;
    assert!(linked.get("name").is_none() && linked.get("displayName").is_none());

    for bad in [
        "",
        "scim_0000000000000000_0000000000000000000000000000000000000000000000000000000000000000",
        "tk_nope",
    ] {
        let (status, body) = get(&app, bad, "/Users").await;
        assert_error(status, &body, 401, None);
    }
    let (status, body) = get(&app, &token_a, "/ServiceProviderConfig").await;
    assert_eq!(status, 200);
    assert_eq!(body["patch"]["supported"], true);
    assert_eq!(body["filter"]["maxResults"], 1000);
    assert_eq!(body["bulk"]["supported"], false);
    let (_, types) = get(&app, &token_a, "/ResourceTypes").await;
    assert_eq!(types["totalResults"], 2);
    let (_, schemas) = get(&app, &token_a, "/Schemas").await;
    assert_eq!(schemas["totalResults"], 3);
    let (status, body) = get(&app, "", "/ServiceProviderConfig").await;
    assert_error(status, &body, 401, None);

    let res = app
        .client
        .post(app.url(&format!("/v1/admin/orgs/{org_a}/suspend")))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (status, body) = get(&app, &token_a, "/Users").await;
    assert_error(status, &body, 403, None);
    assert!(body["detail"].as_str().unwrap().contains("org_suspended"));
}

async fn scim_deployment_token_with_org_header(backend: Backend) {
    let deployment = "d".repeat(40);
    let Some(app) = TestApp::on(backend)
        .with_vars(|v| {
            v.insert("SCIM_BEARER_TOKEN".to_owned(), "d".repeat(40));
            v.insert(
                "PUBLIC_BASE_URL".to_owned(),
                "https://id.example.com/".to_owned(),
            );
        })
        .await
    else {
        return;
    };
    let (owner, org, _token) = setup(&app, "acme").await;
    let (status, _, created) = scim(
        &app,
        &deployment,
        Method::POST,
        "/Users",
        Some(okta_user("ann@acme.example")),
        &[("x-org-id", &org)],
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert!(roles(&app, &owner, &org)
        .await
        .contains_key("ann@acme.example"));
    let actions = audit_actions(&app, &owner, &org).await;
    let provisioned = actions
        .iter()
        .find(|e| e["action"] == "scim.user_provisioned")
        .unwrap();
    assert_eq!(
        provisioned["actor"],
        json!({"type": "scim", "id": "deployment"})
    );

    let (status, _, body) = scim(
        &app,
        &deployment,
        Method::GET,
        "/Users",
        None,
        &[("x-org-id", "org_00000000000000000000000000000000")],
    )
    .await;
    assert_error(status, &body, 404, None);
    let (status, _, body) = scim(&app, &deployment, Method::GET, "/Users", None, &[]).await;
    assert_error(status, &body, 404, None);
    let (status, _, body) = scim(
        &app,
        &"e".repeat(40),
        Method::GET,
        "/Users",
        None,
        &[("x-org-id", &org)],
    )
    .await;
    assert_error(status, &body, 401, None);
}

async fn scim_last_owner_stays(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let (owner, org, token) = setup(&app, "acme").await;
    let me = create_user(&app, &token, okta_user("owner@acme.example")).await;
    let id = me["id"].as_str().unwrap();
    let off = json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": false}]});
    let (status, _, body) = scim(
        &app,
        &token,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(off),
        &[],
    )
    .await;
    assert_error(status, &body, 409, None);
    assert!(
        body["detail"].as_str().unwrap().contains("last_owner"),
        "{body}"
    );
    let (status, _, body) = scim(
        &app,
        &token,
        Method::DELETE,
        &format!("/Users/{id}"),
        None,
        &[],
    )
    .await;
    assert_error(status, &body, 409, None);
    assert_eq!(
        app.as_(&owner)
            .get(format!("/v1/orgs/{org}"))
            .await
            .status(),
        200
    );
}

/// A database outage answers SCIM clients 503 (retry), never 401 (which would make the
/// identity provider drop its connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_database_outage_is_503_not_401() {
    let Some(probe) = tenantry::testing::TestDatabase::create(Backend::Postgres).await else {
        return;
    };
    drop(probe);
    let proxy = crate::helpers::Proxy::to_postgres().await;
    let Some(app) = TestApp::on(Backend::Postgres)
        .with_vars(|v| {
            proxy.route(v);
            v.insert("DATABASE_ACQUIRE_TIMEOUT_SEC".into(), "1".into());
        })
        .await
    else {
        return;
    };
    let (_owner, _org, token) = setup(&app, "acme").await;
    proxy.cut();
    let (status, body) = get(&app, &token, "/Users").await;
    assert_error(status, &body, 503, None);
    proxy.restore();
    for _ in 0..50 {
        let (status, _) = get(&app, &token, "/Users").await;
        if status == 200 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("SCIM answers again once the database is back");
}
