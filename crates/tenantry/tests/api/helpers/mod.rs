//! Shared test support: the test application, the two-backend test macro, and the
//! helpers several test modules use (accounts, requests, keys, usage, SMTP, proxies).

mod accounts;
mod client;
mod instance;
mod keys;
mod leftover;
mod poll;
mod proxy;
mod seed;
mod servers;
pub mod smtp;
pub mod stripe;
mod usage;

pub use accounts::{register, PASSWORD};
pub use instance::Instance;
pub use keys::{create_key, key_with};
pub use poll::{all_items, eventually, wait_job};
pub use proxy::Proxy;
pub use seed::{Org, User};
pub use servers::{postgres_bindir, PgBouncer, PgCluster};
pub use usage::meter;

use std::collections::HashMap;
use std::net::SocketAddr;

use serde_json::Value;
use tenantry::config::Config;
use tenantry::startup::Application;
use tenantry::store::Store;
pub use tenantry::testing::{Backend, TestDatabase};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Generates `sqlite` and `postgres` test functions for each named `async fn(Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            }
        )*
    };
}

/// A running application on a fresh database.
pub struct TestApp {
    /// `http://127.0.0.1:port`.
    pub base: String,
    /// HTTP client.
    pub client: reqwest::Client,
    /// The operator token.
    pub admin_token: String,
    /// Storage of the running app (same pool).
    pub store: Store,
    /// The running app's state.
    pub state: tenantry::state::AppState,
    /// Configuration variables the app was built from.
    pub vars: HashMap<String, String>,
    shutdown: CancellationToken,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    /// The test leaves jobs behind on purpose ([`TestApp::expect_leftover_jobs`]).
    leftover_jobs_expected: bool,
    /// The leftover-jobs check ran.
    jobs_checked: bool,
    /// Dropped last: removes the database.
    pub db: TestDatabase,
}

/// Vars adjustments of a [`Launch`].
type Adjust<'a> = Box<dyn FnOnce(&mut HashMap<String, String>) + 'a>;

/// An app about to start: `TestApp::on(backend).with_vars(|v| …).await`.
pub struct Launch<'a> {
    backend: Backend,
    adjust: Vec<Adjust<'a>>,
}

impl<'a> Launch<'a> {
    /// Adjusts the configuration variables before the app is built.
    #[must_use]
    pub fn with_vars(mut self, adjust: impl FnOnce(&mut HashMap<String, String>) + 'a) -> Self {
        self.adjust.push(Box::new(adjust));
        self
    }
}

impl<'a> std::future::IntoFuture for Launch<'a> {
    type Output = Option<TestApp>;
    type IntoFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Option<TestApp>> + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(TestApp::spawn_with(self.backend, move |vars| {
            for adjust in self.adjust {
                adjust(vars);
            }
        }))
    }
}

