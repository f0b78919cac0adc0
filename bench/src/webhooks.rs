//! `webhooks`: Stripe webhooks on PostgreSQL, against a local fake Stripe.
//!
//! 1. Accepted events per second: `CLIENTS` keep-alive clients POST distinct signed events
//!    to `/v1/billing/webhook` (signature check, JSON parse, event row and its job in one
//!    transaction), the server running without a worker, against the single-row INSERT
//!    ceiling of the same database measured right before.
//! 2. Applied events per second: a worker drains that backlog (per event: the stored event
//!    read, the subscription re-read from the fake Stripe, the apply transaction).
//! 3. End-to-end apply latency at a steady `PACED_RATE` events/s with the worker running:
//!    from the webhook's receipt to the event's processed time (both stamped by Tenantry),
//!    p50 and p99.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::Path;
use axum::routing::{get, post};
use axum::{Json, Router};
use tenantry::config::Config;
use tenantry::secrets::Secret;
use tenantry::startup::Application;
use tenantry::testing::{Backend, TestDatabase};

use crate::api::{address, load_requests, unlimited_vars, CLIENTS};

const SECS: u64 = 10;
const ORGS: usize = 20;
/// Distinct events prepared for the acceptance run (more than it can send).
const EVENTS: usize = 80_000;
const PACED_RATE: u64 = 50;
const PACED_SECS: u64 = 10;
const WEBHOOK_SECRET: &str = "whsec_bench_webhook_secret";
const PRICE: &str = "price_bench_pro";

/// A fake Stripe: customers, Checkout sessions, and every `sub_<n>` active for `cus_<n>`.
async fn fake_stripe() -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let checkout = format!("{base}/checkout/cs_bench");
    let customers = Arc::new(AtomicU64::new(0));
    let app =
        Router::new()
            .route(
                "/v1/customers",
                post(move || {
                    let n = customers.fetch_add(1, Ordering::Relaxed);
                    async move {
                        Json(serde_json::json!({"id": format!("cus_{n}"), "object": "customer"}))
                    }
                }),
            )
            .route(
                "/v1/checkout/sessions",
                post(move || {
                    let url = checkout.clone();
                    async move { Json(serde_json::json!({"id": "cs_bench", "url": url})) }
                }),
            )
            .route(
                "/v1/subscriptions/{id}",
                get(|Path(id): Path<String>| async move {
                    let n = id.trim_start_matches("sub_").to_owned();
                    Json(serde_json::json!({
                        "id": id, "object": "subscription", "customer": format!("cus_{n}"),
                        "status": "active", "created": 1_700_000_000, "cancel_at_period_end": false,
                        "current_period_start": 1_700_000_000, "current_period_end": 1_702_592_000,
                        "items": {"data": [{"price": {"id": PRICE}}]},
                    }))
                }),
            );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(base)
}

