//! API keys: creation with scopes, authentication as the key's organization, scope
//! enforcement, invalid / revoked / expired / cross-organization keys, rotation with a grace
//! period, audit records, last use.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, create_key, key_with, Backend, Listed, TestApp};
use crate::on_both_backends;

on_both_backends!(
    a_key_acts_for_its_org_within_its_scopes,
    new_keys_hold_only_catalog_permissions_the_creator_holds,
    managing_a_key_needs_all_its_scopes,
    invalid_revoked_expired_and_foreign_keys_are_refused,
    rotation_keeps_the_old_secret_for_the_grace_period,
);

/// How many audit records of `org` have `action`.
async fn audited(app: &TestApp, token: &str, org: &str, action: &str) -> usize {
    let events: Value = app
        .as_(token)
        .get(format!("/v1/orgs/{org}/audit-events"))
        .await
        .json()
        .await;
    events["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action)
        .count()
}

async fn a_key_acts_for_its_org_within_its_scopes(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let created = create_key(
        &app,
        &owner,
        &acme,
        json!({"name": "CI", "scopes": ["data:read", "data:write", "data:read"]}),
    )
    .await;
    let secret = created["secret"].as_str().unwrap();
    let prefix = created["prefix"].as_str().unwrap();
    // `<prefix>_<random>`: 64 hex digits (256 bits) after the public prefix.
    assert!(prefix.starts_with("tk_") && secret.starts_with(&format!("{prefix}_")));
    assert_eq!(secret.len() - prefix.len() - 1, 64);
    assert_eq!(created["scopes"], json!(["data:read", "data:write"]));
    assert_eq!(created["org_id"], acme.as_str());

    // The secret is never shown again, nor stored.
    let listed: Listed = app
        .as_(&owner)
        .get(format!("/v1/orgs/{acme}/api-keys"))
        .await
        .json()
        .await;
    assert_eq!(listed.len(), 1);
    assert!(listed[0].get("secret").is_none());
    assert!(!listed[0].to_string().contains(&secret[prefix.len()..]));
    if let tenantry::db::Db::Sqlite(pool) = app.store.db() {
        let stored: (String, String) = sqlx::query_as("SELECT prefix, secret_hash FROM api_keys")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(stored.0, prefix);
        assert_eq!(stored.1.len(), 64, "a SHA-256 hex digest");
        assert!(!stored.1.contains(&secret[prefix.len() + 1..]));
    }

    // The key reads and writes the example resource of its organization.
    let res = app
        .as_(secret)
        .post(
            format!("/v1/orgs/{acme}/data"),
            json!({"name": "first", "value": {"n": 1}}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let item: Value = res.json().await;
    let res = app
        .as_(secret)
        .get(format!(
            "/v1/orgs/{acme}/data/{}",
            item["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await["value"], json!({"n": 1}));

    // Outside its scopes: 403 naming the permission.
    for (method, path) in [
        (Method::GET, format!("/v1/orgs/{acme}/members")),
        (Method::GET, format!("/v1/orgs/{acme}/api-keys")),
        (Method::GET, format!("/v1/orgs/{acme}/usage")),
    ] {
        let res = app.as_(secret).send(method, &path, None).await;
        assert_problem(res, 403, "forbidden").await;
    }
    // Keys are not users.
    let res = app.as_(secret).get("/v1/me").await;
    assert_problem(res, 401, "invalid_token").await;

    // Audit: the key's creation by the owner, the data item by the key.
    let events: Value = app
        .as_(&owner)
        .get(format!("/v1/orgs/{acme}/audit-events"))
        .await
        .json()
        .await;
    let events = events["data"].as_array().unwrap();
    let find = |action: &str| {
        events
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("{action} audited"))
            .clone()
    };
    assert_eq!(find("api_key.created")["actor"]["type"], "user");
    let by_key = find("data_item.created");
    assert_eq!(by_key["actor"]["type"], "api_key");
    assert_eq!(by_key["actor"]["id"], created["id"]);
    assert_eq!(by_key["target_type"], "data_item");
    assert!(
        by_key["target_id"].as_str().unwrap().starts_with("item_"),
        "{by_key}"
    );

    // Last use is recorded (batched with usage).
    let mut last_used = Value::Null;
    for _ in 0..50 {
        let key: Value = app
            .as_(&owner)
            .get(format!(
                "/v1/orgs/{acme}/api-keys/{}",
                created["id"].as_str().unwrap()
            ))
            .await
            .json()
            .await;
        last_used = key["last_used_at"].clone();
        if !last_used.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(last_used.is_string(), "last_used_at recorded");
}

async fn new_keys_hold_only_catalog_permissions_the_creator_holds(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;

    // Scopes must be catalog permissions the creator holds.
    let res = app
        .as_(&owner)
        .post(
            format!("/v1/orgs/{acme}/api-keys"),
            json!({"name": "x", "scopes": ["data:destroy"]}),
        )
        .await;
    assert_problem(res, 422, "validation_failed").await;
    let res = app
        .as_(&owner)
        .post(
            format!("/v1/orgs/{acme}/api-keys"),
            json!({"name": "x", "scopes": []}),
        )
        .await;
    assert_problem(res, 422, "validation_failed").await;
    let res = app
        .as_(&owner)
        .post(
            format!("/v1/orgs/{acme}/api-keys"),
            json!({"name": "x", "scopes": ["data:read"], "expires_at": "2001-01-01T00:00:00Z"}),
        )
        .await;
    assert_problem(res, 422, "validation_failed").await;
    let admin = app.member(&acme, "admin@example.com", "admin").await;
    let res = app
        .as_(&admin)
        .post(
            format!("/v1/orgs/{acme}/api-keys"),
            json!({"name": "x", "scopes": ["org:delete"]}),
        )
        .await;
    let body = assert_problem(res, 403, "forbidden").await;
    assert_eq!(body["permission"], "org:delete");
    // A key's own rate limit may be stricter than the deployment's, never looser.
    let res = app.as_(&owner).post(format!("/v1/orgs/{acme}/api-keys"), json!({"name": "x", "scopes": ["data:read"], "rate_limit": {"limit": 4_000_000_000u64, "window_sec": 1}}))
    .await;
    assert_problem(res, 422, "validation_failed").await;
    // A key that may manage keys cannot mint one stronger than itself.
    let manager = key_with(&app, &owner, &acme, &["api_keys:write", "data:read"]).await;
    let res = app
        .as_(&manager)
        .post(
            format!("/v1/orgs/{acme}/api-keys"),
            json!({"name": "x", "scopes": ["data:write"]}),
        )
        .await;
    assert_problem(res, 403, "forbidden").await;
    let res = app
        .as_(&manager)
        .post(
            format!("/v1/orgs/{acme}/api-keys"),
            json!({"name": "x", "scopes": ["data:read"]}),
        )
        .await;
    assert_eq!(res.status(), 201);
    assert!(res.json::<Value>().await["created_by"].is_null());
}

async fn managing_a_key_needs_all_its_scopes(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let admin = app.member(&acme, "admin@example.com", "admin").await;

    // Managing a key needs its scopes too: an admin cannot revoke or rotate (and so learn)
    // a key holding `org:delete`.
    let strong = create_key(
        &app,
        &owner,
        &acme,
        json!({"name": "strong", "scopes": ["org:delete", "data:read"]}),
    )
    .await;
    let strong_id = strong["id"].as_str().unwrap();
    for (method, path) in [
        (
            Method::POST,
            format!("/v1/orgs/{acme}/api-keys/{strong_id}/rotate"),
        ),
        (
            Method::DELETE,
            format!("/v1/orgs/{acme}/api-keys/{strong_id}"),
        ),
    ] {
        let res = app.as_(&admin).send(method, &path, None).await;
        let body = assert_problem(res, 403, "forbidden").await;
        assert_eq!(body["permission"], "org:delete");
    }
    let res = app
        .as_(strong["secret"].as_str().unwrap())
        .get(format!("/v1/orgs/{acme}/data"))
        .await;
    assert_eq!(res.status(), 200, "the strong key is untouched");
}

async fn invalid_revoked_expired_and_foreign_keys_are_refused(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let other_owner = app.user("other@example.com").await;
    let other = app.org_of(&other_owner, "other").await;
    let data = format!("/v1/orgs/{acme}/data");

    // Unknown, malformed and tampered secrets: 401, alike.
    let secret = key_with(&app, &owner, &acme, &["data:read"]).await;
    let mut tampered = secret.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == '0' { '1' } else { '0' });
    let unknown = format!("tk_{}_{}", "a".repeat(16), "b".repeat(64));
    for bad in [tampered.as_str(), unknown.as_str(), "tk_nonsense"] {
        let res = app.as_(bad).get(&data).await;
        assert!(res.headers().contains_key("www-authenticate"));
        assert_problem(res, 401, "invalid_api_key").await;
    }
    let res = app.as_(&secret).get(&data).await;
    assert_eq!(res.status(), 200);

    // A key of another organization: 404 for this one, exactly as a missing organization.
    let foreign = key_with(&app, &other_owner, &other, &["data:read"]).await;
    let res = app.as_(&foreign).get(&data).await;
    let body = assert_problem(res, 404, "not_found").await;
    let missing = format!("/v1/orgs/org_{}/data", "0".repeat(32));
    let res = app.as_(&foreign).get(&missing).await;
    let absent = assert_problem(res, 404, "not_found").await;
    assert_eq!(body["detail"], absent["detail"]);
    // A key id of another organization is missing here too.
    let foreign_keys: Listed = app
        .as_(&other_owner)
        .get(format!("/v1/orgs/{other}/api-keys"))
        .await
        .json()
        .await;
    let foreign_id = foreign_keys[0]["id"].as_str().unwrap();
    for method in [Method::GET, Method::DELETE] {
        let res = app
            .as_(&owner)
            .send(
                method,
                format!("/v1/orgs/{acme}/api-keys/{foreign_id}"),
                None,
            )
            .await;
        assert_problem(res, 404, "not_found").await;
    }
    let res = app
        .as_(&foreign)
        .get(format!("/v1/orgs/{other}/data"))
        .await;
    assert_eq!(res.status(), 200, "the foreign key still works at home");

    // Revoked: refused at once, even though verified keys are cached.
    let keys: Listed = app
        .as_(&owner)
        .get(format!("/v1/orgs/{acme}/api-keys"))
        .await
        .json()
        .await;
    let id = keys[0]["id"].as_str().unwrap();
    let res = app
        .as_(&owner)
        .delete(format!("/v1/orgs/{acme}/api-keys/{id}"))
        .await;
    assert_eq!(res.status(), 200);
    assert!(res.json::<Value>().await["revoked_at"].is_string());
    let res = app.as_(&secret).get(&data).await;
    assert_problem(res, 401, "invalid_api_key").await;
    // Revoking twice is harmless and audited once.
    let res = app
        .as_(&owner)
        .delete(format!("/v1/orgs/{acme}/api-keys/{id}"))
        .await;
    assert_eq!(res.status(), 200);
    let revoked = audited(&app, &owner, &acme, "api_key.revoked").await;
    assert_eq!(revoked, 1);

    // Expired: works until its expiry, refused after.
    let expires_at = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let short = create_key(
        &app,
        &owner,
        &acme,
        json!({"name": "short", "scopes": ["data:read"], "expires_at": expires_at}),
    )
    .await;
    let short = short["secret"].as_str().unwrap();
    let res = app.as_(short).get(&data).await;
    assert_eq!(res.status(), 200);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let res = app.as_(short).get(&data).await;
    assert_problem(res, 401, "invalid_api_key").await;
}

async fn rotation_keeps_the_old_secret_for_the_grace_period(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let data = format!("/v1/orgs/{acme}/data");
    let created = create_key(
        &app,
        &owner,
        &acme,
        json!({"name": "rotating", "scopes": ["data:read"]}),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let old = created["secret"].as_str().unwrap();
    let rotate = format!("/v1/orgs/{acme}/api-keys/{id}/rotate");

    // Default grace: both secrets work; same id, prefix and scopes.
    let res = app.as_(&owner).post_empty(&rotate).await;
    assert_eq!(res.status(), 200);
    let rotated: Value = res.json().await;
    let new = rotated["secret"].as_str().unwrap();
    assert_ne!(new, old);
    assert_eq!(rotated["id"], created["id"]);
    assert_eq!(rotated["prefix"], created["prefix"]);
    assert!(rotated["previous_secret_expires_at"].is_string());
    for secret in [old, new] {
        let res = app.as_(secret).get(&data).await;
        assert_eq!(res.status(), 200);
    }

    // Rotating again with no grace: only the newest secret works.
    let res = app
        .as_(&owner)
        .post(&rotate, json!({"grace_period_sec": 0}))
        .await;
    assert_eq!(res.status(), 200);
    let newest: Value = res.json().await;
    let newest = newest["secret"].as_str().unwrap();
    for secret in [old, new] {
        let res = app.as_(secret).get(&data).await;
        assert_problem(res, 401, "invalid_api_key").await;
    }
    let res = app.as_(newest).get(&data).await;
    assert_eq!(res.status(), 200);

    // Bad grace periods, and revoked keys cannot be rotated.
    let res = app
        .as_(&owner)
        .post(&rotate, json!({"grace_period_sec": 9_999_999}))
        .await;
    assert_problem(res, 422, "validation_failed").await;
    app.as_(&owner)
        .delete(format!("/v1/orgs/{acme}/api-keys/{id}"))
        .await;
    let res = app.as_(&owner).post_empty(&rotate).await;
    assert_problem(res, 409, "api_key_inactive").await;
    let res = app.as_(newest).get(&data).await;
    assert_problem(res, 401, "invalid_api_key").await;

    let rotations = audited(&app, &owner, &acme, "api_key.rotated").await;
    assert_eq!(rotations, 2);
}
