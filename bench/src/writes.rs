//! `writes`: audited writes on PostgreSQL. `POST /v1/orgs/{org}/data` with an API key (key
//! check, scope, rate limits, metering with the quota check, then the row and its audit
//! record, atomically: one statement on PostgreSQL), from `CLIENTS` keep-alive clients:
//!
//! - into one organization (every writer of the same tenant), and
//! - spread over `ORGS` organizations,
//!
//! each against the single-row INSERT ceiling of the same database (autocommit, the same
//! connection count; on connections the clients hold, as `pgbench` does, and through a
//! default sqlx pool) measured right before it in the same run. After each run the same
//! audited write is called on the store directly, without the HTTP request path, which
//! separates the database's share of the cost from the service's. The server runs with its
//! worker, so the audit sealer links the records while the load runs; after each run the
//! benchmark waits for the last record to be sealed and checks the log is complete: one
//! record per item, none unsealed, every chain verifying.

use anyhow::Context;
use std::time::{Duration, Instant};

use tenantry::auth::TenantCtx;
use tenantry::config::Config;
use tenantry::ids::OrgId;
use tenantry::startup::Application;
use tenantry::store::Store;
use tenantry::testing::{Backend, TestDatabase};

use crate::api::{address, load_requests, unlimited_vars, Run, CLIENTS};
use crate::jobs::Ceilings;

/// Seconds of each measured run.
const SECS: u64 = 10;

/// Organizations of the spread scenario.
const ORGS: usize = 1000;

pub(crate) async fn run() -> anyhow::Result<()> {
    let db = TestDatabase::create(Backend::Postgres)
        .await
        .context("PostgreSQL unreachable")?;
    let owner = sqlx::PgPool::connect(&db.url).await?;

    let vars = unlimited_vars(&db, &[("INTERNAL_ADMIN_TOKEN", ADMIN)]);
    let config = Config::from_vars(&vars).map_err(|e| anyhow::anyhow!("{e}"))?;
    let app = Application::build(config).await?;
    let base = format!("http://{}", app.local_addr()?);
    let store = app.state().store.clone();
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run());
    let client = reqwest::Client::new();
    let writers = Writers::set_up(&client, &base, ORGS).await?;
    let addr = address(&url::Url::parse(&base)?)?;

    // The ceilings are measured right before each scenario: this machine's speed drifts.
    for (name, orgs, target) in [
        ("one organization".to_owned(), 1, 0.5),
        (format!("{ORGS} organizations"), ORGS, 0.7),
    ] {
        let ceilings = Ceilings::measure(&owner).await?;
        let requests = (0..orgs).map(|i| writers.request(&addr, i)).collect();
        let run = load_requests(&addr, requests, 201, SECS).await?;
        let lag = sealed_after(&client, &base, &owner).await?;
        let direct = store_writes(&store, &writers.orgs[..orgs]).await?;
        sealed_after(&client, &base, &owner).await?;
        report(&name, &run, &ceilings, direct, target, lag);
    }

    complete(&client, &base, &owner, &writers).await?;
    shutdown.cancel();
    server.await??;
    owner.close().await;
    Ok(())
}