/// The raw request delivering event `i` (a subscription update of organization
/// `i % ORGS`).
fn delivery(addr: &str, customers: &[String], i: usize, now: i64) -> String {
    let body = request_body(customers, i, now);
    let sig =
        tenantry::billing::signature::sign(&Secret::new(WEBHOOK_SECRET), now, body.as_bytes());
    format!(
        "POST /v1/billing/webhook HTTP/1.1\r\nhost: {addr}\r\nstripe-signature: {sig}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

pub(crate) async fn run() -> anyhow::Result<()> {
    let stripe = fake_stripe().await?;
    let db = TestDatabase::create(Backend::Postgres)
        .await
        .context("PostgreSQL unreachable")?;
    let owner = sqlx::PgPool::connect(&db.url).await?;
    let vars: HashMap<String, String> = unlimited_vars(
        &db,
        &[
            ("STRIPE_SECRET_KEY", "sk_test_bench"),
            ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("STRIPE_PRICE_PRO", PRICE),
            ("STRIPE_API_BASE", stripe.as_str()),
        ],
    );
    let config = Config::from_vars(&vars).map_err(|e| anyhow::anyhow!("{e}"))?;
    let app = Application::build(config.clone()).await?;
    let base = format!("http://{}", app.local_addr()?);
    let store = app.state().store.clone();
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.without_worker().run());
    let client = reqwest::Client::new();
    let customers = set_up(&client, &base).await?;
    let addr = address(&url::Url::parse(&base)?)?;

    // 1. Accepted events per second, against the INSERT ceiling.
    let ceilings = crate::jobs::Ceilings::measure(&owner).await?;
    let now = chrono::Utc::now().timestamp();
    let requests = (0..EVENTS)
        .map(|i| delivery(&addr, &customers, i, now))
        .collect();
    let accepted = load_requests(&addr, requests, 200, SECS).await?;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM billing_events")
        .fetch_one(&owner)
        .await?;
    anyhow::ensure!(
        usize::try_from(stored)? == accepted.ok.min(EVENTS),
        "every accepted event is stored: {} answered 200, {stored} stored",
        accepted.ok
    );
    println!(
        "accept: {CLIENTS} clients, verified + stored + job enqueued: {:.0} events/s p50={:.2} ms p99={:.2} ms -> {}; {stored} events stored",
        accepted.rps,
        accepted.p50(),
        accepted.p99(),
        ceilings.ratios(accepted.rps)
    );

    // 2. A worker drains the backlog.
    let billing = tenantry::billing::Billing::from_config(&config.billing)?;
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = tenantry::jobs::Worker::new(
        store.clone(),
        tenantry::jobs::Registry::builtin(),
        tenantry::jobs::JobServices {
            mailer: None,
            billing,
        },
        config.worker.clone(),
        Arc::new(tokio::sync::Notify::new()),
    )
    .spawn(stop.clone(), Duration::from_secs(30));
    let started = Instant::now();
    all_applied(&owner, Duration::from_secs(600)).await?;
    let drain = started.elapsed().as_secs_f64();
    println!(
        "apply: worker (concurrency {}), per event a subscription read from Stripe and one transaction: {:.0} events/s ({stored} in {drain:.1} s) -> {}",
        config.worker.concurrency,
        stored as f64 / drain,
        ceilings.ratios(stored as f64 / drain)
    );

    // 3. End-to-end latency at a steady rate.
    sqlx::query("UPDATE billing_events SET outcome = 'bench-backlog' WHERE outcome IS DISTINCT FROM 'bench-backlog'")
        .execute(&owner)
        .await?;
    let paced = PACED_RATE * PACED_SECS;
    let every = Duration::from_micros(1_000_000 / PACED_RATE);
    let now = chrono::Utc::now().timestamp();
    let mut tick = tokio::time::interval(every);
    let mut sends = Vec::new();
    for i in 0..paced {
        tick.tick().await;
        let body = request_body(&customers, EVENTS + usize::try_from(i)?, now);
        let sig =
            tenantry::billing::signature::sign(&Secret::new(WEBHOOK_SECRET), now, body.as_bytes());
        let (client, base) = (client.clone(), base.clone());
        sends.push(tokio::spawn(async move {
            client
                .post(format!("{base}/v1/billing/webhook"))
                .header("stripe-signature", sig)
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    for s in sends {
        anyhow::ensure!(s.await?? == 200, "a paced delivery was refused");
    }
    all_applied(&owner, Duration::from_secs(120)).await?;
    let (p50, p99): (f64, f64) = sqlx::query_as(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) \
         FROM (SELECT (extract(epoch FROM processed_at - received_at) * 1000)::float8 AS ms FROM billing_events \
               WHERE outcome IS DISTINCT FROM 'bench-backlog') t",
    )
    .fetch_one(&owner)
    .await?;
    println!("end to end at {PACED_RATE} events/s ({paced} events): receipt to applied p50={p50:.1} ms p99={p99:.1} ms");

    stop.cancel();
    worker.join().await;
    shutdown.cancel();
    server.await??;
    owner.close().await;
    drop(db);
    Ok(())
}

/// Waits until every stored event is applied, for at most `limit`.
async fn all_applied(owner: &sqlx::PgPool, limit: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM billing_events WHERE processed_at IS NULL")
                .fetch_one(owner)
                .await?;
        if left == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < limit,
            "{left} events still unapplied after {} s",
            limit.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn request_body(customers: &[String], i: usize, now: i64) -> String {
    let c = &customers[i % customers.len()];
    let n = c.trim_start_matches("cus_");
    serde_json::json!({
        "id": format!("evt_bench_{i}"), "object": "event", "type": "customer.subscription.updated",
        "created": now, "livemode": false,
        "data": {"object": {"id": format!("sub_{n}"), "object": "subscription", "customer": c, "status": "active"}},
    })
    .to_string()
}

/// `ORGS` organizations, each with a Stripe customer (through checkout); their customer ids.
async fn set_up(client: &reqwest::Client, base: &str) -> anyhow::Result<Vec<String>> {
    let reg: serde_json::Value = client
        .post(format!("{base}/v1/auth/register"))
        .json(&serde_json::json!({"email": "payer@example.com", "password": "bench password 42", "name": "Payer"}))
        .send()
        .await?
        .json()
        .await?;
    let access = reg["access_token"].as_str().context("no token")?.to_owned();
    let mut customers = Vec::with_capacity(ORGS);
    for i in 0..ORGS {
        let org: serde_json::Value = client
            .post(format!("{base}/v1/orgs"))
            .bearer_auth(&access)
            .json(&serde_json::json!({"name": format!("Payer {i}"), "slug": format!("payer-{i}")}))
            .send()
            .await?
            .json()
            .await?;
        let org = org["id"].as_str().context("no org")?.to_owned();
        let res = client
            .post(format!("{base}/v1/orgs/{org}/billing/checkout"))
            .bearer_auth(&access)
            .json(&serde_json::json!({"plan": "pro"}))
            .send()
            .await?;
        anyhow::ensure!(res.status() == 201, "checkout: {}", res.text().await?);
        let billing: serde_json::Value = client
            .get(format!("{base}/v1/orgs/{org}/billing"))
            .bearer_auth(&access)
            .send()
            .await?
            .json()
            .await?;
        customers.push(
            billing["customer_id"]
                .as_str()
                .context("no customer")?
                .to_owned(),
        );
    }
    Ok(customers)
}
