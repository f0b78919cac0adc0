//! Background jobs: API, idempotency, retries, dead-lettering, exactly-once claims under
//! many workers, lease reclaim after a killed worker process, shutdown drain.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tenantry::auth::TenantCtx;
use tenantry::config::Config;
use tenantry::ids::{JobId, OrgId};
use tenantry::jobs::{EchoJob, JobHandler as _};
use tenantry::jobs::{Registry, Worker};
use tenantry::store::jobs::{Enqueued, Job, NewJob};
use tenantry::store::Store;
use tokio_util::sync::CancellationToken;

use crate::helpers::{assert_problem, wait_job, Backend, Listed, TestApp, TestDatabase};
use crate::on_both_backends;

on_both_backends!(
    enqueue_run_and_idempotency,
    retries_dead_letters_cancel_and_retry,
    many_workers_claim_each_job_once,
    shutdown_drains_running_jobs,
    killed_worker_process_job_is_reclaimed,
);

async fn enqueue_run_and_idempotency(backend: Backend) {
    let Some(mut app) = TestApp::on(backend).await else {
        return;
    };
    // Jobs scheduled for 2999 stay queued.
    app.expect_leftover_jobs();
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let path = format!("/v1/orgs/{acme}/jobs");
    let send = |key: Option<&'static str>, body: Value| {
        let mut req = app
            .client
            .post(app.url(&path))
            .bearer_auth(&owner.token)
            .json(&body);
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        req.send()
    };
    let body = json!({"type": "echo", "payload": {"message": "hi"}});
    let res = send(Some("abc"), body.clone()).await.unwrap();
    assert_eq!(res.status(), 201);
    let job: Value = res.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("job_"));
    let again = send(Some("abc"), body.clone()).await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["id"], job["id"]);
    let same_in_body = send(
        None,
        json!({"type": "echo", "payload": {"message": "hi"}, "idempotency_key": "abc"}),
    )
    .await
    .unwrap();
    assert_eq!(same_in_body.json::<Value>().await.unwrap()["id"], job["id"]);
    let other = send(
        Some("abc"),
        json!({"type": "echo", "payload": {"message": "changed"}}),
    )
    .await
    .unwrap();
    assert_eq!(
        assert_problem(other, 422, "validation_failed").await["errors"][0]["field"],
        "idempotency_key"
    );
    let clash = send(
        Some("abc"),
        json!({"type": "echo", "payload": {"message": "hi"}, "idempotency_key": "xyz"}),
    )
    .await
    .unwrap();
    assert_problem(clash, 422, "validation_failed").await;
    for (bad, field) in [
        (json!({"type": "nope", "payload": {}}), "kind"),
        (json!({"type": "email.dispatch", "payload": {}}), "kind"),
        (
            json!({"type": "echo", "payload": {"fail_attempts": "x"}}),
            "payload",
        ),
        (
            json!({"type": "echo", "payload": {"message": "m"}, "max_attempts": 0}),
            "max_attempts",
        ),
    ] {
        let res = send(None, bad).await.unwrap();
        assert_eq!(
            assert_problem(res, 422, "validation_failed").await["errors"][0]["field"],
            field
        );
    }
    let done = wait_job(&app, &owner, &acme, &id, "succeeded").await;
    assert_eq!(done["result"]["echo"], json!({"message": "hi"}));
    assert_eq!(done["attempts"], 1);

    // Keys are per organization: another org may use "abc" too.
    let other_org = app.org_of(&owner, "other").await;
    let res = app
        .as_(&owner)
        .post(
            format!("/v1/orgs/{other_org}/jobs"),
            json!({"type": "echo", "payload": {"message": "x"}, "idempotency_key": "abc"}),
        )
        .await;
    assert_eq!(res.status(), 201);

    // Cursor pagination and status filter.
    for i in 0..4 {
        let res = app.as_(&owner).post(path.clone(), json!({"type": "echo", "payload": {"message": format!("m{i}")}, "run_at": "2999-01-01T00:00:00Z"})).await;
        assert_eq!(res.status(), 201);
    }
    let page: Value = app
        .as_(&owner)
        .get(format!("{path}?limit=3"))
        .await
        .json()
        .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 3);
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest: Value = app
        .as_(&owner)
        .get(format!("{path}?limit=3&cursor={cursor}"))
        .await
        .json()
        .await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 2);
    assert!(rest["next_cursor"].is_null());
    let waiting: Value = app
        .as_(&owner)
        .get(format!("{path}?status=available"))
        .await
        .json()
        .await;
    assert_eq!(waiting["data"].as_array().unwrap().len(), 4);
    let res = app.as_(&owner).get(format!("{path}?status=weird")).await;
    assert_problem(res, 422, "validation_failed").await;
    let audit: Listed = app
        .as_(&owner)
        .get(format!(
            "/v1/orgs/{acme}/audit-events?action=job.enqueued&limit=200"
        ))
        .await
        .json()
        .await;
    assert_eq!(
        audit.len(),
        5,
        "one record per created job, none for idempotent replays"
    );
}

