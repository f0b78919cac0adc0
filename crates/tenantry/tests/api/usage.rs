//! Usage metering: exact totals after a burst of metered calls, monthly quotas by plan,
//! ingestion deduplicated by idempotency key, the periodic daily rollup (exactly once),
//! and no metering lost on a graceful shutdown.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{assert_problem, key_with, meter, Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    burst_is_metered_exactly_and_quota_enforced,
    ingestion_dedups_and_rollup_counts_once,
    shutdown_writes_pending_usage,
    busy_organizations_are_refreshed_together,
);

async fn usage(app: &TestApp, token: &str, org: &str) -> Value {
    let res = app.as_(token).get(format!("/v1/orgs/{org}/usage")).await;
    assert_eq!(res.status(), 200);
    res.json().await
}

async fn burst_is_metered_exactly_and_quota_enforced(backend: Backend) {
    let Some(app) = TestApp::on(backend)
        .with_vars(|v| {
            v.insert("QUOTA_API_CALLS_FREE".into(), "120".into());
            v.insert("API_KEY_RATE_LIMIT".into(), "0".into());
        })
        .await
    else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let key = key_with(&app, &owner, &acme, &["data:read", "data:write"]).await;
    let res = app
        .as_(&key)
        .post(format!("/v1/orgs/{acme}/data"), json!({"name": "x"}))
        .await;
    assert_eq!(res.status(), 201);
    let item: Value = res.json().await;
    let path = format!("/v1/orgs/{acme}/data/{}", item["id"].as_str().unwrap());

    // A concurrent burst of 119 reads: with the creation, exactly the quota of 120.
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..119 {
        let request = app.client.get(app.url(&path)).bearer_auth(&key);
        burst.spawn(async move { request.send().await.unwrap().status().as_u16() });
    }
    let statuses = burst.join_all().await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");

    let report = usage(&app, &owner, &acme).await;
    assert_eq!(report["plan"], "free");
    let calls = meter(&report, "api_calls");
    assert_eq!(calls["period_total"], 120, "{report}");
    assert_eq!(calls["limit"], 120);
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert_eq!(calls["daily"], json!([{"day": today, "quantity": 120}]));

    // Over quota: 429 `quota_exceeded` until the next month, for users and keys alike;
    // refused calls are not counted and non-metered endpoints still work.
    let res = app.as_(&key).get(&path).await;
    assert!(res.headers().contains_key("retry-after"));
    let body = assert_problem(res, 429, "quota_exceeded").await;
    assert_eq!(body["limit"], 120);
    assert_eq!(body["used"], 120);
    assert!(body["resets_at"].is_string());
    let res = app.as_(&owner).get(&path).await;
    assert_problem(res, 429, "quota_exceeded").await;
    let report = usage(&app, &owner, &acme).await;
    assert_eq!(meter(&report, "api_calls")["period_total"], 120);

    // Upgrading the plan raises the quota (seen within the refresh interval).
    let res = app
        .as_(&owner)
        .put(format!("/v1/orgs/{acme}/plan"), json!({"plan": "pro"}))
        .await;
    assert_eq!(res.status(), 200);
    tokio::time::sleep(tenantry::usage::QUOTA_REFRESH + Duration::from_millis(200)).await;
    let res = app.as_(&key).get(&path).await;
    assert_eq!(res.status(), 200);
    let report = usage(&app, &owner, &acme).await;
    assert_eq!(report["plan"], "pro");
    assert_eq!(meter(&report, "api_calls")["period_total"], 121);
    assert_eq!(meter(&report, "api_calls")["limit"], 1_000_000);

    // Another organization's usage is its own.
    let other = app.org_of(&owner, "other").await;
    let report = usage(&app, &owner, &other).await;
    assert_eq!(meter(&report, "api_calls")["period_total"], 0);

    // Report ranges are checked.
    let res = app
        .as_(&owner)
        .get(format!(
            "/v1/orgs/{acme}/usage?from=2026-01-10&to=2026-01-01"
        ))
        .await;
    assert_problem(res, 422, "validation_failed").await;
    let res = app
        .as_(&owner)
        .get(format!("/v1/orgs/{acme}/usage?from=yesterday"))
        .await;
    assert_problem(res, 400, "invalid_query").await;
}

