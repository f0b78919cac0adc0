//! `jobs`: the queue on PostgreSQL.
//!
//! - Baseline: the single-row INSERT ceiling (autocommit, same connection count).
//! - Burn-down of 100,000 no-op jobs with 1 worker and with N workers (jobs/s).
//! - Enqueue -> start latency (p50/p99) of jobs enqueued one by one into an idle worker.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tenantry::config::Config;
use tenantry::jobs::{EchoJob, JobHandler as _, Registry, Worker};
use tenantry::store::Store;
use tenantry::testing::{Backend, TestDatabase};
use tokio_util::sync::CancellationToken;

const JOBS: i64 = 100_000;
const CONNECTIONS: u32 = 16;

pub(crate) async fn run() -> anyhow::Result<()> {
    let db = TestDatabase::create(Backend::Postgres)
        .await
        .ok_or_else(|| anyhow::anyhow!("PostgreSQL unreachable"))?;
    let mut vars: HashMap<String, String> = db.vars();
    vars.insert("DATABASE_MAX_CONNECTIONS".into(), CONNECTIONS.to_string());
    vars.insert("WORKER_CONCURRENCY".into(), "64".into());
    vars.insert("LOG_LEVEL".into(), "error".into());
    let config = Config::from_vars(&vars).map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = Store::new(tenantry::startup::connect_and_migrate(&config).await?);
    let owner = sqlx::PgPool::connect(&db.url).await?;

    let ceilings = Ceilings::measure(&owner).await?;
    let autovacuum: String = sqlx::query_scalar("SHOW autovacuum")
        .fetch_one(&owner)
        .await?;
    for workers in [1usize, 4] {
        let rate = burn_down(&owner, &store, &config, workers).await?;
        println!(
            "burn-down: {JOBS} no-op jobs, {workers} worker(s) x 64 (server autovacuum={autovacuum}) = {rate:.0} jobs/s -> {}",
            ceilings.ratios(rate)
        );
    }
    latency(&owner, &store, &config).await?;
    owner.close().await;
    store.close().await;
    Ok(())
}

/// The single-row INSERT ceiling of the same database, both ways its clients can use
/// connections (rows per second).
pub(crate) struct Ceilings {
    /// Through a sqlx pool on its defaults.
    pub(crate) pooled: f64,
    /// On connections the clients hold: the database's own ceiling.
    pub(crate) held: f64,
    /// CPU per row on held connections.
    pub(crate) held_cpu: crate::cpu::Use,
}

impl Ceilings {
    /// Both, measured one after the other, and printed.
    pub(crate) async fn measure(owner: &sqlx::PgPool) -> anyhow::Result<Self> {
        let (pooled, _) = insert_ceiling(owner, Clients::Pooled).await?;
        let (held, held_cpu) = insert_ceiling(owner, Clients::Held).await?;
        println!(
            "baseline: single-row INSERT ceiling ({CONNECTIONS} connections, autocommit) = {held:.0} rows/s \
             on held connections ({}), {pooled:.0} rows/s through a default sqlx pool",
            held_cpu.describe("row")
        );
        Ok(Self {
            pooled,
            held,
            held_cpu,
        })
    }

    /// `rate` against both.
    pub(crate) fn ratios(&self, rate: f64) -> String {
        format!(
            "{:.2}x the INSERT ceiling on held connections, {:.2}x through a default pool",
            rate / self.held,
            rate / self.pooled
        )
    }
}

/// How the INSERT ceiling's clients use their connections.
#[derive(Clone, Copy)]
pub(crate) enum Clients {
    /// Each statement on a connection acquired from a sqlx pool with its defaults (a ping
    /// before every acquire and on every release): what a plain service does.
    Pooled,
    /// Each client holds one connection for the whole run, as `pgbench` does: one round trip
    /// per row, the database's own ceiling.
    Held,
}

