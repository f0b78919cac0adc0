//! Defects found under load, faults and hostile input (issue 10), each with the test that
//! failed before its fix: cancelled requests never poison the pool, one deleted tenant
//! never stops metering, valid tokens survive an outage, NUL bytes are refused at the
//! edge, 401s say why, and the production switches.

use std::time::Duration;

use serde_json::{json, Value};
use tenantry::db::{Access, Scope};

use crate::helpers::{assert_problem, key_with, Backend, Listed, TestApp};
use crate::on_both_backends;

on_both_backends!(
    cancelled_begins_never_poison_the_pool,
    disconnecting_clients_get_no_server_errors,
    deleted_org_does_not_stop_metering,
    valid_tokens_are_503_not_401_when_keys_cannot_be_read,
    nul_characters_are_refused_at_the_edge,
    unauthorized_responses_say_why,
    secrets_are_not_cached,
    refused_requests_agree_on_when_to_retry,
    downgrades_below_the_members_in_use_are_refused,
    operators_read_the_platform_audit_chain,
    production_locks_metrics_plans_and_cookies,
    sign_out_and_reuse_revoke_access_tokens_at_once,
    creating_requests_are_idempotent,
    concurrent_requests_with_one_key_create_once,
    unknown_query_parameters_are_refused,
);

/// An organization with one stored data item; returns (owner token, org id, key, item path).
async fn item_fixture(app: &TestApp) -> (String, String, String, String) {
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let key = key_with(app, &owner, &acme, &["data:read", "data:write"]).await;
    let res = app
        .as_(&key)
        .post(format!("/v1/orgs/{acme}/data"), json!({"name": "x"}))
        .await;
    assert_eq!(res.status(), 201);
    let item: Value = res.json().await;
    let path = format!("/v1/orgs/{acme}/data/{}", item["id"].as_str().unwrap());
    (owner.token, acme.id, key, path)
}

async fn cancelled_begins_never_poison_the_pool(backend: Backend) {
    let Some(app) = TestApp::on(backend)
        .with_vars(|v| {
            v.insert("DATABASE_MAX_CONNECTIONS".into(), "3".into());
        })
        .await
    else {
        return;
    };
    let (_, acme, key, path) = item_fixture(&app).await;
    let org: tenantry::ids::OrgId = acme.parse().unwrap();
    let db = app.store.db().clone();
    // Begins abandoned at every point of their life: before the connection, between BEGIN
    // and its acknowledgement, after it.
    for i in 0..3000u64 {
        let access = if i % 2 == 0 {
            Access::Read
        } else {
            Access::Write
        };
        let _ = tokio::time::timeout(
            Duration::from_micros(i % 400),
            db.begin(Scope::Tenant(org), access),
        )
        .await;
    }
    for i in 0..60 {
        let access = if i % 2 == 0 {
            Access::Read
        } else {
            Access::Write
        };
        let tx = db.begin(Scope::Tenant(org), access).await;
        assert!(tx.is_ok(), "begin {i} after cancellations: {:?}", tx.err());
        tx.unwrap().commit().await.unwrap();
    }
    for _ in 0..30 {
        let res = app.as_(&key).get(&path).await;
        assert_eq!(res.status(), 200);
    }
}

async fn disconnecting_clients_get_no_server_errors(backend: Backend) {
    let Some(app) = TestApp::on(backend)
        .with_vars(|v| {
            v.insert("DATABASE_MAX_CONNECTIONS".into(), "4".into());
            v.insert("API_KEY_RATE_LIMIT".into(), "0".into());
            v.insert("IP_RATE_LIMIT".into(), "0".into());
            v.insert("ORG_RATE_LIMIT_FREE".into(), "0".into());
        })
        .await
    else {
        return;
    };
    let (_, acme, key, path) = item_fixture(&app).await;
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..16u64 {
        let (url, write_url, key) = (
            app.url(&path),
            app.url(&format!("/v1/orgs/{acme}/data")),
            key.clone(),
        );
        clients.spawn(async move {
            let mut server_errors = Vec::new();
            for i in 0..60u64 {
                // Clients that give up after 0.2-3 ms: the server sees the connection close
                // while the request is anywhere in flight.
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_micros(200 + (c * 131 + i * 997) % 2800))
                    .build()
                    .unwrap();
                let request = if i % 3 == 0 {
                    client
                        .post(&write_url)
                        .json(&json!({"name": format!("w{c}-{i}")}))
                } else {
                    client.get(&url)
                };
                if let Ok(res) = request.bearer_auth(&key).send().await {
                    if res.status().is_server_error() {
                        server_errors.push(res.status().as_u16());
                    }
                }
            }
            server_errors
        });
    }
    let errors: Vec<u16> = clients.join_all().await.into_iter().flatten().collect();
    assert!(
        errors.is_empty(),
        "server errors under disconnects: {errors:?}"
    );
    // Afterwards every request succeeds: no connection went back inside a transaction.
    for _ in 0..100 {
        let res = app.as_(&key).get(&path).await;
        assert_eq!(res.status(), 200);
        let res = app
            .as_(&key)
            .post(format!("/v1/orgs/{acme}/data"), json!({"name": "after"}))
            .await;
        assert_eq!(res.status(), 201);
    }
}