async fn ingestion_dedups_and_rollup_counts_once(backend: Backend) {
    let Some(app) = TestApp::on(backend)
        .with_vars(|v| {
            v.insert("USAGE_ROLLUP_INTERVAL_SEC".into(), "1".into());
        })
        .await
    else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let key = key_with(&app, &owner, &acme, &["usage:write", "usage:read"]).await;
    let events = format!("/v1/orgs/{acme}/usage/events");
    let yesterday = chrono::Utc::now() - chrono::Duration::days(1);
    let batch = json!({"events": [
        {"meter": "emails.sent", "quantity": 5, "idempotency_key": "a"},
        {"meter": "emails.sent", "quantity": 7, "idempotency_key": "b"},
        {"meter": "storage.gb", "quantity": 3, "idempotency_key": "c", "timestamp": yesterday.to_rfc3339()},
    ]});
    let res = app.as_(&key).post(&events, batch.clone()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await,
        json!({"accepted": 3, "duplicates": 0})
    );
    // A retried batch with one new event: only the new one counts.
    let mut retry = batch.clone();
    retry["events"]
        .as_array_mut()
        .unwrap()
        .push(json!({"meter": "emails.sent", "quantity": 1, "idempotency_key": "d"}));
    let res = app.as_(&key).post(&events, retry).await;
    assert_eq!(
        res.json::<Value>().await,
        json!({"accepted": 1, "duplicates": 3})
    );

    let check = |report: Value| {
        assert_eq!(
            meter(&report, "emails.sent")["period_total"],
            13,
            "{report}"
        );
        let storage = meter(&report, "storage.gb");
        assert_eq!(
            storage["daily"],
            json!([{"day": yesterday.format("%Y-%m-%d").to_string(), "quantity": 3}])
        );
    };
    let path = format!(
        "/v1/orgs/{acme}/usage?from={}",
        (yesterday - chrono::Duration::days(1)).format("%Y-%m-%d")
    );
    let before: Value = app.as_(&key).get(&path).await.json().await;
    if yesterday.format("%Y-%m").to_string() == chrono::Utc::now().format("%Y-%m").to_string() {
        assert_eq!(meter(&before, "storage.gb")["period_total"], 3);
    }
    check(before);

    // The periodic rollup moves every event into the daily totals once; totals stay.
    let mut rolled = false;
    for _ in 0..150 {
        let pending = pending_events(&app).await;
        if pending == 0 {
            rolled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rolled, "usage.rollup ran");
    let after: Value = app.as_(&key).get(&path).await.json().await;
    check(after);
    // Rolling up again (twice at once) changes nothing.
    let (a, b) = tokio::join!(app.store.rollup_usage(), app.store.rollup_usage());
    assert_eq!(a.unwrap() + b.unwrap(), 0);
    let again: Value = app.as_(&key).get(&path).await.json().await;
    check(again);
    // Rolled-up events past the retention are deleted; their totals stay.
    owner_sql(
        &app,
        "UPDATE usage_events SET created_at = '2001-01-01T00:00:00Z' WHERE rolled_up",
    )
    .await;
    app.store.rollup_usage().await.unwrap();
    assert_eq!(
        owner_count(&app, "SELECT count(*) FROM usage_events").await,
        0
    );
    let kept: Value = app.as_(&key).get(&path).await.json().await;
    check(kept);

    // Invalid events are refused as a whole, naming the event.
    for (event, field) in [
        (
            json!({"meter": "api_calls", "idempotency_key": "x"}),
            "events[0].meter",
        ),
        (
            json!({"meter": "Bad Meter", "idempotency_key": "x"}),
            "events[0].meter",
        ),
        (
            json!({"meter": "m", "quantity": -1, "idempotency_key": "x"}),
            "events[0].quantity",
        ),
        (
            json!({"meter": "m", "idempotency_key": ""}),
            "events[0].idempotency_key",
        ),
        (
            json!({"meter": "m", "idempotency_key": "x", "timestamp": "2001-01-01T00:00:00Z"}),
            "events[0].timestamp",
        ),
    ] {
        let res = app
            .as_(&key)
            .post(&events, json!({ "events": [event] }))
            .await;
        let body = assert_problem(res, 422, "validation_failed").await;
        assert!(body.to_string().contains(field), "{body}");
    }
    let res = app.as_(&key).post(&events, json!({"events": []})).await;
    assert_problem(res, 422, "validation_failed").await;
}

async fn pending_events(app: &TestApp) -> i64 {
    owner_count(app, "SELECT count(*) FROM usage_events WHERE NOT rolled_up").await
}

/// A count read past row-level security (as the database owner on PostgreSQL).
async fn owner_count(app: &TestApp, sql: &str) -> i64 {
    match app.store.db() {
        tenantry::db::Db::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
        tenantry::db::Db::Postgres(_) => {
            let pool = sqlx::PgPool::connect(&app.db.url).await.unwrap();
            let n = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        }
    }
}

/// A statement run past row-level security (as the database owner on PostgreSQL).
async fn owner_sql(app: &TestApp, sql: &str) {
    match app.store.db() {
        tenantry::db::Db::Sqlite(pool) => {
            sqlx::query(sql).execute(pool).await.unwrap();
        }
        tenantry::db::Db::Postgres(_) => {
            let pool = sqlx::PgPool::connect(&app.db.url).await.unwrap();
            sqlx::query(sql).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }
}

async fn shutdown_writes_pending_usage(backend: Backend) {
    let Some(mut app) = TestApp::on(backend)
        .with_vars(|v| {
            // Far longer than the test: only the shutdown flush can write these calls.
            v.insert("USAGE_FLUSH_INTERVAL_MS".into(), "600000".into());
        })
        .await
    else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    for _ in 0..25 {
        let res = app.as_(&owner).get(format!("/v1/orgs/{acme}/data")).await;
        assert_eq!(res.status(), 200);
    }
    assert_eq!(
        stored_calls(&app).await,
        0,
        "nothing written on the hot path"
    );
    app.stop().await;
    assert_eq!(stored_calls(&app).await, 25);
}

async fn stored_calls(app: &TestApp) -> i64 {
    let sql = "SELECT CAST(coalesce(SUM(quantity), 0) AS BIGINT) FROM usage_events WHERE meter = 'api_calls'";
    match app.store.db() {
        tenantry::db::Db::Sqlite(_) => {
            let pool = sqlx::SqlitePool::connect(&app.db.url).await.unwrap();
            let n = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        }
        tenantry::db::Db::Postgres(_) => {
            let pool = sqlx::PgPool::connect(&app.db.url).await.unwrap();
            let n = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        }
    }
}

/// The flusher re-reads the totals of every organization that made calls, in one read:
/// another instance's calls count here before the total would be stale on a request.
async fn busy_organizations_are_refreshed_together(backend: Backend) {
    let Some(app) = TestApp::on(backend)
        .with_vars(|v| {
            v.insert("QUOTA_API_CALLS_FREE".into(), "10".into());
            // Flushes and refreshes happen when this test says.
            v.insert("USAGE_FLUSH_INTERVAL_MS".into(), "3600000".into());
            // A request re-reads a total only after 6 s: well after the flusher's re-read
            // (due at 3 s), so only that re-read can explain what the requests see.
            v.insert("USAGE_QUOTA_REFRESH_MS".into(), "6000".into());
        })
        .await
    else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let mut orgs = Vec::new();
    for slug in ["busy", "also-busy", "quiet"] {
        let org = app.org_of(&owner, slug).await;
        let key = key_with(&app, &owner, &org, &["data:read"]).await;
        orgs.push((org, key));
    }
    for (org, key) in &orgs[..2] {
        let res = app.as_(key).get(format!("/v1/orgs/{org}/data")).await;
        assert_eq!(res.status(), 200);
    }
    // Another instance's calls: 9 for each busy organization and the quiet one.
    let today = chrono::Utc::now().date_naive();
    let batch: Vec<_> = orgs
        .iter()
        .map(|(org, _)| {
            let id: tenantry::ids::OrgId = org.as_str().parse().unwrap();
            ((id, tenantry::usage::API_CALLS, today), 9)
        })
        .collect();
    app.store
        .record_metered(&batch, "other-instance:1")
        .await
        .unwrap();
    // The meter's own call of each busy organization is written too.
    app.state.usage.flush().await.unwrap();

    // Half the refresh interval later (before a request would re-read it itself).
    let started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(3100)).await;
    app.state.usage.refresh_active().await.unwrap();
    for (org, key) in &orgs[..2] {
        let res = app.as_(key).get(format!("/v1/orgs/{org}/data")).await;
        let body = assert_problem(res, 429, "quota_exceeded").await;
        assert_eq!(body["used"], 10, "{body}");
    }
    assert!(
        started.elapsed() < Duration::from_millis(5500),
        "the requests came before their own re-read was due"
    );
    // The quiet organization made no call here: the first one reads its total and is
    // admitted (9 of 10), the next is refused.
    let (quiet, key) = &orgs[2];
    let res = app.as_(key).get(format!("/v1/orgs/{quiet}/data")).await;
    assert_eq!(res.status(), 200);
    let res = app.as_(key).get(format!("/v1/orgs/{quiet}/data")).await;
    assert_problem(res, 429, "quota_exceeded").await;
}
