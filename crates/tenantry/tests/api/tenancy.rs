//! Organizations, workspaces, members, roles, invitations and plans.

use serde_json::{json, Value};

use crate::helpers::{assert_problem, Backend, Listed, Org, TestApp, User, PASSWORD};
use crate::on_both_backends;

on_both_backends!(
    registration_can_create_an_owned_org,
    org_slugs_are_unique_on_create_and_rename,
    deleted_org_is_gone_for_members_and_operators,
    org_creation_and_update_are_audited_as_the_user,
    permission_catalog_is_public,
    invitation_email_signs_up_into_the_org_once,
    invitations_are_for_their_address_unique_and_resendable,
    members_cannot_invite_and_admins_cannot_touch_owners,
    the_last_owner_stays_and_members_can_leave,
    custom_roles_grant_exactly_their_permissions,
    plan_member_limits,
    workspace_roles_add_permissions_in_one_workspace,
);

/// Registers ann@example.com over HTTP creating organization `acme` in the same request;
/// returns (access token, org id).
async fn registered_with_acme(app: &TestApp) -> (String, String) {
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
    (ann, acme)
}

/// The actions of `org`'s audit chain, oldest first, as read by `token`.
async fn org_actions(app: &TestApp, token: &str, org: &str) -> Vec<String> {
    let audit: Listed = app
        .as_(token)
        .get(format!("/v1/orgs/{org}/audit-events?limit=200"))
        .await
        .json()
        .await;
    audit
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

async fn registration_can_create_an_owned_org(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let (ann, _) = registered_with_acme(&app).await;
    let mine: Listed = app.as_(&ann).get("/v1/orgs").await.json().await;
    assert_eq!(mine.len(), 1);
    assert_eq!(
        (mine[0]["slug"].as_str(), mine[0]["role"].as_str()),
        (Some("acme"), Some("owner"))
    );
}

async fn org_slugs_are_unique_on_create_and_rename(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let (ann, acme) = registered_with_acme(&app).await;
    let second = app.org_of(&ann, "second").await;
    let res = app
        .as_(&ann)
        .post("/v1/orgs", json!({"name": "X", "slug": "ACME"}))
        .await;
    assert_problem(res, 409, "slug_taken").await;
    let res = app
        .as_(&ann)
        .patch(
            format!("/v1/orgs/{acme}"),
            json!({"name": "Acme Inc", "slug": "acme-inc"}),
        )
        .await;
    let updated: Value = res.json().await;
    assert_eq!(
        (updated["name"].as_str(), updated["slug"].as_str()),
        (Some("Acme Inc"), Some("acme-inc"))
    );
    let res = app
        .as_(&ann)
        .patch(format!("/v1/orgs/{second}"), json!({"slug": "acme-inc"}))
        .await;
    assert_problem(res, 409, "slug_taken").await;
}

async fn deleted_org_is_gone_for_members_and_operators(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let (ann, _) = registered_with_acme(&app).await;
    let second = app.org_of(&ann, "second").await;
    let res = app.as_(&ann).delete(format!("/v1/orgs/{second}")).await;
    assert_eq!(res.status(), 204);
    assert_problem(
        app.as_(&ann).get(format!("/v1/orgs/{second}")).await,
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
}

async fn org_creation_and_update_are_audited_as_the_user(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let (ann, acme) = registered_with_acme(&app).await;
    let res = app
        .as_(&ann)
        .patch(
            format!("/v1/orgs/{acme}"),
            json!({"name": "Acme Inc", "slug": "acme-inc"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let audit: Listed = app
        .as_(&ann)
        .get(format!("/v1/orgs/{acme}/audit-events?order=oldest"))
        .await
        .json()
        .await;
    let actions: Vec<&str> = audit
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec!["organization.created", "organization.updated"]
    );
    assert_eq!(audit[0]["actor"]["type"], "user");
}

async fn permission_catalog_is_public(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let catalog: Value = app.anon().get("/v1/permissions").await.json().await;
    assert!(catalog["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "members:invite"));
    assert_eq!(catalog["roles"].as_array().unwrap().len(), 5);
}

async fn invitation_email_signs_up_into_the_org_once(backend: Backend) {
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
    let res = app
        .as_(&owner)
        .post(
            format!("/v1/orgs/{acme}/invitations"),
            json!({"email": "Adam@Example.com", "role": "admin"}),
        )
        .await;
    let invite: Value = res.json().await;
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
    let res = app
        .as_(&admin)
        .post("/v1/invitations/accept", json!({"token": invite["token"]}))
        .await;
    assert_problem(res, 422, "validation_failed").await;
}

async fn invitations_are_for_their_address_unique_and_resendable(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    // Accepting as someone else's address is refused.
    let res = app
        .as_(&owner)
        .post(
            format!("/v1/orgs/{acme}/invitations"),
            json!({"email": "mia@example.com", "role": "member"}),
        )
        .await;
    let mia_invite: Value = res.json().await;
    let eve = app.user("eve@example.com").await;
    let res = app
        .as_(&eve)
        .post(
            "/v1/invitations/accept",
            json!({"token": mia_invite["token"]}),
        )
        .await;
    assert_problem(res, 403, "invitation_email_mismatch").await;
    let res = app
        .as_(&owner)
        .post(
            format!("/v1/orgs/{acme}/invitations"),
            json!({"email": "mia@example.com", "role": "member"}),
        )
        .await;
    assert_problem(res, 409, "already_invited").await;
    // Resend replaces the token.
    let inv_id = mia_invite["id"].as_str().unwrap();
    let resent: Value = app
        .as_(&owner)
        .post_empty(format!("/v1/orgs/{acme}/invitations/{inv_id}/resend"))
        .await
        .json()
        .await;
    assert_ne!(resent["token"], mia_invite["token"]);
    let mia = app.user("mia@example.com").await;
    let res = app
        .as_(&mia)
        .post(
            "/v1/invitations/accept",
            json!({"token": mia_invite["token"]}),
        )
        .await;
    assert_problem(res, 422, "validation_failed").await;
    let res = app
        .as_(&mia)
        .post("/v1/invitations/accept", json!({"token": resent["token"]}))
        .await;
    assert_eq!(res.status(), 200);
    let actions = org_actions(&app, &owner, &acme).await;
    for expected in ["invitation.created", "member.joined", "invitation.resent"] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected}: {actions:?}"
        );
    }
}

/// `acme` with owner@ (owner), adam@ (admin) and mia@ (member); returns (owner, admin,
/// mia, acme, owner's user id, mia's user id), the ids as the member list shows them.
async fn owner_admin_and_member(app: &TestApp) -> (User, User, User, Org, String, String) {
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let admin = app.member(&acme, "adam@example.com", "admin").await;
    let mia = app.member(&acme, "mia@example.com", "member").await;
    let members: Listed = app
        .as_(&mia)
        .get(format!("/v1/orgs/{acme}/members"))
        .await
        .json()
        .await;
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
    (owner, admin, mia, acme, owner_id, mia_id)
}

async fn members_cannot_invite_and_admins_cannot_touch_owners(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let (owner, admin, mia, acme, owner_id, mia_id) = owner_admin_and_member(&app).await;
    // Members cannot invite; admins cannot touch owners or grant owner.
    let res = app
        .as_(&mia)
        .post(
            format!("/v1/orgs/{acme}/invitations"),
            json!({"email": "x@example.com", "role": "member"}),
        )
        .await;
    assert_eq!(
        assert_problem(res, 403, "forbidden").await["permission"],
        "members:invite"
    );
    let res = app
        .as_(&admin)
        .delete(format!("/v1/orgs/{acme}/members/{owner_id}"))
        .await;
    assert_problem(res, 403, "owner_required").await;
    let res = app
        .as_(&admin)
        .patch(
            format!("/v1/orgs/{acme}/members/{mia_id}"),
            json!({"role": "owner"}),
        )
        .await;
    assert_problem(res, 403, "owner_required").await;
    let res = app
        .as_(&admin)
        .patch(
            format!("/v1/orgs/{acme}/members/{mia_id}"),
            json!({"role": "billing"}),
        )
        .await;
    assert_eq!(res.status(), 204);
    let res = app
        .as_(&admin)
        .patch(
            format!("/v1/orgs/{acme}/members/{mia_id}"),
            json!({"role": "chief"}),
        )
        .await;
    assert_problem(res, 422, "validation_failed").await;
    let actions = org_actions(&app, &owner, &acme).await;
    assert!(
        actions.iter().any(|a| a == "member.role_changed"),
        "member.role_changed: {actions:?}"
    );
}

async fn the_last_owner_stays_and_members_can_leave(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let (owner, _, mia, acme, owner_id, mia_id) = owner_admin_and_member(&app).await;
    // The last owner stays an owner.
    let res = app
        .as_(&owner)
        .patch(
            format!("/v1/orgs/{acme}/members/{owner_id}"),
            json!({"role": "admin"}),
        )
        .await;
    assert_problem(res, 409, "last_owner").await;
    let res = app
        .as_(&owner)
        .delete(format!("/v1/orgs/{acme}/members/{owner_id}"))
        .await;
    assert_problem(res, 409, "last_owner").await;
    // Leaving on one's own.
    let res = app
        .as_(&mia)
        .delete(format!("/v1/orgs/{acme}/members/{mia_id}"))
        .await;
    assert_eq!(res.status(), 204);
    assert_problem(
        app.as_(&mia).get(format!("/v1/orgs/{acme}")).await,
        404,
        "not_found",
    )
    .await;
    let actions = org_actions(&app, &owner, &acme).await;
    assert!(
        actions.iter().any(|a| a == "member.removed"),
        "member.removed: {actions:?}"
    );
}

async fn custom_roles_grant_exactly_their_permissions(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let res = app
        .as_(&owner)
        .post(
            format!("/v1/orgs/{acme}/roles"),
            json!({"name": "Auditor", "permissions": ["audit:read", "members:read"]}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let role: Value = res.json().await;
    let role_id = role["id"].as_str().unwrap().to_owned();
    assert!(role_id.starts_with("rol_"));
    let res = app
        .as_(&owner)
        .post(
            format!("/v1/orgs/{acme}/roles"),
            json!({"name": "auditor", "permissions": []}),
        )
        .await;
    assert_problem(res, 409, "name_taken").await;
    let res = app
        .as_(&owner)
        .post(
            format!("/v1/orgs/{acme}/roles"),
            json!({"name": "Bad", "permissions": ["root:all"]}),
        )
        .await;
    assert_problem(res, 422, "validation_failed").await;

    let auditor = app.member(&acme, "audra@example.com", &role_id).await;
    assert_eq!(
        app.as_(&auditor)
            .get(format!("/v1/orgs/{acme}/audit-events"))
            .await
            .status(),
        200
    );
    assert_eq!(
        app.as_(&auditor)
            .get(format!("/v1/orgs/{acme}/members"))
            .await
            .status(),
        200
    );
    let res = app
        .as_(&auditor)
        .get(format!("/v1/orgs/{acme}/workspaces"))
        .await;
    assert_problem(res, 403, "forbidden").await;
    // Changing the role changes what its holders may do at once.
    let res = app
        .as_(&owner)
        .patch(
            format!("/v1/orgs/{acme}/roles/{role_id}"),
            json!({"permissions": ["workspaces:read"]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        app.as_(&auditor)
            .get(format!("/v1/orgs/{acme}/workspaces"))
            .await
            .status(),
        200
    );
    assert_eq!(
        app.as_(&auditor)
            .get(format!("/v1/orgs/{acme}/audit-events"))
            .await
            .status(),
        403
    );
    // In use: cannot delete.
    let res = app
        .as_(&owner)
        .delete(format!("/v1/orgs/{acme}/roles/{role_id}"))
        .await;
    assert_problem(res, 409, "role_in_use").await;

    // An admin cannot create a role with a permission they lack (org:delete).
    let admin = app.member(&acme, "adam@example.com", "admin").await;
    let res = app
        .as_(&admin)
        .post(
            format!("/v1/orgs/{acme}/roles"),
            json!({"name": "Destroyer", "permissions": ["org:delete"]}),
        )
        .await;
    assert_problem(res, 403, "forbidden").await;
    let res = app.as_(&admin).delete(format!("/v1/orgs/{acme}")).await;
    assert_problem(res, 403, "forbidden").await;
}

async fn plan_member_limits(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let invite = |email: &'static str| {
        app.as_(&owner).post(
            format!("/v1/orgs/{acme}/invitations"),
            json!({"email": email, "role": "member"}),
        )
    };
    let first: Value = invite("a@example.com").await.json().await;
    assert_eq!(invite("b@example.com").await.status(), 201);
    // FREE allows 3: the owner and two pending invitations fill it.
    assert_problem(invite("c@example.com").await, 403, "plan_limit_reached").await;
    let res = app
        .as_(&owner)
        .put(format!("/v1/orgs/{acme}/plan"), json!({"plan": "pro"}))
        .await;
    assert_eq!(res.json::<Value>().await["plan"], "pro");
    assert_eq!(invite("c@example.com").await.status(), 201);
    let readonly = app.member(&acme, "x@example.com", "readonly").await;
    let _ = app.member(&acme, "y@example.com", "member").await;
    // Back on FREE, accepting is refused once the members (not invitations) fill the plan.
    app.as_(&owner)
        .put(format!("/v1/orgs/{acme}/plan"), json!({"plan": "free"}))
        .await;
    let a = app.user("a@example.com").await;
    let res = app
        .as_(&a)
        .post("/v1/invitations/accept", json!({"token": first["token"]}))
        .await;
    assert_problem(res, 403, "plan_limit_reached").await;
    let res = app
        .as_(&readonly)
        .put(
            format!("/v1/orgs/{acme}/plan"),
            json!({"plan": "enterprise"}),
        )
        .await;
    assert_problem(res, 403, "forbidden").await;
    let res = app
        .as_(&owner)
        .put(format!("/v1/orgs/{acme}/plan"), json!({"plan": "platinum"}))
        .await;
    assert_problem(res, 422, "validation_failed").await;
    let audit: Listed = app
        .as_(&owner)
        .get(format!(
            "/v1/orgs/{acme}/audit-events?action=organization.plan_changed&order=oldest"
        ))
        .await
        .json()
        .await;
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
        app.as_(&owner).post(
            format!("/v1/orgs/{acme}/workspaces"),
            json!({"name": slug, "slug": slug}),
        )
    };
    let one: Value = ws("one").await.json().await;
    let two: Value = ws("two").await.json().await;
    assert_problem(ws("one").await, 409, "slug_taken").await;
    let reader = app.member(&acme, "rita@example.com", "readonly").await;
    let members: Listed = app
        .as_(&owner)
        .get(format!("/v1/orgs/{acme}/members"))
        .await
        .json()
        .await;
    let rita = members
        .iter()
        .find(|m| m["email"] == "rita@example.com")
        .unwrap()["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (one_id, two_id) = (one["id"].as_str().unwrap(), two["id"].as_str().unwrap());
    let patch = |id: &str| {
        app.as_(&reader).patch(
            format!("/v1/orgs/{acme}/workspaces/{id}"),
            json!({"name": "Renamed"}),
        )
    };
    assert_problem(patch(one_id).await, 403, "forbidden").await;
    let res = app
        .as_(&owner)
        .put(
            format!("/v1/orgs/{acme}/workspaces/{one_id}/members/{rita}"),
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(res.status(), 204);
    assert_eq!(patch(one_id).await.json::<Value>().await["name"], "Renamed");
    assert_problem(patch(two_id).await, 403, "forbidden").await;
    let res = app
        .as_(&owner)
        .delete(format!(
            "/v1/orgs/{acme}/workspaces/{one_id}/members/{rita}"
        ))
        .await;
    assert_eq!(res.status(), 204);
    assert_problem(patch(one_id).await, 403, "forbidden").await;
    let res = app
        .as_(&owner)
        .delete(format!("/v1/orgs/{acme}/workspaces/{two_id}"))
        .await;
    assert_eq!(res.status(), 204);
    assert_problem(
        app.as_(&owner)
            .get(format!("/v1/orgs/{acme}/workspaces/{two_id}"))
            .await,
        404,
        "not_found",
    )
    .await;
}
