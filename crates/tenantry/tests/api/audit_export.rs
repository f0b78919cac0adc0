//! Audit search order and cursors, and exports (CSV, JSON, NDJSON).

use serde_json::{json, Value};

use crate::helpers::{Backend, Listed, TestApp};
use crate::on_both_backends;

on_both_backends!(
    newest_first_with_cursors_stable_under_appends,
    exports_are_escaped_limited_permissioned_and_audited,
);

async fn newest_first_with_cursors_stable_under_appends(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("ada@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    for slug in ["one", "two", "three", "four"] {
        let res = app
            .as_(&owner)
            .post(
                format!("/v1/orgs/{acme}/workspaces"),
                json!({"name": slug, "slug": slug}),
            )
            .await;
        assert_eq!(res.status(), 201);
    }
    let page = |query: String| {
        let (app, owner, acme) = (&app, &owner, &acme);
        async move {
            let res = app
                .as_(owner)
                .get(format!(
                    "/v1/orgs/{acme}/audit-events?action=workspace.created&{query}"
                ))
                .await;
            assert_eq!(res.status(), 200, "{query}");
            res.json::<Listed>().await
        }
    };
    let names = |l: &Listed| -> Vec<String> {
        l.iter()
            .map(|e| e["metadata"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let first = page("limit=2".into()).await;
    assert_eq!(names(&first), ["four", "three"], "newest first by default");
    // Appended between pages: it does not shift the next page.
    let res = app
        .as_(&owner)
        .post(
            format!("/v1/orgs/{acme}/workspaces"),
            json!({"name": "five", "slug": "five"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let cursor = first.next_cursor.clone().unwrap();
    let second = page(format!("limit=2&cursor={cursor}")).await;
    assert_eq!(names(&second), ["two", "one"]);
    let last = page(format!(
        "limit=2&cursor={}",
        second.next_cursor.clone().unwrap()
    ))
    .await;
    assert!(last.is_empty() && last.next_cursor.is_none());
    let oldest = page("limit=2&order=oldest".into()).await;
    assert_eq!(names(&oldest), ["one", "two"]);
    let next = page(format!(
        "limit=10&order=oldest&cursor={}",
        oldest.next_cursor.clone().unwrap()
    ))
    .await;
    assert_eq!(names(&next), ["three", "four", "five"]);
    let res = app
        .as_(&owner)
        .get(format!("/v1/orgs/{acme}/audit-events?order=sideways"))
        .await;
    let problem = res.problem(422, "validation_failed").await;
    assert_eq!(problem["errors"][0]["field"], "order");
}

/// Parses CSV (RFC 4180 quoting) into rows of cells.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                cell.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut cell)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut cell));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => cell.push(c),
        }
    }
    rows
}

async fn exports_are_escaped_limited_permissioned_and_audited(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("ada@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    // A value a spreadsheet would run: the user agent of a request, kept in its record.
    let formula = "=HYPERLINK(\"http://evil.example\",\"x\")";
    let res = app
        .client
        .post(app.url(&format!("/v1/orgs/{acme}/workspaces")))
        .bearer_auth(&owner.token)
        .header("user-agent", formula)
        .json(&json!({"name": "-2+3", "slug": "calc"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let export = |query: &str| {
        let (app, owner, acme) = (&app, &owner, &acme);
        let query = query.to_owned();
        async move {
            let res = app
                .as_(owner)
                .get(format!("/v1/orgs/{acme}/audit-events?{query}"))
                .await;
            assert_eq!(res.status(), 200, "{query}");
            let kind = res.headers()["content-type"].to_str().unwrap().to_owned();
            let disposition = res.headers()["content-disposition"]
                .to_str()
                .unwrap()
                .to_owned();
            assert!(
                disposition.starts_with("attachment; filename=\"audit-"),
                "{disposition}"
            );
            (kind, res.text().await)
        }
    };
    let (kind, csv) = export("format=csv&order=oldest").await;
    assert!(kind.starts_with("text/csv"), "{kind}");
    let rows = parse_csv(&csv);
    assert_eq!(
        rows[0],
        [
            "seq",
            "id",
            "created_at",
            "actor_type",
            "actor_id",
            "action",
            "target_type",
            "target_id",
            "metadata",
            "ip",
            "user_agent",
            "request_id",
            "prev_hash",
            "hash"
        ]
    );
    let created = rows
        .iter()
        .find(|r| r[5] == "workspace.created")
        .expect("the workspace record");
    assert_eq!(
        created[10],
        format!("'{formula}"),
        "a formula is neutralised"
    );
    assert!(created[8].contains("\"name\":\"-2+3\""), "{}", created[8]);
    assert_eq!(
        rows.len() - 1,
        3,
        "organization.created, workspace.created and the export itself: {csv}"
    );
    assert_eq!(
        rows[3][5], "audit.exported",
        "the export is audited before it runs"
    );

    let (kind, json) = export("format=json&action=workspace.created").await;
    assert_eq!(kind, "application/json");
    let array: Vec<Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(array.len(), 1);
    assert_eq!(
        array[0]["user_agent"], formula,
        "JSON keeps the value as it is"
    );

    let (kind, ndjson) = export("format=ndjson&limit=2").await;
    assert_eq!(kind, "application/x-ndjson");
    let lines: Vec<Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "limit honoured: {ndjson}");
    assert!(
        lines[0]["seq"].as_i64() > lines[1]["seq"].as_i64(),
        "newest first"
    );

    let exports: Listed = app
        .as_(&owner)
        .get(format!(
            "/v1/orgs/{acme}/audit-events?action=audit.exported&order=oldest"
        ))
        .await
        .json()
        .await;
    assert_eq!(exports.len(), 3);
    assert_eq!(exports[0]["metadata"]["format"], "csv");
    assert_eq!(
        exports[1]["metadata"]["filter"]["action"],
        "workspace.created"
    );
    assert_eq!(exports[2]["metadata"]["limit"], 2);

    // Reading is not exporting: a role with `audit:read` alone may list, not export.
    let role: Value = app
        .as_(&owner)
        .post(
            format!("/v1/orgs/{acme}/roles"),
            json!({"name": "Auditor", "permissions": ["org:read", "audit:read"]}),
        )
        .await
        .json()
        .await;
    let auditor = app
        .member(&acme, "aud@example.com", role["id"].as_str().unwrap())
        .await;
    let res = app
        .as_(&auditor)
        .get(format!("/v1/orgs/{acme}/audit-events"))
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .as_(&auditor)
        .get(format!("/v1/orgs/{acme}/audit-events?format=csv"))
        .await;
    let problem = res.problem(403, "forbidden").await;
    assert_eq!(problem["permission"], "audit:export");
    let res = app
        .as_(&owner)
        .get(format!("/v1/orgs/{acme}/audit-events?format=xlsx"))
        .await;
    res.problem(422, "validation_failed").await;
    // The operator exports too.
    let res = app
        .admin_get(&format!("/v1/admin/orgs/{acme}/audit-events?format=ndjson"))
        .await;
    assert_eq!(res.status(), 200);
}
