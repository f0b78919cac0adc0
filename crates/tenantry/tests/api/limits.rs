//! Rate limits: per API key (default and the key's own), per organization by plan, per
//! client address; `RateLimit-*` and `Retry-After` headers; and one limit shared by two
//! instances through Redis.

use serde_json::json;

use crate::helpers::{assert_problem, create_key, key_with, Backend, Instance, TestApp};
use crate::on_both_backends;

on_both_backends!(
    key_and_org_limits_with_headers,
    address_limit_spares_probes,
    two_instances_share_limits_through_redis,
    redis_outage_falls_back_to_in_process_limits,
    forwarded_addresses_count_only_behind_trusted_proxies,
);

fn header(headers: &reqwest::header::HeaderMap, name: &str) -> Option<u64> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

async fn key_and_org_limits_with_headers(backend: Backend) {
    let Some(app) = TestApp::on(backend)
        .with_vars(|v| {
            v.insert("API_KEY_RATE_LIMIT".into(), "3".into());
            v.insert("API_KEY_RATE_LIMIT_WINDOW_SEC".into(), "60".into());
            v.insert("ORG_RATE_LIMIT_FREE".into(), "8".into());
        })
        .await
    else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let data = format!("/v1/orgs/{acme}/data");
    // Two key creations count against the organization: 2 of 8.
    let key = key_with(&app, &owner, &acme, &["data:read"]).await;
    let own = create_key(
        &app,
        &owner,
        &acme,
        json!({"name": "slow", "scopes": ["data:read"], "rate_limit": {"limit": 1, "window_sec": 3600}}),
    )
    .await;
    let own = own["secret"].as_str().unwrap();

    // The default key limit: 3 per window, then 429 with Retry-After.
    for expected in [2, 1, 0] {
        let res = app.as_(&key).get(&data).await;
        assert_eq!(res.status(), 200);
        assert_eq!(header(res.headers(), "ratelimit-limit"), Some(3));
        assert_eq!(header(res.headers(), "ratelimit-remaining"), Some(expected));
        assert!(header(res.headers(), "ratelimit-reset").is_some());
    }
    let res = app.as_(&key).get(&data).await;
    let retry = header(res.headers(), "retry-after").expect("Retry-After");
    assert!((1..=20).contains(&retry), "one cell frees in 20 s: {retry}");
    assert_eq!(header(res.headers(), "ratelimit-remaining"), Some(0));
    assert_problem(res, 429, "rate_limited").await;

    // A key's own limit replaces the default: 1 per hour.
    let res = app.as_(own).get(&data).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(res.headers(), "ratelimit-limit"), Some(1));
    let res = app.as_(own).get(&data).await;
    assert!(header(res.headers(), "retry-after").unwrap() > 3000);
    assert_problem(res, 429, "rate_limited").await;

    // The organization's plan limit covers users and keys together: 2 creations + 3 + 1
    // calls allowed so far (refused calls cost nothing), 2 more, then 429 for everyone.
    for _ in 0..2 {
        let res = app.as_(&owner).get(&data).await;
        assert_eq!(res.status(), 200);
    }
    let res = app.as_(&owner).get(&data).await;
    assert_eq!(header(res.headers(), "ratelimit-limit"), Some(8));
    assert_problem(res, 429, "rate_limited").await;
    let fresh = {
        // Another organization is not affected.
        let other = app.org_of(&owner, "other").await;
        app.as_(&owner).get(format!("/v1/orgs/{other}/data")).await
    };
    assert_eq!(fresh.status(), 200);

    // Every endpoint of the organization shares its limit.
    let res = app.as_(&owner).get(format!("/v1/orgs/{acme}")).await;
    assert_problem(res, 429, "rate_limited").await;
}

async fn address_limit_spares_probes(backend: Backend) {
    let Some(app) = TestApp::on(backend)
        .with_vars(|v| {
            v.insert("IP_RATE_LIMIT".into(), "5".into());
        })
        .await
    else {
        return;
    };
    for expected in (0..5).rev() {
        let res = app.anon().get("/v1/permissions").await;
        assert_eq!(res.status(), 200);
        assert_eq!(header(res.headers(), "ratelimit-remaining"), Some(expected));
    }
    let res = app.anon().get("/v1/permissions").await;
    assert!(header(res.headers(), "retry-after").is_some());
    assert_problem(res, 429, "rate_limited").await;
    // Anything else from the address too, but not the probes.
    let res = app.anon().post("/v1/auth/login", json!({})).await;
    assert_problem(res, 429, "rate_limited").await;
    for probe in ["/health", "/metrics"] {
        let res = app.anon().get(probe).await;
        assert_eq!(res.status(), 200, "{probe}");
    }
}

