//! Waiting for asynchronous outcomes, and reading whole lists.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::TestApp;

/// Polls `check` until it holds (true) or `within` passes (false).
pub async fn eventually<F, Fut>(within: Duration, check: F) -> bool
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < within {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The job `id` of `org` once it reaches `status` (30 s at most).
pub async fn wait_job(app: &TestApp, token: &str, org: &str, id: &str, status: &str) -> Value {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let job: Value = app
            .as_(token)
            .get(format!("/v1/orgs/{org}/jobs/{id}"))
            .await
            .json()
            .await;
        if job["status"] == status {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {id} never reached {status}");
}

/// Every item of `org` (`GET /v1/orgs/{org}/data`), page by page.
pub async fn all_items(app: &TestApp, token: &str, org: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/orgs/{org}/data?limit=200&cursor={c}"),
            None => format!("/v1/orgs/{org}/data?limit=200"),
        };
        let res = app.as_(token).get(path).await;
        assert_eq!(res.status(), 200);
        let page: Value = res.json().await;
        items.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
    }
}
