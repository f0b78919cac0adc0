//! `writes`: audited writes on PostgreSQL. `POST /v1/orgs/{org}/data` with an API key (key
//! check, scope, rate limits, metering with the quota check, then the row and its audit
//! record, atomically: one statement on PostgreSQL), from `CLIENTS` keep-alive clients:
//!
//! - into one organization (every writer of the same tenant), and
//! - spread over `ORGS` organizations,
//!
//! each against the single-row INSERT ceiling of the same database (autocommit, the same
//! connection count) measured right before it in the same run. The server runs with its
//! worker, so the audit sealer links the records while the load runs; after each run the
//! benchmark waits for the last record to be sealed and checks the log is complete: one
//! record per item, none unsealed, every chain verifying.

use anyhow::Context;
use tenantry::config::Config;
use tenantry::startup::Application;
use tenantry::testing::{Backend, TestDatabase};

use crate::api::{address, load_requests, unlimited_vars, Run, CLIENTS, CONNECTIONS};

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
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run());
    let client = reqwest::Client::new();
    let writers = Writers::set_up(&client, &base, ORGS).await?;
    let addr = address(&url::Url::parse(&base)?)?;

    // The ceiling is measured right before each scenario: this machine's speed drifts.
    let ceiling = insert_ceiling(&owner).await?;
    let one = load_requests(&addr, vec![writers.request(&addr, 0)], 201, SECS).await?;
    let one_lag = sealed_after(&client, &base, &owner).await?;
    report("one organization", &one, ceiling, 0.5, one_lag);
    let ceiling = insert_ceiling(&owner).await?;
    let spread_requests = (0..ORGS).map(|i| writers.request(&addr, i)).collect();
    let spread = load_requests(&addr, spread_requests, 201, SECS).await?;
    let spread_lag = sealed_after(&client, &base, &owner).await?;
    report(
        &format!("{ORGS} organizations"),
        &spread,
        ceiling,
        0.7,
        spread_lag,
    );

    complete(&client, &base, &owner, &writers).await?;
    shutdown.cancel();
    server.await??;
    owner.close().await;
    Ok(())
}

/// The baseline, printed.
async fn insert_ceiling(owner: &sqlx::PgPool) -> anyhow::Result<f64> {
    sqlx::query("DROP TABLE IF EXISTS bench_insert")
        .execute(owner)
        .await?;
    let ceiling = crate::jobs::insert_ceiling(owner).await?;
    println!(
        "baseline: single-row INSERT ceiling = {ceiling:.0} rows/s ({CONNECTIONS} connections, autocommit)"
    );
    Ok(ceiling)
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

fn report(what: &str, run: &Run, ceiling: f64, target: f64, lag: SealLag) {
    println!(
        "{what}, {CLIENTS} writers, row + audit record: {:.0} req/s p50={:.2} ms p99={:.2} ms -> {:.2}x the INSERT ceiling (target >= {target}{}); \
         audit seal lag p99={:.0} ms max={:.0} ms, last record sealed {:.0} ms after the load stopped",
        run.rps,
        run.p50(),
        run.p99(),
        run.rps / ceiling,
        if target <= 0.5 { ", p99 <= 10 ms" } else { "" },
        lag.p99 * 1e3,
        lag.max * 1e3,
        lag.drained_ms,
    );
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
    let stopped = std::time::Instant::now();
    loop {
        let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_pending")
            .fetch_one(owner)
            .await?;
        if pending == 0 {
            break;
        }
        anyhow::ensure!(
            stopped.elapsed() < std::time::Duration::from_secs(60),
            "{pending} records still unsealed a minute after the load"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
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
    for (org, _) in &writers.orgs {
        let report: serde_json::Value = client
            .get(format!("{base}/v1/admin/orgs/{org}/audit-events/verify"))
            .bearer_auth(ADMIN)
            .send()
            .await?
            .json()
            .await?;
        anyhow::ensure!(
            report["valid"] == true && report["unsealed"] == 0,
            "chain of {org}: {report}"
        );
    }
    println!(
        "audit complete: {items} items written, {records} records, all sealed, {} chains verified",
        writers.orgs.len()
    );
    Ok(())
}
