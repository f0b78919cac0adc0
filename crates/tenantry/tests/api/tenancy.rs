//! Organizations, workspaces, members, roles, invitations and plans.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, call, Backend, Listed, TestApp, PASSWORD};
use crate::on_both_backends;

on_both_backends!(
    organization_lifecycle,
    invitations_members_and_owner_rules,
    custom_roles_grant_exactly_their_permissions,
    plan_member_limits,
    workspace_roles_add_permissions_in_one_workspace,
);

async fn organization_lifecycle(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let res = app
        .client
        .post(app.url("/v1/auth/register"))
        .json(&json!({"email": "ann@example.com", "password": PASSWORD, "name": "Ann", "org": {"name": "Acme", "slug": "acme"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let reg: Value = res.json().await.unwrap();
    let ann = reg["access_token"].as_str().unwrap().to_owned();
    let acme = reg["org_id"].as_str().unwrap().to_owned();
    let mine: Listed = call(&app, Some(&ann), Method::GET, "/v1/orgs", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(
        (mine[0]["slug"].as_str(), mine[0]["role"].as_str()),
        (Some("acme"), Some("owner"))
    );

    let second = app.org_of(&ann, "second").await;
    let res = call(
        &app,
        Some(&ann),
        Method::POST,
        "/v1/orgs",
        Some(json!({"name": "X", "slug": "ACME"})),
    )
    .await;
    assert_problem(res, 409, "slug_taken").await;
    let res = call(
        &app,
        Some(&ann),
        Method::PATCH,
        &format!("/v1/orgs/{acme}"),
        Some(json!({"name": "Acme Inc", "slug": "acme-inc"})),
    )
    .await;
    let updated: Value = res.json().await.unwrap();
    assert_eq!(
        (updated["name"].as_str(), updated["slug"].as_str()),
        (Some("Acme Inc"), Some("acme-inc"))
    );
    let res = call(
        &app,
        Some(&ann),
        Method::PATCH,
        &format!("/v1/orgs/{second}"),
        Some(json!({"slug": "acme-inc"})),
    )
    .await;
    assert_problem(res, 409, "slug_taken").await;

    let res = call(
        &app,
        Some(&ann),
        Method::DELETE,
        &format!("/v1/orgs/{second}"),
        None,
    )
    .await;
    assert_eq!(res.status(), 204);
    assert_problem(
        call(
            &app,
            Some(&ann),
            Method::GET,
            &format!("/v1/orgs/{second}"),
            None,
        )
        .await,
        404,
        "not_found",
    )
    .await;
    let res = app
        .admin_get(&format!("/v1/admin/orgs/{second}/audit-events"))
        .await;
    assert_eq!(
        res.status(),
        404,
        "the deleted org is gone for the operator API too"
    );

    let audit: Listed = call(
        &app,
        Some(&ann),
        Method::GET,
        &format!("/v1/orgs/{acme}/audit-events"),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    let actions: Vec<&str> = audit
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec!["organization.created", "organization.updated"]
    );
    assert_eq!(audit[0]["actor"]["type"], "user");
    let catalog: Value = call(&app, None, Method::GET, "/v1/permissions", None)
        .await
        .json()
        .await
        .unwrap();
    assert!(catalog["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "members:invite"));
    assert_eq!(catalog["roles"].as_array().unwrap().len(), 5);
}

async fn invitations_members_and_owner_rules(backend: Backend) {
    let sink = crate::helpers::smtp::SmtpSink::start().await;
    let url = sink.url();
    let Some(app) = TestApp::on(backend)
        .with_vars(move |v| {
            v.insert("SMTP_URL".into(), url);
        })
        .await
    else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    // Sign up through an invitation: the token from the email works.
    let res = call(
        &app,
        Some(&owner),
        Method::POST,
        &format!("/v1/orgs/{acme}/invitations"),
        Some(json!({"email": "Adam@Example.com", "role": "admin"})),
    )
    .await;
    let invite: Value = res.json().await.unwrap();
    assert_eq!(invite["status"], "pending");
    let mail = sink
        .wait_for("adam@example.com", "accept-invitation?token=")
        .await;
    assert_eq!(
        crate::helpers::smtp::token_in(&mail),
        invite["token"].as_str().unwrap()
    );
    let res = app
        .client
        .post(app.url("/v1/auth/register"))
        .json(&json!({"email": "adam@example.com", "password": PASSWORD, "name": "Adam", "invitation_token": invite["token"]}))
        .send()
        .await
        .unwrap();
    let reg: Value = res.json().await.unwrap();
    assert_eq!(reg["org_id"].as_str(), Some(acme.as_str()));
    let admin = reg["access_token"].as_str().unwrap().to_owned();
    // Single use.
    let res = call(
        &app,
        Some(&admin),
        Method::POST,
        "/v1/invitations/accept",
        Some(json!({"token": invite["token"]})),
    )
    .await;
    assert_problem(res, 422, "validation_failed").await;

    // Accepting as someone else's address is refused.
    let res = call(
        &app,
        Some(&owner),
        Method::POST,
        &format!("/v1/orgs/{acme}/invitations"),
        Some(json!({"email": "mia@example.com", "role": "member"})),
    )
    .await;
    let mia_invite: Value = res.json().await.unwrap();
    let eve = app.user("eve@example.com").await;
    let res = call(
        &app,
        Some(&eve),
        Method::POST,
        "/v1/invitations/accept",
        Some(json!({"token": mia_invite["token"]})),
    )
    .await;
    assert_problem(res, 403, "invitation_email_mismatch").await;
    let res = call(
        &app,
        Some(&owner),
        Method::POST,
        &format!("/v1/orgs/{acme}/invitations"),
        Some(json!({"email": "mia@example.com", "role": "member"})),
    )
    .await;
    assert_problem(res, 409, "already_invited").await;
    // Resend replaces the token.
    let inv_id = mia_invite["id"].as_str().unwrap();
    let resent: Value = call(
        &app,
        Some(&owner),
        Method::POST,
        &format!("/v1/orgs/{acme}/invitations/{inv_id}/resend"),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_ne!(resent["token"], mia_invite["token"]);
    let mia = app.user("mia@example.com").await;
    let res = call(
        &app,
        Some(&mia),
        Method::POST,
        "/v1/invitations/accept",
        Some(json!({"token": mia_invite["token"]})),
    )
    .await;
    assert_problem(res, 422, "validation_failed").await;
    let res = call(
        &app,
        Some(&mia),
        Method::POST,
        "/v1/invitations/accept",
        Some(json!({"token": resent["token"]})),
    )
    .await;
    assert_eq!(res.status(), 200);

    let members: Listed = call(
        &app,
        Some(&mia),
        Method::GET,
        &format!("/v1/orgs/{acme}/members"),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    let roles: Vec<(&str, &str)> = members
        .iter()
        .map(|m| (m["email"].as_str().unwrap(), m["role"].as_str().unwrap()))
        .collect();
    assert_eq!(
        roles,
        vec![
            ("adam@example.com", "admin"),
            ("mia@example.com", "member"),
            ("owner@example.com", "owner")
        ]
    );
    let id_of = |email: &str| {
        members.iter().find(|m| m["email"] == email).unwrap()["user_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (owner_id, mia_id) = (id_of("owner@example.com"), id_of("mia@example.com"));

    // Members cannot invite; admins cannot touch owners or grant owner.
    let res = call(
        &app,
        Some(&mia),
        Method::POST,
        &format!("/v1/orgs/{acme}/invitations"),
        Some(json!({"email": "x@example.com", "role": "member"})),
    )
    .await;
    assert_eq!(
        assert_problem(res, 403, "forbidden").await["permission"],
        "members:invite"
    );
    let res = call(
        &app,
        Some(&admin),
        Method::DELETE,
        &format!("/v1/orgs/{acme}/members/{owner_id}"),
        None,
    )
    .await;
    assert_problem(res, 403, "owner_required").await;
    let res = call(
        &app,
        Some(&admin),
        Method::PATCH,
        &format!("/v1/orgs/{acme}/members/{mia_id}"),
        Some(json!({"role": "owner"})),
    )
    .await;
    assert_problem(res, 403, "owner_required").await;
    let res = call(
        &app,
        Some(&admin),
        Method::PATCH,
        &format!("/v1/orgs/{acme}/members/{mia_id}"),
        Some(json!({"role": "billing"})),
    )
    .await;
    assert_eq!(res.status(), 204);
    let res = call(
        &app,
        Some(&admin),
        Method::PATCH,
        &format!("/v1/orgs/{acme}/members/{mia_id}"),
        Some(json!({"role": "chief"})),
    )
    .await;
    assert_problem(res, 422, "validation_failed").await;
    // The last owner stays an owner.
    let res = call(
        &app,
        Some(&owner),
        Method::PATCH,
        &format!("/v1/orgs/{acme}/members/{owner_id}"),
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_problem(res, 409, "last_owner").await;
    let res = call(
        &app,
        Some(&owner),
        Method::DELETE,
        &format!("/v1/orgs/{acme}/members/{owner_id}"),
        None,
    )
    .await;
    assert_problem(res, 409, "last_owner").await;
    // Leaving on one's own, and removal by an admin.
    let res = call(
        &app,
        Some(&mia),
        Method::DELETE,
        &format!("/v1/orgs/{acme}/members/{mia_id}"),
        None,
    )
    .await;
    assert_eq!(res.status(), 204);
    assert_problem(
        call(
            &app,
            Some(&mia),
            Method::GET,
            &format!("/v1/orgs/{acme}"),
            None,
        )
        .await,
        404,
        "not_found",
    )
    .await;

    let audit: Listed = call(
        &app,
        Some(&owner),
        Method::GET,
        &format!("/v1/orgs/{acme}/audit-events?limit=200"),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    let actions: Vec<&str> = audit
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for expected in [
        "invitation.created",
        "member.joined",
        "invitation.resent",
        "member.role_changed",
        "member.removed",
    ] {
        assert!(actions.contains(&expected), "{expected}: {actions:?}");
    }
}

async fn custom_roles_grant_exactly_their_permissions(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let res = call(
        &app,
        Some(&owner),
        Method::POST,
        &format!("/v1/orgs/{acme}/roles"),
        Some(json!({"name": "Auditor", "permissions": ["audit:read", "members:read"]})),
    )
    .await;
    assert_eq!(res.status(), 201);
    let role: Value = res.json().await.unwrap();
    let role_id = role["id"].as_str().unwrap().to_owned();
    assert!(role_id.starts_with("rol_"));
    let res = call(
        &app,
        Some(&owner),
        Method::POST,
        &format!("/v1/orgs/{acme}/roles"),
        Some(json!({"name": "auditor", "permissions": []})),
    )
    .await;
    assert_problem(res, 409, "name_taken").await;
    let res = call(
        &app,
        Some(&owner),
        Method::POST,
        &format!("/v1/orgs/{acme}/roles"),
        Some(json!({"name": "Bad", "permissions": ["root:all"]})),
    )
    .await;
    assert_problem(res, 422, "validation_failed").await;

    let auditor = app.member(&acme, "audra@example.com", &role_id).await;
    assert_eq!(
        call(
            &app,
            Some(&auditor),
            Method::GET,
            &format!("/v1/orgs/{acme}/audit-events"),
            None
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        call(
            &app,
            Some(&auditor),
            Method::GET,
            &format!("/v1/orgs/{acme}/members"),
            None
        )
        .await
        .status(),
        200
    );
    let res = call(
        &app,
        Some(&auditor),
        Method::GET,
        &format!("/v1/orgs/{acme}/workspaces"),
        None,
    )
    .await;
    assert_problem(res, 403, "forbidden").await;
    // Changing the role changes what its holders may do at once.
    let res = call(
        &app,
        Some(&owner),
        Method::PATCH,
        &format!("/v1/orgs/{acme}/roles/{role_id}"),
        Some(json!({"permissions": ["workspaces:read"]})),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        call(
            &app,
            Some(&auditor),
            Method::GET,
            &format!("/v1/orgs/{acme}/workspaces"),
            None
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        call(
            &app,
            Some(&auditor),
            Method::GET,
            &format!("/v1/orgs/{acme}/audit-events"),
            None
        )
        .await
        .status(),
        403
    );
    // In use: cannot delete.
    let res = call(
        &app,
        Some(&owner),
        Method::DELETE,
        &format!("/v1/orgs/{acme}/roles/{role_id}"),
        None,
    )
    .await;
    assert_problem(res, 409, "role_in_use").await;

    // An admin cannot create a role with a permission they lack (org:delete).
    let admin = app.member(&acme, "adam@example.com", "admin").await;
    let res = call(
        &app,
        Some(&admin),
        Method::POST,
        &format!("/v1/orgs/{acme}/roles"),
        Some(json!({"name": "Destroyer", "permissions": ["org:delete"]})),
    )
    .await;
    assert_problem(res, 403, "forbidden").await;
    let res = call(
        &app,
        Some(&admin),
        Method::DELETE,
        &format!("/v1/orgs/{acme}"),
        None,
    )
    .await;
    assert_problem(res, 403, "forbidden").await;
}

async fn plan_member_limits(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let invite = |email: &'static str| {
        call(
            &app,
            Some(&owner),
            Method::POST,
            format!("/v1/orgs/{acme}/invitations"),
            Some(json!({"email": email, "role": "member"})),
        )
    };
    let first: Value = invite("a@example.com").await.json().await.unwrap();
    assert_eq!(invite("b@example.com").await.status(), 201);
    // FREE allows 3: the owner and two pending invitations fill it.
    assert_problem(invite("c@example.com").await, 403, "plan_limit_reached").await;
    let res = call(
        &app,
        Some(&owner),
        Method::PUT,
        &format!("/v1/orgs/{acme}/plan"),
        Some(json!({"plan": "pro"})),
    )
    .await;
    assert_eq!(res.json::<Value>().await.unwrap()["plan"], "pro");
    assert_eq!(invite("c@example.com").await.status(), 201);
    let readonly = app.member(&acme, "x@example.com", "readonly").await;
    let _ = app.member(&acme, "y@example.com", "member").await;
    // Back on FREE, accepting is refused once the members (not invitations) fill the plan.
    call(
        &app,
        Some(&owner),
        Method::PUT,
        &format!("/v1/orgs/{acme}/plan"),
        Some(json!({"plan": "free"})),
    )
    .await;
    let a = app.user("a@example.com").await;
    let res = call(
        &app,
        Some(&a),
        Method::POST,
        "/v1/invitations/accept",
        Some(json!({"token": first["token"]})),
    )
    .await;
    assert_problem(res, 403, "plan_limit_reached").await;
    let res = call(
        &app,
        Some(&readonly),
        Method::PUT,
        &format!("/v1/orgs/{acme}/plan"),
        Some(json!({"plan": "enterprise"})),
    )
    .await;
    assert_problem(res, 403, "forbidden").await;
    let res = call(
        &app,
        Some(&owner),
        Method::PUT,
        &format!("/v1/orgs/{acme}/plan"),
        Some(json!({"plan": "platinum"})),
    )
    .await;
    assert_problem(res, 422, "validation_failed").await;
    let audit: Listed = call(
        &app,
        Some(&owner),
        Method::GET,
        &format!("/v1/orgs/{acme}/audit-events?action=organization.plan_changed"),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[0]["metadata"], json!({"from": "free", "to": "pro"}));
}

async fn workspace_roles_add_permissions_in_one_workspace(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let ws = |slug: &'static str| {
        call(
            &app,
            Some(&owner),
            Method::POST,
            format!("/v1/orgs/{acme}/workspaces"),
            Some(json!({"name": slug, "slug": slug})),
        )
    };
    let one: Value = ws("one").await.json().await.unwrap();
    let two: Value = ws("two").await.json().await.unwrap();
    assert_problem(ws("one").await, 409, "slug_taken").await;
    let reader = app.member(&acme, "rita@example.com", "readonly").await;
    let members: Listed = call(
        &app,
        Some(&owner),
        Method::GET,
        &format!("/v1/orgs/{acme}/members"),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    let rita = members
        .iter()
        .find(|m| m["email"] == "rita@example.com")
        .unwrap()["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (one_id, two_id) = (one["id"].as_str().unwrap(), two["id"].as_str().unwrap());
    let patch = |id: &str| {
        call(
            &app,
            Some(&reader),
            Method::PATCH,
            format!("/v1/orgs/{acme}/workspaces/{id}"),
            Some(json!({"name": "Renamed"})),
        )
    };
    assert_problem(patch(one_id).await, 403, "forbidden").await;
    let res = call(
        &app,
        Some(&owner),
        Method::PUT,
        &format!("/v1/orgs/{acme}/workspaces/{one_id}/members/{rita}"),
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!(res.status(), 204);
    assert_eq!(
        patch(one_id).await.json::<Value>().await.unwrap()["name"],
        "Renamed"
    );
    assert_problem(patch(two_id).await, 403, "forbidden").await;
    let res = call(
        &app,
        Some(&owner),
        Method::DELETE,
        &format!("/v1/orgs/{acme}/workspaces/{one_id}/members/{rita}"),
        None,
    )
    .await;
    assert_eq!(res.status(), 204);
    assert_problem(patch(one_id).await, 403, "forbidden").await;
    let res = call(
        &app,
        Some(&owner),
        Method::DELETE,
        &format!("/v1/orgs/{acme}/workspaces/{two_id}"),
        None,
    )
    .await;
    assert_eq!(res.status(), 204);
    assert_problem(
        call(
            &app,
            Some(&owner),
            Method::GET,
            &format!("/v1/orgs/{acme}/workspaces/{two_id}"),
            None,
        )
        .await,
        404,
        "not_found",
    )
    .await;
}
