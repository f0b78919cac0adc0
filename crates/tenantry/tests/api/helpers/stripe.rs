//! A fake Stripe: an axum server on port 0 that answers the requests Tenantry's Stripe
//! client makes, in Stripe's shapes, and records them. The real client talks to it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tenantry::secrets::Secret;

use super::TestApp;

/// Variables configuring Stripe against `fake` (two webhook secrets: rotation).
pub const SECRET_KEY: &str = "sk_test_tenantry_fake";
pub const WEBHOOK_SECRET: &str = "whsec_current_test_secret";
pub const OLD_WEBHOOK_SECRET: &str = "whsec_previous_test_secret";
pub const PRICE_PRO: &str = "price_pro_monthly";
pub const PRICE_ENTERPRISE: &str = "price_enterprise_monthly";

/// A request the fake received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub headers: HeaderMap,
    pub form: Vec<(String, String)>,
}

impl Recorded {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Default)]
struct Inner {
    requests: Vec<Recorded>,
    customers: HashMap<String, String>,
    sequence: u32,
    subscriptions: HashMap<String, Value>,
    meter_events: HashMap<String, (String, i64)>,
    /// Requests to a path to answer 500 (the request still counts when `lost`).
    failures: HashMap<String, (u32, bool)>,
    /// Delay of subscription reads.
    read_delay: Option<Duration>,
}

/// The fake server.
pub struct FakeStripe {
    pub base: String,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Shared = Arc<Mutex<Inner>>;

fn record(inner: &Shared, path: String, headers: &HeaderMap, form: Vec<(String, String)>) {
    inner.lock().unwrap().requests.push(Recorded {
        path,
        headers: headers.clone(),
        form,
    });
}

/// 500 when a failure is planned for `path`; `Some(true)` when the request must still take
/// effect (its answer is "lost").
fn planned_failure(inner: &Shared, path: &str) -> Option<bool> {
    let mut inner = inner.lock().unwrap();
    let (left, lost) = inner.failures.get_mut(path)?;
    if *left == 0 {
        return None;
    }
    *left -= 1;
    Some(*lost)
}

/// `None` when the request carries the secret key, else the 401 Stripe answers.
fn unauthorized(headers: &HeaderMap) -> Option<Response> {
    let expected = format!("Bearer {SECRET_KEY}");
    if headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str()) {
        None
    } else {
        Some(
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}})),
            )
                .into_response(),
        )
    }
}

fn server_error() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({"error": {"type": "api_error", "message": "planned failure"}})),
    )
        .into_response()
}

async fn customers(
    State(inner): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = unauthorized(&headers) {
        return r;
    }
    record(&inner, "/v1/customers".into(), &headers, form);
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut inner = inner.lock().unwrap();
    inner.sequence += 1;
    let next = format!("cus_test{}", inner.sequence);
    let id = inner.customers.entry(key).or_insert(next).clone();
    Json(json!({"id": id, "object": "customer"})).into_response()
}

/// A hosted session (Checkout, portal): `kind` names its object, id prefix and page path.
fn hosted_session(
    inner: &Shared,
    headers: &HeaderMap,
    form: Vec<(String, String)>,
    (path, object, prefix, page): (&str, &str, &str, &str),
) -> Response {
    if let Some(r) = unauthorized(headers) {
        return r;
    }
    record(inner, path.into(), headers, form);
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost")
        .to_owned();
    let mut inner = inner.lock().unwrap();
    inner.sequence += 1;
    let id = format!("{prefix}{}", inner.sequence);
    Json(json!({"id": id, "object": object, "url": format!("http://{host}/{page}/{id}")}))
        .into_response()
}

async fn checkout(
    State(inner): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let kind = (
        "/v1/checkout/sessions",
        "checkout.session",
        "cs_test",
        "checkout",
    );
    hosted_session(&inner, &headers, form, kind)
}

async fn portal(
    State(inner): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let kind = (
        "/v1/billing_portal/sessions",
        "billing_portal.session",
        "bps_test",
        "portal",
    );
    hosted_session(&inner, &headers, form, kind)
}

async fn subscription(
    State(inner): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = unauthorized(&headers) {
        return r;
    }
    record(
        &inner,
        format!("/v1/subscriptions/{id}"),
        &headers,
        Vec::new(),
    );
    let delay = inner.lock().unwrap().read_delay;
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    if planned_failure(&inner, "/v1/subscriptions").is_some() {
        return server_error();
    }
    match inner.lock().unwrap().subscriptions.get(&id) {
        Some(sub) => Json(sub.clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"type": "invalid_request_error", "code": "resource_missing", "message": format!("No such subscription: '{id}'")}})),
        )
            .into_response(),
    }
}

async fn list_subscriptions(
    State(inner): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = unauthorized(&headers) {
        return r;
    }
    record(
        &inner,
        "/v1/subscriptions".into(),
        &headers,
        query.clone().into_iter().collect(),
    );
    let customer = query.get("customer").cloned().unwrap_or_default();
    let data: Vec<Value> = inner
        .lock()
        .unwrap()
        .subscriptions
        .values()
        .filter(|s| s["customer"] == customer.as_str())
        .cloned()
        .collect();
    Json(json!({"object": "list", "data": data, "has_more": false})).into_response()
}

