//! `realtime`: live-event fan-out and audit export.
//!
//! 1. Fan-out (SQLite, the default deployment): `SOCKETS` idle WebSocket connections to one
//!    organization, opened by a child process (so the server's memory is its own), then
//!    `ROUNDS` broadcasts one second apart; per broadcast, the time from sending the
//!    request until each socket has the event: p50, p99 and the last socket. Memory per
//!    idle connection: the server's RSS growth while the sockets connect, divided by their
//!    number. Baseline: the same clients against a bare axum WebSocket server sending one
//!    pre-encoded message from a tokio broadcast channel (the floor of this machine, whose
//!    two cores also run the 10,000 clients).
//! 2. Export (PostgreSQL): `EXPORT_RECORDS` audit records exported as CSV over HTTP
//!    (`GET /v1/orgs/{org}/audit-events?format=csv`, read to the end) against `COPY … TO
//!    STDOUT (FORMAT csv)` of the same rows and columns on the same database, in records/s.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use futures::StreamExt;
use sqlx::Connection;
use tenantry::config::Config;
use tenantry::startup::Application;
use tenantry::testing::{Backend, TestDatabase};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const SOCKETS: usize = 10_000;
const ROUNDS: usize = 10;
const EXPORT_RECORDS: usize = 100_000;

/// Raises this process's open-file limit to its hard limit (a socket is a file).
fn raise_nofile() -> anyhow::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            anyhow::bail!("getrlimit failed");
        }
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            anyhow::bail!("setrlimit failed");
        }
    }
    Ok(limit.rlim_cur)
}

fn rss() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS")?;
    Ok(kib * 1024)
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The export comparison alone (`realtime-export`).
pub(crate) async fn run_export() -> anyhow::Result<()> {
    export().await
}

pub(crate) async fn run() -> anyhow::Result<()> {
    let limit = raise_nofile()?;
    anyhow::ensure!(
        limit > (SOCKETS as u64) + 1000,
        "the open-file limit is {limit}: raise it (ulimit -n) above {SOCKETS}"
    );
    fanout().await?;
    export().await?;
    Ok(())
}

