//! Feature flags, the public deployment facts (`/v1/meta`) and demo mode.

use serde_json::{json, Value};

use crate::helpers::{assert_problem, Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    flags_follow_the_plan_unless_the_operator_overrides_them,
    meta_describes_the_deployment,
    demo_mode_refuses_destructive_actions,
);

fn flag<'a>(flags: &'a Value, name: &str) -> &'a Value {
    flags
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["flag"] == name)
        .unwrap_or_else(|| panic!("no flag {name} in {flags}"))
}

async fn flags_follow_the_plan_unless_the_operator_overrides_them(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let a = app.org_of(&owner, "acme").await;
    let other = app.user("other@example.com").await;
    let b = app.org_of(&other, "globex").await;
    let reader = app.member(&a, "reader@example.com", "readonly").await;
    let key = crate::helpers::key_with(&app, &owner, &a, &["audit:read", "audit:export"]).await;
    let features = format!("/v1/orgs/{a}/features");

    // Every member reads the flags; on FREE, SCIM is off by plan and export is on.
    let flags: Value = app.as_(&reader).get(&features).await.json().await;
    assert_eq!(flag(&flags, "scim")["enabled"], false);
    assert_eq!(flag(&flags, "scim")["source"], "plan");
    assert_eq!(flag(&flags, "scim")["plans"], json!(["pro", "enterprise"]));
    assert_eq!(flag(&flags, "audit_export")["enabled"], true);
    assert_eq!(
        app.as_(&key)
            .get(format!("/v1/orgs/{a}/audit-events?format=csv"))
            .await
            .status(),
        200
    );
    // The plan turns SCIM on.
    let res = app
        .admin_put(&format!("/v1/admin/orgs/{a}/plan"), &json!({"plan": "pro"}))
        .await;
    assert_eq!(res.status(), 200);
    let flags: Value = app.as_(&owner).get(&features).await.json().await;
    assert_eq!(flag(&flags, "scim")["enabled"], true);

    // The operator's override wins over the plan, at once, for sessions and cached keys.
    let set = |name: &str, enabled: bool| {
        app.client
            .put(app.url(&format!("/v1/admin/orgs/{a}/features/{name}")))
            .bearer_auth(&app.admin_token)
            .json(&json!({ "enabled": enabled }))
            .send()
    };
    let res = set("audit_export", false).await.unwrap();
    assert_eq!(res.status(), 200);
    let state: Value = res.json().await.unwrap();
    assert_eq!(state["enabled"], false);
    assert_eq!(state["source"], "override");
    let refused = app
        .as_(&key)
        .get(format!("/v1/orgs/{a}/audit-events?format=csv"))
        .await;
    let problem = assert_problem(refused.into_inner(), 403, "feature_disabled").await;
    assert_eq!(problem["feature"], "audit_export");
    let refused = app
        .as_(&owner)
        .get(format!("/v1/orgs/{a}/audit-events?format=json"))
        .await;
    assert_problem(refused.into_inner(), 403, "feature_disabled").await;
    // Searching is not exporting.
    assert_eq!(
        app.as_(&key)
            .get(format!("/v1/orgs/{a}/audit-events"))
            .await
            .status(),
        200
    );
    set("broadcast", false).await.unwrap();
    let res = app
        .as_(&owner)
        .post(format!("/v1/orgs/{a}/broadcast"), json!({"message": "hi"}))
        .await;
    assert_problem(res.into_inner(), 403, "feature_disabled").await;
    // Another organization keeps its plan's values.
    let theirs: Value = app
        .as_(&other)
        .get(format!("/v1/orgs/{b}/features"))
        .await
        .json()
        .await;
    assert_eq!(flag(&theirs, "audit_export")["enabled"], true);
    assert_eq!(flag(&theirs, "broadcast")["source"], "plan");
    // The operator sees the same view; clearing the override gives the plan back.
    let seen: Value = app
        .admin_get(&format!("/v1/admin/orgs/{a}/features"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(flag(&seen, "audit_export")["source"], "override");
    let cleared: Value = app
        .admin_delete(&format!("/v1/admin/orgs/{a}/features/audit_export"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cleared["enabled"], true);
    assert_eq!(cleared["source"], "plan");
    assert_eq!(
        app.as_(&key)
            .get(format!("/v1/orgs/{a}/audit-events?format=csv"))
            .await
            .status(),
        200
    );
    // Each change is audited; unknown flags and organizations are refused.
    let audit: Value = app
        .admin_get(&format!(
            "/v1/admin/orgs/{a}/audit-events?action=organization.feature_set"
        ))
        .await
        .json()
        .await
        .unwrap();
    let changes = audit["data"].as_array().unwrap();
    assert_eq!(changes.len(), 3, "{audit}");
    assert_eq!(changes[0]["metadata"]["flag"], "audit_export");
    assert_eq!(changes[0]["metadata"]["to"], Value::Null);
    assert_eq!(changes[0]["metadata"]["from"], false);
    let res = set("teleport", true).await.unwrap();
    assert_problem(res, 422, "validation_failed").await;
    let missing = format!("org_{}", "0".repeat(32));
    let res = app
        .admin_put(
            &format!("/v1/admin/orgs/{missing}/features/scim"),
            &json!({"enabled": true}),
        )
        .await;
    assert_problem(res, 404, "not_found").await;
    let res = app
        .as_(&owner)
        .put(
            format!("/v1/admin/orgs/{a}/features/scim"),
            json!({"enabled": true}),
        )
        .await;
    assert_problem(res.into_inner(), 401, "invalid_token").await;
    // Another tenant's flags are as hidden as a missing organization's.
    let res = app.as_(&other).get(&features).await;
    assert_problem(res.into_inner(), 404, "not_found").await;
}

async fn meta_describes_the_deployment(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let meta: Value = app.anon().get("/v1/meta").await.json().await;
    assert_eq!(meta["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(meta["demo_mode"], false);
    assert_eq!(meta["billing_configured"], false);
    assert_eq!(meta["environment"], "development");
    assert!(meta["auth_methods"]
        .as_array()
        .unwrap()
        .contains(&json!("api_key")));
    assert!(meta["console_url"].as_str().unwrap().ends_with("/app"));
}

async fn demo_mode_refuses_destructive_actions(backend: Backend) {
    let Some(app) = TestApp::on(backend)
        .with_vars(|v| {
            v.insert("DEMO_MODE".into(), "true".into());
        })
        .await
    else {
        return;
    };
    let meta: Value = app.anon().get("/v1/meta").await.json().await;
    assert_eq!(meta["demo_mode"], true);
    let owner = app.user("owner@example.com").await;
    let a = app.org_of(&owner, "acme").await;
    app.member(&a, "second@example.com", "owner").await;
    app.member(&a, "plain@example.com", "member").await;
    let members: Value = app
        .as_(&owner)
        .get(format!("/v1/orgs/{a}/members"))
        .await
        .json()
        .await;
    let id_of = |email: &str| {
        members["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["email"] == email)
            .unwrap()["user_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (second_id, plain_id) = (id_of("second@example.com"), id_of("plain@example.com"));

    // Demo-safe limits: a tenth of the usual organization rate.
    let res = app.as_(&owner).get(format!("/v1/orgs/{a}")).await;
    assert_eq!(res.headers()["ratelimit-limit"], "120");

    let refused = [
        app.as_(&owner).delete(format!("/v1/orgs/{a}")).await,
        app.as_(&owner)
            .delete(format!("/v1/orgs/{a}/members/{second_id}"))
            .await,
        app.as_(&owner)
            .patch(
                format!("/v1/orgs/{a}/members/{second_id}"),
                json!({"role": "admin"}),
            )
            .await,
        app.as_(&owner)
            .put(format!("/v1/orgs/{a}/plan"), json!({"plan": "pro"}))
            .await,
        app.as_(&owner)
            .post(
                format!("/v1/orgs/{a}/billing/checkout"),
                json!({"plan": "pro"}),
            )
            .await,
        app.as_(&owner)
            .post_empty(format!("/v1/orgs/{a}/billing/portal"))
            .await,
    ];
    for res in refused {
        assert_problem(res.into_inner(), 403, "demo_mode").await;
    }
    // What can be undone still works: a plain member's role and removal.
    let res = app
        .as_(&owner)
        .patch(
            format!("/v1/orgs/{a}/members/{plain_id}"),
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(res.status(), 204);
    let res = app
        .as_(&owner)
        .delete(format!("/v1/orgs/{a}/members/{plain_id}"))
        .await;
    assert_eq!(res.status(), 204);
    // Keys: revoking one of two works, the last one stays.
    let mut ids = Vec::new();
    for name in ["one", "two"] {
        let key: Value = app
            .as_(&owner)
            .post(
                format!("/v1/orgs/{a}/api-keys"),
                json!({"name": name, "scopes": ["org:read"]}),
            )
            .await
            .json()
            .await;
        ids.push(key["id"].as_str().unwrap().to_owned());
    }
    let res = app
        .as_(&owner)
        .delete(format!("/v1/orgs/{a}/api-keys/{}", ids[0]))
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .as_(&owner)
        .delete(format!("/v1/orgs/{a}/api-keys/{}", ids[1]))
        .await;
    assert_problem(res.into_inner(), 403, "demo_mode").await;
    // Nothing was deleted.
    assert_eq!(
        app.as_(&owner).get(format!("/v1/orgs/{a}")).await.status(),
        200
    );
}
