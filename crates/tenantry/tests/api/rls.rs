//! PostgreSQL row-level security as the last line: unscoped queries see nothing.

use sqlx::Connection;
use tenantry::auth::TenantCtx;
use tenantry::db::{Access, Db, Scope};
use tenantry::domain::{DisplayName, Slug};
use tenantry::ids::OrgId;

use crate::helpers::{Backend, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rls_blocks_unscoped_and_cross_tenant_queries() {
    let Some(app) = TestApp::on(Backend::Postgres)
        .with_vars(|v| {
            // Two connections: the worker's LISTEN holds one, so the scoped transaction and the
            // later unscoped query share the other.
            v.insert("DATABASE_MAX_CONNECTIONS".into(), "2".into());
        })
        .await
    else {
        return;
    };
    let Db::Postgres(pool) = app.store.db().clone() else {
        unreachable!()
    };
    let a: OrgId = app.create_org("rls-a").await["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let b: OrgId = app.create_org("rls-b").await["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    for (org, s) in [(a, "one"), (a, "two"), (b, "three")] {
        let ctx = TenantCtx::for_tests(org);
        app.store
            .create_workspace(
                &ctx,
                DisplayName::parse(s).unwrap(),
                Slug::parse(s).unwrap(),
            )
            .await
            .unwrap();
    }

    // The service role is neither superuser nor owner.
    let (role, bypass): (String, bool) = sqlx::query_as(
        "SELECT current_user::text, rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(role, "tenantry_app");
    assert!(!bypass);

    // A deliberately unscoped query (no WHERE, no tenant setting) returns nothing.
    for table in [
        "organizations",
        "workspaces",
        "audit_events",
        "audit_heads",
        "audit_chain",
        "audit_pending",
    ] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 0, "{table} leaked rows without a tenant scope");
    }

    // Scoped to a, the same unfiltered query sees a's rows only.
    let mut tx = app
        .store
        .db()
        .begin(Scope::Tenant(a), Access::Write)
        .await
        .unwrap();
    let tenantry::db::Tx::Postgres(ref mut pg) = tx else {
        unreachable!()
    };
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM workspaces")
        .fetch_one(&mut **pg)
        .await
        .unwrap();
    assert_eq!(n, 2);
    let orgs: i64 = sqlx::query_scalar("SELECT count(*) FROM organizations")
        .fetch_one(&mut **pg)
        .await
        .unwrap();
    assert_eq!(orgs, 1);
    // Writing a row into another tenant is refused by the policy's WITH CHECK.
    let err = sqlx::query(
        "INSERT INTO workspaces (org_id, id, name, slug, created_at, updated_at) VALUES ($1, $2, 'x', 'x', now(), now())",
    )
    .bind(b.as_uuid())
    .bind(uuid::Uuid::now_v7())
    .execute(&mut **pg)
    .await
    .unwrap_err();
    assert!(err.to_string().contains("row-level security"), "{err}");
    drop(tx);

    // After the transaction the setting is gone from the pooled connection: fail-closed.
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM workspaces")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 0);

    // Every tenant table has RLS enabled and forced (so a non-superuser owner is filtered too).
    let mut owner = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class WHERE relname IN ('organizations','workspaces','audit_events','audit_heads','audit_chain','audit_pending', \
         'billing_accounts','billing_usage_reports') AND relrowsecurity AND relforcerowsecurity",
    )
    .fetch_one(&mut owner)
    .await
    .unwrap();
    assert_eq!(tables, 8, "RLS enabled and forced on every tenant table");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_refuses_a_role_that_bypasses_rls() {
    let Some(db) = tenantry::testing::TestDatabase::create(Backend::Postgres).await else {
        return;
    };
    let mut vars = db.vars();
    vars.insert("DATABASE_APP_ROLE".into(), String::new());
    // Connecting as the superuser itself, without switching role.
    let config = tenantry::config::Config::from_vars(&vars).unwrap();
    let err = tenantry::startup::Application::build(config)
        .await
        .err()
        .expect("refused");
    let text = format!("{err:#}");
    assert!(text.contains("BYPASSRLS"), "{text}");
}

/// The single-statement read sets the tenant scope for its own statement only: it sees
/// its tenant's row, a wrong scope sees nothing, and the same connection is unscoped
/// again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_statement_reads_scope_only_themselves() {
    let Some(app) = TestApp::on(Backend::Postgres)
        .with_vars(|v| {
            // A tiny pool (the worker's LISTEN holds one of two) that gives up quickly: reads
            // must never keep the connection a transaction needs.
            v.insert("DATABASE_MAX_CONNECTIONS".into(), "2".into());
            v.insert("DATABASE_ACQUIRE_TIMEOUT_SEC".into(), "1".into());
        })
        .await
    else {
        return;
    };
    let Db::Postgres(pool) = app.store.db().clone() else {
        unreachable!()
    };
    let mut orgs = Vec::new();
    for slug in ["one-a", "one-b"] {
        let id: OrgId = app.create_org(slug).await["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        orgs.push(id);
    }
    let (a, b) = (orgs[0], orgs[1]);
    let item = app
        .store
        .create_data_item(&TenantCtx::for_tests(a), "x", &serde_json::json!(1))
        .await
        .unwrap();
    let sql = tenantry::db::single_statement_tenant_read(
        "SELECT name FROM data_items WHERE org_id = $2 AND id = $3",
    );
    // Reads between transactions on the one free connection.
    for i in 0..5 {
        let got = app
            .store
            .get_data_item(&TenantCtx::for_tests(a), item.id)
            .await
            .unwrap();
        assert_eq!(got.name, "x");
        app.store
            .create_data_item(
                &TenantCtx::for_tests(a),
                &format!("n{i}"),
                &serde_json::json!(i),
            )
            .await
            .expect("a transaction right after a read gets a connection");
    }
    let mut conn = pool.acquire().await.unwrap();
    let read = |scope: OrgId| {
        sqlx::query_scalar::<_, String>(&sql)
            .bind(scope)
            .bind(a)
            .bind(item.id)
    };
    let got = read(a).fetch_optional(&mut *conn).await.unwrap();
    assert_eq!(got.as_deref(), Some("x"));
    let (setting, rows): (Option<String>, i64) = sqlx::query_as(
        "SELECT NULLIF(current_setting('tenantry.org_id', true), ''), (SELECT count(*) FROM data_items)",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!((setting, rows), (None, 0), "nothing outlives the statement");
    let got = read(b).fetch_optional(&mut *conn).await.unwrap();
    assert_eq!(got, None, "wrong scope sees nothing");
    drop(conn);
    // Through the store, with kept connections, reads stay exact.
    for _ in 0..20 {
        let got = app
            .store
            .get_data_item(&TenantCtx::for_tests(a), item.id)
            .await
            .unwrap();
        assert_eq!(got.name, "x");
        let other = app
            .store
            .get_data_item(&TenantCtx::for_tests(b), item.id)
            .await;
        assert!(matches!(other, Err(tenantry::store::StoreError::NotFound)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_statement_writes_scope_only_themselves() {
    let Some(app) = TestApp::on(Backend::Postgres).await else {
        return;
    };
    let Db::Postgres(pool) = app.store.db().clone() else {
        unreachable!()
    };
    let mut orgs = Vec::new();
    for slug in ["write-a", "write-b"] {
        let id: OrgId = app.create_org(slug).await["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        orgs.push(id);
    }
    let (a, b) = (orgs[0], orgs[1]);
    // The hot write: the item and its audit record, in one statement.
    app.store
        .create_data_item(&TenantCtx::for_tests(a), "x", &serde_json::json!(1))
        .await
        .unwrap();
    let sql = tenantry::db::single_statement_tenant_write(
        "item AS (INSERT INTO data_items (org_id, id, name, value, created_at, updated_at) \
         SELECT $2, $3, 'y', '1', now(), now() FROM s WHERE s.scope IS NOT NULL RETURNING id)",
        "SELECT id FROM item",
    );
    let write = |scope: OrgId, into: OrgId| {
        sqlx::query_scalar::<_, tenantry::ids::DataItemId>(&sql)
            .bind(scope)
            .bind(into)
            .bind(tenantry::ids::DataItemId::new())
    };
    let mut conn = pool.acquire().await.unwrap();
    // Scoped to a, a row of b is refused by the policy's WITH CHECK.
    let err = write(a, b).fetch_one(&mut *conn).await.unwrap_err();
    assert!(err.to_string().contains("row-level security"), "{err}");
    write(a, a).fetch_one(&mut *conn).await.unwrap();
    // Nothing of either statement outlives it on the connection.
    let (setting, rows): (Option<String>, i64) = sqlx::query_as(
        "SELECT NULLIF(current_setting('tenantry.org_id', true), ''), (SELECT count(*) FROM data_items)",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(setting, None);
    assert_eq!(rows, 0, "no scope, no rows");
    drop(conn);
    for (org, items) in [(a, 2), (b, 0)] {
        let listed = app
            .store
            .list_data_items(&TenantCtx::for_tests(org), None, None)
            .await
            .unwrap();
        assert_eq!(listed.len(), items);
    }
    // The hot write's record is in a's chain (after the organization's creation).
    let report = app
        .store
        .verify_audit_chain(&TenantCtx::for_tests(a))
        .await
        .unwrap();
    assert!(report.valid, "{report:?}");
    assert_eq!(report.checked, 2);
}