async fn meter_events(
    State(inner): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = unauthorized(&headers) {
        return r;
    }
    record(
        &inner,
        "/v1/billing/meter_events".into(),
        &headers,
        form.clone(),
    );
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let failure = planned_failure(&inner, "/v1/billing/meter_events");
    if failure == Some(false) {
        return server_error();
    }
    let identifier = field("identifier");
    let value: i64 = field("payload[value]").parse().unwrap_or(-1);
    // Stripe counts an identifier once.
    inner
        .lock()
        .unwrap()
        .meter_events
        .entry(identifier.clone())
        .or_insert((field("payload[stripe_customer_id]"), value));
    if failure == Some(true) {
        return server_error();
    }
    Json(json!({"object": "billing.meter_event", "identifier": identifier, "event_name": field("event_name")})).into_response()
}

async fn hosted_page(Path((kind, id)): Path<(String, String)>) -> Html<String> {
    Html(format!(
        "<!doctype html><title>Fake Stripe {kind}</title><h1>Fake Stripe {kind} {id}</h1>"
    ))
}

impl FakeStripe {
    pub async fn start() -> Self {
        let inner: Shared = Arc::default();
        let app = Router::new()
            .route("/v1/customers", post(customers))
            .route("/v1/checkout/sessions", post(checkout))
            .route("/v1/billing_portal/sessions", post(portal))
            .route("/v1/subscriptions", get(list_subscriptions))
            .route("/v1/subscriptions/{id}", get(subscription))
            .route("/v1/billing/meter_events", post(meter_events))
            .route("/{kind}/{id}", get(hosted_page))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { base, inner, task }
    }

    /// Configuration variables pointing Tenantry at this fake.
    pub fn configure(&self, vars: &mut HashMap<String, String>) {
        for (k, v) in [
            ("STRIPE_SECRET_KEY", SECRET_KEY.to_owned()),
            (
                "STRIPE_WEBHOOK_SECRET",
                format!("{WEBHOOK_SECRET},{OLD_WEBHOOK_SECRET}"),
            ),
            ("STRIPE_PRICE_PRO", PRICE_PRO.to_owned()),
            ("STRIPE_PRICE_ENTERPRISE", PRICE_ENTERPRISE.to_owned()),
            ("STRIPE_API_BASE", self.base.clone()),
        ] {
            vars.insert(k.to_owned(), v);
        }
    }

    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.inner
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Stripe's current state of a subscription, in the 2024-06-20 shape.
    pub fn set_subscription(
        &self,
        id: &str,
        customer: &str,
        status: &str,
        price: &str,
        created: i64,
        cancel_at_period_end: bool,
    ) {
        let start = created;
        let sub = json!({
            "id": id, "object": "subscription", "customer": customer, "status": status,
            "created": created, "cancel_at_period_end": cancel_at_period_end,
            "current_period_start": start, "current_period_end": start + 30 * 86_400,
            "items": {"object": "list", "data": [{"id": format!("si_{id}"), "price": {"id": price, "object": "price"}}]},
            "metadata": {},
        });
        self.inner
            .lock()
            .unwrap()
            .subscriptions
            .insert(id.to_owned(), sub);
    }

    /// The next `times` requests to `path` answer 500; `lost`: they take effect first.
    pub fn fail(&self, path: &str, times: u32, lost: bool) {
        self.inner
            .lock()
            .unwrap()
            .failures
            .insert(path.to_owned(), (times, lost));
    }

    pub fn delay_subscription_reads(&self, delay: Option<Duration>) {
        self.inner.lock().unwrap().read_delay = delay;
    }

    /// Usage Stripe counted, by identifier.
    pub fn meter_events(&self) -> HashMap<String, (String, i64)> {
        self.inner.lock().unwrap().meter_events.clone()
    }
}

/// An event as Stripe sends it.
pub fn event(id: &str, kind: &str, object: Value) -> Value {
    json!({
        "id": id, "object": "event", "type": kind, "api_version": "2024-06-20",
        "created": chrono::Utc::now().timestamp(), "livemode": false,
        "data": {"object": object},
    })
}

/// Delivers `body` to the webhook signed with `secret` at `timestamp`.
pub async fn deliver_raw(
    app: &TestApp,
    path: &str,
    body: &str,
    signature: Option<String>,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url(path))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(sig) = signature {
        req = req.header("stripe-signature", sig);
    }
    req.send().await.unwrap()
}

/// Delivers `event` signed with the current secret, now.
pub async fn deliver(app: &TestApp, event: &Value) -> reqwest::Response {
    let body = event.to_string();
    let sig = sign(WEBHOOK_SECRET, chrono::Utc::now().timestamp(), &body);
    deliver_raw(app, "/v1/billing/webhook", &body, Some(sig)).await
}

pub fn sign(secret: &str, timestamp: i64, body: &str) -> String {
    tenantry::billing::signature::sign(&Secret::new(secret), timestamp, body.as_bytes())
}
