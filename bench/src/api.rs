//! `api`: an API-key-authenticated read of the example resource on PostgreSQL
//! (`GET /v1/orgs/{org}/data/{item}`: key verification, scope check, per-address, per-key
//! and per-organization rate limits, metering with the quota check, the tenant-scoped query
//! under row-level security) against two baselines measured in the same run:
//!
//! - a bare axum + sqlx endpoint running the same single-row query (`SELECT … WHERE id = $1`
//!   on a plain pool, no auth, no transaction, no RLS), served and loaded the same way, once
//!   on sqlx's default pool (a ping before every acquire) and once on the best pool settings
//!   (no ping, the same connections opened up front and kept);
//! - `pgbench -S` (select-only, prepared statements) with the same number of connections.
//!
//! Both HTTP servers run in this process with the load generator (`CLIENTS` keep-alive
//! connections of a minimal HTTP/1.1 client, `SECS` seconds each after a warm-up); all of
//! it shares the machine's cores with PostgreSQL.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::{Path, State};
use axum::Json;
use tenantry::config::Config;
use tenantry::startup::Application;
use tenantry::testing::{postgres_admin_url, Backend, TestDatabase};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub(crate) const CLIENTS: usize = 16;
pub(crate) const CONNECTIONS: u32 = 16;
const SECS: u64 = 10;

/// Rounds of the measured runs. The four endpoints are loaded in turn in every round, so
/// the machine's drift over the benchmark falls on all of them alike; each round's ratios
/// are printed, and their median is the result.
const ROUNDS: usize = 3;

pub(crate) async fn run() -> anyhow::Result<()> {
    let pgbench = pgbench_select_only()?;
    println!("pgbench -S ({CONNECTIONS} connections, {SECS} s): {pgbench:.0} tps (baseline 2)");
    let pg = serve(Backend::Postgres).await?;
    let bare_id = pg.item.trim_start_matches("item_");
    let bare = bare_server(&pg.db.url, bare_id, PoolTuning::Defaults).await?;
    let best = bare_server(&pg.db.url, bare_id, PoolTuning::Best).await?;
    let lite = serve(Backend::Sqlite).await?;

    let mut rounds = Vec::with_capacity(ROUNDS);
    for round in 1..=ROUNDS {
        let measured = Round {
            ours: load(&pg.url, Some(&pg.secret)).await?,
            plain: load(&bare, None).await?,
            fastest: load(&best, None).await?,
            sqlite: load(&lite.url, Some(&lite.secret)).await?,
        };
        measured.print(round, pgbench);
        rounds.push(measured);
    }
    let median = |ratio: &dyn Fn(&Round) -> f64| {
        let mut all: Vec<f64> = rounds.iter().map(ratio).collect();
        all.sort_by(f64::total_cmp);
        all[all.len() / 2]
    };
    println!(
        "median of {ROUNDS} rounds: PostgreSQL read {:.2}x the best bare endpoint (target >= 0.9), {:.2}x the \
         default-pool bare endpoint, {:.2}x pgbench -S (keep >= 0.4); SQLite read {:.2}x the PostgreSQL read \
         (target >= 1.5)",
        median(&|r| r.ours.rps / r.fastest.rps),
        median(&|r| r.ours.rps / r.plain.rps),
        median(&|r| r.ours.rps / pgbench),
        median(&|r| r.sqlite.rps / r.ours.rps),
    );

    // Every metered call was counted.
    lite.shutdown.cancel();
    lite.server.await??;
    pg.shutdown.cancel();
    pg.server.await??;
    let owner = sqlx::PgPool::connect(&pg.db.url).await?;
    let counted: i64 = sqlx::query_scalar(
        "SELECT CAST(coalesce(SUM(quantity), 0) AS BIGINT) FROM usage_events WHERE meter = 'api_calls'",
    )
    .fetch_one(&owner)
    .await?;
    owner.close().await;
    let answered: usize = rounds.iter().map(|r| r.ours.ok).sum();
    println!(
        "metered calls stored on PostgreSQL: {counted} (requests answered 200: {answered}, plus 1 creation)"
    );
    anyhow::ensure!(
        usize::try_from(counted)? == answered + 1,
        "metering lost or invented calls"
    );
    Ok(())
}

/// One round: the same read from Tenantry on PostgreSQL, the two bare endpoints and
/// Tenantry on SQLite.
struct Round {
    ours: Run,
    plain: Run,
    fastest: Run,
    sqlite: Run,
}

