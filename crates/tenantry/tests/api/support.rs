//! The operator's support tools: suspension and the support summary.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, Backend, Listed, TestApp, PASSWORD};
use crate::on_both_backends;

on_both_backends!(
    suspension_refuses_every_credential_and_pauses_jobs,
    the_support_summary_shows_a_tenant_at_a_glance,
);

/// Every documented operation under `/v1/orgs/{org_id}`, with its path filled with ids of
/// the right shape.
async fn org_operations(app: &TestApp, org: &str) -> Vec<(Method, String)> {
    let spec: Value = app.spec().await;
    let mut operations = Vec::new();
    for (template, item) in spec["paths"].as_object().unwrap() {
        if !template.starts_with("/v1/orgs/{org_id}") {
            continue;
        }
        let path = crate::helpers::fill_ids(template, org);
        for (method, _) in item.as_object().unwrap() {
            operations.push((method.to_uppercase().parse().unwrap(), path.clone()));
        }
    }
    operations
}

async fn suspension_refuses_every_credential_and_pauses_jobs(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let other = app.user("other@example.com").await;
    let a = app.org_of(&owner, "acme").await;
    let b = app.org_of(&other, "globex").await;
    let key = crate::helpers::key_with(&app, &owner, &a, &["org:read", "jobs:read"]).await;
    // The key is verified (and cached) before the suspension.
    assert_eq!(
        app.as_(&key).get(format!("/v1/orgs/{a}")).await.status(),
        200
    );
    let run_at = chrono::Utc::now() + chrono::Duration::seconds(2);
    let job: Value = app
        .as_(&owner)
        .post(
            format!("/v1/orgs/{a}/jobs"),
            json!({"type": "echo", "payload": {"message": "later"}, "run_at": run_at}),
        )
        .await
        .json()
        .await;
    let job_id = job["id"].as_str().unwrap().to_owned();
    let login = app
        .client
        .post(app.url("/v1/auth/sessions"))
        .json(&json!({"email": "owner@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 201);
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();

    let invite: Value = app
        .as_(&owner)
        .post(
            format!("/v1/orgs/{a}/invitations"),
            json!({"email": "late@example.com", "role": "member"}),
        )
        .await
        .json()
        .await;
    let late = app.user("late@example.com").await;

    let res = app
        .admin_post(
            &format!("/v1/admin/orgs/{a}/suspend"),
            &json!({"reason": "unpaid invoices"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    // Nobody joins a suspended organization through an invitation sent before.
    let joined = app
        .as_(&late)
        .post("/v1/invitations/accept", json!({"token": invite["token"]}))
        .await;
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "suspended");
    assert_problem(joined.into_inner(), 403, "org_suspended").await;
    // Suspending again changes nothing.
    let again = app
        .admin_post(&format!("/v1/admin/orgs/{a}/suspend"), &json!({}))
        .await;
    assert_eq!(again.status(), 200);

    let operations = org_operations(&app, a.as_str()).await;
    assert!(operations.len() >= 40, "{} operations", operations.len());
    for (method, path) in &operations {
        let body = (method != Method::GET && method != Method::DELETE).then(|| json!({}));
        for token in [&*owner, &*key] {
            let res = app
                .as_(token)
                .send(method.clone(), path, body.clone())
                .await;
            assert_eq!(res.status(), 403, "{method} {path}");
            assert_problem(res.into_inner(), 403, "org_suspended").await;
        }
    }
    let by_cookie = app
        .client
        .get(app.url(&format!("/v1/orgs/{a}")))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_problem(by_cookie, 403, "org_suspended").await;
    // Another tenant works on; the member still sees the organization in their list.
    assert_eq!(
        app.as_(&other).get(format!("/v1/orgs/{b}")).await.status(),
        200
    );
    let mine: Listed = app.as_(&owner).get("/v1/orgs").await.json().await;
    assert_eq!(mine[0]["status"], "suspended");
    // Unknown organizations and missing operator credentials.
    let missing = format!("org_{}", "0".repeat(32));
    let res = app
        .admin_post(&format!("/v1/admin/orgs/{missing}/suspend"), &json!({}))
        .await;
    assert_problem(res, 404, "not_found").await;
    let res = app
        .client
        .post(app.url(&format!("/v1/admin/orgs/{b}/suspend")))
        .send()
        .await
        .unwrap();
    assert_problem(res, 401, "missing_credentials").await;
    let long = "x".repeat(501);
    let res = app
        .admin_post(
            &format!("/v1/admin/orgs/{b}/suspend"),
            &json!({"reason": long}),
        )
        .await;
    assert_problem(res, 422, "validation_failed").await;

    // The operator still reads it, and the suspension is audited once.
    let org: Value = app
        .admin_get(&format!("/v1/admin/orgs/{a}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(org["status"], "suspended");
    let audit: Value = app
        .admin_get(&format!(
            "/v1/admin/orgs/{a}/audit-events?action=organization.suspended"
        ))
        .await
        .json()
        .await
        .unwrap();
    let records = audit["data"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{audit}");
    assert_eq!(records[0]["actor"]["type"], "operator", "{audit}");
    assert_eq!(records[0]["metadata"]["reason"], "unpaid invoices");

    // Its due job waits while it is suspended…
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let summary: Value = app
        .admin_get(&format!("/v1/admin/orgs/{a}/summary"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(summary["organization"]["status"], "suspended");
    let waiting = app
        .store
        .get_job(
            &tenantry::auth::TenantCtx::for_tests(a.as_str().parse().unwrap()),
            job_id.parse().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(waiting.status.as_str(), "available");

    // …and runs once the organization is reactivated, when every credential works again.
    let res = app
        .admin_post(&format!("/v1/admin/orgs/{a}/reactivate"), &json!({}))
        .await;
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "active");
    assert_eq!(
        app.as_(&owner).get(format!("/v1/orgs/{a}")).await.status(),
        200
    );
    assert_eq!(
        app.as_(&key).get(format!("/v1/orgs/{a}")).await.status(),
        200
    );
    let mut status = Value::Null;
    for _ in 0..200 {
        let job: Value = app
            .as_(&key)
            .get(format!("/v1/orgs/{a}/jobs/{job_id}"))
            .await
            .json()
            .await;
        status = job["status"].clone();
        if status == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "succeeded");
}

async fn the_support_summary_shows_a_tenant_at_a_glance(backend: Backend) {
    let Some(mut app) = TestApp::on(backend).await else {
        return;
    };
    // A dead job and a failing one stay behind on purpose.
    app.expect_leftover_jobs();
    let owner = app.user("owner@example.com").await;
    let a = app.org_of(&owner, "acme").await;
    let other = app.user("other@example.com").await;
    let b = app.org_of(&other, "globex").await;
    let res = app
        .admin_put(&format!("/v1/admin/orgs/{a}/plan"), &json!({"plan": "pro"}))
        .await;
    assert_eq!(res.status(), 200);
    app.member(&a, "admin@example.com", "admin").await;
    app.member(&a, "reader@example.com", "readonly").await;
    app.member(&a, "reader2@example.com", "readonly").await;
    let res = app
        .as_(&owner)
        .post(
            format!("/v1/orgs/{a}/invitations"),
            json!({"email": "new@example.com", "role": "member"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let key = crate::helpers::key_with(&app, &owner, &a, &["data:read"]).await;
    let doomed: Value = app
        .as_(&owner)
        .post(
            format!("/v1/orgs/{a}/api-keys"),
            json!({"name": "old", "scopes": ["org:read"]}),
        )
        .await
        .json()
        .await;
    let res = app
        .as_(&owner)
        .delete(format!(
            "/v1/orgs/{a}/api-keys/{}",
            doomed["id"].as_str().unwrap()
        ))
        .await;
    assert!(res.status().is_success());
    for _ in 0..3 {
        let res = app.as_(&key).get(format!("/v1/orgs/{a}/data")).await;
        assert_eq!(res.status(), 200);
    }
    let jobs = format!("/v1/orgs/{a}/jobs");
    let dead: Value = app
        .as_(&owner)
        .post(
            &jobs,
            json!({"type": "echo", "payload": {"message": "m", "fail_attempts": 5}, "max_attempts": 1}),
        )
        .await
        .json()
        .await;
    let failing: Value = app
        .as_(&owner)
        .post(
            &jobs,
            json!({"type": "echo", "payload": {"message": "m", "fail_attempts": 50}, "max_attempts": 50}),
        )
        .await
        .json()
        .await;

    let mut summary = Value::Null;
    for _ in 0..200 {
        summary = app
            .admin_get(&format!("/v1/admin/orgs/{a}/summary"))
            .await
            .json()
            .await
            .unwrap();
        if summary["jobs_dead"] == 1 && summary["jobs_failing"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(summary["organization"]["id"], a.as_str());
    assert_eq!(summary["billing"]["plan"], "pro");
    assert_eq!(summary["billing"]["status"], "none");
    assert_eq!(
        summary["members_by_role"],
        json!({"admin": 1, "owner": 1, "readonly": 2})
    );
    assert_eq!(summary["pending_invitations"], 1);
    assert_eq!(summary["api_keys_active"], 1);
    assert_eq!(summary["api_keys_inactive"], 1);
    assert!(
        summary["billing"]["usage"]["used"].as_i64().unwrap() >= 3,
        "{summary}"
    );
    assert_eq!(summary["jobs_dead"], 1, "{summary}");
    assert_eq!(summary["dead_jobs"][0]["id"], dead["id"]);
    assert_eq!(summary["jobs_failing"], 1, "{summary}");
    assert_eq!(summary["failing_jobs"][0]["id"], failing["id"]);
    assert!(summary["failing_jobs"][0]["last_error"].is_string());
    let recent = summary["recent_audit_events"].as_array().unwrap();
    assert_eq!(recent.len(), 10);
    assert!(recent
        .iter()
        .all(|r| r["org_id"] == a.as_str() || r["org_id"].is_null()));
    assert_eq!(
        summary["last_activity_at"], recent[0]["created_at"],
        "{summary}"
    );

    // The original product's path answers the same; another organization's summary holds
    // only its own figures; an unknown one is 404 and the operator token is required.
    let legacy: Value = app
        .admin_get(&format!("/admin/orgs/{a}/summary"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(legacy["members_by_role"], summary["members_by_role"]);
    assert_eq!(legacy["organization"], summary["organization"]);
    let other: Value = app
        .admin_get(&format!("/v1/admin/orgs/{b}/summary"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(other["members_by_role"], json!({"owner": 1}));
    assert_eq!(other["jobs_dead"], 0);
    assert_eq!(other["api_keys_active"], 0);
    let missing = format!("org_{}", "0".repeat(32));
    assert_problem(
        app.admin_get(&format!("/v1/admin/orgs/{missing}/summary"))
            .await,
        404,
        "not_found",
    )
    .await;
    let res = app
        .client
        .get(app.url(&format!("/admin/orgs/{a}/summary")))
        .bearer_auth(&owner.token)
        .send()
        .await
        .unwrap();
    assert_problem(res, 401, "invalid_token").await;
}
