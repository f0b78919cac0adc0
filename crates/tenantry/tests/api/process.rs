//! The binary itself: start-up validation, unreachable database, graceful shutdown, seed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{Backend, TestDatabase};

const BIN: &str = env!("CARGO_BIN_EXE_tenantry");

/// A command with no inherited configuration.
fn tenantry(args: &[&str], vars: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

#[test]
fn invalid_config_exits_2_naming_each_variable() {
    let dir = tempfile::tempdir().unwrap();
    let out = tenantry(
        &["serve"],
        &[
            ("DATA_DIR", dir.path().to_str().unwrap()),
            ("DATABASE_URL", "mysql://db"),
            ("PORT", "http"),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("DATABASE_URL: must start with sqlite:// or postgres://"),
        "{err}"
    );
    assert!(err.contains("PORT: `http` is not a port number"), "{err}");
}

#[test]
fn production_refuses_weak_secrets_and_seed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let out = tenantry(
        &["serve"],
        &[
            ("DATA_DIR", data),
            ("TENANTRY_ENV", "production"),
            ("SESSION_SECRET", "changeme"),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SESSION_SECRET: is too short"), "{err}");
    assert!(err.contains("INTERNAL_ADMIN_TOKEN: is required"), "{err}");

    let strong_a = tenantry::secrets::random_token(32);
    let strong_b = tenantry::secrets::random_token(32);
    let strong_c = tenantry::secrets::random_token(32);
    let out = tenantry(
        &["seed"],
        &[
            ("DATA_DIR", data),
            ("TENANTRY_ENV", "production"),
            ("SESSION_SECRET", &strong_a),
            ("INTERNAL_ADMIN_TOKEN", &strong_b),
            ("JWT_SIGNING_SECRET", &strong_c),
        ],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused in production"));
    assert!(
        !dir.path().join("tenantry.db").exists(),
        "nothing was created"
    );
}

#[test]
fn unreachable_database_fails_clearly_after_retrying() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = tenantry(
        &["serve"],
        &[
            ("DATA_DIR", dir.path().to_str().unwrap()),
            ("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none"),
            ("DATABASE_CONNECT_RETRY_SEC", "2"),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("database still unreachable after 2s"), "{err}");
    assert!(err.contains("retrying"), "it retried: {err}");
    assert!(started.elapsed() >= Duration::from_secs(1));
}

async fn seed_is_idempotent(backend: Backend) {
    let Some(db) = TestDatabase::create(backend).await else {
        return;
    };
    let vars = db.vars();
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    for _ in 0..2 {
        let out = tenantry(&["seed"], &pairs).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let config = tenantry::config::Config::from_vars(&vars).unwrap();
    let store = tenantry::store::Store::new(tenantry::db::connect(&config).await.unwrap());
    let (owner, _) = store
        .user_for_login("owner@example.com")
        .await
        .unwrap()
        .expect("demo owner");
    let orgs = store.my_orgs(owner.id).await.unwrap();
    assert_eq!(orgs.len(), 1);
    assert_eq!(
        (orgs[0].org.slug.as_str(), orgs[0].role.as_str()),
        ("acme", "owner")
    );
    let ctx = tenantry::auth::TenantCtx::for_tests(orgs[0].org.id);
    let members = store.list_members(&ctx).await.unwrap();
    let roles: Vec<&str> = members.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, vec!["admin", "member", "owner"]);
    assert_eq!(store.list_workspaces(&ctx).await.unwrap()[0].slug, "core");
    store.close().await;
    assert_eq!(list_orgs(&config).await, vec!["acme".to_owned()]);
}

async fn list_orgs(config: &tenantry::config::Config) -> Vec<String> {
    let app = tenantry::startup::Application::build(config.clone())
        .await
        .unwrap();
    let addr = app.local_addr().unwrap();
    let token = app.shutdown_token();
    let server = tokio::spawn(app.run());
    let orgs: crate::helpers::Listed = reqwest::Client::new()
        .get(format!("http://{addr}/v1/admin/orgs"))
        .bearer_auth(config.internal_admin_token.expose())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    token.cancel();
    server.await.unwrap().unwrap();
    orgs.iter()
        .map(|o| o["slug"].as_str().unwrap().to_owned())
        .collect()
}

crate::on_both_backends!(
    seed_is_idempotent,
    sigterm_drains_in_flight_requests,
    a_large_export_streams_in_bounded_memory
);

/// Starts `serve` and returns the child and its address, read from the JSON log.
fn start_server(vars: &[(&str, &str)]) -> (Child, String, BufReader<std::process::ChildStderr>) {
    let mut all: Vec<(&str, &str)> = vars.to_vec();
    all.push(("LOG_FORMAT", "json"));
    all.push(("LOG_LEVEL", "info"));
    let mut child = tenantry(&["serve"], &all).spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    match read_listen_address(&mut stderr) {
        Some(addr) => (child, addr, stderr),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("server did not start");
        }
    }
}

/// Reads JSON log lines until the `listening` line; `None` if the server exits first.
fn read_listen_address(stderr: &mut BufReader<std::process::ChildStderr>) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut line = String::new();
    while Instant::now() < deadline {
        line.clear();
        if stderr.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
            if v["fields"]["message"] == "listening" {
                return v["fields"]["address"].as_str().map(str::to_owned);
            }
        }
    }
    None
}

async fn sigterm_drains_in_flight_requests(backend: Backend) {
    let Some(db) = TestDatabase::create(backend).await else {
        return;
    };
    let vars = db.vars();
    let token = vars["INTERNAL_ADMIN_TOKEN"].clone();
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (mut child, addr, mut stderr) = start_server(&pairs);

    // Send the headers and half of the body: the request is in flight.
    let body = r#"{"name":"Drained","slug":"drained"}"#;
    let mut stream = TcpStream::connect(&addr).unwrap();
    write!(
        stream,
        "POST /v1/admin/orgs HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
        body.len(),
        &body[..10]
    )
    .unwrap();
    stream.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // New connections are refused once the signal is handled.
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(&addr).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The in-flight request completes.
    stream.write_all(&body.as_bytes()[10..]).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");

    let exit = child.wait().unwrap();
    assert!(exit.success(), "clean exit");
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("draining in-flight requests"), "{rest}");

    let config = tenantry::config::Config::from_vars(&vars).unwrap();
    assert_eq!(
        list_orgs(&config).await,
        vec!["drained".to_owned()],
        "the drained write persisted"
    );
}

