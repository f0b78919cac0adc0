//! The operator API.

use serde_json::{json, Value};

use crate::helpers::{assert_problem, Backend, Listed, TestApp};
use crate::on_both_backends;

on_both_backends!(
    operator_token_is_required,
    creates_and_reads_organizations,
    slugs_are_unique_case_insensitively,
    unknown_and_malformed_ids_are_404,
    lists_organizations_in_pages,
);

async fn operator_token_is_required(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let res = app
        .client
        .get(app.url("/v1/admin/orgs"))
        .send()
        .await
        .unwrap();
    assert_problem(res, 401, "missing_credentials").await;
    let res = app
        .client
        .get(app.url("/v1/admin/orgs"))
        .bearer_auth("wrong-token")
        .send()
        .await
        .unwrap();
    assert_problem(res, 401, "invalid_token").await;
    let res = app
        .client
        .get(app.url("/v1/admin/orgs"))
        .header("authorization", format!("Basic {}", app.admin_token))
        .send()
        .await
        .unwrap();
    assert_problem(res, 401, "missing_credentials").await;
    let res = app
        .client
        .post(app.url("/v1/admin/orgs"))
        .json(&json!({"name": "A", "slug": "aa"}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 401, "missing_credentials").await;
}

async fn creates_and_reads_organizations(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let res = app
        .admin_post(
            "/v1/admin/orgs",
            &json!({"name": "  Acme Inc ", "slug": "Acme"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let org: Value = res.json().await.unwrap();
    assert_eq!(org["name"], "Acme Inc");
    assert_eq!(org["slug"], "acme");
    assert_eq!(org["plan"], "free");
    assert_eq!(org["status"], "active");
    let id = org["id"].as_str().unwrap();
    assert!(id.starts_with("org_"));
    let fetched: Value = app
        .admin_get(&format!("/v1/admin/orgs/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fetched, org);
}

async fn slugs_are_unique_case_insensitively(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    app.create_org("globex").await;
    let res = app
        .admin_post(
            "/v1/admin/orgs",
            &json!({"name": "Other", "slug": "GLOBEX"}),
        )
        .await;
    assert_problem(res, 409, "slug_taken").await;
    let orgs: Listed = app.admin_get("/v1/admin/orgs").await.json().await.unwrap();
    assert_eq!(orgs.len(), 1, "the losing insert left nothing behind");
}

async fn unknown_and_malformed_ids_are_404(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let missing = format!("org_{}", "0".repeat(32));
    for path in [
        format!("/v1/admin/orgs/{missing}"),
        "/v1/admin/orgs/not-an-id".to_owned(),
        format!("/v1/admin/orgs/ws_{}", "1".repeat(32)),
        format!("/v1/admin/orgs/{missing}/audit-events"),
    ] {
        assert_problem(app.admin_get(&path).await, 404, "not_found").await;
    }
}

async fn lists_organizations_in_pages(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            app.create_org(&format!("org-{i}")).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let first: Listed = app
        .admin_get("/v1/admin/orgs?limit=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first.len(), 2);
    let cursor = first
        .next_cursor
        .as_deref()
        .expect("a full page names the next");
    assert_eq!(cursor, first[1]["id"].as_str().unwrap());
    let rest: Listed = app
        .admin_get(&format!("/v1/admin/orgs?cursor={cursor}&limit=50"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rest.next_cursor, None, "the last page");
    // The name the original products use still works.
    let legacy: Listed = app
        .admin_get(&format!("/v1/admin/orgs?after={cursor}&limit=50"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(legacy.len(), rest.len());
    let mut seen: Vec<String> = first
        .iter()
        .chain(rest.iter())
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen.len(), 5);
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids);
    let res = app.admin_get("/v1/admin/orgs?limit=abc").await;
    assert_problem(res, 400, "invalid_query").await;
}
