//! The audit log: written with the change, hash-chained, append-only, tamper-evident.

use serde_json::Value;
use sqlx::Connection;
use tenantry::db::Db;

use crate::helpers::{Backend, Listed, TestApp};
use crate::on_both_backends;

on_both_backends!(
    creation_is_audited_with_request_facts,
    chain_verifies_and_detects_tampering,
    audit_rows_cannot_be_changed,
);

async fn creation_is_audited_with_request_facts(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let res = app
        .client
        .post(app.url("/v1/admin/orgs"))
        .bearer_auth(&app.admin_token)
        .header("x-request-id", "req-audit-1")
        .header("user-agent", "audit-test/1.0")
        .json(&serde_json::json!({"name": "Initech", "slug": "initech"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let org: Value = res.json().await.unwrap();
    let id = org["id"].as_str().unwrap();
    let events: Listed = app
        .admin_get(&format!("/v1/admin/orgs/{id}/audit-events"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event["action"], "organization.created");
    assert_eq!(event["seq"], 1);
    assert_eq!(event["actor"]["type"], "operator");
    assert_eq!(event["target_type"], "organization");
    assert_eq!(event["target_id"], id);
    assert_eq!(event["metadata"]["slug"], "initech");
    assert_eq!(event["request_id"], "req-audit-1");
    assert_eq!(event["user_agent"], "audit-test/1.0");
    assert_eq!(event["ip"], "127.0.0.1");
    assert_eq!(event["prev_hash"], "0".repeat(64));
    let filtered: Listed = app
        .admin_get(&format!(
            "/v1/admin/orgs/{id}/audit-events?action=workspace.created"
        ))
        .await
        .json()
        .await
        .unwrap();
    assert!(filtered.is_empty());
}

async fn chain_verifies_and_detects_tampering(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let org = app.create_org("chain").await;
    let id = org["id"].as_str().unwrap();
    let org_id: tenantry::ids::OrgId = id.parse().unwrap();
    let ctx = tenantry::auth::TenantCtx::for_tests(org_id);
    for slug in ["one", "two", "three"] {
        let name = tenantry::domain::DisplayName::parse(slug).unwrap();
        app.store
            .create_workspace(&ctx, name, tenantry::domain::Slug::parse(slug).unwrap())
            .await
            .unwrap();
    }
    let report: Value = app
        .admin_get(&format!("/v1/admin/orgs/{id}/audit-events/verify"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["checked"], 4);
    let events: Listed = app
        .admin_get(&format!("/v1/admin/orgs/{id}/audit-events"))
        .await
        .json()
        .await
        .unwrap();
    for pair in events.windows(2) {
        assert_eq!(pair[1]["prev_hash"], pair[0]["hash"], "linked");
    }
    assert_eq!(report["head_hash"], events[3]["hash"]);

    // Tamper with record 2 as the database owner, bypassing the append-only guard.
    tamper_with_second_record(&app).await;
    let report: Value = app
        .admin_get(&format!("/v1/admin/orgs/{id}/audit-events/verify"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["valid"], false, "{report}");
    assert_eq!(report["first_invalid_seq"], 2);
}

async fn tamper_with_second_record(app: &TestApp) {
    match app.db.backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&app.db.url).await.unwrap();
            sqlx::query("DROP TRIGGER audit_events_no_update")
                .execute(&mut conn)
                .await
                .unwrap();
            sqlx::query("UPDATE audit_events SET metadata = '{\"forged\":true}' WHERE seq = 2")
                .execute(&mut conn)
                .await
                .unwrap();
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
            sqlx::query("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only")
                .execute(&mut conn)
                .await
                .unwrap();
            sqlx::query("UPDATE audit_events SET metadata = '{\"forged\":true}' WHERE seq = 2")
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }
}

async fn audit_rows_cannot_be_changed(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    app.create_org("immutable").await;
    match app.store.db() {
        Db::Sqlite(_) => {
            let mut conn = sqlx::SqliteConnection::connect(&app.db.url).await.unwrap();
            let err = sqlx::query("UPDATE audit_events SET action = 'x'")
                .execute(&mut conn)
                .await
                .unwrap_err();
            assert!(err.to_string().contains("append-only"), "{err}");
            let err = sqlx::query("DELETE FROM audit_events")
                .execute(&mut conn)
                .await
                .unwrap_err();
            assert!(err.to_string().contains("append-only"), "{err}");
        }
        Db::Postgres(service_pool) => {
            // The service role has no right to change audit rows at all.
            let err = sqlx::query("UPDATE audit_events SET action = 'x'")
                .execute(service_pool)
                .await
                .unwrap_err();
            assert!(err.to_string().contains("permission denied"), "{err}");
            // Even the owner (a superuser here) is stopped by the trigger.
            let mut owner = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
            for sql in [
                "UPDATE audit_events SET action = 'x'",
                "DELETE FROM audit_events",
                "TRUNCATE audit_events",
            ] {
                let err = sqlx::query(sql).execute(&mut owner).await.unwrap_err();
                assert!(err.to_string().contains("append-only"), "{sql}: {err}");
            }
            let count: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events")
                .fetch_one(&mut owner)
                .await
                .unwrap();
            assert_eq!(count, 1, "the record survived every attempt");
        }
    }
}
