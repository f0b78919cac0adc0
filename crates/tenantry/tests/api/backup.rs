//! PostgreSQL backups as `docs/operations.md` documents them: `pg_dump --format=custom`
//! taken while writes go on, `pg_restore` into an empty database of the same server, and
//! a service started on the copy finds its schema current, its audit chains intact and
//! its API keys, sessions and operator token working.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{key_with, Backend, TestApp, TestDatabase};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_dump_taken_while_serving_restores_whole() {
    let Some(app) = TestApp::on(Backend::Postgres).await else {
        return;
    };
    let Some(bin) = crate::helpers::postgres_bindir() else {
        assert!(
            std::env::var("TENANTRY_TEST_REQUIRE_POSTGRES").is_err(),
            "pg_dump is required with the PostgreSQL suite"
        );
        eprintln!("SKIPPED PostgreSQL dump test: no pg_dump found");
        return;
    };
    let owner = app.user("owner@example.com").await;
    let org = app.org_of(&owner, "acme").await;
    let key = key_with(&app, &owner, &org, &["data:read", "data:write"]).await;
    let writer = {
        let (client, url, key) = (
            app.client.clone(),
            app.url(&format!("/v1/orgs/{org}/data")),
            key.clone(),
        );
        tokio::spawn(async move {
            for i in 0..150 {
                let res = client
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&json!({"name": format!("item {i}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 201);
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;

    // The dump, as the schema owner, while the writer runs.
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("tenantry.dump");
    // libpq's form of the URL (without sqlx's own parameters).
    let libpq = |url: &str| {
        let mut url = url::Url::parse(url).unwrap();
        url.set_query(None);
        url.to_string()
    };
    let out = Command::new(bin.join("pg_dump"))
        .args(["--format=custom", "--file"])
        .arg(&dump)
        .arg(libpq(&app.db.url))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    writer.await.unwrap();

    // Restored into an empty database of the same server (where the service role exists).
    let target = TestDatabase::create(Backend::Postgres).await.unwrap();
    let out = Command::new(bin.join("pg_restore"))
        .args(["--exit-on-error", "--dbname"])
        .arg(libpq(&target.url))
        .arg(&dump)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Same secrets as the original deployment, database pointed at the copy.
    let Some(restored) = TestApp::on(Backend::Postgres)
        .with_vars(|v| {
            for secret in [
                "SESSION_SECRET",
                "INTERNAL_ADMIN_TOKEN",
                "JWT_SIGNING_SECRET",
            ] {
                v.insert(secret.into(), app.vars[secret].clone());
            }
            v.insert("DATABASE_URL".into(), target.url.clone());
            v.insert("DATABASE_MIGRATION_URL".into(), target.url.clone());
        })
        .await
    else {
        return;
    };
    let verdict: Value = restored
        .admin_get(&format!("/v1/admin/orgs/{org}/audit-events/verify"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(verdict["valid"], true, "{verdict}");
    let platform: Value = restored
        .admin_get("/v1/admin/audit-events/verify")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(platform["valid"], true, "{platform}");

    // The key and the signed-in user work on the copy, which holds every item the dump's
    // snapshot saw, and takes new writes on the same chain.
    let res = restored
        .as_(&key)
        .get(format!("/v1/orgs/{org}/data?limit=200"))
        .await;
    assert_eq!(res.status(), 200, "the API key works on the restored copy");
    let listed: Value = res.json().await;
    let restored_items = listed["data"].as_array().unwrap().len();
    assert!(
        restored_items > 0,
        "items written before the dump are there"
    );
    let res = restored.as_(&owner).get("/v1/orgs").await;
    assert_eq!(res.status(), 200, "the access token still verifies");
    let res = restored
        .as_(&key)
        .post(
            format!("/v1/orgs/{org}/data"),
            json!({"name": "after restore"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let verdict: Value = restored
        .admin_get(&format!("/v1/admin/orgs/{org}/audit-events/verify"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        verdict["valid"], true,
        "the chain goes on after restore: {verdict}"
    );
    assert!(
        verdict["checked"].as_i64().unwrap() + verdict["unsealed"].as_i64().unwrap()
            > i64::try_from(restored_items).unwrap(),
        "{verdict}"
    );
}
