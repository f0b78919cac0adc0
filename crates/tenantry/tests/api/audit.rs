//! The audit log: written with the change, hash-chained by the sealer, append-only,
//! tamper-evident.

use serde_json::{json, Value};
use sqlx::Connection;
use tenantry::db::Db;

use crate::helpers::{Backend, Listed, TestApp};
use crate::on_both_backends;

on_both_backends!(
    creation_is_audited_with_request_facts,
    chain_verifies_and_detects_tampering,
    a_removed_sealed_record_is_detected,
    a_chain_of_many_pages_verifies_and_a_missing_page_is_detected,
    a_record_outside_the_sealers_queue_is_detected,
    the_worker_seals_records_nobody_reads,
    audit_rows_cannot_be_changed,
    records_are_searched_by_action_actor_target_and_time,
    retention_prunes_a_prefix_and_the_rest_still_verifies,
    the_retention_job_prunes_old_records,
);

async fn creation_is_audited_with_request_facts(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let res = app
        .client
        .post(app.url("/v1/admin/orgs"))
        .bearer_auth(&app.admin_token)
        .header("x-request-id", "req-audit-1")
        .header("user-agent", "audit-test/1.0")
        .json(&serde_json::json!({"name": "Initech", "slug": "initech"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let org: Value = res.json().await.unwrap();
    let id = org["id"].as_str().unwrap();
    let events: Listed = app
        .admin_get(&format!("/v1/admin/orgs/{id}/audit-events"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event["action"], "organization.created");
    assert_eq!(event["seq"], 1);
    assert_eq!(event["actor"]["type"], "operator");
    assert_eq!(event["target_type"], "organization");
    assert_eq!(event["target_id"], id);
    assert_eq!(event["metadata"]["slug"], "initech");
    assert_eq!(event["request_id"], "req-audit-1");
    assert_eq!(event["user_agent"], "audit-test/1.0");
    assert_eq!(event["ip"], "127.0.0.1");
    assert_eq!(event["prev_hash"], "0".repeat(64));
    let filtered: Listed = app
        .admin_get(&format!(
            "/v1/admin/orgs/{id}/audit-events?action=workspace.created"
        ))
        .await
        .json()
        .await
        .unwrap();
    assert!(filtered.is_empty());
}

async fn chain_verifies_and_detects_tampering(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let org = app.create_org("chain").await;
    let id = org["id"].as_str().unwrap();
    let org_id: tenantry::ids::OrgId = id.parse().unwrap();
    let ctx = tenantry::auth::TenantCtx::for_tests(org_id);
    for slug in ["one", "two", "three"] {
        let name = tenantry::domain::DisplayName::parse(slug).unwrap();
        app.store
            .create_workspace(&ctx, name, tenantry::domain::Slug::parse(slug).unwrap())
            .await
            .unwrap();
    }
    let report: Value = app
        .admin_get(&format!("/v1/admin/orgs/{id}/audit-events/verify"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["checked"], 4);
    let events: Listed = app
        .admin_get(&format!("/v1/admin/orgs/{id}/audit-events?order=oldest"))
        .await
        .json()
        .await
        .unwrap();
    for pair in events.windows(2) {
        assert_eq!(pair[1]["prev_hash"], pair[0]["hash"], "linked");
    }
    assert_eq!(report["head_hash"], events[3]["hash"]);

    // Tamper with record 2 as the database owner, bypassing the append-only guard.
    tamper_with_second_record(&app, org_id).await;
    let report: Value = app
        .admin_get(&format!("/v1/admin/orgs/{id}/audit-events/verify"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["valid"], false, "{report}");
    assert_eq!(report["first_invalid_seq"], 2);
}

/// Runs `sql` on the database as its owner, with the append-only triggers out of the way
/// (an attacker with the owner's rights, which the service never has).
async fn as_owner_without_guards(app: &TestApp, sql: &str, org: tenantry::ids::OrgId) {
    match app.db.backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&app.db.url).await.unwrap();
            for trigger in [
                "audit_events_no_update",
                "audit_events_no_delete",
                "audit_chain_no_update",
                "audit_chain_no_delete",
            ] {
                sqlx::query(&format!("DROP TRIGGER IF EXISTS {trigger}"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            sqlx::query(sql).bind(org).execute(&mut conn).await.unwrap();
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
            for guard in [
                "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only",
                "ALTER TABLE audit_chain DISABLE TRIGGER audit_chain_append_only",
            ] {
                sqlx::query(guard).execute(&mut conn).await.unwrap();
            }
            sqlx::query(sql).bind(org).execute(&mut conn).await.unwrap();
        }
    }
}

async fn tamper_with_second_record(app: &TestApp, org: tenantry::ids::OrgId) {
    as_owner_without_guards(
        app,
        "UPDATE audit_events SET metadata = '{\"forged\":true}' \
         WHERE id = (SELECT record_id FROM audit_chain WHERE org_id = $1 AND seq = 2)",
        org,
    )
    .await;
}

async fn verify(app: &TestApp, org: &str) -> Value {
    let res = app
        .admin_get(&format!("/v1/admin/orgs/{org}/audit-events/verify"))
        .await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// Three workspaces after the organization's creation: four sealed records.
async fn org_with_four_records(app: &TestApp, slug: &str) -> (String, tenantry::ids::OrgId) {
    let owner = app.user(&format!("{slug}@example.com")).await;
    let org = app.org_of(&owner, slug).await;
    for ws in ["one", "two", "three"] {
        let res = app
            .as_(&owner)
            .post(
                format!("/v1/orgs/{org}/workspaces"),
                serde_json::json!({"name": ws, "slug": ws}),
            )
            .await;
        assert_eq!(res.status(), 201);
    }
    let report = verify(app, &org).await;
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["checked"], 4, "{report}");
    (org.id.clone(), org.parse().unwrap())
}

async fn a_removed_sealed_record_is_detected(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let (id, org) = org_with_four_records(&app, "removal").await;
    // Removing the record, or only its place in the chain, breaks the chain at that place.
    as_owner_without_guards(
        &app,
        "DELETE FROM audit_chain WHERE org_id = $1 AND seq = 3",
        org,
    )
    .await;
    let report = verify(&app, &id).await;
    assert_eq!(report["valid"], false, "{report}");
    assert_eq!(report["first_invalid_seq"], 3, "{report}");
    assert_eq!(report["checked"], 2, "{report}");
}

async fn a_chain_of_many_pages_verifies_and_a_missing_page_is_detected(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let (id, org) = org_with_four_records(&app, "pages").await;
    // Verification walks the chain a range of positions at a time: 2,500 more records
    // make three such ranges.
    let ctx = tenantry::auth::TenantCtx::for_tests(org);
    app.store
        .append_filler_audit_records(&ctx, 2500, 0, tenantry::store::now())
        .await
        .unwrap();
    let report = verify(&app, &id).await;
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["checked"], 2504, "{report}");
    // A whole range of positions gone: the walk stops at its first.
    as_owner_without_guards(
        &app,
        "DELETE FROM audit_chain WHERE org_id = $1 AND seq > 1000 AND seq <= 2000",
        org,
    )
    .await;
    let report = verify(&app, &id).await;
    assert_eq!(report["valid"], false, "{report}");
    assert_eq!(report["first_invalid_seq"], 1001, "{report}");
    assert_eq!(report["checked"], 1000, "{report}");
}

async fn a_record_outside_the_sealers_queue_is_detected(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let (id, org) = org_with_four_records(&app, "orphan").await;
    // A record whose queue marker someone else removed can never be sealed: it must not
    // hide from verification.
    let uuid = uuid::Uuid::now_v7();
    let insert = "INSERT INTO audit_events (org_id, id, actor_type, action, metadata, created_at) \
                  VALUES ($1, $2, 'system', 'forged.unsealed', '{}', $3)";
    match app.db.backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&app.db.url).await.unwrap();
            sqlx::query(insert)
                .bind(org)
                .bind(uuid)
                .bind(chrono::Utc::now())
                .execute(&mut conn)
                .await
                .unwrap();
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
            sqlx::query(insert)
                .bind(org)
                .bind(uuid)
                .bind(chrono::Utc::now())
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }
    let report = verify(&app, &id).await;
    assert_eq!(report["valid"], false, "{report}");
    assert_eq!(report["unchained"], 1, "{report}");
    assert_eq!(
        report["checked"], 4,
        "the sealed chain itself is intact: {report}"
    );
    assert_eq!(report["first_invalid_seq"], Value::Null, "{report}");
}

async fn the_worker_seals_records_nobody_reads(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("sealed@example.com").await;
    let org = app.org_of(&owner, "sealed").await;
    let org_id: tenantry::ids::OrgId = org.parse().unwrap();
    let count = |sql: &'static str| {
        let url = app.db.url.clone();
        let backend = app.db.backend;
        async move {
            match backend {
                Backend::Sqlite => {
                    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
                    sqlx::query_scalar::<_, i64>(sql)
                        .bind(org_id)
                        .fetch_one(&mut conn)
                        .await
                        .unwrap()
                }
                Backend::Postgres => {
                    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
                    sqlx::query_scalar::<_, i64>(sql)
                        .bind(org_id)
                        .fetch_one(&mut conn)
                        .await
                        .unwrap()
                }
            }
        }
    };
    // No one reads the chain: the worker's sealer links the record on its own, well within
    // a second of its commit (polled, never timed: the bound is what the metric reports).
    let mut sealed = 0;
    for _ in 0..100 {
        sealed = count("SELECT count(*) FROM audit_chain WHERE org_id = $1").await;
        if sealed == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(sealed, 1, "the organization's creation was sealed");
    assert_eq!(
        count("SELECT count(*) FROM audit_pending WHERE org_id = $1").await,
        0
    );
    assert_eq!(
        count("SELECT seq FROM audit_heads WHERE org_id = $1").await,
        1
    );
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("audit_seal_lag_seconds"), "{metrics}");
}

async fn audit_rows_cannot_be_changed(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let org = app.create_org("immutable").await;
    let id = org["id"].as_str().unwrap();
    match app.store.db() {
        Db::Sqlite(_) => {
            let mut conn = sqlx::SqliteConnection::connect(&app.db.url).await.unwrap();
            let err = sqlx::query("UPDATE audit_events SET action = 'x'")
                .execute(&mut conn)
                .await
                .unwrap_err();
            assert!(err.to_string().contains("append-only"), "{err}");
            let err = sqlx::query("DELETE FROM audit_events")
                .execute(&mut conn)
                .await
                .unwrap_err();
            assert!(err.to_string().contains("append-only"), "{err}");
            // The chain's positions are as immutable as the records.
            assert_eq!(verify(&app, id).await["checked"], 1, "sealed");
            for sql in [
                "UPDATE audit_chain SET hash = 'x'",
                "DELETE FROM audit_chain",
            ] {
                let err = sqlx::query(sql).execute(&mut conn).await.unwrap_err();
                assert!(err.to_string().contains("append-only"), "{sql}: {err}");
            }
        }
        Db::Postgres(service_pool) => {
            // The service role has no right to change audit rows at all.
            let err = sqlx::query("UPDATE audit_events SET action = 'x'")
                .execute(service_pool)
                .await
                .unwrap_err();
            assert!(err.to_string().contains("permission denied"), "{err}");
            assert_eq!(verify(&app, id).await["checked"], 1, "sealed");
            for sql in [
                "UPDATE audit_chain SET hash = 'x'",
                "DELETE FROM audit_chain",
            ] {
                let err = sqlx::query(sql).execute(service_pool).await.unwrap_err();
                assert!(
                    err.to_string().contains("permission denied"),
                    "{sql}: {err}"
                );
            }
            // Even the owner (a superuser here) is stopped by the trigger.
            let mut owner = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
            for sql in [
                "UPDATE audit_events SET action = 'x'",
                "DELETE FROM audit_events",
                "TRUNCATE audit_events",
                "UPDATE audit_chain SET hash = 'x'",
                "DELETE FROM audit_chain",
                "TRUNCATE audit_chain",
            ] {
                let err = sqlx::query(sql).execute(&mut owner).await.unwrap_err();
                assert!(err.to_string().contains("append-only"), "{sql}: {err}");
            }
            let count: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events")
                .fetch_one(&mut owner)
                .await
                .unwrap();
            assert_eq!(count, 1, "the record survived every attempt");
            let count: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_chain")
                .fetch_one(&mut owner)
                .await
                .unwrap();
            assert_eq!(count, 1, "its place in the chain survived too");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_never_wait_for_the_chain_head() {
    let Some(app) = TestApp::on(Backend::Postgres).await else {
        return;
    };
    let owner = app.user("busy@example.com").await;
    let org = app.org_of(&owner, "busy").await;
    let org_id: tenantry::ids::OrgId = org.parse().unwrap();
    assert_eq!(verify(&app, &org).await["checked"], 1);
    // Hold the chain head as a sealer does while it links a batch.
    let mut holder = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("SELECT seq FROM audit_heads WHERE org_id = $1 FOR UPDATE")
        .bind(org_id)
        .fetch_one(&mut holder)
        .await
        .unwrap();
    // Sixteen concurrent audited writes of the organization all commit meanwhile.
    let writes = (0..16).map(|i| {
        app.as_(&owner).post(
            format!("/v1/orgs/{org}/workspaces"),
            serde_json::json!({"name": format!("w{i}"), "slug": format!("w{i}")}),
        )
    });
    let answers = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        futures::future::join_all(writes),
    )
    .await
    .expect("the writes finished while the chain head was held");
    for res in answers {
        assert_eq!(res.status(), 201);
    }
    // Their records wait for the head, written and visible as the unsealed tail.
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_pending WHERE org_id = $1")
        .bind(org_id)
        .fetch_one(&mut holder)
        .await
        .unwrap();
    assert_eq!(pending, 16);
    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
    let report = verify(&app, &org).await;
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["checked"], 17, "{report}");
    assert_eq!(report["unsealed"], 0, "{report}");
}

on_both_backends!(chains_from_before_sealing_move_over_intact);

/// A chain written before sealing moved out of the writers (schema of migration 0008, each
/// writer assigning its record's position and hash) verifies after the upgrade, and new
/// records continue it. The hashes are computed here from the documented formula, as an
/// outside verifier would: SHA-256 of the previous hash, a newline and the canonical JSON.
async fn chains_from_before_sealing_move_over_intact(backend: Backend) {
    use sha2::Digest as _;
    let Some(db) = tenantry::testing::TestDatabase::create(backend).await else {
        return;
    };
    let org = tenantry::ids::OrgId::new();
    let (org_lit, id_lit): (String, fn(&uuid::Uuid) -> String) = match backend {
        Backend::Sqlite => (format!("X'{}'", org.as_uuid().simple()), |u| {
            format!("X'{}'", u.simple())
        }),
        Backend::Postgres => (format!("'{}'::uuid", org.as_uuid()), |u| {
            format!("'{u}'::uuid")
        }),
    };
    let mut prev = "0".repeat(64);
    let mut statements = vec![format!(
        "INSERT INTO organizations (id, name, slug, created_at, updated_at) \
         VALUES ({org_lit}, 'Legacy', 'legacy', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')"
    )];
    for seq in 1..=3 {
        let id = tenantry::ids::AuditEventId::new();
        let at = format!("2026-01-0{seq}T00:00:00.000000Z");
        let json = format!(
            r#"{{"org_id":"{org}","seq":{seq},"id":"{id}","actor_type":"system","actor_id":null,"action":"legacy.write","target_type":null,"target_id":null,"metadata":"{{}}","ip":null,"user_agent":null,"request_id":null,"created_at":"{at}"}}"#
        );
        let mut hasher = sha2::Sha256::new();
        hasher.update(format!("{prev}\n{json}").as_bytes());
        let hash = hex::encode(hasher.finalize());
        statements.push(format!(
            "INSERT INTO audit_events (org_id, seq, id, actor_type, action, metadata, created_at, prev_hash, hash) \
             VALUES ({org_lit}, {seq}, {}, 'system', 'legacy.write', '{{}}', '{at}', '{prev}', '{hash}')",
            id_lit(&id.as_uuid())
        ));
        prev = hash;
    }
    statements.push(format!(
        "INSERT INTO audit_heads (org_id, seq, hash) VALUES ({org_lit}, 3, '{prev}')"
    ));
    let before_sealing = |m: &mut sqlx::migrate::Migrator| {
        m.migrations = m
            .migrations
            .iter()
            .filter(|m| m.version < 9)
            .cloned()
            .collect::<Vec<_>>()
            .into();
    };
    match backend {
        Backend::Sqlite => {
            use std::str::FromStr as _;
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(&db.url)
                .unwrap()
                .create_if_missing(true);
            let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
            let mut migrator = sqlx::migrate!("migrations/sqlite");
            before_sealing(&mut migrator);
            migrator.run(&pool).await.unwrap();
            for sql in &statements {
                sqlx::query(sql).execute(&pool).await.unwrap();
            }
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            let mut migrator = sqlx::migrate!("migrations/postgres");
            before_sealing(&mut migrator);
            migrator.run(&pool).await.unwrap();
            for sql in &statements {
                sqlx::query(sql).execute(&pool).await.unwrap();
            }
            pool.close().await;
        }
    }
    // The upgrade: the service migrates the database as it starts.
    let config = tenantry::config::Config::from_vars(&db.vars()).unwrap();
    let store = tenantry::store::Store::new(
        tenantry::startup::connect_and_migrate(&config)
            .await
            .unwrap(),
    );
    let ctx = tenantry::auth::TenantCtx::for_tests(org);
    let report = store.verify_audit_chain(&ctx).await.unwrap();
    assert!(report.valid, "{report:?}");
    assert_eq!(report.checked, 3);
    assert_eq!(report.head_hash, prev);
    store
        .create_workspace(
            &ctx,
            tenantry::domain::DisplayName::parse("After").unwrap(),
            tenantry::domain::Slug::parse("after").unwrap(),
        )
        .await
        .unwrap();
    let report = store.verify_audit_chain(&ctx).await.unwrap();
    assert!(report.valid, "{report:?}");
    assert_eq!(report.checked, 4);
    let oldest_first = tenantry::store::audit::AuditFilter {
        order: tenantry::store::audit::AuditOrder::OldestFirst,
        ..Default::default()
    };
    let events = store.list_audit_events(&ctx, &oldest_first).await.unwrap();
    assert_eq!(
        events[3].prev_hash, prev,
        "the new record links to the migrated head"
    );
    assert_eq!(events[3].action, "workspace.created");
    store.close().await;
}

async fn records_are_searched_by_action_actor_target_and_time(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("ada@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let started = chrono::Utc::now();
    let member = app.member(&acme, "bo@example.com", "member").await;
    let key = crate::helpers::create_key(
        &app,
        &owner,
        &acme,
        serde_json::json!({"name": "ci", "scopes": ["data:read"]}),
    )
    .await;
    let key_id = key["id"].as_str().unwrap().to_owned();
    let search = |query: &str| {
        let (app, owner, acme) = (&app, &owner, &acme);
        let query = query.to_owned();
        async move {
            let res = app
                .as_(owner)
                .get(format!("/v1/orgs/{acme}/audit-events?{query}"))
                .await;
            assert_eq!(res.status(), 200, "{query}");
            let page: Listed = res.json().await;
            page.data
        }
    };
    let actions = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .map(|e| e["action"].as_str().unwrap().to_owned())
            .collect()
    };
    // A prefix: every `invitation.` action and nothing else.
    let invitations = actions(&search("action=invitation.*").await);
    assert!(!invitations.is_empty());
    assert!(
        invitations.iter().all(|a| a.starts_with("invitation.")),
        "{invitations:?}"
    );
    // `_` and `%` are literal in a prefix.
    assert!(search("action=invitation_%25.*").await.is_empty());
    // By actor: the member's own acceptance; `actorUserId` as the original product spells it.
    let by_member = search(&format!("actor_user_id={}", member.id)).await;
    assert!(!by_member.is_empty());
    assert!(by_member
        .iter()
        .all(|e| e["actor"]["id"] == member.id.to_string()));
    assert_eq!(
        by_member.len(),
        search(&format!("actorUserId={}", member.id)).await.len()
    );
    assert!(
        search(&format!("actor_type=api_key&actor_id={}", member.id))
            .await
            .is_empty()
    );
    // By target.
    let key_events = search(&format!("target_type=api_key&target_id={key_id}")).await;
    assert_eq!(actions(&key_events), ["api_key.created"]);
    // By time: nothing before the org existed, everything after the start since it.
    let before =
        (started - chrono::Duration::days(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let early =
        (started - chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert!(search(&format!("to={before}")).await.is_empty());
    let since = search(&format!("from={early}&action=api_key.created")).await;
    assert_eq!(since.len(), 1);
    // Bad filters are 422, never an empty page.
    for bad in [
        "actor_type=robot",
        &format!("from={early}&to={before}"),
        &format!("actor_user_id={}&actor_type=system", member.id),
    ] {
        let res = app
            .as_(&owner)
            .get(format!("/v1/orgs/{acme}/audit-events?{bad}"))
            .await;
        assert_eq!(res.status(), 422, "{bad}");
    }
    let res = app
        .as_(&owner)
        .get(format!("/v1/orgs/{acme}/audit-events?from=yesterday"))
        .await;
    assert!(res.status().is_client_error(), "{}", res.status());
}

async fn retention_prunes_a_prefix_and_the_rest_still_verifies(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let (id, org_id) = org_with_four_records(&app, "keep").await;
    // Records written from here on are younger than the cut-off.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let cutoff = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let ctx = tenantry::auth::TenantCtx::for_tests(org_id);
    for slug in ["four", "five"] {
        let name = tenantry::domain::DisplayName::parse(slug).unwrap();
        app.store
            .create_workspace(&ctx, name, tenantry::domain::Slug::parse(slug).unwrap())
            .await
            .unwrap();
    }
    let before = verify(&app, &id).await;
    assert_eq!(before["checked"], 6);
    assert!(before["checkpoint"].is_null());
    let report = app.store.prune_audit_log(cutoff).await.unwrap();
    assert!(report.records >= 4, "{report:?}");
    assert_eq!(report.failed, 0);

    let after = verify(&app, &id).await;
    assert_eq!(after["valid"], true, "{after}");
    assert_eq!(after["checked"], 2, "only the records left are walked");
    assert_eq!(after["checkpoint"]["seq"], 4);
    assert_eq!(after["checkpoint"]["signature_valid"], true);
    assert_eq!(
        after["head_hash"], before["head_hash"],
        "the head is unchanged"
    );
    let left: Listed = app
        .admin_get(&format!("/v1/admin/orgs/{id}/audit-events?order=oldest"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(left.len(), 2);
    assert_eq!(left[0]["seq"], 5);
    assert_eq!(left[0]["prev_hash"], after["checkpoint"]["hash"]);
    // Recorded on the platform chain.
    let pruned: Listed = app
        .admin_get(&format!(
            "/v1/admin/audit-events?action=audit.pruned&target_id={id}"
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(pruned.len(), 1);
    assert_eq!(pruned[0]["metadata"]["through_seq"], 4);
    assert_eq!(pruned[0]["metadata"]["records"], 4);
    // Running again removes nothing more of this chain.
    app.store.prune_audit_log(cutoff).await.unwrap();
    let again = verify(&app, &id).await;
    assert_eq!(
        (again["checkpoint"]["seq"].clone(), again["checked"].clone()),
        (json!(4), json!(2))
    );

    // A checkpoint moved by someone who cannot sign it is caught.
    as_owner_without_guards(
        &app,
        "UPDATE audit_checkpoints SET seq = seq + 1 WHERE org_id = $1",
        org_id,
    )
    .await;
    let forged = verify(&app, &id).await;
    assert_eq!(forged["valid"], false, "{forged}");
    assert_eq!(forged["checkpoint"]["signature_valid"], false);
    as_owner_without_guards(
        &app,
        "UPDATE audit_checkpoints SET seq = seq - 1 WHERE org_id = $1",
        org_id,
    )
    .await;
    assert_eq!(verify(&app, &id).await["valid"], true);
    // So is a record changed after the checkpoint.
    as_owner_without_guards(
        &app,
        "UPDATE audit_events SET metadata = '{\"forged\":true}' \
         WHERE id = (SELECT record_id FROM audit_chain WHERE org_id = $1 AND seq = 6)",
        org_id,
    )
    .await;
    let tampered = verify(&app, &id).await;
    assert_eq!(tampered["valid"], false);
    assert_eq!(tampered["first_invalid_seq"], 6);
}

async fn the_retention_job_prunes_old_records(backend: Backend) {
    let Some(app) = TestApp::on(backend)
        .with_vars(|v| {
            v.insert("AUDIT_LOG_RETENTION_DAYS".into(), "30".into());
            v.insert("AUDIT_RETENTION_INTERVAL_SEC".into(), "1".into());
        })
        .await
    else {
        return;
    };
    // An organization (deleted long ago) whose records are all 40 days old.
    let gone = tenantry::ids::OrgId::new();
    let ctx = tenantry::auth::TenantCtx::for_tests(gone);
    let old = tenantry::store::now() - chrono::Duration::days(40);
    app.store
        .append_filler_audit_records(&ctx, 30, 0, old)
        .await
        .unwrap();
    // Younger records elsewhere stay.
    let (kept, _) = org_with_four_records(&app, "young").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let pruned = loop {
        let found: Listed = app
            .admin_get(&format!(
                "/v1/admin/audit-events?action=audit.pruned&target_id={gone}"
            ))
            .await
            .json()
            .await
            .unwrap();
        if let Some(record) = found.first() {
            break record.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the retention job ran"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(pruned["metadata"]["records"], 30);
    assert_eq!(pruned["metadata"]["through_seq"], 30);
    assert_eq!(pruned["actor"]["id"], "retention");
    let report = verify(&app, &kept).await;
    assert_eq!(report["checked"], 4, "young records stay");
    assert!(report["checkpoint"].is_null());
}