impl Round {
    fn print(&self, round: usize, pgbench: f64) {
        println!("round {round}:");
        for (what, run) in [
            ("tenantry API-key GET /data/{id}, PostgreSQL", &self.ours),
            ("bare axum+sqlx GET, default pool (baseline 1)", &self.plain),
            (
                "best bare axum+sqlx GET, no ping, connections kept (baseline 1b)",
                &self.fastest,
            ),
            (
                "tenantry API-key GET /data/{id}, SQLite (any status but 200 fails the run)",
                &self.sqlite,
            ),
        ] {
            println!(
                "  {what}: {:.0} req/s p50={:.2} ms p99={:.2} ms; {}",
                run.rps,
                run.p50(),
                run.p99(),
                run.cpu.describe("request")
            );
        }
        let (ours, best) = (&self.ours, &self.fastest);
        println!(
            "  PostgreSQL read: {:.2}x the best bare endpoint (p50 {:.2}x, p99 {:.2}x), {:.2}x the default-pool one, \
             {:.2}x pgbench -S; SQLite read {:.2}x the PostgreSQL read",
            ours.rps / best.rps,
            ours.p50() / best.p50(),
            ours.p99() / best.p99(),
            ours.rps / self.plain.rps,
            ours.rps / pgbench,
            self.sqlite.rps / ours.rps
        );
    }
}

/// `soak`: the SQLite API-key read with `CLIENTS` clients for `SOAK_SECS` (300 unless the
/// variable says otherwise); any answer but 200 (or a dropped connection) fails the run.
/// `SOAK_BACKEND=postgres` reads from PostgreSQL instead (for profiling that path).
pub(crate) async fn soak() -> anyhow::Result<()> {
    let backend = match std::env::var("SOAK_BACKEND").as_deref() {
        Ok("postgres") => Backend::Postgres,
        Ok("sqlite") | Err(_) => Backend::Sqlite,
        Ok(other) => anyhow::bail!("SOAK_BACKEND: `{other}` is not sqlite or postgres"),
    };
    let secs = match std::env::var("SOAK_SECS") {
        Ok(raw) => raw.parse().context("SOAK_SECS: a number of seconds")?,
        Err(_) => SOAK_SECS,
    };
    let lite = serve(backend).await?;
    let parsed = url::Url::parse(&lite.url)?;
    let addr = address(&parsed)?;
    let request = format!(
        "GET {} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\n\r\n",
        parsed.path(),
        lite.secret
    );
    let run = load_requests(&addr, vec![request], 200, secs).await?;
    lite.shutdown.cancel();
    lite.server.await??;
    println!(
        "{backend:?} API-key GET /data/{{id}}, {CLIENTS} clients, {secs} s: {} requests, 0 errors, {:.0} req/s p50={:.2} ms p99={:.2} ms",
        run.ok,
        run.rps,
        run.p50(),
        run.p99()
    );
    Ok(())
}

/// Length of the soak run.
const SOAK_SECS: u64 = 300;

/// Configuration for a benchmarked server on `db`: `CONNECTIONS` connections, quiet logs,
/// and limits checked on every request but set high enough to refuse nothing; `extra`
/// adds or overrides variables.
pub(crate) fn unlimited_vars(db: &TestDatabase, extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut vars: HashMap<String, String> = db.vars();
    let connections = CONNECTIONS.to_string();
    for (k, v) in [
        ("DATABASE_MAX_CONNECTIONS", connections.as_str()),
        ("LOG_LEVEL", "error"),
        ("IP_RATE_LIMIT", "1000000000"),
        ("API_KEY_RATE_LIMIT", "1000000000"),
        ("ORG_RATE_LIMIT_FREE", "1000000000"),
        ("QUOTA_API_CALLS_FREE", "1000000000000"),
    ]
    .into_iter()
    .chain(extra.iter().copied())
    {
        vars.insert(k.to_owned(), v.to_owned());
    }
    vars
}

/// A running Tenantry with one organization, one `data:read` key and one item.
struct Served {
    db: TestDatabase,
    item: String,
    url: String,
    secret: String,
    shutdown: tokio_util::sync::CancellationToken,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn serve(backend: Backend) -> anyhow::Result<Served> {
    let db = TestDatabase::create(backend)
        .await
        .context("PostgreSQL unreachable")?;
    let config =
        Config::from_vars(&unlimited_vars(&db, &[])).map_err(|e| anyhow::anyhow!("{e}"))?;
    let app = Application::build(config).await?;
    let base = format!("http://{}", app.local_addr()?);
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.without_worker().run());

