//! The isolation matrix: every organization-scoped endpoint, called by a member of
//! another organization (404, indistinguishable from a missing id), by a member lacking
//! the permission (403) and by no one (401). On PostgreSQL, row-level security is checked
//! as the last line too.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, Backend, Listed, TestApp};
use crate::on_both_backends;

on_both_backends!(
    every_org_endpoint_isolates_tenants,
    every_documented_org_operation_hides_other_tenants,
);

/// An API key of `org` holding every permission of the catalog.
async fn all_powerful_key(app: &TestApp, owner: &str, org: &str) -> String {
    let all: Vec<&str> = tenantry::rbac::Permission::ALL
        .iter()
        .map(|p| p.as_str())
        .collect();
    crate::helpers::key_with(app, owner, org, &all).await
}

async fn every_org_endpoint_isolates_tenants(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner_a = app.user("owner-a@example.com").await;
    let owner_b = app.user("owner-b@example.com").await;
    let a = app.org_of(&owner_a, "org-a").await;
    let b = app.org_of(&owner_b, "org-b").await;
    let reader = app.member(&a, "reader@example.com", "readonly").await;
    let post = |path: String, body: Value| app.as_(&owner_a).post(path, body);
    let ws: Value = post(
        format!("/v1/orgs/{a}/workspaces"),
        json!({"name": "W", "slug": "ws"}),
    )
    .await
    .json()
    .await;
    let role: Value = post(
        format!("/v1/orgs/{a}/roles"),
        json!({"name": "R", "permissions": ["org:read"]}),
    )
    .await
    .json()
    .await;
    let inv: Value = post(
        format!("/v1/orgs/{a}/invitations"),
        json!({"email": "p@example.com", "role": "member"}),
    )
    .await
    .json()
    .await;
    let members: Listed = app
        .as_(&owner_a)
        .get(format!("/v1/orgs/{a}/members"))
        .await
        .json()
        .await;
    let owner_id = members.iter().find(|m| m["role"] == "owner").unwrap()["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ws_b: Value = app
        .as_(&owner_b)
        .post(
            format!("/v1/orgs/{b}/workspaces"),
            json!({"name": "W", "slug": "ws"}),
        )
        .await
        .json()
        .await;
    let key: Value = post(
        format!("/v1/orgs/{a}/api-keys"),
        json!({"name": "K", "scopes": ["data:read"]}),
    )
    .await
    .json()
    .await;
    let item: Value = post(format!("/v1/orgs/{a}/data"), json!({"name": "I"}))
        .await
        .json()
        .await;
    let key_b = &all_powerful_key(&app, &owner_b, &b).await;
    let (ws, role, inv, key, item) = (
        ws["id"].as_str().unwrap(),
        role["id"].as_str().unwrap(),
        inv["id"].as_str().unwrap(),
        key["id"].as_str().unwrap(),
        item["id"].as_str().unwrap(),
    );

    // (method, path, body, status for a read-only member of A)
    let matrix: Vec<(Method, String, Option<Value>, u16)> = vec![
        (Method::GET, format!("/v1/orgs/{a}"), None, 200),
        (
            Method::PATCH,
            format!("/v1/orgs/{a}"),
            Some(json!({"name": "X"})),
            403,
        ),
        (Method::DELETE, format!("/v1/orgs/{a}"), None, 403),
        (
            Method::PUT,
            format!("/v1/orgs/{a}/plan"),
            Some(json!({"plan": "pro"})),
            403,
        ),
        (Method::GET, format!("/v1/orgs/{a}/audit-events"), None, 403),
        (
            Method::GET,
            format!("/v1/orgs/{a}/audit-events?format=csv"),
            None,
            403,
        ),
        (Method::GET, format!("/v1/orgs/{a}/activities"), None, 200),
        (
            Method::POST,
            format!("/v1/orgs/{a}/broadcast"),
            Some(json!({"message": "hello"})),
            403,
        ),
        (
            Method::POST,
            format!("/v1/orgs/{a}/workspaces"),
            Some(json!({"name": "Z", "slug": "zz"})),
            403,
        ),
        (Method::GET, format!("/v1/orgs/{a}/workspaces"), None, 200),
        (
            Method::GET,
            format!("/v1/orgs/{a}/workspaces/{ws}"),
            None,
            200,
        ),
        (
            Method::PATCH,
            format!("/v1/orgs/{a}/workspaces/{ws}"),
            Some(json!({"name": "Z"})),
            403,
        ),
        (
            Method::DELETE,
            format!("/v1/orgs/{a}/workspaces/{ws}"),
            None,
            403,
        ),
        (
            Method::PUT,
            format!("/v1/orgs/{a}/workspaces/{ws}/members/{owner_id}"),
            Some(json!({"role": "member"})),
            403,
        ),
        (
            Method::DELETE,
            format!("/v1/orgs/{a}/workspaces/{ws}/members/{owner_id}"),
            None,
            403,
        ),
        (Method::GET, format!("/v1/orgs/{a}/members"), None, 200),
        (
            Method::PATCH,
            format!("/v1/orgs/{a}/members/{owner_id}"),
            Some(json!({"role": "member"})),
            403,
        ),
        (
            Method::DELETE,
            format!("/v1/orgs/{a}/members/{owner_id}"),
            None,
            403,
        ),
        (
            Method::POST,
            format!("/v1/orgs/{a}/roles"),
            Some(json!({"name": "Q", "permissions": []})),
            403,
        ),
        (Method::GET, format!("/v1/orgs/{a}/roles"), None, 200),
        (Method::GET, format!("/v1/orgs/{a}/roles/{role}"), None, 200),
        (
            Method::PATCH,
            format!("/v1/orgs/{a}/roles/{role}"),
            Some(json!({"name": "Q"})),
            403,
        ),
        (
            Method::DELETE,
            format!("/v1/orgs/{a}/roles/{role}"),
            None,
            403,
        ),
        (
            Method::POST,
            format!("/v1/orgs/{a}/invitations"),
            Some(json!({"email": "q@example.com", "role": "member"})),
            403,
        ),
        (Method::GET, format!("/v1/orgs/{a}/invitations"), None, 403),
        (
            Method::DELETE,
            format!("/v1/orgs/{a}/invitations/{inv}"),
            None,
            403,
        ),
        (
            Method::POST,
            format!("/v1/orgs/{a}/invitations/{inv}/resend"),
            None,
            403,
        ),
        (
            Method::POST,
            format!("/v1/orgs/{a}/api-keys"),
            Some(json!({"name": "Z", "scopes": ["org:read"]})),
            403,
        ),
        (Method::GET, format!("/v1/orgs/{a}/api-keys"), None, 200),
        (
            Method::GET,
            format!("/v1/orgs/{a}/api-keys/{key}"),
            None,
            200,
        ),
        (
            Method::POST,
            format!("/v1/orgs/{a}/api-keys/{key}/rotate"),
            None,
            403,
        ),
        (
            Method::DELETE,
            format!("/v1/orgs/{a}/api-keys/{key}"),
            None,
            403,
        ),
        (
            Method::POST,
            format!("/v1/orgs/{a}/data"),
            Some(json!({"name": "Z"})),
            403,
        ),
        (Method::GET, format!("/v1/orgs/{a}/data"), None, 200),
        (Method::GET, format!("/v1/orgs/{a}/data/{item}"), None, 200),
        (
            Method::DELETE,
            format!("/v1/orgs/{a}/data/{item}"),
            None,
            403,
        ),
        (
            Method::POST,
            format!("/v1/orgs/{a}/usage/events"),
            Some(json!({"events": [{"meter": "m", "idempotency_key": "k"}]})),
            403,
        ),
        (Method::GET, format!("/v1/orgs/{a}/usage"), None, 200),
        (Method::GET, format!("/v1/orgs/{a}/billing"), None, 200),
        (
            Method::POST,
            format!("/v1/orgs/{a}/billing/checkout"),
            Some(json!({"plan": "pro"})),
            403,
        ),
        (
            Method::POST,
            format!("/v1/orgs/{a}/billing/portal"),
            None,
            403,
        ),
    ];
    for (method, path, body, reader_status) in &matrix {
        let res = app.anon().send(method.clone(), path, body.clone()).await;
        assert_eq!(res.status(), 401, "anonymous {method} {path}");
        assert_problem(res, 401, "missing_credentials").await;

        let res = app
            .as_(&owner_b)
            .send(method.clone(), path, body.clone())
            .await;
        assert_eq!(res.status(), 404, "other tenant {method} {path}");
        let foreign = assert_problem(res, 404, "not_found").await;
        // Byte-for-byte the answer for an organization that does not exist.
        let missing = path.replacen(a.as_str(), &format!("org_{}", "0".repeat(32)), 1);
        let res = app
            .as_(&owner_b)
            .send(method.clone(), &missing, body.clone())
            .await;
        let absent = assert_problem(res, 404, "not_found").await;
        assert_eq!(foreign["detail"], absent["detail"], "{method} {path}");
        // B's all-powerful API key learns nothing more.
        let res = app
            .as_(key_b)
            .send(method.clone(), path, body.clone())
            .await;
        let by_key = assert_problem(res, 404, "not_found").await;
        assert_eq!(
            by_key["detail"], absent["detail"],
            "key of B: {method} {path}"
        );

        let res = app
            .as_(&reader)
            .send(method.clone(), path, body.clone())
            .await;
        assert_eq!(
            res.status().as_u16(),
            *reader_status,
            "read-only member {method} {path}"
        );
        if *reader_status == 403 {
            assert_problem(res, 403, "forbidden").await;
        }
    }

    // Objects of B named under A's URL are missing for A's owner.
    let ws_b = ws_b["id"].as_str().unwrap();
    let item_b: Value = app
        .as_(key_b)
        .post(format!("/v1/orgs/{b}/data"), json!({"name": "B's"}))
        .await
        .json()
        .await;
    let item_b = item_b["id"].as_str().unwrap();
    for method in [Method::GET, Method::DELETE] {
        let res = app
            .as_(&owner_a)
            .send(method, format!("/v1/orgs/{a}/data/{item_b}"), None)
            .await;
        assert_problem(res, 404, "not_found").await;
    }
    for (method, path) in [
        (Method::GET, format!("/v1/orgs/{a}/workspaces/{ws_b}")),
        (Method::DELETE, format!("/v1/orgs/{a}/workspaces/{ws_b}")),
        (
            Method::PUT,
            format!("/v1/orgs/{a}/workspaces/{ws_b}/members/{owner_id}"),
        ),
    ] {
        let body = (method == Method::PUT).then(|| json!({"role": "member"}));
        let res = app.as_(&owner_a).send(method.clone(), &path, body).await;
        assert_problem(res, 404, "not_found").await;
    }
    // Everything of A is intact after the whole matrix.
    let ws_list: Listed = app
        .as_(&owner_a)
        .get(format!("/v1/orgs/{a}/workspaces"))
        .await
        .json()
        .await;
    assert_eq!(ws_list.len(), 1);
    let mine: Listed = app.as_(&owner_b).get("/v1/orgs").await.json().await;
    assert_eq!(mine.len(), 1, "B's owner lists only B");

    if let tenantry::db::Db::Postgres(pool) = app.store.db() {
        for table in [
            "memberships",
            "roles",
            "invitations",
            "workspace_roles",
            "workspaces",
            "organizations",
            "api_keys",
            "data_items",
            "usage_events",
            "usage_daily",
        ] {
            let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(n, 0, "unscoped read of {table} must see nothing");
        }
    }
}

/// The two-tenant authorization fuzzer over the OpenAPI document: every operation under
/// `/v1/orgs/{org_id}`, including ones added later, called by the owner of another
/// organization and by its all-powerful API key, answers exactly as for an organization
/// that does not exist (status, code and detail), whatever the ids and the body.
async fn every_documented_org_operation_hides_other_tenants(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner_a = app.user("owner-a@example.com").await;
    let owner_b = app.user("owner-b@example.com").await;
    let a = app.org_of(&owner_a, "org-a").await;
    let b = app.org_of(&owner_b, "org-b").await;
    let key_b = all_powerful_key(&app, &owner_b, &b).await;
    let missing = format!("org_{}", "0".repeat(32));
    let spec: Value = app.spec().await;
    let mut checked = 0;
    for (template, item) in spec["paths"].as_object().unwrap() {
        if !template.starts_with("/v1/orgs/{org_id}") {
            continue;
        }
        for (method, _) in item.as_object().unwrap() {
            let method: Method = method.to_uppercase().parse().unwrap();
            // Any other id of the right shape: the organization is resolved first.
            let fill = |org: &str| crate::helpers::fill_ids(template, org);
            let body = (method != Method::GET && method != Method::DELETE).then(|| json!({}));
            for token in [&*owner_b, &*key_b] {
                let send = |org: &str| app.as_(token).send(method.clone(), fill(org), body.clone());
                let foreign = send(&a).await;
                let absent = send(&missing).await;
                let what = format!("{method} {template}");
                assert_eq!(foreign.status(), 404, "{what}");
                assert_eq!(absent.status(), 404, "{what}");
                let (mut foreign, mut absent): (Value, Value) =
                    (foreign.json().await, absent.json().await);
                foreign.as_object_mut().unwrap().remove("request_id");
                absent.as_object_mut().unwrap().remove("request_id");
                assert_eq!(
                    foreign, absent,
                    "{what}: another tenant's organization is detectable"
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 80,
        "only {checked} calls: the document lost its organization operations?"
    );
}