async fn fanout() -> anyhow::Result<()> {
    let db = TestDatabase::create(Backend::Sqlite)
        .await
        .context("database")?;
    let vars = crate::api::unlimited_vars(
        &db,
        &[
            ("BROADCAST_RATE_LIMIT", "0"),
            ("AUTH_REGISTER_IP_RATE_LIMIT", "1000000"),
        ],
    );
    let config = Config::from_vars(&vars).map_err(|e| anyhow::anyhow!("{e}"))?;
    let app = Application::build(config).await?;
    let addr = app.local_addr()?;
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run());
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    let reg: serde_json::Value = client
        .post(format!("{base}/v1/auth/register"))
        .json(&serde_json::json!({
            "email": "fan@example.com", "password": "bench password 42", "name": "Fan",
            "org": {"name": "Fan", "slug": "fan"},
        }))
        .send()
        .await?
        .json()
        .await?;
    let token = reg["access_token"].as_str().context("token")?.to_owned();
    let orgs: serde_json::Value = client
        .get(format!("{base}/v1/orgs"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    let org = orgs["data"][0]["id"].as_str().context("org")?.to_owned();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss()?;
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args([
            "realtime-clients",
            &format!("ws://{addr}/v1/ws?org_id={org}"),
            &token,
            &SOCKETS.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let ready = lines.next_line().await?.context("the clients ended")?;
    anyhow::ensure!(ready == "ready", "clients: {ready}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss()?;
    let per = after.saturating_sub(before) as f64 / SOCKETS as f64;
    println!(
        "fan-out, {SOCKETS} idle WebSockets on one organization (SQLite): server RSS {:.1} MB -> {:.1} MB, {:.1} KiB per connection (target <= 16 KiB)",
        before as f64 / 1e6,
        after as f64 / 1e6,
        per / 1024.0
    );
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    let mut lasts = Vec::new();
    for round in 0..ROUNDS {
        let message = format!("{round}:{}", unix_nanos());
        let res = client
            .post(format!("{base}/v1/orgs/{org}/broadcast"))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "message": message }))
            .send()
            .await?;
        anyhow::ensure!(res.status() == 201, "broadcast: {}", res.status());
        let line = lines.next_line().await?.context("the clients ended")?;
        let report: serde_json::Value = serde_json::from_str(&line)?;
        anyhow::ensure!(
            report["received"] == SOCKETS,
            "round {round}: only {} sockets got the event",
            report["received"]
        );
        p50s.push(report["p50_ms"].as_f64().context("p50")?);
        p99s.push(report["p99_ms"].as_f64().context("p99")?);
        lasts.push(report["max_ms"].as_f64().context("max")?);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        percentile(v, 0.5)
    };
    println!(
        "fan-out latency over {ROUNDS} broadcasts (median of rounds): p50 {:.1} ms, p99 {:.1} ms, last socket {:.1} ms (target p99 <= 100 ms); worst round's last socket {:.1} ms",
        median(&mut p50s),
        median(&mut p99s),
        median(&mut lasts.clone()),
        lasts.iter().copied().fold(0.0, f64::max)
    );
    child.kill().await?;
    shutdown.cancel();
    server.await??;
    bare_fanout().await?;
    Ok(())
}

/// The floor of this machine: the same client process against a bare axum WebSocket
/// server that sends a pre-encoded message from one tokio broadcast channel to every
/// socket (no authentication, no database, no audit record), triggered by `POST /send`.
async fn bare_fanout() -> anyhow::Result<()> {
    use axum::extract::ws::{Message as AxMessage, WebSocketUpgrade};
    use axum::routing::{get, post};
    let (tx, _) = tokio::sync::broadcast::channel::<axum::extract::ws::Utf8Bytes>(256);
    let sender = tx.clone();
    let app = axum::Router::new()
        .route(
            "/ws",
            get(move |ws: WebSocketUpgrade| {
                let mut rx = tx.subscribe();
                async move {
                    ws.read_buffer_size(2048)
                        .write_buffer_size(0)
                        .on_upgrade(move |mut socket| async move {
                            while let Ok(text) = rx.recv().await {
                                if socket.send(AxMessage::Text(text)).await.is_err() {
                                    return;
                                }
                            }
                        })
                }
            }),
        )
        .route(
            "/send",
            post(move |body: String| {
                let sender = sender.clone();
                async move {
                    let json = serde_json::json!({"type": "BROADCAST_MESSAGE", "payload": {"message": body}});
                    let _ = sender.send(json.to_string().into());
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let before = rss()?;
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args([
            "realtime-clients",
            &format!("ws://{addr}/ws"),
            "none",
            &SOCKETS.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let ready = lines.next_line().await?.context("the clients ended")?;
    anyhow::ensure!(ready == "ready", "clients: {ready}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss()?;
    let client = reqwest::Client::new();
    let (mut p99s, mut lasts) = (Vec::new(), Vec::new());
    let mut p50s = Vec::new();
    for round in 0..ROUNDS {
        client
            .post(format!("http://{addr}/send"))
            .body(format!("{round}:{}", unix_nanos()))
            .send()
            .await?;
        let line = lines.next_line().await?.context("the clients ended")?;
        let report: serde_json::Value = serde_json::from_str(&line)?;
        p50s.push(report["p50_ms"].as_f64().context("p50")?);
        p99s.push(report["p99_ms"].as_f64().context("p99")?);
        lasts.push(report["max_ms"].as_f64().context("max")?);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for v in [&mut p50s, &mut p99s, &mut lasts] {
        v.sort_by(f64::total_cmp);
    }
    println!(
        "fan-out floor (bare axum broadcast, same clients): {:.1} KiB per connection; p50 {:.1} ms, p99 {:.1} ms, last socket {:.1} ms (median of rounds)",
        after.saturating_sub(before) as f64 / SOCKETS as f64 / 1024.0,
        percentile(&p50s, 0.5),
        percentile(&p99s, 0.5),
        percentile(&lasts, 0.5)
    );
    child.kill().await?;
    server.abort();
    Ok(())
}

/// The child: `SOCKETS` connections; prints `ready`, then one JSON line per broadcast.
pub(crate) async fn clients(url: &str, token: &str, sockets: usize) -> anyhow::Result<()> {
    raise_nofile()?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, f64)>();
    let connected = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(200));
    for _ in 0..sockets {
        let (url, token, tx, connected, gate) = (
            url.to_owned(),
            token.to_owned(),
            tx.clone(),
            connected.clone(),
            gate.clone(),
        );
        tokio::spawn(async move {
            let mut request = url.into_client_request()?;
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {token}").parse()?);
            let permit = gate.acquire_owned().await?;
            let (mut ws, _) = tokio_tungstenite::connect_async(request).await?;
            drop(permit);
            connected.add_permits(1);
            while let Some(msg) = ws.next().await {
                let Message::Text(text) = msg? else { continue };
                // The client stays cheap (it shares the cores): find the message, no parse.
                if !text.contains("\"type\":\"BROADCAST_MESSAGE\"") {
                    continue;
                }
                let start = text.find("\"message\":\"").context("message")? + 11;
                let len = text[start..].find('"').context("message end")?;
                let message = &text[start..start + len];
                let (round, sent) = message.split_once(':').context("message")?;
                let sent: u128 = sent.parse()?;
                let ms = (unix_nanos().saturating_sub(sent)) as f64 / 1e6;
                let _ = tx.send((round.parse()?, ms));
            }
            anyhow::Ok(())
        });
    }
    drop(tx);
    let all = u32::try_from(sockets)?;
    tokio::time::timeout(Duration::from_secs(300), connected.acquire_many(all))
        .await
        .context("connecting took too long")??
        .forget();
    println!("ready");
    let mut rounds: HashMap<usize, Vec<f64>> = HashMap::new();
    loop {
        let Ok(Some((round, ms))) = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await
        else {
            return Ok(());
        };
        let got = rounds.entry(round).or_default();
        got.push(ms);
        if got.len() == sockets {
            got.sort_by(f64::total_cmp);
            println!(
                "{}",
                serde_json::json!({
                    "round": round, "received": got.len(),
                    "p50_ms": percentile(got, 0.5), "p99_ms": percentile(got, 0.99),
                    "max_ms": got.last().copied().unwrap_or(f64::NAN),
                })
            );
        }
    }
}

async fn export() -> anyhow::Result<()> {
    let db = TestDatabase::create(Backend::Postgres)
        .await
        .context("PostgreSQL database")?;
    let vars = crate::api::unlimited_vars(
        &db,
        &[
            ("REQUEST_TIMEOUT_SEC", "600"),
            ("DATABASE_STATEMENT_TIMEOUT_SEC", "600"),
        ],
    );
    let config = Config::from_vars(&vars).map_err(|e| anyhow::anyhow!("{e}"))?;
    let token = config.internal_admin_token.expose().to_owned();
    let app = Application::build(config).await?;
    let addr = app.local_addr()?;
    let store = app.state().store.clone();
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run());
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    let org: serde_json::Value = client
        .post(format!("{base}/v1/admin/orgs"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "Export", "slug": "export"}))
        .send()
        .await?
        .json()
        .await?;
    let org_id: tenantry::ids::OrgId = org["id"].as_str().context("org")?.parse()?;
    let ctx = tenantry::auth::TenantCtx::for_tests(org_id);
    store
        .append_filler_audit_records(
            &ctx,
            EXPORT_RECORDS,
            100,
            tenantry::store::now() - chrono::Duration::hours(1),
        )
        .await?;
    // Sealed (the verify seals first), then read once so both runs find warm caches.
    let res = client
        .get(format!("{base}/v1/admin/orgs/{org_id}/audit-events/verify"))
        .bearer_auth(&token)
        .send()
        .await?;
    let status = res.status();
    let text = res.text().await?;
    let verified: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("verify answered {status}: {text}"))?;
    anyhow::ensure!(verified["valid"] == true, "{verified}");
    let records = |text: &[u8]| text.iter().filter(|b| **b == b'\n').count() - 1;

    let copy = format!(
        "COPY (SELECT c.seq, e.id, e.created_at, e.actor_type, e.actor_id, e.action, e.target_type, \
         e.target_id, e.metadata, e.ip, e.user_agent, e.request_id, c.prev_hash, c.hash \
         FROM audit_chain c JOIN audit_events e ON e.org_id = c.org_id AND e.id = c.record_id \
         WHERE c.org_id = '{}' ORDER BY c.seq DESC) TO STDOUT (FORMAT csv, HEADER)",
        org_id.as_uuid()
    );
    let mut conn = sqlx::PgConnection::connect(&db.url).await?;
    // The records were loaded in one go, faster than autovacuum's analyze follows: give the
    // planner the statistics a live table has. Without them it estimates one row per chain
    // range and joins every remaining record before each chunk's sort (about 30x slower).
    sqlx::query("ANALYZE audit_chain, audit_events")
        .execute(&mut conn)
        .await?;
    let mut best_copy = f64::MAX;
    let mut best_http = f64::MAX;
    let mut copied = 0;
    let mut exported = 0;
    for _ in 0..3 {
        let started = Instant::now();
        let mut stream = conn.copy_out_raw(&copy).await?;
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk?);
        }
        drop(stream);
        best_copy = best_copy.min(started.elapsed().as_secs_f64());
        copied = records(&bytes);

        let started = Instant::now();
        let res = client
            .get(format!(
                "{base}/v1/admin/orgs/{org_id}/audit-events?format=csv"
            ))
            .bearer_auth(&token)
            .send()
            .await?;
        anyhow::ensure!(res.status() == 200, "export: {}", res.status());
        let body = res.bytes().await?;
        best_http = best_http.min(started.elapsed().as_secs_f64());
        exported = records(&body);
    }
    anyhow::ensure!(
        copied > EXPORT_RECORDS && exported > EXPORT_RECORDS,
        "COPY read {copied} rows, the export {exported}"
    );
    println!(
        "audit export, {EXPORT_RECORDS} records as CSV (PostgreSQL, best of 3): COPY TO STDOUT {:.0} records/s (baseline); GET ?format=csv {:.0} records/s = {:.2}x COPY",
        copied as f64 / best_copy,
        exported as f64 / best_http,
        (exported as f64 / best_http) / (copied as f64 / best_copy)
    );
    conn.close().await?;
    shutdown.cancel();
    server.await??;
    Ok(())
}