async fn deleted_org_does_not_stop_metering(backend: Backend) {
    let Some(app) = TestApp::on(backend)
        .with_vars(|v| {
            v.insert("USAGE_FLUSH_INTERVAL_MS".into(), "3600000".into());
        })
        .await
    else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let doomed = app.org_of(&owner, "doomed").await;
    let kept = app.org_of(&owner, "kept").await;
    for o in [&doomed, &kept] {
        let key = key_with(&app, &owner, o, &["data:write"]).await;
        let res = app
            .as_(&key)
            .post(format!("/v1/orgs/{o}/data"), json!({"name": "metered"}))
            .await;
        assert_eq!(res.status(), 201);
    }
    // Deleted with its metered call still unwritten.
    let res = app.as_(&owner).delete(format!("/v1/orgs/{doomed}")).await;
    assert_eq!(res.status(), 204);
    app.state
        .usage
        .flush()
        .await
        .expect("flush skips the deleted organization");
    let res = app.as_(&owner).get(format!("/v1/orgs/{kept}/usage")).await;
    assert_eq!(res.status(), 200);
    let report: Value = res.json().await;
    let calls = crate::helpers::meter(&report, "api_calls");
    assert_eq!(calls["period_total"], 1, "{report}");
    // The next batch is written too: nothing stays stuck behind the deleted tenant.
    let key = key_with(&app, &owner, &kept, &["data:write"]).await;
    let res = app
        .as_(&key)
        .post(format!("/v1/orgs/{kept}/data"), json!({"name": "again"}))
        .await;
    assert_eq!(res.status(), 201);
    app.state.usage.flush().await.expect("second flush");
}

async fn valid_tokens_are_503_not_401_when_keys_cannot_be_read(backend: Backend) {
    let Some(mut app) = TestApp::on(backend).await else {
        return;
    };
    // The app's pool is closed below: its worker cannot take the sign-up's delivery job.
    app.expect_leftover_jobs();
    let token = app.user("ann@example.com").await.token;
    let me = |token: String| app.client.get(app.url("/v1/me")).bearer_auth(token).send();
    assert_eq!(me(token.clone()).await.unwrap().status(), 200);
    // The key set is due for its periodic re-read and the database has gone.
    app.state.keys.mark_stale().await;
    app.store.db().close().await;
    let res = me(token.clone()).await.unwrap();
    assert_problem(res, 503, "service_unavailable").await;
    // A token whose key is not loaded cannot be checked either: 503, never 401.
    let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "unknown-kid"});
    let b64 = |v: &Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let unknown = format!("{}.{}.c2ln", b64(&header), b64(&json!({"sub": "x"})));
    tokio::time::sleep(Duration::from_millis(5100)).await;
    assert_problem(me(unknown).await.unwrap(), 503, "service_unavailable").await;
}

