//! `console`: weight and server time of the console's pages, on embedded SQLite.
//!
//! One owner with an organization, a workspace, an API key and a few metered calls; the
//! pages are fetched with the session cookie, 300 times each, one at a time over a kept
//! connection, after a warm-up. Weight is the page's HTML plus the stylesheet and scripts it
//! loads (each once, as a first visit does; they are cached for an hour after). Baseline:
//! `GET /health` through the same server and middleware in the same run.

use std::time::{Duration, Instant};

use anyhow::Context;
use tenantry::config::Config;
use tenantry::startup::Application;
use tenantry::testing::{Backend, TestDatabase};

const ROUNDS: usize = 300;

pub(crate) async fn run() -> anyhow::Result<()> {
    let db = TestDatabase::create(Backend::Sqlite)
        .await
        .context("no temporary directory")?;
    let vars = crate::api::unlimited_vars(&db, &[]);
    let config = Config::from_vars(&vars).map_err(|e| anyhow::anyhow!("{e}"))?;
    let app = Application::build(config).await?;
    let base = format!("http://{}", app.local_addr()?);
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let reg: serde_json::Value = client
        .post(format!("{base}/v1/auth/register"))
        .json(
            &serde_json::json!({"email": "bench@example.com", "password": "bench password 42",
                                  "name": "Bench", "org": {"name": "Bench", "slug": "bench"}}),
        )
        .send()
        .await?
        .json()
        .await?;
    let org = reg["org_id"].as_str().context("no org")?.to_owned();
    let access = reg["access_token"].as_str().context("no token")?.to_owned();
    let key: serde_json::Value = client
        .post(format!("{base}/v1/orgs/{org}/api-keys"))
        .bearer_auth(&access)
        .json(&serde_json::json!({"name": "bench", "scopes": ["data:read"]}))
        .send()
        .await?
        .json()
        .await?;
    let secret = key["secret"].as_str().context("no key")?.to_owned();
    for _ in 0..20 {
        client
            .get(format!("{base}/v1/orgs/{org}/data"))
            .bearer_auth(&secret)
            .send()
            .await?;
    }
    client
        .post(format!("{base}/v1/orgs/{org}/workspaces"))
        .bearer_auth(&access)
        .json(&serde_json::json!({"name": "Research", "slug": "research"}))
        .send()
        .await?;
    let session = client
        .post(format!("{base}/v1/auth/sessions"))
        .json(&serde_json::json!({"email": "bench@example.com", "password": "bench password 42"}))
        .send()
        .await?;
    let cookie = session
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("no session cookie")?
        .to_owned();

    let mut assets = 0;
    for asset in ["console.css", "console.js", "htmx-2.0.11.min.js"] {
        assets += client
            .get(format!("{base}/app/static/{asset}"))
            .send()
            .await?
            .bytes()
            .await?
            .len();
    }
    let health = time(&client, &format!("{base}/health"), None).await?;
    println!(
        "baseline GET /health: p50={:.2} ms p99={:.2} ms",
        health.p50, health.p99
    );
    println!("assets loaded by every page (once, then cached): {assets} bytes");
    let pages = [
        ("organizations", "/app".to_owned()),
        ("overview", format!("/app/orgs/{org}")),
        ("workspaces", format!("/app/orgs/{org}/workspaces")),
        ("members", format!("/app/orgs/{org}/members")),
        ("api keys", format!("/app/orgs/{org}/api-keys")),
        ("usage", format!("/app/orgs/{org}/usage")),
        ("jobs", format!("/app/orgs/{org}/jobs")),
        ("audit log", format!("/app/orgs/{org}/audit")),
        ("sign in", "/app/login".to_owned()),
    ];
    println!("| page | HTML | HTML + assets | p50 | p99 | p50 vs /health |");
    println!("|---|---|---|---|---|---|");
    for (name, path) in pages {
        let url = format!("{base}{path}");
        let html = client
            .get(&url)
            .header(reqwest::header::COOKIE, &cookie)
            .send()
            .await?;
        anyhow::ensure!(html.status() == 200, "{path}: {}", html.status());
        let bytes = html.bytes().await?.len();
        let t = time(&client, &url, Some(&cookie)).await?;
        println!(
            "| {name} | {bytes} B | {} B | {:.2} ms | {:.2} ms | {:.1}x |",
            bytes + assets,
            t.p50,
            t.p99,
            t.p50 / health.p50
        );
    }
    shutdown.cancel();
    server.await??;
    Ok(())
}

struct Timing {
    p50: f64,
    p99: f64,
}

/// `ROUNDS` sequential GETs of `url` after 30 of warm-up; every answer must be 200.
async fn time(client: &reqwest::Client, url: &str, cookie: Option<&str>) -> anyhow::Result<Timing> {
    let mut samples: Vec<Duration> = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS + 30 {
        let mut req = client.get(url);
        if let Some(cookie) = cookie {
            req = req.header(reqwest::header::COOKIE, cookie);
        }
        let started = Instant::now();
        let res = req.send().await?;
        let status = res.status();
        res.bytes().await?;
        anyhow::ensure!(status == 200, "{url}: {status}");
        if round >= 30 {
            samples.push(started.elapsed());
        }
    }
    samples.sort();
    let at = |p: f64| {
        let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    Ok(Timing {
        p50: at(0.5),
        p99: at(0.99),
    })
}
