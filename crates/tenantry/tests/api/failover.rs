//! PostgreSQL restarted under load (a crash, or a failover to a standby at the same
//! address), on a cluster this test starts itself: while it is down every request answers
//! 503 and `/ready` says why; the service recovers without a restart; every acknowledged
//! write is there afterwards with its audit record; jobs that were running finish.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{all_items, key_with, wait_job, Backend, PgCluster, TestApp};

/// What one write request answered.
struct Outcome {
    name: String,
    status: u16,
    at: Instant,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_under_load_loses_no_acknowledged_write() {
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    let Some(mut app) = TestApp::on(Backend::Postgres)
        .with_vars(|v| {
            v.insert("DATABASE_URL".into(), cluster.url());
            v.insert("DATABASE_MIGRATION_URL".into(), cluster.url());
            v.insert("DATABASE_ACQUIRE_TIMEOUT_SEC".into(), "1".into());
            v.insert("REQUEST_TIMEOUT_SEC".into(), "5".into());
            v.insert("JOB_LEASE_SEC".into(), "3".into());
            // Every request checks its key in the database: while it is down, a valid key
            // must be answered 503, never 401.
            v.insert("API_KEY_CACHE_SEC".into(), "0".into());
            // The load is the point here, not the limits.
            v.insert("IP_RATE_LIMIT".into(), "0".into());
            v.insert("API_KEY_RATE_LIMIT".into(), "1000000".into());
            v.insert("ORG_RATE_LIMIT_FREE".into(), "1000000".into());
            v.insert("QUOTA_API_CALLS_FREE".into(), "0".into());
        })
        .await
    else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let key = key_with(&app, &owner, &acme, &["data:read", "data:write"]).await;

    let outcomes = Arc::new(Mutex::new(Vec::<Outcome>::new()));
    let stop = tokio_util::sync::CancellationToken::new();
    let mut writers = Vec::new();
    for writer in 0..6 {
        let (client, outcomes, stop) = (app.client.clone(), outcomes.clone(), stop.clone());
        let (url, key) = (app.url(&format!("/v1/orgs/{acme}/data")), key.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.is_cancelled() {
                n += 1;
                let name = format!("w{writer}-{n}");
                let res = client
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&json!({"name": name, "value": {"n": n}}))
                    .send()
                    .await
                    .unwrap();
                let status = res.status().as_u16();
                if status != 201 {
                    // Refusals carry a problem document; a short pause keeps the log short.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                outcomes.lock().unwrap().push(Outcome {
                    name,
                    status,
                    at: Instant::now(),
                });
            }
        }));
    }

    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Jobs that are running when the database goes away.
    let mut jobs = Vec::new();
    for i in 0..3 {
        jobs.push(enqueue(&app, &owner, &acme.to_string(), i, 2500).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let cluster = std::sync::Arc::new(cluster);
    let control = cluster.clone();
    tokio::task::spawn_blocking(move || control.stop_server("immediate"))
        .await
        .unwrap();
    let down_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let res = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(res.status(), 503, "/ready while the database is down");
    let ready: Value = res.json().await.unwrap();
    assert!(
        ready["checks"]["database"]
            .as_str()
            .unwrap()
            .starts_with("error"),
        "{ready}"
    );
    let res = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(res.status(), 200, "the process itself is alive");
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Requests may succeed as soon as the server accepts connections, before `pg_ctl`
    // returns: the outage window ends when the start begins.
    let restart_at = Instant::now();
    let control = cluster.clone();
    tokio::task::spawn_blocking(move || control.start_server())
        .await
        .unwrap();
    let up_at = Instant::now();
    let mut ready_after = None;
    while up_at.elapsed() < Duration::from_secs(30) {
        let res = app.client.get(app.url("/ready")).send().await.unwrap();
        if res.status() == 200 {
            ready_after = Some(up_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ready_after = ready_after.expect("ready again without a restart");
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    for writer in writers {
        writer.await.unwrap();
    }

    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    let statuses: HashSet<u16> = outcomes.iter().map(|o| o.status).collect();
    assert!(
        statuses.is_subset(&HashSet::from([201, 503])),
        "only 201 or 503, never a 500: {statuses:?}"
    );
    let during = outcomes
        .iter()
        .filter(|o| o.at > down_at + Duration::from_millis(200) && o.at < restart_at)
        .collect::<Vec<_>>();
    let answered: Vec<(u16, Duration)> =
        during.iter().map(|o| (o.status, o.at - down_at)).collect();
    assert!(
        !during.is_empty() && during.iter().all(|o| o.status == 503),
        "every answer while the database was down is 503: {answered:?}"
    );
    let first_write = outcomes
        .iter()
        .filter(|o| o.at > up_at && o.status == 201)
        .map(|o| o.at - up_at)
        .min()
        .expect("writes succeed again");
    let acknowledged: HashSet<&str> = outcomes
        .iter()
        .filter(|o| o.status == 201)
        .map(|o| o.name.as_str())
        .collect();
    let refused: HashSet<&str> = outcomes
        .iter()
        .filter(|o| o.status == 503)
        .map(|o| o.name.as_str())
        .collect();

    let items = all_items(&app, &key, &acme.to_string()).await;
    let stored: HashSet<String> = items
        .iter()
        .map(|item| item["name"].as_str().unwrap().to_owned())
        .collect();
    let lost: Vec<&&str> = acknowledged
        .iter()
        .filter(|n| !stored.contains(**n))
        .collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    let committed_unacknowledged = refused.iter().filter(|n| stored.contains(**n)).count();
    eprintln!(
        "failover figures: database down {:.1} s; /ready 200 {} ms after it accepted \
         connections, first acknowledged write after {} ms; {} writes acknowledged, {} \
         refused with 503 ({} of those committed all the same), 0 acknowledged writes lost",
        (up_at - down_at).as_secs_f64(),
        ready_after.as_millis(),
        first_write.as_millis(),
        acknowledged.len(),
        refused.len(),
        committed_unacknowledged,
    );

    // Every stored item has its audit record, in a chain that verifies.
    wait_verified(&app, &acme.to_string()).await;
    let export = app
        .admin_get(&format!(
            "/v1/admin/orgs/{acme}/audit-events?action=data_item.created&format=ndjson"
        ))
        .await;
    assert_eq!(export.status(), 200);
    let recorded: HashSet<String> = export
        .text()
        .await
        .unwrap()
        .lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line).unwrap();
            record["target_id"].as_str().unwrap().to_owned()
        })
        .collect();
    let unrecorded: Vec<&str> = items
        .iter()
        .map(|item| item["id"].as_str().unwrap())
        .filter(|id| !recorded.contains(*id))
        .collect();
    assert!(
        unrecorded.is_empty(),
        "items without their record: {unrecorded:?}"
    );
    assert_eq!(recorded.len(), items.len(), "no record without its item");

    // The running jobs finish (their leases are renewed or reclaimed), and new ones run.
    jobs.push(enqueue(&app, &owner, &acme.to_string(), 9, 0).await);
    for id in &jobs {
        wait_job(&app, &owner, &acme.to_string(), id, "succeeded").await;
    }
    app.stop().await;
}

async fn enqueue(app: &TestApp, token: &str, org: &str, i: u32, sleep_ms: u64) -> String {
    let res = app
        .as_(token)
        .post(
            format!("/v1/orgs/{org}/jobs"),
            json!({"type": "echo", "payload": {"message": format!("job {i}"), "sleep_ms": sleep_ms}}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let job: Value = res.json().await;
    job["id"].as_str().unwrap().to_owned()
}

/// The chain's verification once it reports valid (the sealer catches up after the restart).
async fn wait_verified(app: &TestApp, org: &str) -> Value {
    let started = Instant::now();
    loop {
        let res = app
            .admin_get(&format!("/v1/admin/orgs/{org}/audit-events/verify"))
            .await;
        let verdict: Value = res.json().await.unwrap();
        if verdict["valid"] == true {
            return verdict;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the chain verifies: {verdict}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