async fn two_instances_share_limits_through_redis(backend: Backend) {
    let redis = std::env::var("REDIS_TEST_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    // A prefix of its own, so concurrent tests never share a limit.
    let prefix = format!("tenantry-test:{}:", uuid::Uuid::new_v4().simple());
    let Some(app) = TestApp::on(backend)
        .with_vars(|v| {
            v.insert("REDIS_URL".into(), redis);
            v.insert("REDIS_KEY_PREFIX".into(), prefix);
            v.insert("API_KEY_RATE_LIMIT".into(), "4".into());
            v.insert("API_KEY_CACHE_SEC".into(), "0".into());
        })
        .await
    else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let key = key_with(&app, &owner, &acme, &["data:read"]).await;
    let second = Instance::start(&app.vars).await;
    let path = format!("/v1/orgs/{acme}/data");
    let get = |base: &str| {
        app.client
            .get(format!("{base}{path}"))
            .bearer_auth(&key)
            .send()
    };
    // 4 per window across both instances: 2 here, 2 there, then both refuse.
    let mut remaining = Vec::new();
    for base in [&app.base, &second.base, &app.base, &second.base] {
        let res = get(base).await.unwrap();
        assert_eq!(res.status(), 200);
        remaining.push(header(res.headers(), "ratelimit-remaining").unwrap());
    }
    assert_eq!(remaining, vec![3, 2, 1, 0]);
    for base in [&app.base, &second.base] {
        let res = get(base).await.unwrap();
        assert_problem(res, 429, "rate_limited").await;
    }
    // Revocation on one instance holds on the other (no key cache in this test).
    let keys: crate::helpers::Listed = app
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
    let res = get(&second.base).await.unwrap();
    assert_problem(res, 401, "invalid_api_key").await;
    second.stop().await;
}

async fn redis_outage_falls_back_to_in_process_limits(backend: Backend) {
    let Some(app) = TestApp::on(backend)
        .with_vars(|v| {
            // Nothing listens there: every Redis call fails at once.
            v.insert("REDIS_URL".into(), "redis://127.0.0.1:1".into());
            v.insert("API_KEY_RATE_LIMIT".into(), "2".into());
        })
        .await
    else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let key = key_with(&app, &owner, &acme, &["data:read"]).await;
    let data = format!("/v1/orgs/{acme}/data");
    for _ in 0..2 {
        let res = app.as_(&key).get(&data).await;
        assert_eq!(res.status(), 200, "requests go on without Redis");
    }
    let res = app.as_(&key).get(&data).await;
    assert_problem(res, 429, "rate_limited").await;
}

async fn forwarded_addresses_count_only_behind_trusted_proxies(backend: Backend) {
    for trusted in [false, true] {
        let Some(app) = TestApp::on(backend)
            .with_vars(|v| {
                v.insert("IP_RATE_LIMIT".into(), "2".into());
                if trusted {
                    v.insert("TRUSTED_PROXIES".into(), "127.0.0.0/8, ::1".into());
                }
            })
            .await
        else {
            return;
        };
        let get = |client: &'static str| {
            app.client
                .get(app.url("/v1/permissions"))
                .header("x-forwarded-for", format!("6.6.6.6, {client}"))
                .send()
        };
        for _ in 0..2 {
            assert_eq!(get("203.0.113.1").await.unwrap().status(), 200);
        }
        assert_problem(get("203.0.113.1").await.unwrap(), 429, "rate_limited").await;
        // Behind a trusted proxy another client has its own budget; otherwise the header
        // is the caller's own claim and changes nothing.
        let other = get("203.0.113.2").await.unwrap();
        if trusted {
            assert_eq!(other.status(), 200);
        } else {
            assert_problem(other, 429, "rate_limited").await;
        }
    }
}

/// On PostgreSQL a revocation reaches every instance's key cache at once (NOTIFY), even
/// with a long cache time and no Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_reaches_other_instances_at_once() {
    let Some(app) = TestApp::on(Backend::Postgres)
        .with_vars(|v| {
            v.insert("API_KEY_CACHE_SEC".into(), "600".into());
        })
        .await
    else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let created = create_key(
        &app,
        &owner,
        &acme,
        json!({"name": "k", "scopes": ["data:read"]}),
    )
    .await;
    let key = created["secret"].as_str().unwrap().to_owned();
    let second = Instance::start(&app.vars).await;
    let url = format!("{}/v1/orgs/{acme}/data", second.base);
    let get = || app.client.get(&url).bearer_auth(&key).send();
    // The second instance verifies (and caches) the key.
    assert_eq!(get().await.unwrap().status(), 200);
    let res = app
        .as_(&owner)
        .delete(format!(
            "/v1/orgs/{acme}/api-keys/{}",
            created["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(res.status(), 200);
    let mut refused = false;
    for _ in 0..40 {
        if get().await.unwrap().status() == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        refused,
        "revoked key refused by the other instance within 2 s"
    );
    second.stop().await;
}
