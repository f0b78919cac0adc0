//! SCIM Users: the Okta and Entra flows with the bodies they send, deactivation cutting
//! off a live session and API key, and the last owner.

use reqwest::Method;
use serde_json::{json, Value};

use super::{
    assert_error, audit_actions, create_user, get, okta_user, roles, scim, setup, PATCH, USER,
};
use crate::helpers::{key_with, Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    scim_okta_flow_provisions_updates_and_deprovisions,
    scim_entra_flow_with_its_patch_shapes,
    scim_deactivation_cuts_off_sessions_and_keys,
    scim_last_owner_stays,
);

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

async fn scim_deactivation_cuts_off_sessions_and_keys(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let (owner, org, token) = setup(&app, "acme").await;
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
    // Admins see him as deactivated, not gone.
    let members: Value = app
        .as_(&owner)
        .get(format!("/v1/orgs/{org}/members"))
        .await
        .json()
        .await;
    let listed = members["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "bob@acme.example")
        .unwrap();
    assert!(listed["deactivated_at"].is_string(), "{members}");
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