async fn retries_dead_letters_cancel_and_retry(backend: Backend) {
    let Some(mut app) = TestApp::on(backend).await else {
        return;
    };
    // A job dead-lettered on purpose, and one scheduled for 2999.
    app.expect_leftover_jobs();
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let member_token = app.member(&acme, "mia@example.com", "member").await;
    let enqueue = |body: Value| {
        app.as_(&member_token)
            .post(format!("/v1/orgs/{acme}/jobs"), body)
    };
    let flaky: Value = enqueue(
        json!({"type": "echo", "payload": {"message": "m", "fail_attempts": 2}, "max_attempts": 5}),
    )
    .await
    .json()
    .await;
    let doomed: Value = enqueue(json!({"type": "echo", "payload": {"message": "m", "fail_attempts": 10}, "max_attempts": 2})).await.json().await;
    let flaky = wait_job(
        &app,
        &owner,
        &acme,
        flaky["id"].as_str().unwrap(),
        "succeeded",
    )
    .await;
    assert_eq!(flaky["attempts"], 3, "two failures, then success");
    let doomed_id = doomed["id"].as_str().unwrap().to_owned();
    let dead = wait_job(&app, &owner, &acme, &doomed_id, "dead").await;
    assert_eq!(dead["attempts"], 2);
    assert!(
        dead["last_error"]
            .as_str()
            .unwrap()
            .contains("failing on purpose"),
        "{dead}"
    );
    let audit: Listed = app
        .as_(&owner)
        .get(format!("/v1/orgs/{acme}/audit-events?action=job.dead"))
        .await
        .json()
        .await;
    assert_eq!(audit.len(), 1);
    // A dead job can be retried; it runs (and dies) again.
    let res = app
        .as_(&member_token)
        .post_empty(format!("/v1/orgs/{acme}/jobs/{doomed_id}/retry"))
        .await;
    assert_eq!(res.status(), 200);
    let dead_again = wait_job(&app, &owner, &acme, &doomed_id, "dead").await;
    assert_eq!(dead_again["attempts"], 2);

    let later: Value = enqueue(
        json!({"type": "echo", "payload": {"message": "m"}, "run_at": "2999-01-01T00:00:00Z"}),
    )
    .await
    .json()
    .await;
    let later_id = later["id"].as_str().unwrap();
    let cancel = format!("/v1/orgs/{acme}/jobs/{later_id}/cancel");
    let res = app.as_(&member_token).post_empty(cancel.clone()).await;
    assert_eq!(res.json::<Value>().await["status"], "cancelled");
    assert_problem(
        app.as_(&member_token).post_empty(cancel).await,
        409,
        "job_state",
    )
    .await;
    let res = app
        .as_(&member_token)
        .post_empty(format!(
            "/v1/orgs/{acme}/jobs/{}/retry",
            flaky["id"].as_str().unwrap()
        ))
        .await;
    assert_problem(res, 409, "job_state").await;
}

async fn platform_store(
    backend: Backend,
    vars: &mut std::collections::HashMap<String, String>,
) -> Option<(TestDatabase, Store, Config)> {
    let db = TestDatabase::create(backend).await?;
    let mut all = db.vars();
    all.extend(vars.drain());
    let config = Config::from_vars(&all).unwrap();
    let store = Store::new(
        tenantry::startup::connect_and_migrate(&config)
            .await
            .unwrap(),
    );
    Some((db, store, config))
}

