//! Stored values that do not decode: a 500 for the request that reads them (logged once),
//! never a silent default, and never a stop for other tenants' work.

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::Connection;

use crate::helpers::{assert_problem, Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    undecodable_values_are_server_errors_not_defaults,
    a_corrupt_job_payload_fails_only_its_own_job,
);

/// Runs `sql` as the database owner, beside the application's own connections.
async fn as_owner(app: &TestApp, sql: &str) {
    match app.db.backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&app.db.url).await.unwrap();
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
    }
}

/// Reads one text value as the database owner.
async fn read_as_owner(app: &TestApp, sql: &str) -> Option<String> {
    match app.db.backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&app.db.url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
        }
    }
}

async fn undecodable_values_are_server_errors_not_defaults(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let org = app.org_of(&owner, "acme").await;
    let item: Value = app
        .as_(&owner)
        .post(
            format!("/v1/orgs/{org}/data"),
            json!({"name": "one", "value": {"a": 1}}),
        )
        .await
        .json()
        .await;
    let role: Value = app
        .as_(&owner)
        .post(
            format!("/v1/orgs/{org}/roles"),
            json!({"name": "Viewer", "permissions": ["org:read"]}),
        )
        .await
        .json()
        .await;
    let (item, role) = (item["id"].as_str().unwrap(), role["id"].as_str().unwrap());

    as_owner(&app, "UPDATE data_items SET value = 'not json'").await;
    as_owner(&app, "UPDATE roles SET permissions = '[\"org:fly\"]'").await;

    let read = app
        .as_(&owner)
        .get(format!("/v1/orgs/{org}/data/{item}"))
        .await;
    let problem = assert_problem(read, 500, "internal_error").await;
    assert!(problem.get("detail").is_none(), "{problem}");
    let list = app.as_(&owner).get(format!("/v1/orgs/{org}/data")).await;
    assert_problem(list, 500, "internal_error").await;
    let role_read = app
        .as_(&owner)
        .get(format!("/v1/orgs/{org}/roles/{role}"))
        .await;
    assert_problem(role_read, 500, "internal_error").await;
    // What still decodes is still served.
    let org_read = app.as_(&owner).get(format!("/v1/orgs/{org}")).await;
    assert_eq!(org_read.status(), 200);
}

async fn a_corrupt_job_payload_fails_only_its_own_job(backend: Backend) {
    let Some(mut app) = TestApp::on(backend).await else {
        return;
    };
    app.expect_leftover_jobs();
    let a = app.user("a@example.com").await;
    let b = app.user("b@example.com").await;
    let org_a = app.org_of(&a, "org-a").await;
    let org_b = app.org_of(&b, "org-b").await;
    let later = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let enqueue = |token: &str, org: String| {
        let token = token.to_owned();
        let later = later.clone();
        let app = &app;
        async move {
            let job: Value = app
                .as_(&token)
                .post(
                    format!("/v1/orgs/{org}/jobs"),
                    json!({"type": "echo", "payload": {"n": 1}, "run_at": later, "max_attempts": 1}),
                )
                .await
                .json()
                .await;
            job["id"].as_str().unwrap().to_owned()
        }
    };
    let broken = enqueue(&a, org_a.to_string()).await;
    let fine = enqueue(&b, org_b.to_string()).await;
    let uuid_of = |id: &str| uuid::Uuid::parse_str(id.trim_start_matches("job_")).unwrap();
    let broken_uuid = uuid_of(&broken);
    let sql_id = match app.db.backend {
        Backend::Sqlite => format!("X'{}'", broken_uuid.simple()),
        Backend::Postgres => format!("'{broken_uuid}'"),
    };
    as_owner(
        &app,
        &format!("UPDATE jobs SET payload = '{{not json' WHERE id = {sql_id}"),
    )
    .await;

    let mut fine_status = Value::Null;
    for _ in 0..200 {
        let job: Value = app
            .as_(&b)
            .get(format!("/v1/orgs/{org_b}/jobs/{fine}"))
            .await
            .json()
            .await;
        fine_status = job["status"].clone();
        if fine_status == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fine_status, "succeeded", "the other tenant's job ran");
    let mut broken_status = None;
    for _ in 0..100 {
        broken_status = read_as_owner(
            &app,
            &format!("SELECT status FROM jobs WHERE id = {sql_id}"),
        )
        .await;
        if broken_status.as_deref() == Some("dead") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(broken_status.as_deref(), Some("dead"));
    let error = read_as_owner(
        &app,
        &format!("SELECT last_error FROM jobs WHERE id = {sql_id}"),
    )
    .await
    .unwrap_or_default();
    assert!(error.contains("not JSON"), "{error}");
}
