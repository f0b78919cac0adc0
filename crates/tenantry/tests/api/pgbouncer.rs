//! Behind PgBouncer in transaction mode: a server session is lent for one transaction, so
//! the service must keep no session state. Every request shape (tenant transactions,
//! single-statement reads and writes, the job queue, the audit sealer) runs through two
//! server connections shared by two instances' pools, tenant isolation holds, prepared
//! statements survive moving between server connections, and notifications arrive over
//! the direct connection.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::{Connection, Executor};

use crate::helpers::{
    all_items, eventually, key_with, wait_job, Backend, Instance, PgBouncer, TestApp,
};

/// Server connections PgBouncer keeps per database and user: fewer than the pools ask for.
const SERVER_CONNECTIONS: u32 = 2;

/// A login role of this test's own, member of the service role, dropped afterwards (roles
/// belong to the whole server).
struct LoginRole {
    name: String,
}

impl LoginRole {
    /// The role, or `None` (skipped) when the PostgreSQL server is unreachable and not
    /// required.
    async fn create() -> Option<Self> {
        let name = format!(
            "tenantry_pgb_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let admin_url = tenantry::testing::postgres_admin_url();
        let mut admin = match sqlx::PgConnection::connect(&admin_url).await {
            Ok(conn) => conn,
            Err(err) => {
                assert!(
                    std::env::var("TENANTRY_TEST_REQUIRE_POSTGRES").is_err(),
                    "PostgreSQL is required but {admin_url} is unreachable: {err}"
                );
                eprintln!("SKIPPED PostgreSQL test: cannot reach {admin_url}: {err}");
                return None;
            }
        };
        // The service role normally comes with the first migration; another test may be
        // creating it at this moment, so a failure here is only a race lost.
        let _ = admin
            .execute(
                "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tenantry_app') \
                 THEN CREATE ROLE tenantry_app NOLOGIN NOSUPERUSER NOBYPASSRLS; END IF; END $$",
            )
            .await;
        admin
            .execute(format!("CREATE ROLE {name} LOGIN IN ROLE tenantry_app").as_str())
            .await
            .unwrap();
        Some(Self { name })
    }
}

impl Drop for LoginRole {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let admin = tenantry::testing::postgres_admin_url();
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    // Its test database is gone by now (dropped before this guard).
                    let _ = conn
                        .execute(format!("DROP ROLE IF EXISTS {name}").as_str())
                        .await;
                }
            });
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_runs_behind_pgbouncer_in_transaction_mode() {
    let Some(role) = LoginRole::create().await else {
        return;
    };
    let Some(bouncer) = PgBouncer::start(&[&role.name], SERVER_CONNECTIONS) else {
        return;
    };
    let Some(app) = TestApp::on(Backend::Postgres)
        .with_vars(|v| {
            let direct = url::Url::parse(&v["DATABASE_URL"]).unwrap();
            let mut pooled = direct.clone();
            pooled.set_port(Some(bouncer.port)).unwrap();
            pooled.set_username(&role.name).unwrap();
            v.insert("DATABASE_MIGRATION_URL".into(), direct.to_string());
            v.insert("DATABASE_URL".into(), pooled.to_string());
            v.insert("DATABASE_POOLER".into(), "pgbouncer".into());
            v.insert("DATABASE_MAX_CONNECTIONS".into(), "8".into());
            // Long enough that only a notification can explain a revocation seen at once.
            v.insert("API_KEY_CACHE_SEC".into(), "300".into());
        })
        .await
    else {
        return;
    };
    let second = Instance::start(&app.vars).await;
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let globex = app.org_of(&owner, "globex").await;
    let acme_key = key_with(&app, &owner, &acme, &["data:read", "data:write"]).await;
    let globex_key = key_with(&app, &owner, &globex, &["data:read", "data:write"]).await;

    // Concurrent writes and reads of two tenants through both instances: each pool opens
    // more client connections than PgBouncer has server connections.
    let server = server_connections(&app, &role.name);
    let mut tasks = Vec::new();
    for worker in 0..12u32 {
        let (client, bases) = (app.client.clone(), [app.base.clone(), second.base.clone()]);
        let (org, key) = if worker % 2 == 0 {
            (acme.to_string(), acme_key.clone())
        } else {
            (globex.to_string(), globex_key.clone())
        };
        tasks.push(tokio::spawn(async move {
            for i in 0..15u32 {
                let base = &bases[usize::try_from(i % 2).unwrap()];
                let res = client
                    .post(format!("{base}/v1/orgs/{org}/data"))
                    .bearer_auth(&key)
                    .json(&json!({"name": format!("w{worker}-{i}"), "value": {"i": i}}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
                let res = client
                    .get(format!("{base}/v1/orgs/{org}/data?limit=5"))
                    .bearer_auth(&key)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let peak = server.await.unwrap();
    assert!(
        (1..=SERVER_CONNECTIONS).contains(&peak),
        "PgBouncer multiplexed the pools onto {peak} server connections"
    );
    if let tenantry::db::Db::Postgres(pool) = app.store.db() {
        assert!(
            pool.size() > SERVER_CONNECTIONS,
            "the pool had {} client connections for {SERVER_CONNECTIONS} server connections",
            pool.size()
        );
    }

    // Tenant isolation holds on shared server connections.
    for (org, key, other) in [(&acme, &acme_key, &globex), (&globex, &globex_key, &acme)] {
        let items = all_items(&app, key, &org.to_string()).await;
        assert_eq!(
            items.len(),
            90,
            "every write of the tenant, none of the other's"
        );
        let res = app.as_(key).get(format!("/v1/orgs/{other}/data")).await;
        res.problem(404, "not_found").await;
    }

    // Row-level security on the shared server connections: tenant transactions of both
    // organizations, interleaved from many client connections over the two server ones,
    // each see exactly their tenant's rows through an unfiltered query, and no scope
    // outlives its transaction.
    scopes_hold_on_shared_server_connections(&app, &acme, &globex).await;

    // Jobs run (claimed with SKIP LOCKED in transactions), woken over the direct connection.
    let res = app
        .as_(&owner)
        .post(
            format!("/v1/orgs/{acme}/jobs"),
            json!({"type": "echo", "payload": {"message": "through pgbouncer"}}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let job: Value = res.json().await;
    let id = job["id"].as_str().unwrap();
    wait_job(&app, &owner, &acme.to_string(), id, "succeeded").await;

    // The audit chain is sealed and verifies.
    let res = app
        .admin_get(&format!("/v1/admin/orgs/{acme}/audit-events/verify"))
        .await;
    assert_eq!(res.status(), 200);
    let verdict: Value = res.json().await.unwrap();
    assert_eq!(verdict["valid"], true, "{verdict}");

    // A key revoked on one instance is refused at once by the other, which had it cached:
    // the notification came over the direct connection.
    let res = app
        .client
        .get(format!("{}/v1/orgs/{acme}/data", second.base))
        .bearer_auth(&acme_key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let keys: crate::helpers::Listed = app
        .as_(&owner)
        .get(format!("/v1/orgs/{acme}/api-keys"))
        .await
        .json()
        .await;
    let id = keys[0]["id"].as_str().unwrap();
    let res = app
        .as_(&owner)
        .delete(format!("/v1/orgs/{acme}/api-keys/{id}"))
        .await;
    assert_eq!(res.status(), 200);
    let refused = eventually(Duration::from_secs(5), || async {
        app.client
            .get(format!("{}/v1/orgs/{acme}/data", second.base))
            .bearer_auth(&acme_key)
            .send()
            .await
            .unwrap()
            .status()
            == 401
    })
    .await;
    assert!(refused, "the other instance dropped the cached key");
    second.stop().await;
    drop(bouncer);
}

async fn scopes_hold_on_shared_server_connections(
    app: &TestApp,
    acme: &crate::helpers::Org,
    globex: &crate::helpers::Org,
) {
    use tenantry::db::{Access, Scope, Tx};
    let tenants: Vec<tenantry::ids::OrgId> = [acme, globex]
        .iter()
        .map(|o| o.as_str().parse().unwrap())
        .collect();
    let mut checks = Vec::new();
    for i in 0..40usize {
        let (store, org) = (app.store.clone(), tenants[i % 2]);
        checks.push(tokio::spawn(async move {
            let scope = if i % 5 == 4 {
                Scope::Global
            } else {
                Scope::Tenant(org)
            };
            let mut tx = store.db().begin(scope, Access::Read).await.unwrap();
            let Tx::Postgres(conn) = &mut tx else {
                unreachable!("a PostgreSQL test")
            };
            let (rows, others): (i64, i64) = sqlx::query_as(
                "SELECT count(*), count(*) FILTER (WHERE org_id <> $1) FROM data_items",
            )
            .bind(org.as_uuid())
            .fetch_one(&mut **conn)
            .await
            .unwrap();
            tx.commit().await.unwrap();
            (scope, rows, others)
        }));
    }
    for check in checks {
        let (scope, rows, others) = check.await.unwrap();
        match scope {
            Scope::Global => assert_eq!(rows, 0, "no scope, no tenant row"),
            _ => assert_eq!((rows, others), (90, 0), "{scope:?} sees its own rows only"),
        }
    }
}

/// Samples, until the returned task is awaited after the load, the most server
/// connections the login role ever held on the test database.
fn server_connections(app: &TestApp, role: &str) -> tokio::task::JoinHandle<u32> {
    let database = url::Url::parse(&app.vars["DATABASE_MIGRATION_URL"])
        .unwrap()
        .path()
        .trim_start_matches('/')
        .to_owned();
    let role = role.to_owned();
    let admin = tenantry::testing::postgres_admin_url();
    let started = Instant::now();
    tokio::spawn(async move {
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        let mut peak = 0;
        // The load takes a few seconds; sampling stops when the connections go idle.
        while started.elapsed() < Duration::from_secs(60) {
            let (total, active): (i64, i64) = sqlx::query_as(
                "SELECT count(*), count(*) FILTER (WHERE state <> 'idle') FROM pg_stat_activity \
                 WHERE usename = $1 AND datname = $2",
            )
            .bind(&role)
            .bind(&database)
            .fetch_one(&mut conn)
            .await
            .unwrap();
            peak = peak.max(u32::try_from(total).unwrap());
            if active == 0 && started.elapsed() > Duration::from_secs(3) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        peak
    })
}