async fn nul_characters_are_refused_at_the_edge(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let raw = |path: &str, body: &str| {
        app.client
            .post(app.url(path))
            .header("content-type", "application/json")
            .bearer_auth(&owner.token)
            .body(body.to_owned())
            .send()
    };
    let nul_email = r#"{"email":"a\u0000b@example.com","password":"password123"}"#;
    for path in [
        "/v1/auth/login",
        "/v1/auth/sessions",
        "/v1/auth/password-reset/request",
    ] {
        let body = if path.ends_with("request") {
            r#"{"email":"a\u0000b@example.com"}"#
        } else {
            nul_email
        };
        assert_problem(raw(path, body).await.unwrap(), 400, "invalid_characters").await;
    }
    let roles = format!("/v1/orgs/{acme}/roles");
    let res = raw(
        &roles,
        r#"{"name":"r1","description":"x\u0000y","permissions":["data:read"]}"#,
    )
    .await
    .unwrap();
    assert_problem(res, 400, "invalid_characters").await;
    // An escaped backslash followed by `u0000` is ordinary text.
    let res = raw(
        &roles,
        r#"{"name":"r2","description":"x\\u0000y","permissions":["data:read"]}"#,
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 201);
    let res = app
        .as_(&owner)
        .get(format!("/v1/orgs/{acme}/audit-events?action=a%00b"))
        .await;
    assert_problem(res, 400, "invalid_characters").await;
}

async fn unauthorized_responses_say_why(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let path = format!("/v1/orgs/{acme}/members");
    let cases = [
        (None, "missing_credentials"),
        (Some("not-a-token".to_owned()), "invalid_token"),
        (Some("tk_abcdefgh_0000".to_owned()), "invalid_api_key"),
    ];
    for (token, code) in cases {
        let client = match &token {
            Some(token) => app.as_(token),
            None => app.anon(),
        };
        let res = client.get(&path).await;
        let challenge = res.headers().get("www-authenticate").cloned();
        assert_problem(res, 401, code).await;
        let challenge = challenge.expect("WWW-Authenticate on every 401");
        assert!(
            challenge.to_str().unwrap().starts_with("Bearer"),
            "{challenge:?}"
        );
    }
}

async fn secrets_are_not_cached(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let login = app
        .client
        .post(app.url("/v1/auth/login"))
        .json(&json!({"email": "owner@example.com", "password": crate::helpers::PASSWORD}))
        .send()
        .await
        .unwrap();
    let key = app
        .as_(&owner)
        .post(
            format!("/v1/orgs/{acme}/api-keys"),
            json!({"name": "k", "scopes": ["data:read"]}),
        )
        .await;
    let invite = app
        .as_(&owner)
        .post(
            format!("/v1/orgs/{acme}/invitations"),
            json!({"email": "bob@example.com", "role": "member"}),
        )
        .await;
    for res in [login, key.into_inner(), invite.into_inner()] {
        assert!(res.status().is_success(), "{}", res.status());
        assert_eq!(res.headers()["cache-control"], "no-store", "{}", res.url());
    }
}

async fn refused_requests_agree_on_when_to_retry(backend: Backend) {
    let Some(app) = TestApp::on(backend)
        .with_vars(|v| {
            v.insert("API_KEY_RATE_LIMIT".into(), "2".into());
            v.insert("API_KEY_RATE_LIMIT_WINDOW_SEC".into(), "60".into());
        })
        .await
    else {
        return;
    };
    let (_, _, key, path) = item_fixture(&app).await;
    let mut refused = None;
    for _ in 0..4 {
        let res = app.as_(&key).get(&path).await;
        if res.status() == 429 {
            refused = Some(res);
            break;
        }
    }
    let res = refused.expect("the key's limit refuses");
    let header = |name: &str| {
        res.headers()[name]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    assert_eq!(header("retry-after"), header("ratelimit-reset"));
    assert_eq!(header("ratelimit-remaining"), 0);
    assert!(header("retry-after") >= 1);
}

async fn downgrades_below_the_members_in_use_are_refused(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let plan = |plan: &str| {
        app.as_(&owner)
            .put(format!("/v1/orgs/{acme}/plan"), json!({ "plan": plan }))
    };
    assert_eq!(
        plan("PRO").await.status(),
        200,
        "the seeds' upper-case names work"
    );
    for i in 0..3 {
        app.member(&acme, &format!("m{i}@example.com"), "member")
            .await;
    }
    let body = assert_problem(plan("free").await, 409, "plan_seats_exceeded").await;
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("4 members") && detail.contains("allows 3"),
        "{detail}"
    );
    // The operator may force it; existing members stay.
    let admin = |force: bool| {
        app.client
            .put(app.url(&format!("/v1/admin/orgs/{acme}/plan")))
            .bearer_auth(&app.admin_token)
            .json(&json!({"plan": "free", "force": force}))
            .send()
    };
    assert_problem(admin(false).await.unwrap(), 409, "plan_seats_exceeded").await;
    let res = admin(true).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["plan"], "free");
}

