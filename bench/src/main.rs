//! `cargo run --release -p tenantry-bench -- auth|jobs|api|writes|soak|console|webhooks|realtime`: benchmarks with in-run baselines.
//!
//! `auth`: identity benchmarks.
//!
//! 1. Access-token verification (`KeyRing::verify`: header, kid lookup, EdDSA signature,
//!    claims) against the bare Ed25519 signature check of the same token (baseline).
//! 2. Latency of an authenticated read (`GET /v1/me`) without and during a login storm
//!    (argon2id at OWASP cost on every attempt): p50/p99 and the ratio.

#![expect(
    clippy::as_conversions,
    reason = "statistics: counts and indexes of samples as f64 and back"
)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use tenantry::config::Config;
use tenantry::startup::Application;

/// The allocator of the `tenantry` binary, so the in-process servers run as deployed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod api;
mod console;
mod cpu;
mod jobs;
mod realtime;
mod webhooks;
mod writes;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `BENCH_LOG=warn` (any tracing filter) shows the servers' logs on stderr.
    if let Ok(filter) = std::env::var("BENCH_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::try_new(filter)?)
            .with_writer(std::io::stderr)
            .init();
    }
    let what = std::env::args().nth(1).unwrap_or_else(|| "auth".to_owned());
    match what.as_str() {
        "auth" => auth().await,
        "jobs" => jobs::run().await,
        "api" => api::run().await,
        "writes" => writes::run().await,
        "soak" => api::soak().await,
        "console" => console::run().await,
        "webhooks" => webhooks::run().await,
        "realtime" => realtime::run().await,
        "realtime-export" => realtime::run_export().await,
        // The fan-out benchmark's client process.
        "realtime-clients" => {
            let args: Vec<String> = std::env::args().skip(2).collect();
            let [url, token, sockets] = args.as_slice() else {
                anyhow::bail!("realtime-clients <ws url> <token> <sockets>");
            };
            realtime::clients(url, token, sockets.parse()?).await
        }
        other => {
            anyhow::bail!(
                "unknown benchmark `{other}` (available: auth, jobs, api, writes, soak, console, webhooks, realtime)"
            )
        }
    }
}

async fn auth() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let secret = |_: u8| tenantry::secrets::random_token(32);
    let vars: HashMap<String, String> = [
        ("DATA_DIR", dir.path().display().to_string()),
        (
            "DATABASE_URL",
            format!("sqlite://{}/bench.db", dir.path().display()),
        ),
        ("HOST", "127.0.0.1".to_owned()),
        ("PORT", "0".to_owned()),
        ("LOG_LEVEL", "error".to_owned()),
        ("SESSION_SECRET", secret(1)),
        ("INTERNAL_ADMIN_TOKEN", secret(2)),
        ("JWT_SIGNING_SECRET", secret(3)),
        ("AUTH_LOGIN_IP_RATE_LIMIT", "1000000".to_owned()),
        ("AUTH_LOGIN_IDENTIFIER_RATE_LIMIT", "1000000".to_owned()),
        // This benchmark measures identity; the per-address limit would refuse the probes.
        ("IP_RATE_LIMIT", "0".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let config = Config::from_vars(&vars).map_err(|e| anyhow::anyhow!("{e}"))?;
    let app = Application::build(config).await?;
    let addr = app.local_addr()?;
    let state = app.state().clone();
    let token = app.shutdown_token();
    let server = tokio::spawn(app.run());
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    let reg: serde_json::Value = client
        .post(format!("{base}/v1/auth/register"))
        .json(&serde_json::json!({"email": "bench@example.com", "password": "bench password 42", "name": "Bench"}))
        .send()
        .await?
        .json()
        .await?;
    let access = reg["access_token"]
        .as_str()
        .context("no access token")?
        .to_owned();

    verification(&state, &access).await?;
    storm(&client, &base, &access).await?;

    token.cancel();
    server.await??;
    Ok(())
}

async fn verification(state: &tenantry::state::AppState, access: &str) -> anyhow::Result<()> {
    let n = 20_000u32;
    let jwks = state.keys.jwks().await;
    let x = URL_SAFE_NO_PAD.decode(jwks["keys"][0]["x"].as_str().context("no key")?)?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(
        &x.try_into().map_err(|_| anyhow::anyhow!("key length"))?,
    )?;
    let (signed, sig) = access.rsplit_once('.').context("token shape")?;
    let signature = ed25519_dalek::Signature::from_slice(&URL_SAFE_NO_PAD.decode(sig)?)?;

    let started = Instant::now();
    for _ in 0..n {
        key.verify_strict(signed.as_bytes(), &signature)?;
    }
    let bare = started.elapsed() / n;
    let started = Instant::now();
    for _ in 0..n {
        state.keys.verify(&state.store, access).await?;
    }
    let ours = started.elapsed() / n;
    println!(
        "token verification: {:.1} µs/op (bare Ed25519 verify {:.1} µs/op) -> {:.2}x the baseline",
        ours.as_secs_f64() * 1e6,
        bare.as_secs_f64() * 1e6,
        ours.as_secs_f64() / bare.as_secs_f64()
    );
    Ok(())
}

/// Runs `/v1/me` with 4 clients for `secs`; returns sorted latencies.
async fn probe(
    client: &reqwest::Client,
    base: &str,
    access: &str,
    secs: u64,
) -> anyhow::Result<Vec<Duration>> {
    let until = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (client, url, access) = (client.clone(), format!("{base}/v1/me"), access.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            while Instant::now() < until {
                let t = Instant::now();
                let res = client.get(&url).bearer_auth(&access).send().await?;
                anyhow::ensure!(res.status() == 200, "status {}", res.status());
                samples.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(samples)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    all.sort();
    Ok(all)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

async fn storm(client: &reqwest::Client, base: &str, access: &str) -> anyhow::Result<()> {
    let quiet = probe(client, base, access, 5).await?;
    let stop = Instant::now() + Duration::from_secs(6);
    let mut stormers = Vec::new();
    for i in 0..32 {
        let (client, url) = (client.clone(), format!("{base}/v1/auth/login"));
        stormers.push(tokio::spawn(async move {
            let mut logins = 0u32;
            while Instant::now() < stop {
                let body = serde_json::json!({"email": format!("storm{i}@example.com"), "password": "wrong password 1"});
                if client.post(&url).json(&body).send().await.is_ok() {
                    logins += 1;
                }
            }
            logins
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loud = probe(client, base, access, 5).await?;
    let mut logins = 0;
    for s in stormers {
        logins += s.await?;
    }
    println!(
        "GET /v1/me quiet:       n={} p50={:.2} ms p99={:.2} ms",
        quiet.len(),
        pct(&quiet, 0.5),
        pct(&quiet, 0.99)
    );
    println!(
        "GET /v1/me login storm: n={} p50={:.2} ms p99={:.2} ms ({} login attempts in 6 s)",
        loud.len(),
        pct(&loud, 0.5),
        pct(&loud, 0.99),
        logins
    );
    println!(
        "p99 during storm / p99 quiet = {:.2}x",
        pct(&loud, 0.99) / pct(&quiet, 0.99).max(1e-9)
    );
    Ok(())
}
