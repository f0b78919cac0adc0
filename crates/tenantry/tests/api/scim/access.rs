//! SCIM credentials: token management, tenant isolation, suspension, the deployment-wide
//! token, discovery behind the credential, and outages answered 503.

use reqwest::Method;
use serde_json::{json, Value};

use super::{assert_error, audit_actions, create_user, get, okta_user, roles, scim, setup, USER};
use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    scim_tokens_are_managed_by_admins_and_shown_once,
    scim_credentials_are_tenant_bound,
    scim_deployment_token_with_org_header,
);

async fn scim_tokens_are_managed_by_admins_and_shown_once(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("owner@acme.example").await;
    let org = app.org_of(&owner, "acme").await;
    let member = app.member(&org, "bob@acme.example", "member").await;
    let res = app
        .as_(&owner)
        .post(
            format!("/v1/orgs/{org}/scim/tokens"),
            json!({"name": "Okta"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await;
    let secret = created["secret"].as_str().unwrap();
    let prefix = created["prefix"].as_str().unwrap();
    assert!(prefix.starts_with("scim_") && secret.starts_with(&format!("{prefix}_")));
    assert_eq!(secret.len() - prefix.len() - 1, 64, "256 random bits");

    let listed: Value = app
        .as_(&owner)
        .get(format!("/v1/orgs/{org}/scim/tokens"))
        .await
        .json()
        .await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains(&secret[prefix.len() + 1..]));
    assert!(listed["data"][0]["last_used_at"].is_null());
    if let tenantry::db::Db::Sqlite(pool) = app.store.db() {
        let stored: String = sqlx::query_scalar("SELECT secret_hash FROM scim_tokens")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(stored, tenantry::secrets::token_hash(secret));
    }

    // Members lack `scim:manage`; the catalog lists it.
    app.as_(&member)
        .post(format!("/v1/orgs/{org}/scim/tokens"), json!({"name": "x"}))
        .await
        .problem(403, "forbidden")
        .await;
    let catalog: Value = app.as_(&owner).get("/v1/permissions").await.json().await;
    assert!(catalog.to_string().contains("scim:manage"));

    // SCIM is a feature of the paid plans: on FREE the token is refused until the
    // operator turns the flag on for this organization.
    let (status, body) = get(&app, secret, "/Users").await;
    assert_error(status, &body, 403, None);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("feature_disabled"),
        "{body}"
    );
    let res = app
        .admin_put(
            &format!("/v1/admin/orgs/{org}/features/scim"),
            &json!({"enabled": true}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let (status, _) = get(&app, secret, "/Users").await;
    assert_eq!(status, 200);
    let listed: Value = app
        .as_(&owner)
        .get(format!("/v1/orgs/{org}/scim/tokens"))
        .await
        .json()
        .await;
    assert!(
        listed["data"][0]["last_used_at"].is_string(),
        "last use recorded"
    );

    let id = created["id"].as_str().unwrap();
    let res = app
        .as_(&owner)
        .delete(format!("/v1/orgs/{org}/scim/tokens/{id}"))
        .await;
    assert_eq!(res.status(), 200);
    let (status, body) = get(&app, secret, "/Users").await;
    assert_error(status, &body, 401, None);
    let actions: Vec<String> = audit_actions(&app, &owner, &org)
        .await
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert!(actions.contains(&"scim_token.created".to_owned()));
    assert!(actions.contains(&"scim_token.revoked".to_owned()));
}

async fn scim_credentials_are_tenant_bound(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let (_owner_a, org_a, token_a) = setup(&app, "alpha").await;
    let (_owner_b, _org_b, token_b) = setup(&app, "beta").await;
    let in_b = create_user(&app, &token_b, okta_user("bea@beta.example")).await;
    let id_b = in_b["id"].as_str().unwrap();
    let (status, body) = get(&app, &token_a, &format!("/Users/{id_b}")).await;
    assert_error(status, &body, 404, None);
    let (status, _, body) = scim(
        &app,
        &token_a,
        Method::DELETE,
        &format!("/Users/{id_b}"),
        None,
        &[],
    )
    .await;
    assert_error(status, &body, 404, None);
    let (_, listed) = get(&app, &token_a, "/Users").await;
    assert_eq!(listed["totalResults"], 0);
    // An address whose account is outside the organization is neither taken over nor
    // added: 409 (registration says as much), with nothing of the account, and no
    // membership appears.
    let (status, _, body) = scim(
        &app,
        &token_a,
        Method::POST,
        "/Users",
        Some(json!({"schemas": [USER], "userName": "bea@beta.example"})),
        &[],
    )
    .await;
    assert_error(status, &body, 409, Some("uniqueness"));
    assert!(
        body["detail"].as_str().unwrap().contains("invite"),
        "{body}"
    );
    assert!(!body.to_string().contains("Bea"), "{body}");
    let (_, listed) = get(&app, &token_a, "/Users").await;
    assert_eq!(listed["totalResults"], 0);

    for bad in [
        "",
        "scim_0000000000000000_0000000000000000000000000000000000000000000000000000000000000000",
        "tk_nope",
    ] {
        let (status, body) = get(&app, bad, "/Users").await;
        assert_error(status, &body, 401, None);
    }
    let (status, body) = get(&app, &token_a, "/ServiceProviderConfig").await;
    assert_eq!(status, 200);
    assert_eq!(body["patch"]["supported"], true);
    assert_eq!(body["filter"]["maxResults"], 1000);
    assert_eq!(body["bulk"]["supported"], false);
    let (_, types) = get(&app, &token_a, "/ResourceTypes").await;
    assert_eq!(types["totalResults"], 2);
    let (_, schemas) = get(&app, &token_a, "/Schemas").await;
    assert_eq!(schemas["totalResults"], 3);
    let (status, body) = get(&app, "", "/ServiceProviderConfig").await;
    assert_error(status, &body, 401, None);

    let res = app
        .client
        .post(app.url(&format!("/v1/admin/orgs/{org_a}/suspend")))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (status, body) = get(&app, &token_a, "/Users").await;
    assert_error(status, &body, 403, None);
    assert!(body["detail"].as_str().unwrap().contains("org_suspended"));
}

async fn scim_deployment_token_with_org_header(backend: Backend) {
    let deployment = tenantry::secrets::random_token(32);
    let Some(app) = TestApp::on(backend)
        .with_vars(|v| {
            v.insert("SCIM_BEARER_TOKEN".to_owned(), deployment.clone());
            v.insert(
                "PUBLIC_BASE_URL".to_owned(),
                "https://id.example.com/".to_owned(),
            );
        })
        .await
    else {
        return;
    };
    let (owner, org, _token) = setup(&app, "acme").await;
    let (status, _, created) = scim(
        &app,
        &deployment,
        Method::POST,
        "/Users",
        Some(okta_user("ann@acme.example")),
        &[("x-org-id", &org)],
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert!(roles(&app, &owner, &org)
        .await
        .contains_key("ann@acme.example"));
    let actions = audit_actions(&app, &owner, &org).await;
    let provisioned = actions
        .iter()
        .find(|e| e["action"] == "scim.user_provisioned")
        .unwrap();
    assert_eq!(
        provisioned["actor"],
        json!({"type": "scim", "id": "deployment"})
    );

    let (status, _, body) = scim(
        &app,
        &deployment,
        Method::GET,
        "/Users",
        None,
        &[("x-org-id", "org_00000000000000000000000000000000")],
    )
    .await;
    assert_error(status, &body, 404, None);
    let (status, _, body) = scim(&app, &deployment, Method::GET, "/Users", None, &[]).await;
    assert_error(status, &body, 404, None);
    let (status, _, body) = scim(
        &app,
        &"e".repeat(40),
        Method::GET,
        "/Users",
        None,
        &[("x-org-id", &org)],
    )
    .await;
    assert_error(status, &body, 401, None);
}

/// A database outage answers SCIM clients 503 (retry), never 401 (which would make the
/// identity provider drop its connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_database_outage_is_503_not_401() {
    let Some(probe) = tenantry::testing::TestDatabase::create(Backend::Postgres).await else {
        return;
    };
    drop(probe);
    let proxy = crate::helpers::Proxy::to_postgres().await;
    let Some(mut app) = TestApp::on(Backend::Postgres)
        .with_vars(|v| {
            proxy.route(v);
            v.insert("DATABASE_ACQUIRE_TIMEOUT_SEC".into(), "1".into());
        })
        .await
    else {
        return;
    };
    let (_owner, _org, token) = setup(&app, "acme").await;
    // The owner's verification email may be in flight when the database goes away.
    app.expect_leftover_jobs();
    proxy.cut();
    let (status, body) = get(&app, &token, "/Users").await;
    assert_error(status, &body, 503, None);
    proxy.restore();
    for _ in 0..50 {
        let (status, _) = get(&app, &token, "/Users").await;
        if status == 200 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("SCIM answers again once the database is back");
}