/// Resident memory of process `pid`, in bytes (Linux).
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

async fn a_large_export_streams_in_bounded_memory(backend: Backend) {
    use futures::StreamExt;
    const RECORDS: usize = 40_000;
    let Some(db) = TestDatabase::create(backend).await else {
        return;
    };
    let mut vars = db.vars();
    // Sealing the fixture's backlog in one request takes a while on a small machine.
    vars.insert("REQUEST_TIMEOUT_SEC".into(), "300".into());
    vars.insert("DATABASE_STATEMENT_TIMEOUT_SEC".into(), "300".into());
    let token = vars["INTERNAL_ADMIN_TOKEN"].clone();
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (mut child, addr, mut stderr) = start_server(&pairs);
    // Keep the log pipe flowing.
    let drain = std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = stderr.read_to_string(&mut sink);
    });
    let client = reqwest::Client::new();
    let org: serde_json::Value = client
        .post(format!("http://{addr}/v1/admin/orgs"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "Big", "slug": "big"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let org_id: tenantry::ids::OrgId = org["id"].as_str().unwrap().parse().unwrap();
    let config = tenantry::config::Config::from_vars(&vars).unwrap();
    let store = tenantry::store::Store::new(tenantry::db::connect(&config).await.unwrap());
    let ctx = tenantry::auth::TenantCtx::for_tests(org_id);
    let started = Instant::now();
    store
        .append_filler_audit_records(
            &ctx,
            RECORDS,
            1200,
            tenantry::store::now() - chrono::Duration::hours(1),
        )
        .await
        .unwrap();
    store.close().await;
    // Sealed by the server (its verify seals first), before memory is measured.
    let report: serde_json::Value = client
        .get(format!(
            "http://{addr}/v1/admin/orgs/{org_id}/audit-events/verify"
        ))
        .bearer_auth(&token)
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["valid"], true, "{report}");
    eprintln!("filled and sealed in {:?}", started.elapsed());
    let baseline = rss(child.id());
    let res = client
        .get(format!(
            "http://{addr}/v1/admin/orgs/{org_id}/audit-events?format=csv"
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut body = res.bytes_stream();
    let (mut bytes, mut lines, mut peak, mut next_sample) = (0usize, 0usize, baseline, 0usize);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        bytes += chunk.len();
        lines += chunk.iter().filter(|b| **b == b'\n').count();
        if bytes >= next_sample {
            peak = peak.max(rss(child.id()));
            next_sample = bytes + 256 * 1024;
            // A reader slower than the database, as a client over a network is.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    // Header, the records, the organization's creation and the export itself.
    assert_eq!(lines, RECORDS + 3);
    let grew = peak.saturating_sub(baseline);
    let size = u64::try_from(bytes).unwrap();
    assert!(size > 48 << 20, "a large export: {size} bytes");
    // Buffering would hold the whole text (and more as records): streaming holds a few
    // chunks, plus the database's page caches (bounded per connection, not by the export).
    assert!(
        grew < 40 << 20 && grew < size * 3 / 4,
        "memory grew {grew} bytes while exporting {size} bytes: the export is buffered"
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
    drain.join().unwrap();
}

/// `tenantry backup` copies the SQLite database while the service writes to it; an
/// instance started on the copy verifies every audit chain and accepts the API keys.
#[tokio::test]
async fn a_sqlite_backup_taken_while_serving_restores_whole() {
    let Some(app) = crate::helpers::TestApp::on(Backend::Sqlite).await else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let org = app.org_of(&owner, "acme").await;
    let key = crate::helpers::key_with(&app, &owner, &org, &["data:read", "data:write"]).await;
    // Writes go on while the backup runs.
    let writer = {
        let client = app.client.clone();
        let url = app.url(&format!("/v1/orgs/{org}/data"));
        let key = key.clone();
        tokio::spawn(async move {
            let mut written = 0;
            for i in 0..200 {
                let res = client
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&serde_json::json!({"name": format!("item {i}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 201);
                written += 1;
            }
            written
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("backup.db");
    let vars: Vec<(&str, &str)> = app
        .vars
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let out = tenantry(&["backup", copy.to_str().unwrap()], &vars)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("backup written"));
    assert_eq!(writer.await.unwrap(), 200);
    // A second backup to the same path is refused, not overwritten.
    let again = tenantry(&["backup", copy.to_str().unwrap()], &vars)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));

    // Restore: a new instance on the copy.
    let restored_url = format!("sqlite://{}", copy.display());
    let Some(restored) = crate::helpers::TestApp::on(Backend::Sqlite)
        .with_vars(|v| {
            v.insert("DATABASE_URL".into(), restored_url.clone());
        })
        .await
    else {
        return;
    };
    let report: serde_json::Value = restored
        .admin_get(&format!("/v1/admin/orgs/{org}/audit-events/verify"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["valid"], true, "{report}");
    assert!(report["checked"].as_i64().unwrap() >= 3, "{report}");
    let platform: serde_json::Value = restored
        .admin_get("/v1/admin/audit-events/verify")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(platform["valid"], true, "{platform}");
    let items = restored.as_(&key).get(format!("/v1/orgs/{org}/data")).await;
    assert_eq!(items.status(), 200, "the key works on the restored copy");
    let listed: serde_json::Value = items.json().await;
    assert!(!listed["data"].as_array().unwrap().is_empty());
}

/// On PostgreSQL, `backup` says what to use instead.
#[tokio::test]
async fn backup_on_postgres_points_to_pg_dump() {
    let Some(db) = TestDatabase::create(Backend::Postgres).await else {
        return;
    };
    let vars = db.vars();
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let dir = tempfile::tempdir().unwrap();
    let out = tenantry(
        &["backup", dir.path().join("x.db").to_str().unwrap()],
        &pairs,
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pg_dump"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