    let client = reqwest::Client::new();
    let reg: serde_json::Value = client
        .post(format!("{base}/v1/auth/register"))
        .json(&serde_json::json!({"email": "bench@example.com", "password": "bench password 42", "name": "Bench",
                                  "org": {"name": "Bench", "slug": "bench"}}))
        .send()
        .await?
        .json()
        .await?;
    let access = reg["access_token"].as_str().context("no token")?.to_owned();
    let orgs: serde_json::Value = client
        .get(format!("{base}/v1/orgs"))
        .bearer_auth(&access)
        .send()
        .await?
        .json()
        .await?;
    let org = orgs["data"][0]["id"].as_str().context("no org")?.to_owned();
    let key: serde_json::Value = client
        .post(format!("{base}/v1/orgs/{org}/api-keys"))
        .bearer_auth(&access)
        .json(&serde_json::json!({"name": "bench", "scopes": ["data:read"]}))
        .send()
        .await?
        .json()
        .await?;
    let secret = key["secret"].as_str().context("no key")?.to_owned();
    let item: serde_json::Value = client
        .post(format!("{base}/v1/orgs/{org}/data"))
        .bearer_auth(&access)
        .json(&serde_json::json!({"name": "item", "value": {"hello": "world"}}))
        .send()
        .await?
        .json()
        .await?;
    let item = item["id"].as_str().context("no item")?.to_owned();
    let ours_url = format!("{base}/v1/orgs/{org}/data/{item}");
    Ok(Served {
        db,
        item,
        url: ours_url,
        secret,
        shutdown,
        server,
    })
}

/// One measured load run: throughput, answers counted (warm-up included) and the sorted
/// latencies.
pub(crate) struct Run {
    pub(crate) rps: f64,
    pub(crate) ok: usize,
    /// CPU per request of the measured round.
    pub(crate) cpu: crate::cpu::Use,
    latencies: Vec<Duration>,
}

impl Run {
    fn pct(&self, p: f64) -> f64 {
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    }
    pub(crate) fn p50(&self) -> f64 {
        self.pct(0.5)
    }
    pub(crate) fn p99(&self) -> f64 {
        self.pct(0.99)
    }
}

/// `CLIENTS` keep-alive connections sending GET `url` back to back for `SECS` s after a
/// 2 s warm-up; every answer must be 200.
async fn load(url: &str, bearer: Option<&str>) -> anyhow::Result<Run> {
    let parsed = url::Url::parse(url)?;
    let addr = address(&parsed)?;
    let auth = bearer.map_or(String::new(), |b| format!("authorization: Bearer {b}\r\n"));
    let request = format!(
        "GET {} HTTP/1.1\r\nhost: {addr}\r\n{auth}\r\n",
        parsed.path()
    );
    load_requests(&addr, vec![request], 200, SECS).await
}

/// `host:port` of `url`.
pub(crate) fn address(url: &url::Url) -> anyhow::Result<String> {
    Ok(format!(
        "{}:{}",
        url.host_str().context("host")?,
        url.port().context("port")?
    ))
}

/// `CLIENTS` keep-alive connections to `addr`, each sending the raw HTTP/1.1 `requests` in
/// turn (client `i` starts at request `i`), back to back for `secs` s after a 2 s warm-up;
/// every answer must have status `expect`. The client is a minimal writer and reader over
/// TCP, so the load generator takes as little as possible of the cores the servers and
/// PostgreSQL share.
pub(crate) async fn load_requests(
    addr: &str,
    requests: Vec<String>,
    expect: u16,
    secs: u64,
) -> anyhow::Result<Run> {
    anyhow::ensure!(!requests.is_empty(), "no requests to send");
    let requests = std::sync::Arc::new(requests);
    let mut warm_ok = 0;
    // The measured round continues after the requests of the warm-up (distinct requests,
    // such as webhook events, are then each sent once).
    let mut start = 0;
    for (secs, measured) in [(2, false), (secs, true)] {
        let until = Instant::now() + Duration::from_secs(secs);
        let started = Instant::now();
        let cpu = crate::cpu::Sample::take()?;
        let mut tasks = Vec::new();
        for client in 0..CLIENTS {
            let (addr, requests) = (addr.to_owned(), requests.clone());
            tasks.push(tokio::spawn(async move {
                let mut conn = tokio::net::TcpStream::connect(&addr).await?;
                conn.set_nodelay(true)?;
                let mut buf = Vec::with_capacity(8192);
                let mut samples = Vec::new();
                let mut next = start + client;
                while Instant::now() < until {
                    let request = &requests[next % requests.len()];
                    next += CLIENTS;
                    let t = Instant::now();
                    conn.write_all(request.as_bytes()).await?;
                    let status = read_response(&mut conn, &mut buf).await?;
                    anyhow::ensure!(status == expect, "status {status}");
                    samples.push(t.elapsed());
                }
                Ok::<_, anyhow::Error>((samples, next))
            }));
        }
        let mut all = Vec::new();
        let mut reached = start;
        for task in tasks {
            let (samples, next) = task.await??;
            all.extend(samples);
            reached = reached.max(next);
        }
        start = reached;
        let elapsed = started.elapsed().as_secs_f64();
        if measured {
            all.sort();
            return Ok(Run {
                rps: all.len() as f64 / elapsed,
                ok: all.len() + warm_ok,
                cpu: cpu.until_now(all.len())?,
                latencies: all,
            });
        }
        warm_ok = all.len();
    }
    unreachable!("the measured round returns")
}