async fn operators_read_the_platform_audit_chain(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    app.user("ann@example.com").await;
    let failed = app
        .client
        .post(app.url("/v1/auth/login"))
        .json(&json!({"email": "ann@example.com", "password": "wrong password here"}))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 401);
    let res = app.admin_get("/v1/admin/audit-events?limit=200").await;
    assert_eq!(res.status(), 200);
    let events: Listed = res.json().await.unwrap();
    let actions: Vec<&str> = events.iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(actions.contains(&"user.registered"), "{actions:?}");
    assert!(actions.iter().any(|a| a.contains("fail")), "{actions:?}");
    let report: Value = app
        .admin_get("/v1/admin/audit-events/verify")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["checked"], events.len(), "{report}");
    let res = app
        .client
        .get(app.url("/v1/admin/audit-events"))
        .send()
        .await
        .unwrap();
    assert_problem(res, 401, "missing_credentials").await;
}

async fn production_locks_metrics_plans_and_cookies(backend: Backend) {
    let Some(app) = TestApp::on(backend)
        .with_vars(|v| {
            v.insert("TENANTRY_ENV".into(), "production".into());
        })
        .await
    else {
        return;
    };
    let res = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_problem(res, 401, "missing_credentials").await;
    let res = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let res = app
        .as_(&owner)
        .put(format!("/v1/orgs/{acme}/plan"), json!({"plan": "pro"}))
        .await;
    assert_problem(res, 403, "plan_change_operator_only").await;
    let res = app
        .client
        .post(app.url("/v1/auth/sessions"))
        .json(&json!({"email": "owner@example.com", "password": crate::helpers::PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let cookie = res.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("__Host-tenantry_session="), "{cookie}");
    assert!(
        cookie.contains("Secure") && cookie.contains("Path=/"),
        "{cookie}"
    );
    assert!(!cookie.contains("Domain"), "{cookie}");
}

async fn sign_out_and_reuse_revoke_access_tokens_at_once(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let me = |token: String| app.client.get(app.url("/v1/me")).bearer_auth(token).send();
    let post = |path: &'static str, body: Value| app.client.post(app.url(path)).json(&body).send();
    let ann = app.user("ann@example.com").await;
    let access = ann.token.clone();
    assert_eq!(me(access.clone()).await.unwrap().status(), 200);
    let res = post(
        "/v1/auth/logout",
        json!({"refresh_token": ann.refresh_token}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 204);
    assert_problem(me(access).await.unwrap(), 401, "invalid_token").await;

    // A replayed refresh token revokes its family: every access token issued from it dies.
    let login: Value = post(
        "/v1/auth/login",
        json!({"email": "ann@example.com", "password": crate::helpers::PASSWORD}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let rotated: Value = post(
        "/v1/auth/refresh",
        json!({"refresh_token": login["refresh_token"]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let second = rotated["access_token"].as_str().unwrap().to_owned();
    assert_eq!(me(second.clone()).await.unwrap().status(), 200);
    let replay = post(
        "/v1/auth/refresh",
        json!({"refresh_token": login["refresh_token"]}),
    )
    .await
    .unwrap();
    assert_eq!(replay.status(), 401);
    for token in [login["access_token"].as_str().unwrap().to_owned(), second] {
        assert_problem(me(token).await.unwrap(), 401, "invalid_token").await;
    }
}

/// On PostgreSQL a sign-out reaches every instance at once (NOTIFY), and an instance
/// started later reads the recent revocations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_out_reaches_every_instance() {
    let Some(app) = TestApp::on(Backend::Postgres).await else {
        return;
    };
    let other = crate::helpers::Instance::start(&app.vars).await;
    let ann = app.user("ann@example.com").await;
    let access = ann.token.clone();
    let me = |base: String| {
        app.client
            .get(format!("{base}/v1/me"))
            .bearer_auth(&access)
            .send()
    };
    assert_eq!(me(other.base.clone()).await.unwrap().status(), 200);
    let res = app
        .client
        .post(app.url("/v1/auth/logout"))
        .json(&json!({"refresh_token": ann.refresh_token}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let mut refused = false;
    for _ in 0..40 {
        if me(other.base.clone()).await.unwrap().status() == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "the other instance refuses the token within 2 s");
    let later = crate::helpers::Instance::start(&app.vars).await;
    assert_eq!(me(later.base.clone()).await.unwrap().status(), 401);
    later.stop().await;
    other.stop().await;
}

/// The SQLite database and its WAL and shared-memory files are readable by their owner only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let app = TestApp::on(Backend::Sqlite).await.unwrap();
    app.create_org("acme").await;
    for name in ["tenantry.db", "tenantry.db-wal", "tenantry.db-shm"] {
        let path = app.db.dir.path().join(name);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name}");
    }
}

async fn creating_requests_are_idempotent(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let post = |path: String, key: &str, body: Value| {
        app.client
            .post(app.url(&path))
            .bearer_auth(&owner.token)
            .header("idempotency-key", key)
            .json(&body)
            .send()
    };
    let workspaces = format!("/v1/orgs/{acme}/workspaces");
    let first = post(workspaces.clone(), "k1", json!({"name": "W", "slug": "ws"}))
        .await
        .unwrap();
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let created: Value = first.json().await.unwrap();
    let again = post(workspaces.clone(), "k1", json!({"name": "W", "slug": "ws"}))
        .await
        .unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(
        again.json::<Value>().await.unwrap(),
        created,
        "the same response"
    );
    let listed: crate::helpers::Listed = app.as_(&owner).get(&workspaces).await.json().await;
    assert_eq!(
        listed.iter().filter(|w| w["slug"] == "ws").count(),
        1,
        "created once"
    );
    // The same key for another request.
    let other = post(workspaces.clone(), "k1", json!({"name": "X", "slug": "xs"}))
        .await
        .unwrap();
    assert_problem(other, 422, "idempotency_key_reused").await;
    // Another sender's key space is its own.
    let bob = app.user("bob@example.com").await;
    let bobs = app.org_of(&bob, "bobs").await;
    let res = app
        .client
        .post(app.url(&format!("/v1/orgs/{bobs}/workspaces")))
        .bearer_auth(&bob.token)
        .header("idempotency-key", "k1")
        .json(&json!({"name": "W", "slug": "ws"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert!(res.headers().get("idempotent-replayed").is_none());
    // A secret is shown once: the replay is withheld, and no second key exists.
    let keys = format!("/v1/orgs/{acme}/api-keys");
    let body = json!({"name": "ci", "scopes": ["data:read"]});
    let res = post(keys.clone(), "k2", body.clone()).await.unwrap();
    assert_eq!(res.status(), 201);
    assert!(res.json::<Value>().await.unwrap()["secret"].is_string());
    let res = post(keys.clone(), "k2", body).await.unwrap();
    assert_problem(res, 409, "idempotent_response_withheld").await;
    let listed: crate::helpers::Listed = app.as_(&owner).get(&keys).await.json().await;
    assert_eq!(listed.len(), 1);
    let res = post(
        workspaces,
        &"k".repeat(256),
        json!({"name": "Y", "slug": "ys"}),
    )
    .await
    .unwrap();
    assert_problem(res, 400, "invalid_idempotency_key").await;
}

async fn concurrent_requests_with_one_key_create_once(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let path = format!("/v1/orgs/{acme}/data");
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let request = app
            .client
            .post(app.url(&path))
            .bearer_auth(&owner.token)
            .header("idempotency-key", "same")
            .json(&json!({"name": "once"}));
        requests.spawn(async move { request.send().await.unwrap().status().as_u16() });
    }
    let statuses = requests.join_all().await;
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
    assert!(statuses.contains(&201), "{statuses:?}");
    let listed: crate::helpers::Listed = app.as_(&owner).get(&path).await.json().await;
    assert_eq!(listed.len(), 1, "one item whatever the interleaving");
}

async fn unknown_query_parameters_are_refused(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let get = |path: String| app.as_(&owner).get(path);
    // An operation without query parameters, and a list with its own.
    let body = assert_problem(
        get(format!("/v1/orgs/{acme}/members?role=admin")).await,
        400,
        "invalid_query",
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("`role`"),
        "{body}"
    );
    let body = assert_problem(
        get(format!("/v1/orgs/{acme}/audit-events?actor=x&limit=5")).await,
        400,
        "invalid_query",
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("`actor`"),
        "{body}"
    );
    assert_eq!(
        get(format!("/v1/orgs/{acme}/audit-events?limit=5"))
            .await
            .status(),
        200
    );
    assert_eq!(get(format!("/v1/orgs/{acme}/members")).await.status(), 200);
}
