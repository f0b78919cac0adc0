//! Cross-cutting HTTP behaviour: health, problems, request ids, limits, docs, metrics.

use serde_json::json;

use crate::helpers::{assert_problem, Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    health_and_ready,
    ready_checks_redis_when_configured,
    unknown_route_and_method_are_problems,
    malformed_and_mistyped_json_are_4xx_problems,
    oversized_body_is_413,
    request_id_is_returned_and_propagated,
    docs_are_served_without_a_cdn,
    metrics_count_requests_by_route,
);

async fn health_and_ready(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let res = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap()["status"],
        "ok"
    );
    let res = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["checks"]["database"], "ok");
    assert_eq!(body["checks"]["redis"], "not_configured");
}

async fn ready_checks_redis_when_configured(backend: Backend) {
    let redis = std::env::var("REDIS_TEST_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let Some(app) = TestApp::on(backend)
        .with_vars(|v| {
            v.insert("REDIS_URL".into(), redis);
        })
        .await
    else {
        return;
    };
    let body: serde_json::Value = app
        .client
        .get(app.url("/ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["checks"]["redis"], "ok", "{body}");

    let Some(app) = TestApp::on(backend)
        .with_vars(|v| {
            v.insert("REDIS_URL".into(), "redis://127.0.0.1:1".into());
        })
        .await
    else {
        return;
    };
    let res = app.client.get(app.url("/ready")).send().await.unwrap();
    let body = assert_problem(res, 503, "not_ready").await;
    assert_eq!(body["checks"]["database"], "ok");
    assert!(
        body["checks"]["redis"]
            .as_str()
            .unwrap()
            .starts_with("error"),
        "{body}"
    );
}

async fn unknown_route_and_method_are_problems(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let res = app
        .client
        .get(app.url("/no/such/route"))
        .send()
        .await
        .unwrap();
    assert_problem(res, 404, "not_found").await;
    let res = app.client.delete(app.url("/health")).send().await.unwrap();
    assert_problem(res, 405, "method_not_allowed").await;
}

async fn malformed_and_mistyped_json_are_4xx_problems(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let post = |body: &'static str, content_type: &'static str| {
        app.client
            .post(app.url("/v1/admin/orgs"))
            .bearer_auth(&app.admin_token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let body = assert_problem(
        post("{\"name\": ", "application/json").await.unwrap(),
        400,
        "malformed_json",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("parse"), "{body}");
    let body = assert_problem(
        post("{\"name\": 5}", "application/json").await.unwrap(),
        422,
        "invalid_body",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("name"), "{body}");
    assert_problem(
        post(
            "{\"name\":\"a\",\"slug\":\"ab\",\"x\":1}",
            "application/json",
        )
        .await
        .unwrap(),
        422,
        "invalid_body",
    )
    .await;
    assert_problem(
        post("{}", "text/plain").await.unwrap(),
        415,
        "unsupported_media_type",
    )
    .await;
    let res = app
        .admin_post("/v1/admin/orgs", &json!({"name": "Acme", "slug": "-bad-"}))
        .await;
    let body = assert_problem(res, 422, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "slug");
    // Nothing was written by any of these.
    let orgs: crate::helpers::Listed = app.admin_get("/v1/admin/orgs").await.json().await.unwrap();
    assert!(orgs.is_empty());
}

async fn oversized_body_is_413(backend: Backend) {
    let Some(app) = TestApp::on(backend)
        .with_vars(|v| {
            v.insert("BODY_LIMIT_BYTES".into(), "1024".into());
        })
        .await
    else {
        return;
    };
    let name = "x".repeat(4096);
    let res = app
        .admin_post("/v1/admin/orgs", &json!({"name": name, "slug": "big"}))
        .await;
    assert_problem(res, 413, "payload_too_large").await;
}

async fn request_id_is_returned_and_propagated(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let res = app.client.get(app.url("/health")).send().await.unwrap();
    let generated = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");
    let res = app
        .client
        .get(app.url("/missing"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "trace-me-42");
    let body = assert_problem(res, 404, "not_found").await;
    assert_eq!(body["request_id"], "trace-me-42");
}

async fn docs_are_served_without_a_cdn(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let res = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "swagger page");
    assert!(!html.contains("https://"), "no external asset in the page");
    let res = app
        .client
        .get(app.url("/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "vendored bundle served locally");
    assert!(res.bytes().await.unwrap().len() > 100_000);
    let spec: serde_json::Value = app.spec().await;
    assert_eq!(spec["openapi"], "3.1.0");
    assert!(spec["paths"]["/v1/admin/orgs"]["post"].is_object());
}

async fn metrics_count_requests_by_route(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let org = app.create_org("metered").await;
    let id = org["id"].as_str().unwrap();
    app.admin_get(&format!("/v1/admin/orgs/{id}")).await;
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(r#"route="/v1/admin/orgs/{org_id}""#),
        "route template, not raw path"
    );
    assert!(!text.contains(id), "no ids in metric labels");
    assert!(
        text.contains("http_request_duration_seconds_bucket"),
        "histogram"
    );
    assert!(text.contains("db_pool_connections"));
}