/// Reads one response (head and `content-length` body); returns its status.
async fn read_response(conn: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<u16> {
    buf.clear();
    let mut chunk = [0u8; 8192];
    loop {
        let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n");
        if let Some(end) = head_end {
            let head = std::str::from_utf8(&buf[..end])?;
            let status: u16 = head
                .get(9..12)
                .and_then(|s| s.parse().ok())
                .context("status line")?;
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())
                        .flatten()
                })
                .context("content-length")?;
            while buf.len() < end + 4 + length {
                let n = conn.read(&mut chunk).await?;
                anyhow::ensure!(n > 0, "connection closed");
                buf.extend_from_slice(&chunk[..n]);
            }
            return Ok(status);
        }
        let n = conn.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[derive(sqlx::FromRow, serde::Serialize)]
struct BareItem {
    id: String,
    org_id: String,
    name: String,
    value: String,
    created_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
}

/// How the baseline's pool is set up.
#[derive(Clone, Copy)]
enum PoolTuning {
    /// sqlx's defaults: a ping before every acquire.
    Defaults,
    /// The fastest honest setting: no ping before acquire, every connection opened up front
    /// and kept (the same connection count).
    Best,
}

/// The baseline endpoint: `GET /items/{uuid}` with one query on a plain pool. Returns its
/// URL for `item`.
async fn bare_server(db_url: &str, item: &str, tuning: PoolTuning) -> anyhow::Result<String> {
    let options = sqlx::postgres::PgPoolOptions::new().max_connections(CONNECTIONS);
    let options = match tuning {
        PoolTuning::Defaults => options,
        PoolTuning::Best => options
            .test_before_acquire(false)
            .min_connections(CONNECTIONS)
            .idle_timeout(None)
            .max_lifetime(None),
    };
    let pool = options.connect(db_url).await?;
    async fn get(
        State(pool): State<sqlx::PgPool>,
        Path(id): Path<String>,
    ) -> Result<Json<BareItem>, axum::http::StatusCode> {
        sqlx::query_as(
            "SELECT id::text, org_id::text, name, value, created_at, updated_at FROM data_items WHERE id = $1::uuid",
        )
        .bind(id)
        .fetch_optional(&pool)
        .await
        .map_err(|_| axum::http::StatusCode::INTERNAL_SERVER_ERROR)?
        .map(Json)
        .ok_or(axum::http::StatusCode::NOT_FOUND)
    }
    let router = axum::Router::new()
        .route("/items/{id}", axum::routing::get(get))
        .with_state(pool);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router).await });
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        &item[0..8],
        &item[8..12],
        &item[12..16],
        &item[16..20],
        &item[20..32]
    );
    Ok(format!("http://{addr}/items/{uuid}"))
}

/// `pgbench -S` on a scratch database of its own (scale 10); returns transactions/s.
fn pgbench_select_only() -> anyhow::Result<f64> {
    let admin = url::Url::parse(&postgres_admin_url())?;
    let host = admin.host_str().unwrap_or("127.0.0.1").to_owned();
    let port = admin.port().unwrap_or(5432).to_string();
    let user = if admin.username().is_empty() {
        "postgres".to_owned()
    } else {
        admin.username().to_owned()
    };
    let name = format!("tenantry_pgbench_{}", std::process::id());
    let psql = |sql: &str| {
        Command::new("psql")
            .args([
                "-h", &host, "-p", &port, "-U", &user, "-d", "postgres", "-qc", sql,
            ])
            .status()
    };
    anyhow::ensure!(
        psql(&format!("CREATE DATABASE {name}"))?.success(),
        "create pgbench db"
    );
    let result = (|| {
        let init = Command::new("pgbench")
            .args([
                "-h", &host, "-p", &port, "-U", &user, "-i", "-q", "-s", "10", &name,
            ])
            .output()?;
        anyhow::ensure!(init.status.success(), "pgbench -i failed");
        let out = Command::new("pgbench")
            .args([
                "-h",
                &host,
                "-p",
                &port,
                "-U",
                &user,
                "-S",
                "-M",
                "prepared",
                "-c",
                &CONNECTIONS.to_string(),
                "-j",
                "2",
                "-T",
                &SECS.to_string(),
                &name,
            ])
            .output()?;
        anyhow::ensure!(out.status.success(), "pgbench -S failed");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| {
                l.strip_prefix("tps = ")
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|n| n.parse::<f64>().ok())
            })
            .context("no tps in pgbench output")
    })();
    let _ = psql(&format!("DROP DATABASE IF EXISTS {name}"));
    result
}