/// The audited write without the HTTP request path: `CLIENTS` tasks calling the store's
/// `create_data_item` (the same statement on the same kept connections as the endpoint)
/// into `orgs` round-robin for `SECS` seconds, while the sealer links the records. Writes
/// per second (what the database work of an audited write allows on this machine) and the
/// CPU per write.
async fn store_writes(
    store: &Store,
    orgs: &[(String, String)],
) -> anyhow::Result<(f64, crate::cpu::Use)> {
    let tenants = orgs
        .iter()
        .map(|(org, _)| {
            let org = org.parse::<OrgId>().map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(TenantCtx::for_tests(org))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let tenants = std::sync::Arc::new(tenants);
    let until = Instant::now() + Duration::from_secs(SECS);
    let started = Instant::now();
    let cpu = crate::cpu::Sample::take()?;
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let (store, tenants) = (store.clone(), tenants.clone());
        tasks.push(tokio::spawn(async move {
            let value = serde_json::json!({"n": 1});
            let mut n = 0usize;
            while Instant::now() < until {
                let ctx = &tenants[(client + n * CLIENTS) % tenants.len()];
                store.create_data_item(ctx, "written", &value).await?;
                n += 1;
            }
            Ok::<_, anyhow::Error>(n)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    Ok((rate, cpu.until_now(total)?))
}

const ADMIN: &str = "bench-operator-token-0123456789abcdef";

/// Organizations, each with a `data:write` key.
struct Writers {
    orgs: Vec<(String, String)>,
}

impl Writers {
    /// One user (one registration), `n` organizations and a key in each, over HTTP.
    async fn set_up(client: &reqwest::Client, base: &str, n: usize) -> anyhow::Result<Self> {
        let reg: serde_json::Value = client
            .post(format!("{base}/v1/auth/register"))
            .json(&serde_json::json!({"email": "writer@example.com", "password": "bench password 42", "name": "Writer"}))
            .send()
            .await?
            .json()
            .await?;
        let access = reg["access_token"].as_str().context("no token")?.to_owned();
        let mut orgs = Vec::with_capacity(n);
        for i in 0..n {
            let org: serde_json::Value = client
                .post(format!("{base}/v1/orgs"))
                .bearer_auth(&access)
                .json(&serde_json::json!({"name": format!("Org {i}"), "slug": format!("org-{i}")}))
                .send()
                .await?
                .json()
                .await?;
            let org = org["id"].as_str().context("no org")?.to_owned();
            let key: serde_json::Value = client
                .post(format!("{base}/v1/orgs/{org}/api-keys"))
                .bearer_auth(&access)
                .json(&serde_json::json!({"name": "writer", "scopes": ["data:write"]}))
                .send()
                .await?
                .json()
                .await?;
            let secret = key["secret"].as_str().context("no key")?.to_owned();
            orgs.push((org, secret));
        }
        Ok(Self { orgs })
    }

    /// The raw request creating one item in organization `i`.
    fn request(&self, addr: &str, i: usize) -> String {
        let (org, key) = &self.orgs[i];
        let body = r#"{"name":"written","value":{"n":1}}"#;
        format!(
            "POST /v1/orgs/{org}/data HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    }
}

fn report(
    what: &str,
    run: &Run,
    ceilings: &Ceilings,
    (direct, direct_cpu): (f64, crate::cpu::Use),
    target: f64,
    lag: SealLag,
) {
    println!(
        "{what}, {CLIENTS} writers, row + audit record: {:.0} req/s p50={:.2} ms p99={:.2} ms -> {:.2}x the INSERT ceiling \
         on held connections (target >= {target}{}), {:.2}x through a default pool; \
         audit seal lag p99={:.0} ms max={:.0} ms, last record sealed {:.0} ms after the load stopped",
        run.rps,
        run.p50(),
        run.p99(),
        run.rps / ceilings.held,
        if target <= 0.5 { ", p99 <= 10 ms" } else { "" },
        run.rps / ceilings.pooled,
        lag.p99 * 1e3,
        lag.max * 1e3,
        lag.drained_ms,
    );
    println!("  {}", run.cpu.describe("request"));
    println!(
        "{what}, the store's audited write called directly ({CLIENTS} tasks, no HTTP): {direct:.0} writes/s = {:.2}x \
         the INSERT ceiling on held connections; the endpoint reached {:.2}x of it",
        direct / ceilings.held,
        run.rps / direct,
    );
    println!("  {}", direct_cpu.describe("write"));
    if let (Some(write), Some(row)) = (direct_cpu.database_us, ceilings.held_cpu.database_us) {
        println!(
            "  PostgreSQL CPU of an audited write (sealing included) = {:.2}x that of a ceiling row; \
             of an HTTP request, {:.2}x",
            write / row,
            run.cpu.database_us.unwrap_or(f64::NAN) / row
        );
    }
}

/// How long records waited for the sealer, from its `audit_seal_lag_seconds` summary
/// (process-wide, so cumulative over the runs so far), and how long after the load stopped
/// the last one was sealed.
struct SealLag {
    p99: f64,
    max: f64,
    drained_ms: f64,
}

/// Waits until no record is waiting for the sealer; returns the lag figures.
async fn sealed_after(
    client: &reqwest::Client,
    base: &str,
    owner: &sqlx::PgPool,
) -> anyhow::Result<SealLag> {
    let stopped = Instant::now();
    loop {
        let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_pending")
            .fetch_one(owner)
            .await?;
        if pending == 0 {
            break;
        }
        anyhow::ensure!(
            stopped.elapsed() < Duration::from_secs(60),
            "{pending} records still unsealed a minute after the load"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drained_ms = stopped.elapsed().as_secs_f64() * 1e3;
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let quantile = |q: &str| -> anyhow::Result<f64> {
        let prefix = format!("audit_seal_lag_seconds{{quantile=\"{q}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .context("no audit_seal_lag_seconds in /metrics")?
            .trim()
            .parse()
            .context("lag figure")
    };
    Ok(SealLag {
        p99: quantile("0.99")?,
        max: quantile("1")?,
        drained_ms,
    })
}

/// Every item has its record, every record is sealed, every chain verifies.
async fn complete(
    client: &reqwest::Client,
    base: &str,
    owner: &sqlx::PgPool,
    writers: &Writers,
) -> anyhow::Result<()> {
    let (items, records): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM data_items), \
                (SELECT count(*) FROM audit_events WHERE action = 'data_item.created')",
    )
    .fetch_one(owner)
    .await?;
    anyhow::ensure!(
        items == records,
        "{items} items but {records} audit records"
    );
    let started = Instant::now();
    let mut first = None;
    for (i, (org, _)) in writers.orgs.iter().enumerate() {
        let report: serde_json::Value = client
            .get(format!("{base}/v1/admin/orgs/{org}/audit-events/verify"))
            .bearer_auth(ADMIN)
            .send()
            .await?
            .json()
            .await?;
        anyhow::ensure!(
            report["valid"] == true && report["unsealed"] == 0,
            "chain of organization {i} ({org}): {report}"
        );
        if i == 0 {
            let checked = report["checked"].as_i64().unwrap_or(0);
            first = Some((checked, started.elapsed().as_secs_f64()));
        }
    }
    println!(
        "audit complete: {items} items written, {records} records, all sealed, {} chains verified in {:.1} s \
         (the busy organization's {} records in {:.2} s)",
        writers.orgs.len(),
        started.elapsed().as_secs_f64(),
        first.map_or(0, |(n, _)| n),
        first.map_or(0.0, |(_, s)| s),
    );
    Ok(())
}
