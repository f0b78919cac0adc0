//! The container image and the compose stack (`Dockerfile`, `compose.yaml`), built and run
//! on a local Docker engine with host networking only.
//!
//! Needs: a running Docker engine, `docker-compose` (or `docker compose`), a base image
//! (`TENANTRY_TEST_DOCKER_BASE`, default `tenantry-base:bookworm`: a Debian root file
//! system imported with `docker import`, see `deploy/test/base-image.sh`) and the release
//! binary (`TENANTRY_TEST_DOCKER_BINARY`, default `target/release/tenantry`). Without them
//! the suite prints `SKIPPED docker` and passes, unless `TENANTRY_TEST_REQUIRE_DOCKER=1`
//! (CI), which makes it fail.

#![expect(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
#![expect(
    unreachable_pub,
    reason = "test modules share their helpers as plain `pub`"
)]

mod docker;
mod stack;

use std::time::Duration;

use docker::Docker;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_runs_alone_and_the_stack_scales_out() {
    let Some(docker) = Docker::find() else {
        return;
    };
    let image = docker.build_tenantry_image();
    image_runs_alone(&docker, &image.0).await;
    let services = docker.build_services_image();
    let stack = stack::Stack::up(&docker, &image.0, &services).await;
    the_instances_log_in_as_the_service_role(&stack);
    readme_flow_through_the_balancer(&stack).await;
    revocation_and_limits_hold_across_instances(&stack).await;
    // The stack goes before its image.
    drop(stack);
}

/// `docker run` of the image by itself: non-root, SQLite in the `/data` volume, healthy by
/// its own `HEALTHCHECK`.
async fn image_runs_alone(docker: &Docker, image: &str) {
    let port = docker::free_port();
    let name = format!("tenantry-alone-{}", docker::suffix());
    let container = docker.run_detached(&[
        "--name",
        &name,
        "--network",
        "host",
        "-e",
        &format!("PORT={port}"),
        "-e",
        "HOST=127.0.0.1",
        "--health-interval",
        "1s",
        image,
    ]);
    let _cleanup = docker::Removal::container(docker, &container);
    let status = docker.wait_health(&container, Duration::from_secs(60));
    assert_eq!(status, "healthy", "{}", docker.logs(&container));
    assert_eq!(docker.exec(&container, &["id", "-u"]).trim(), "10001");
    let files = docker.exec(&container, &["ls", "/data"]);
    assert!(files.contains("tenantry.db"), "SQLite in /data: {files}");
    assert!(
        files.contains("secrets.env"),
        "dev secrets in /data: {files}"
    );
    let res = reqwest::get(format!("http://127.0.0.1:{port}/ready"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

/// The instances (and the worker) connect as `tenantry_service`, never as the superuser
/// that owns the schema and ran the migrations.
fn the_instances_log_in_as_the_service_role(stack: &stack::Stack<'_>) {
    let sessions = stack.compose(&[
        "exec",
        "-T",
        "postgres",
        "psql",
        "-U",
        "tenantry",
        "-d",
        "tenantry",
        "-tAc",
        "SELECT usename, count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND backend_type = 'client backend' AND pid <> pg_backend_pid() GROUP BY usename",
    ]);
    let users: Vec<&str> = sessions
        .lines()
        .filter_map(|l| l.split('|').next())
        .filter(|u| !u.is_empty())
        .collect();
    assert_eq!(users, ["tenantry_service"], "{sessions}");
}

/// The README's API-key flow, every call through the load balancer.
async fn readme_flow_through_the_balancer(stack: &stack::Stack<'_>) {
    stack.compose(&["exec", "-T", "api-1", "tenantry", "seed"]);
    let api = Api::new(stack.lb_url());
    let (access, org) = api.sign_in_as_the_demo_owner().await;
    let key = api
        .create_key(
            &access,
            &org,
            json!({"name": "demo",
            "scopes": ["data:read", "data:write", "usage:read"]}),
        )
        .await["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/orgs/{org}/data");
    let res = api
        .post(&key, &path, json!({"name": "hello", "value": {"n": 1}}))
        .await;
    assert_eq!(res.status(), 201);
    let res = api.get(&key, &path).await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers().contains_key("ratelimit-limit"),
        "{:?}",
        res.headers()
    );
    let listed: Value = res.json().await.unwrap();
    assert_eq!(listed["data"][0]["name"], "hello");
    let usage = api.get(&key, &format!("/v1/orgs/{org}/usage")).await;
    assert_eq!(usage.status(), 200);
    // Both instances served the balancer's requests.
    let served = stack.data_requests_served().await;
    assert!(
        served.iter().all(|n| *n > 0),
        "round robin reached both instances: {served:?}"
    );
}

/// A key revoked on one instance is refused by the other (which had it cached), and a
/// key's rate limit is one limit over both instances (Redis).
async fn revocation_and_limits_hold_across_instances(stack: &stack::Stack<'_>) {
    let [one, two] = stack.instance_urls().map(Api::new);
    let (access, org) = one.sign_in_as_the_demo_owner().await;
    let path = format!("/v1/orgs/{org}/data");
    let created = one
        .create_key(
            &access,
            &org,
            json!({"name": "revoked", "scopes": ["data:read"]}),
        )
        .await;
    let (id, secret) = (
        created["id"].as_str().unwrap(),
        created["secret"].as_str().unwrap(),
    );
    assert_eq!(
        two.get(secret, &path).await.status(),
        200,
        "instance 2 caches the key"
    );
    let res = one
        .client
        .delete(format!("{}/v1/orgs/{org}/api-keys/{id}", one.base))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut refused = false;
    for _ in 0..40 {
        if two.get(secret, &path).await.status() == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "instance 2 refuses the key revoked on instance 1");

    let limited = one
        .create_key(
            &access,
            &org,
            json!({"name": "limited", "scopes": ["data:read"],
            "rate_limit": {"limit": 6, "window_sec": 3600}}),
        )
        .await["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut statuses = Vec::new();
    for i in 0..12 {
        let instance = if i % 2 == 0 { &one } else { &two };
        statuses.push(instance.get(&limited, &path).await.status().as_u16());
    }
    let allowed = statuses.iter().filter(|s| **s == 200).count();
    let limited_count = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(
        (allowed, limited_count),
        (6, 6),
        "one limit of 6 shared by both instances: {statuses:?}"
    );
}

/// Calls to one base URL.
struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    fn new(base: String) -> Self {
        Self {
            base,
            client: reqwest::Client::new(),
        }
    }

    /// Signs in as the seeded owner; the access token and the first organization's id.
    async fn sign_in_as_the_demo_owner(&self) -> (String, String) {
        let login: Value = self
            .client
            .post(format!("{}/v1/auth/login", self.base))
            .json(&json!({"email": "owner@example.com", "password": "password123"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let access = login["access_token"]
            .as_str()
            .expect("signed in")
            .to_owned();
        let orgs: Value = self.get(&access, "/v1/orgs").await.json().await.unwrap();
        let org = orgs["data"][0]["id"].as_str().unwrap().to_owned();
        (access, org)
    }

    /// Creates a key; the answer (with `id` and `secret`).
    async fn create_key(&self, access: &str, org: &str, body: Value) -> Value {
        let res = self
            .post(access, &format!("/v1/orgs/{org}/api-keys"), body)
            .await;
        assert_eq!(res.status(), 201);
        res.json().await.unwrap()
    }

    async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    async fn post(&self, token: &str, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }
}