fn echo(message: &str, sleep_ms: u64) -> NewJob {
    let mut job = EchoJob::job(json!({"message": message, "sleep_ms": sleep_ms}));
    job.max_attempts = 3;
    job
}

async fn enqueue(store: &Store, job: &NewJob) -> JobId {
    match store.enqueue_system_job(job).await.unwrap() {
        Enqueued::Created(job) | Enqueued::Existing(job) => job.id,
    }
}

async fn job(store: &Store, id: JobId) -> Job {
    store
        .get_job(&TenantCtx::for_tests(OrgId::PLATFORM), id)
        .await
        .unwrap()
}

async fn wait_status(store: &Store, id: JobId, status: &str, secs: u64) -> Job {
    for _ in 0..secs * 20 {
        let j = job(store, id).await;
        if j.status.as_str() == status {
            return j;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "job {id} never reached {status}: {:?}",
        job(store, id).await.status
    );
}

fn worker(store: &Store, config: &Config) -> Worker {
    Worker::new(
        store.clone(),
        Registry::builtin(),
        tenantry::jobs::JobServices::default(),
        config.worker.clone(),
        Arc::new(tokio::sync::Notify::new()),
    )
}

async fn many_workers_claim_each_job_once(backend: Backend) {
    let mut vars = [
        ("WORKER_CONCURRENCY".to_owned(), "4".to_owned()),
        ("JOB_POLL_INTERVAL_MS".to_owned(), "20".to_owned()),
    ]
    .into();
    let Some((_db, store, config)) = platform_store(backend, &mut vars).await else {
        return;
    };
    let mut ids = Vec::new();
    for i in 0..120 {
        ids.push(enqueue(&store, &echo(&format!("m{i}"), 0)).await);
    }
    let stop = CancellationToken::new();
    let workers: Vec<_> = (0..4)
        .map(|_| worker(&store, &config).spawn(stop.clone(), Duration::from_secs(10)))
        .collect();
    for id in &ids {
        let done = wait_status(&store, *id, "succeeded", 30).await;
        assert_eq!(done.attempts, 1, "claimed exactly once: {done:?}");
    }
    stop.cancel();
    for w in workers {
        w.join().await;
    }
}

async fn shutdown_drains_running_jobs(backend: Backend) {
    let Some((_db, store, config)) = platform_store(backend, &mut Default::default()).await else {
        return;
    };
    let id = enqueue(&store, &echo("slow", 1500)).await;
    let stop = CancellationToken::new();
    let handle = worker(&store, &config).spawn(stop.clone(), Duration::from_secs(20));
    wait_status(&store, id, "running", 10).await;
    stop.cancel();
    let queued_after = enqueue(&store, &echo("late", 0)).await;
    handle.join().await;
    let done = job(&store, id).await;
    assert_eq!(
        done.status.as_str(),
        "succeeded",
        "the running job finished before the worker stopped"
    );
    assert_eq!(
        job(&store, queued_after).await.status.as_str(),
        "available",
        "no new work was taken during shutdown"
    );
}

async fn killed_worker_process_job_is_reclaimed(backend: Backend) {
    let mut vars = [("JOB_LEASE_SEC".to_owned(), "2".to_owned())].into();
    let Some((db, store, config)) = platform_store(backend, &mut vars).await else {
        return;
    };
    let id = enqueue(&store, &echo("survivor", 2500)).await;
    let mut env = db.vars();
    env.insert("JOB_LEASE_SEC".into(), "2".into());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .arg("worker")
        .env_clear()
        .envs(env)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let running = wait_status(&store, id, "running", 30).await;
    assert_eq!(running.attempts, 1);
    child.kill().unwrap(); // SIGKILL mid-job: no chance to clean up.
    child.wait().unwrap();
    let stop = CancellationToken::new();
    let handle = worker(&store, &config).spawn(stop.clone(), Duration::from_secs(10));
    let done = wait_status(&store, id, "succeeded", 30).await;
    assert_eq!(
        done.attempts, 2,
        "reclaimed after the lease expired and run again"
    );
    assert_eq!(done.result.unwrap()["echo"]["message"], "survivor");
    stop.cancel();
    handle.join().await;
}