impl TestApp {
    /// The app on `backend`, started by awaiting it (`None` when PostgreSQL is unavailable
    /// and not required).
    pub fn on(backend: Backend) -> Launch<'static> {
        Launch {
            backend,
            adjust: Vec::new(),
        }
    }

    /// Spawns the app with adjusted configuration variables.
    async fn spawn_with(
        backend: Backend,
        adjust: impl FnOnce(&mut HashMap<String, String>),
    ) -> Option<Self> {
        let db = TestDatabase::create(backend).await?;
        let mut vars = db.vars();
        adjust(&mut vars);
        let config = Config::from_vars(&vars).expect("valid test config");
        let app = Application::build(config).await.expect("app builds");
        let addr: SocketAddr = app.local_addr().expect("bound");
        let store = app.state().store.clone();
        let state = app.state().clone();
        let shutdown = app.shutdown_token();
        let server = tokio::spawn(app.run());
        Some(Self {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            admin_token: vars["INTERNAL_ADMIN_TOKEN"].clone(),
            store,
            state,
            vars,
            shutdown,
            server: Some(server),
            leftover_jobs_expected: false,
            jobs_checked: false,
            db,
        })
    }

    /// Shuts the app down gracefully and waits until it has stopped; then checks that no
    /// job was left running, failed or dead (see [`TestApp::expect_leftover_jobs`]).
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("clean stop");
        }
        if let Err(leftover) = self.check_jobs(true).await {
            panic!("{leftover}");
        }
    }

    /// Absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET with the operator token.
    pub async fn admin_get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .expect("request")
    }

    /// POST JSON with the operator token.
    pub async fn admin_post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(&self.admin_token)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// PUT JSON with the operator token.
    pub async fn admin_put(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .put(self.url(path))
            .bearer_auth(&self.admin_token)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// DELETE with the operator token.
    pub async fn admin_delete(&self, path: &str) -> reqwest::Response {
        self.client
            .delete(self.url(path))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .expect("request")
    }

    /// The served OpenAPI document.
    pub async fn spec(&self) -> Value {
        self.client
            .get(self.url("/openapi.json"))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json")
    }

    /// Creates an organization through the operator API; returns its JSON.
    pub async fn create_org(&self, slug: &str) -> Value {
        let res = self
            .admin_post(
                "/v1/admin/orgs",
                &serde_json::json!({"name": slug, "slug": slug}),
            )
            .await;
        assert_eq!(res.status(), 201, "create org {slug}");
        res.json().await.expect("json")
    }
}

impl Drop for TestApp {
    /// Runs the leftover-jobs check (unless the test is already failing), then stops the
    /// app; panics afterwards if jobs were left behind.
    fn drop(&mut self) {
        let mut verdict = Ok(());
        if !std::thread::panicking() {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
                    let stopped = self.server.is_none();
                    verdict =
                        tokio::task::block_in_place(|| handle.block_on(self.check_jobs(stopped)));
                }
            }
        }
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.abort();
        }
        if let Err(leftover) = verdict {
            panic!("{leftover}");
        }
    }
}

/// A documented path under `/v1/orgs/{org_id}` with `org` and, for every other id it
/// names, an id of the right shape that exists nowhere.
pub fn fill_ids(template: &str, org: &str) -> String {
    template
        .replace("{org_id}", org)
        .replace("{ws_id}", &format!("ws_{}", "1".repeat(32)))
        .replace("{user_id}", &format!("usr_{}", "2".repeat(32)))
        .replace("{role_id}", &format!("rol_{}", "3".repeat(32)))
        .replace("{invitation_id}", &format!("inv_{}", "4".repeat(32)))
        .replace("{job_id}", &format!("job_{}", "5".repeat(32)))
        .replace("{key_id}", &format!("key_{}", "6".repeat(32)))
        .replace("{item_id}", &format!("item_{}", "7".repeat(32)))
        .replace("{token_id}", &format!("scimtok_{}", "8".repeat(32)))
}

/// Asserts a problem+json response with `status` and `code`; returns the body.
pub async fn assert_problem(res: impl Into<reqwest::Response>, status: u16, code: &str) -> Value {
    let res: reqwest::Response = res.into();
    assert_eq!(res.status().as_u16(), status, "status");
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let request_id = res
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: Value = res.json().await.expect("problem json");
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["type"], format!("urn:tenantry:problem:{code}"));
    assert!(body["title"].is_string(), "{body}");
    assert_eq!(
        body["request_id"].as_str(),
        request_id.as_deref(),
        "request id in body"
    );
    body
}

/// A list response: the one envelope `{"data": [...], "next_cursor": …}` and nothing else;
/// derefs to its items.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listed {
    /// The items.
    pub data: Vec<Value>,
    /// Cursor of the next page (`null` on the last).
    pub next_cursor: Option<String>,
}

impl std::ops::Deref for Listed {
    type Target = Vec<Value>;

    fn deref(&self) -> &Vec<Value> {
        &self.data
    }
}
