//! A database outage while running: 503s, then recovery without restart.

use crate::helpers::{assert_problem, Backend, Proxy, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_is_503_and_recovers() {
    let Some(probe) = tenantry::testing::TestDatabase::create(Backend::Postgres).await else {
        return;
    };
    drop(probe);
    let proxy = Proxy::to_postgres().await;
    let Some(app) = TestApp::on(Backend::Postgres)
        .with_vars(|v| {
            proxy.route(v);
            v.insert("DATABASE_ACQUIRE_TIMEOUT_SEC".into(), "1".into());
        })
        .await
    else {
        return;
    };
    app.create_org("before-outage").await;

    proxy.cut();
    let res = app.client.get(app.url("/ready")).send().await.unwrap();
    let body = assert_problem(res, 503, "not_ready").await;
    assert!(
        body["checks"]["database"]
            .as_str()
            .unwrap()
            .starts_with("error"),
        "{body}"
    );
    let res = app.admin_get("/v1/admin/orgs").await;
    assert_problem(res, 503, "service_unavailable").await;

    proxy.restore();
    let mut recovered = false;
    for _ in 0..50 {
        if app
            .client
            .get(app.url("/ready"))
            .send()
            .await
            .unwrap()
            .status()
            == 200
        {
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(recovered, "ready again without restart");
    let orgs: crate::helpers::Listed = app.admin_get("/v1/admin/orgs").await.json().await.unwrap();
    assert_eq!(orgs.len(), 1, "data intact");
}

/// Connections that go silent (a failover, a lost NAT entry): requests time out with 503,
/// the stalled connections are closed rather than returned, the pool recovers once new
/// connections work, and shutdown stays within its grace period whatever the database does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_are_replaced_and_shutdown_is_bounded() {
    let Some(probe) = tenantry::testing::TestDatabase::create(Backend::Postgres).await else {
        return;
    };
    drop(probe);
    let proxy = Proxy::to_postgres().await;
    let Some(mut app) = TestApp::on(Backend::Postgres)
        .with_vars(|v| {
            proxy.route(v);
            v.insert("DATABASE_MAX_CONNECTIONS".into(), "3".into());
            v.insert("DATABASE_ACQUIRE_TIMEOUT_SEC".into(), "1".into());
            v.insert("REQUEST_TIMEOUT_SEC".into(), "2".into());
            v.insert("SHUTDOWN_TIMEOUT_SEC".into(), "2".into());
            v.insert("DATABASE_STATEMENT_TIMEOUT_SEC".into(), "2".into());
            v.insert("USAGE_FLUSH_INTERVAL_MS".into(), "100".into());
        })
        .await
    else {
        return;
    };
    // Shut down with the database frozen: jobs the worker took meanwhile can neither
    // finish nor be released, and stay `running` until a lease expires.
    app.expect_leftover_jobs();
    app.create_org("before-freeze").await;
    let orgs = || async { app.admin_get("/v1/admin/orgs").await.status().as_u16() };
    assert_eq!(orgs().await, 200);

    proxy.freeze();
    // Every in-flight request ends within the request timeout, as 503.
    let mut stalled = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let request = app
            .client
            .get(app.url("/v1/admin/orgs"))
            .bearer_auth(&app.admin_token);
        stalled.spawn(async move {
            let started = std::time::Instant::now();
            let status = request.send().await.unwrap().status().as_u16();
            (status, started.elapsed())
        });
    }
    for (status, took) in stalled.join_all().await {
        assert_eq!(status, 503);
        assert!(took < std::time::Duration::from_secs(4), "took {took:?}");
    }
    let ready = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "/ready reflects the stall");

    // The network comes back for new connections; the stalled ones never answer again.
    proxy.thaw();
    let mut recovered = false;
    for _ in 0..40 {
        if orgs().await == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(recovered, "the pool replaced its stalled connections");
    assert_eq!(
        app.client
            .get(app.url("/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Frozen again, with a request in flight: shutdown still ends within its grace.
    proxy.freeze();
    let in_flight = app
        .client
        .get(app.url("/v1/admin/orgs"))
        .bearer_auth(&app.admin_token)
        .send();
    let in_flight = tokio::spawn(in_flight);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    app.stop().await;
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(6),
        "shutdown took {took:?} with the database stalled"
    );
    in_flight.abort();
}
