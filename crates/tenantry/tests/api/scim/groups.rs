//! SCIM Groups and the group-to-role mappings.

use reqwest::Method;
use serde_json::{json, Value};

use super::{assert_error, create_user, get, okta_user, roles, scim, setup, GROUP, PATCH};
use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    scim_groups_set_roles_through_mappings,
    scim_mappings_grant_only_what_the_caller_holds,
);

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

/// `scim:manage` alone does not let its holder map a group to a role they could not grant
/// by hand (which would make their own provisioned account an admin).
async fn scim_mappings_grant_only_what_the_caller_holds(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let (owner, org, token) = setup(&app, "acme").await;
    let role: Value = app
        .as_(&owner)
        .post(
            format!("/v1/orgs/{org}/roles"),
            json!({"name": "Provisioner", "permissions": ["org:read", "scim:manage"]}),
        )
        .await
        .json()
        .await;
    let provisioner = app
        .member(&org, "prov@acme.example", role["id"].as_str().unwrap())
        .await;
    let path = format!("/v1/orgs/{org}/scim/role-mappings");
    app.as_(&provisioner)
        .put(&path, json!([{"group": "Everyone", "role": "admin"}]))
        .await
        .problem(403, "forbidden")
        .await;
    let saved: Value = app.as_(&owner).get(&path).await.json().await;
    assert_eq!(saved["data"], json!([]), "nothing was saved");
    // The owner may; requests too large for one call are refused whole.
    let res = app
        .as_(&owner)
        .put(&path, json!([{"group": "Everyone", "role": "admin"}]))
        .await;
    assert_eq!(res.status(), 200);
    let members: Vec<Value> = (0..1001)
        .map(|i| json!({"value": format!("scimusr_{i:032x}")}))
        .collect();
    let (status, _, body) = scim(
        &app,
        &token,
        Method::POST,
        "/Groups",
        Some(json!({"schemas": [GROUP], "displayName": "Big", "members": members})),
        &[],
    )
    .await;
    assert_error(status, &body, 400, Some("invalidValue"));
    let ops: Vec<Value> = (0..1001)
        .map(|_| json!({"op": "add", "path": "nickName", "value": "x"}))
        .collect();
    let user = create_user(&app, &token, okta_user("ann@acme.example")).await;
    let (status, _, body) = scim(
        &app,
        &token,
        Method::PATCH,
        &format!("/Users/{}", user["id"].as_str().unwrap()),
        Some(json!({"schemas": [PATCH], "Operations": ops})),
        &[],
    )
    .await;
    assert_error(status, &body, 400, Some("invalidSyntax"));
}