/// The single-row INSERT ceiling of `owner`'s database: `CONNECTIONS` clients inserting
/// one row per autocommit statement for 5 s into a table created for it. Rows per second,
/// and the CPU per row.
pub(crate) async fn insert_ceiling(
    owner: &sqlx::PgPool,
    clients: Clients,
) -> anyhow::Result<(f64, crate::cpu::Use)> {
    sqlx::query("DROP TABLE IF EXISTS bench_insert")
        .execute(owner)
        .await?;
    sqlx::query("CREATE TABLE bench_insert (id bigserial PRIMARY KEY, payload text NOT NULL)")
        .execute(owner)
        .await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(CONNECTIONS)
        .connect_with(owner.connect_options().as_ref().clone())
        .await?;
    let until = Instant::now() + Duration::from_secs(5);
    let started = Instant::now();
    let cpu = crate::cpu::Sample::take()?;
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let insert =
                || sqlx::query("INSERT INTO bench_insert (payload) VALUES ($1)").bind("{}");
            let mut n = 0u64;
            let mut held = match clients {
                Clients::Held => Some(pool.acquire().await?),
                Clients::Pooled => None,
            };
            while Instant::now() < until {
                match held.as_mut() {
                    Some(conn) => insert().execute(&mut **conn).await?,
                    None => insert().execute(&pool).await?,
                };
                n += 1;
            }
            Ok::<_, sqlx::Error>(n)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    let used = cpu.until_now(usize::try_from(total)?)?;
    pool.close().await;
    Ok((rate, used))
}

/// Inserts `JOBS` available no-op jobs in one statement (set-up, not measured).
async fn fill(owner: &sqlx::PgPool) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO jobs (org_id, id, kind, payload, status, max_attempts, run_at, created_at, updated_at) \
         SELECT '00000000-0000-0000-0000-000000000000', gen_random_uuid(), 'echo', '{\"message\":\"\"}', 'available', 3, now(), now(), now() \
         FROM generate_series(1, $1)",
    )
    .bind(JOBS)
    .execute(owner)
    .await?;
    Ok(())
}

async fn burn_down(
    owner: &sqlx::PgPool,
    store: &Store,
    config: &Config,
    workers: usize,
) -> anyhow::Result<f64> {
    sqlx::query("DELETE FROM jobs").execute(owner).await?;
    fill(owner).await?;
    let stop = CancellationToken::new();
    let started = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            Worker::new(
                store.clone(),
                Registry::builtin(),
                tenantry::jobs::JobServices::default(),
                config.worker.clone(),
                Arc::new(tokio::sync::Notify::new()),
            )
            .spawn(stop.clone(), Duration::from_secs(30))
        })
        .collect();
    loop {
        // Both counts read the small partial indexes, not the table.
        let left: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM jobs WHERE status = 'available') + (SELECT count(*) FROM jobs WHERE status = 'running')",
        )
        .fetch_one(owner)
        .await?;
        if left == 0 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "burn-down too slow: {left} left"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rate = JOBS as f64 / started.elapsed().as_secs_f64();
    stop.cancel();
    for h in handles {
        h.join().await;
    }
    Ok(rate)
}

async fn latency(owner: &sqlx::PgPool, store: &Store, config: &Config) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM jobs").execute(owner).await?;
    let stop = CancellationToken::new();
    // A worker as deployed: woken by LISTEN/NOTIFY, polling only as a fallback.
    let mut worker_config = config.worker.clone();
    worker_config.poll_interval = Duration::from_secs(1);
    let handle = Worker::new(
        store.clone(),
        Registry::builtin(),
        tenantry::jobs::JobServices::default(),
        worker_config,
        Arc::new(tokio::sync::Notify::new()),
    )
    .spawn(stop.clone(), Duration::from_secs(30));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let n = 2_000;
    for i in 0..n {
        let mut job = EchoJob::job(serde_json::json!({"message": i.to_string()}));
        job.max_attempts = 3;
        store.enqueue_system_job(&job).await?;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    loop {
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM jobs WHERE status <> 'succeeded' AND kind = 'echo'",
        )
        .fetch_one(owner)
        .await?;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut delays: Vec<f64> = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM (started_at - created_at))::float8 * 1000 FROM jobs WHERE kind = 'echo' AND attempts = 1",
    )
    .fetch_all(owner)
    .await?;
    delays.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        delays
            .get(((delays.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    println!(
        "enqueue->start latency: n={} p50={:.2} ms p99={:.2} ms (LISTEN/NOTIFY wake-up, 1 worker)",
        delays.len(),
        pct(0.5),
        pct(0.99)
    );
    stop.cancel();
    handle.join().await;
    Ok(())
}
