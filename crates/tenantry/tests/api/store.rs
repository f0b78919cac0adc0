//! Storage contract: the same stories on both backends, through the store API.

use std::collections::HashSet;

use tenantry::auth::TenantCtx;
use tenantry::domain::{DisplayName, Slug};
use tenantry::ids::{OrgId, WorkspaceId};
use tenantry::store::audit::AuditFilter;
use tenantry::store::StoreError;

use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    tenant_rows_are_invisible_to_other_tenants,
    slugs_are_unique_per_organization_only,
    concurrent_appends_keep_one_gapless_chain,
);

fn name(s: &str) -> DisplayName {
    DisplayName::parse(s).unwrap()
}

fn slug(s: &str) -> Slug {
    Slug::parse(s).unwrap()
}

async fn two_orgs(app: &TestApp) -> (TenantCtx, TenantCtx) {
    let a: OrgId = app.create_org("tenant-a").await["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let b: OrgId = app.create_org("tenant-b").await["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    (TenantCtx::for_tests(a), TenantCtx::for_tests(b))
}

async fn tenant_rows_are_invisible_to_other_tenants(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let (a, b) = two_orgs(&app).await;
    let ws = app
        .store
        .create_workspace(&a, name("Secret"), slug("secret"))
        .await
        .unwrap();
    assert_eq!(ws.org_id, a.org_id());
    assert_eq!(
        app.store.get_workspace(&a, ws.id).await.unwrap().name,
        "Secret"
    );
    assert!(matches!(
        app.store.get_workspace(&b, ws.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        app.store.get_workspace(&a, WorkspaceId::new()).await,
        Err(StoreError::NotFound)
    ));
    assert!(app.store.list_workspaces(&b).await.unwrap().is_empty());
    assert_eq!(app.store.list_workspaces(&a).await.unwrap().len(), 1);
    let b_audit = app
        .store
        .list_audit_events(&b, &AuditFilter::default())
        .await
        .unwrap();
    assert_eq!(b_audit.len(), 1, "only b's own creation record");
    assert!(b_audit.iter().all(|e| e.action == "organization.created"));
    // An org context for an id that does not exist sees nothing either.
    let ghost = TenantCtx::for_tests(OrgId::new());
    assert!(matches!(
        app.store.get_org(&ghost).await,
        Err(StoreError::NotFound)
    ));
}

async fn slugs_are_unique_per_organization_only(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let (a, b) = two_orgs(&app).await;
    app.store
        .create_workspace(&a, name("Core"), slug("core"))
        .await
        .unwrap();
    app.store
        .create_workspace(&b, name("Core"), slug("core"))
        .await
        .unwrap();
    let dup = app
        .store
        .create_workspace(&a, name("Core 2"), slug("CORE"))
        .await;
    assert!(
        matches!(
            dup,
            Err(StoreError::Domain(tenantry::domain::DomainError::SlugTaken))
        ),
        "{dup:?}"
    );
    // The failed insert wrote no audit record: audit rides the same transaction.
    let events = app
        .store
        .list_audit_events(&a, &AuditFilter::default())
        .await
        .unwrap();
    assert_eq!(events.len(), 2);
}

async fn concurrent_appends_keep_one_gapless_chain(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let (a, b) = two_orgs(&app).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = app.store.clone();
        let ctx = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            store
                .create_workspace(&ctx, name("W"), slug(&format!("w-{i}")))
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    for ctx in [&a, &b] {
        let filter = AuditFilter {
            limit: Some(200),
            order: tenantry::store::audit::AuditOrder::OldestFirst,
            ..Default::default()
        };
        let events = app.store.list_audit_events(ctx, &filter).await.unwrap();
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=11).collect::<Vec<_>>());
        let ids: HashSet<_> = events.iter().map(|e| e.id).collect();
        assert_eq!(ids.len(), 11);
        let report = app.store.verify_audit_chain(ctx).await.unwrap();
        assert!(report.valid, "{report:?}");
        assert_eq!(report.checked, 11);
    }
}
