//! Identity: accounts, tokens, sessions, email flows, limits, audit.

use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{json, Value};
use tenantry::auth::TenantCtx;
use tenantry::ids::OrgId;
use tenantry::store::audit::AuditFilter;

use crate::helpers::smtp::{token_in, SmtpSink};
use crate::helpers::{assert_problem, register, Backend, Listed, TestApp, PASSWORD};
use crate::on_both_backends;

on_both_backends!(
    registration_returns_a_token_pair_for_the_new_user,
    wrong_password_and_unknown_account_answer_alike,
    refresh_rotates_and_a_replay_revokes_the_family,
    logout_revokes_the_registration_family,
    emails_are_unique_and_passwords_checked,
    cookie_sessions_need_csrf_and_are_capped,
    email_verification_and_password_reset,
    login_is_rate_limited_per_identifier,
    password_change_revokes_other_credentials,
);

async fn post(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn me(app: &TestApp, access: &str) -> reqwest::Response {
    app.client
        .get(app.url("/v1/me"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
}

async fn platform_actions(app: &TestApp) -> Vec<String> {
    let ctx = TenantCtx::for_tests(OrgId::PLATFORM);
    let filter = AuditFilter {
        limit: Some(200),
        ..Default::default()
    };
    let events = app.store.list_audit_events(&ctx, &filter).await.unwrap();
    events.into_iter().map(|e| e.action).collect()
}

/// Asserts the platform audit chain holds `expected`.
async fn assert_platform_audited(app: &TestApp, expected: &str) -> Vec<String> {
    let actions = platform_actions(app).await;
    assert!(
        actions.iter().any(|a| a == expected),
        "{expected} audited: {actions:?}"
    );
    actions
}

async fn registration_returns_a_token_pair_for_the_new_user(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let reg = register(&app, "ann@example.com").await;
    assert_eq!(reg["token_type"], "Bearer");
    assert!(reg["refresh_token"].as_str().unwrap().starts_with("rt_"));
    let user: Value = me(&app, reg["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(user["email"], "ann@example.com");
    assert!(user["email_verified_at"].is_null());
    assert_platform_audited(&app, "user.registered").await;
}

async fn wrong_password_and_unknown_account_answer_alike(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    app.user("ann@example.com").await;
    // Wrong password and unknown account answer identically.
    let wrong = post(
        &app,
        "/v1/auth/login",
        json!({"email": "ann@example.com", "password": "nope nope nope"}),
    )
    .await;
    let a = assert_problem(wrong, 401, "invalid_credentials").await;
    let unknown = post(
        &app,
        "/v1/auth/login",
        json!({"email": "bob@example.com", "password": "nope nope nope"}),
    )
    .await;
    let b = assert_problem(unknown, 401, "invalid_credentials").await;
    assert_eq!(a["detail"], b["detail"]);
    let actions = assert_platform_audited(&app, "login.failed").await;
    assert_eq!(actions.iter().filter(|a| *a == "login.failed").count(), 2);
}

async fn refresh_rotates_and_a_replay_revokes_the_family(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    app.user("ann@example.com").await;
    let login: Value = post(
        &app,
        "/v1/auth/login",
        json!({"email": "ANN@example.com", "password": PASSWORD}),
    )
    .await
    .json()
    .await
    .unwrap();
    let first = login["refresh_token"].as_str().unwrap().to_owned();
    let rotated: Value = post(&app, "/v1/auth/refresh", json!({"refresh_token": first}))
        .await
        .json()
        .await
        .unwrap();
    let second = rotated["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    assert_eq!(
        me(&app, rotated["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );

    // Replaying the spent token revokes the family: the fresh one dies too.
    let replay = post(&app, "/v1/auth/refresh", json!({"refresh_token": first})).await;
    assert_problem(replay, 401, "refresh_token_reused").await;
    let after = post(&app, "/v1/auth/refresh", json!({"refresh_token": second})).await;
    assert_problem(after, 401, "invalid_refresh_token").await;
    assert_platform_audited(&app, "login.succeeded").await;
    assert_platform_audited(&app, "refresh_token.reuse_detected").await;
}

async fn logout_revokes_the_registration_family(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let ann = app.user("ann@example.com").await;
    let res = post(
        &app,
        "/v1/auth/logout",
        json!({"refresh_token": ann.refresh_token}),
    )
    .await;
    assert_eq!(res.status(), 204);
    let res = post(
        &app,
        "/v1/auth/refresh",
        json!({"refresh_token": ann.refresh_token}),
    )
    .await;
    assert_problem(res, 401, "invalid_refresh_token").await;
    assert_platform_audited(&app, "logout").await;
}

async fn emails_are_unique_and_passwords_checked(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    register(&app, "Ann@Example.com").await;
    let dup = post(
        &app,
        "/v1/auth/register",
        json!({"email": "ann@EXAMPLE.com", "password": PASSWORD, "name": "A"}),
    )
    .await;
    assert_problem(dup, 409, "email_taken").await;
    for (password, why) in [
        ("short", "at least"),
        ("Password123", "too common"),
        (&"x".repeat(129)[..], "at most"),
    ] {
        let res = post(
            &app,
            "/v1/auth/register",
            json!({"email": "c@example.com", "password": password, "name": "C"}),
        )
        .await;
        let body = assert_problem(res, 422, "validation_failed").await;
        assert_eq!(body["errors"][0]["field"], "password");
        assert!(body["detail"].as_str().unwrap().contains(why), "{body}");
    }
    let res = post(
        &app,
        "/v1/auth/register",
        json!({"email": "not-an-email", "password": PASSWORD, "name": "C"}),
    )
    .await;
    assert_eq!(
        assert_problem(res, 422, "validation_failed").await["errors"][0]["field"],
        "email"
    );
    assert_problem(me(&app, "garbage").await, 401, "invalid_token").await;
    assert_problem(
        app.client.get(app.url("/v1/me")).send().await.unwrap(),
        401,
        "missing_credentials",
    )
    .await;
}

fn session_cookie(res: &reqwest::Response) -> String {
    let header = res
        .headers()
        .get(SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(header.contains("HttpOnly"), "{header}");
    assert!(header.contains("SameSite=Lax"), "{header}");
    assert!(header.contains("Path=/"), "{header}");
    header.split(';').next().unwrap().to_owned()
}

async fn start_session(app: &TestApp, email: &str) -> (String, String) {
    let res = post(
        app,
        "/v1/auth/sessions",
        json!({"email": email, "password": PASSWORD}),
    )
    .await;
    assert_eq!(res.status(), 201);
    let cookie = session_cookie(&res);
    let body: Value = res.json().await.unwrap();
    (cookie, body["csrf_token"].as_str().unwrap().to_owned())
}

async fn cookie_sessions_need_csrf_and_are_capped(backend: Backend) {
    let Some(app) = TestApp::on(backend)
        .with_vars(|v| {
            v.insert("SESSION_MAX_PER_USER".into(), "2".into());
        })
        .await
    else {
        return;
    };
    register(&app, "ann@example.com").await;
    let (oldest, _) = start_session(&app, "ann@example.com").await;
    let (middle, _) = start_session(&app, "ann@example.com").await;
    let get_me = |cookie: String| {
        app.client
            .get(app.url("/v1/me"))
            .header(COOKIE, cookie)
            .send()
    };
    assert_eq!(get_me(oldest.clone()).await.unwrap().status(), 200);
    let (newest, csrf) = start_session(&app, "ann@example.com").await;
    assert_problem(get_me(oldest).await.unwrap(), 401, "invalid_token").await;
    assert_eq!(get_me(middle.clone()).await.unwrap().status(), 200);

    let sessions: Listed = app
        .client
        .get(app.url("/v1/me/sessions"))
        .header(COOKIE, &newest)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);

    // A cookie-authenticated change without the CSRF token is refused.
    let res = app
        .client
        .post(app.url("/v1/me/sessions/revoke-others"))
        .header(COOKIE, &newest)
        .send()
        .await
        .unwrap();
    assert_problem(res, 403, "csrf_failed").await;
    let res = app
        .client
        .post(app.url("/v1/me/sessions/revoke-others"))
        .header(COOKIE, &newest)
        .header("x-csrf-token", "0".repeat(64))
        .send()
        .await
        .unwrap();
    assert_problem(res, 403, "csrf_failed").await;
    let res = app
        .client
        .post(app.url("/v1/me/sessions/revoke-others"))
        .header(COOKIE, &newest)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["revoked"], 1);
    assert_problem(get_me(middle).await.unwrap(), 401, "invalid_token").await;

    // Revoking a session by id, and logout through the cookie.
    let (other, _) = start_session(&app, "ann@example.com").await;
    let list: Listed = app
        .client
        .get(app.url("/v1/me/sessions"))
        .header(COOKIE, &other)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let other_id = list.iter().find(|s| s["current"] == true).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = app
        .client
        .delete(app.url(&format!("/v1/me/sessions/{other_id}")))
        .header(COOKIE, &newest)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_problem(get_me(other).await.unwrap(), 401, "invalid_token").await;
    let res = app
        .client
        .delete(app.url(&format!("/v1/me/sessions/{other_id}")))
        .header(COOKIE, &newest)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_problem(res, 404, "not_found").await;
    let res = app
        .client
        .post(app.url("/v1/auth/logout"))
        .header(COOKIE, &newest)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_problem(get_me(newest).await.unwrap(), 401, "invalid_token").await;
}

async fn email_verification_and_password_reset(backend: Backend) {
    let sink = SmtpSink::start().await;
    let url = sink.url();
    let Some(app) = TestApp::on(backend)
        .with_vars(move |v| {
            v.insert("SMTP_URL".into(), url);
        })
        .await
    else {
        return;
    };
    let reg = register(&app, "ann@example.com").await;
    let access = reg["access_token"].as_str().unwrap().to_owned();
    let mail = sink
        .wait_for("ann@example.com", "verify-email?token=")
        .await;
    let token = token_in(&mail);
    assert_eq!(token.len(), 64);
    assert_eq!(
        post(&app, "/v1/auth/verify-email", json!({"token": token}))
            .await
            .status(),
        204
    );
    assert_problem(
        post(&app, "/v1/auth/verify-email", json!({"token": token})).await,
        400,
        "invalid_token",
    )
    .await;
    let user: Value = me(&app, &access).await.json().await.unwrap();
    assert!(user["email_verified_at"].is_string());

    // Unknown accounts get the same answer and no mail.
    assert_eq!(
        post(
            &app,
            "/v1/auth/password-reset/request",
            json!({"email": "nobody@example.com"})
        )
        .await
        .status(),
        202
    );
    let (cookie, _) = start_session(&app, "ann@example.com").await;
    assert_eq!(
        post(
            &app,
            "/v1/auth/password-reset/request",
            json!({"email": "ann@example.com"})
        )
        .await
        .status(),
        202
    );
    let mail = sink
        .wait_for("ann@example.com", "reset-password?token=")
        .await;
    let token = token_in(&mail);
    let res = post(
        &app,
        "/v1/auth/password-reset",
        json!({"token": token, "new_password": "a brand new secret"}),
    )
    .await;
    assert_eq!(res.status(), 204);
    assert_problem(
        post(
            &app,
            "/v1/auth/password-reset",
            json!({"token": token, "new_password": "another new secret"}),
        )
        .await,
        400,
        "invalid_token",
    )
    .await;
    // Existing credentials are revoked; the new password works, the old one does not.
    let res = post(
        &app,
        "/v1/auth/refresh",
        json!({"refresh_token": reg["refresh_token"]}),
    )
    .await;
    assert_problem(res, 401, "invalid_refresh_token").await;
    let res = app
        .client
        .get(app.url("/v1/me"))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    assert_problem(res, 401, "invalid_token").await;
    let res = post(
        &app,
        "/v1/auth/login",
        json!({"email": "ann@example.com", "password": PASSWORD}),
    )
    .await;
    assert_problem(res, 401, "invalid_credentials").await;
    let res = post(
        &app,
        "/v1/auth/login",
        json!({"email": "ann@example.com", "password": "a brand new secret"}),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(sink.count_to("nobody@example.com"), 0);
    let actions = platform_actions(&app).await;
    assert!(
        actions.contains(&"password.reset".to_owned())
            && actions.contains(&"email.verified".to_owned())
    );
}

async fn login_is_rate_limited_per_identifier(backend: Backend) {
    let Some(app) = TestApp::on(backend)
        .with_vars(|v| {
            v.insert("AUTH_LOGIN_IDENTIFIER_RATE_LIMIT".into(), "3".into());
        })
        .await
    else {
        return;
    };
    for _ in 0..3 {
        let res = post(
            &app,
            "/v1/auth/login",
            json!({"email": "ann@example.com", "password": "wrong wrong wrong"}),
        )
        .await;
        assert_eq!(res.status(), 401);
    }
    let res = post(
        &app,
        "/v1/auth/login",
        json!({"email": "ANN@example.com", "password": "wrong wrong wrong"}),
    )
    .await;
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(res.headers()["ratelimit-remaining"], "0");
    assert_problem(res, 429, "rate_limited").await;
    // Another identifier is not limited by this one.
    let res = post(
        &app,
        "/v1/auth/login",
        json!({"email": "bob@example.com", "password": "wrong wrong wrong"}),
    )
    .await;
    assert_eq!(res.status(), 401);
}

async fn password_change_revokes_other_credentials(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let reg = register(&app, "ann@example.com").await;
    let (current, csrf) = start_session(&app, "ann@example.com").await;
    let (other, _) = start_session(&app, "ann@example.com").await;
    let change = |body: Value| {
        app.client
            .post(app.url("/v1/me/password"))
            .header(COOKIE, current.clone())
            .header("x-csrf-token", csrf.clone())
            .json(&body)
            .send()
    };
    let res = change(
        json!({"current_password": "not my password", "new_password": "a brand new secret"}),
    )
    .await
    .unwrap();
    assert_problem(res, 403, "invalid_credentials").await;
    let res = change(json!({"current_password": PASSWORD, "new_password": "password1"}))
        .await
        .unwrap();
    assert_eq!(
        assert_problem(res, 422, "validation_failed").await["errors"][0]["field"],
        "new_password"
    );
    let res = change(json!({"current_password": PASSWORD, "new_password": "a brand new secret"}))
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    // The session that changed it stays; every other credential is gone.
    let get_me = |cookie: String| {
        app.client
            .get(app.url("/v1/me"))
            .header(COOKIE, cookie)
            .send()
    };
    assert_eq!(get_me(current.clone()).await.unwrap().status(), 200);
    assert_problem(get_me(other).await.unwrap(), 401, "invalid_token").await;
    let res = post(
        &app,
        "/v1/auth/refresh",
        json!({"refresh_token": reg["refresh_token"]}),
    )
    .await;
    assert_problem(res, 401, "invalid_refresh_token").await;
    let res = post(
        &app,
        "/v1/auth/login",
        json!({"email": "ann@example.com", "password": "a brand new secret"}),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert!(platform_actions(&app)
        .await
        .contains(&"password.changed".to_owned()));
}
