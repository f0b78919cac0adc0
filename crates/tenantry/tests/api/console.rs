//! The web console at `/app`: forms over the API's own rules, cookie sessions with CSRF,
//! strict security headers, and tenants kept apart.

use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use reqwest::redirect::Policy;
use reqwest::StatusCode;

use crate::helpers::smtp::{token_in, SmtpSink};
use crate::helpers::{Backend, TestApp, PASSWORD};
use crate::on_both_backends;

on_both_backends!(
    a_new_user_signs_up_creates_a_key_uses_and_revokes_it,
    console_forms_need_the_sessions_csrf_token,
    members_see_only_what_their_role_allows,
    an_invitation_sent_from_the_console_is_accepted_through_its_link,
    workspaces_settings_and_deletion_from_the_console,
    the_emailed_links_and_the_account_page_work,
    usage_and_jobs_pages_show_and_act,
    custom_roles_and_the_audit_filter,
    the_development_mailbox_shows_held_emails_with_their_links,
    the_billing_page_upgrades_through_checkout_and_opens_the_portal,
    without_stripe_the_billing_page_changes_the_plan_by_hand,
    the_operator_signs_in_searches_and_overrides_a_plan,
    workspace_roles_and_custom_role_editing_from_the_console,
    the_audit_page_filters_and_exports_and_the_activity_page_broadcasts,
    a_cookie_websocket_must_come_from_our_own_pages,
    the_operator_reads_the_summary_suspends_and_sets_flags,
    a_demo_deployment_says_so_on_every_page,
    scim_tokens_and_group_mappings_from_the_console,
);

/// A browser without JavaScript: no redirects followed, the session cookie kept by hand.
struct Browser<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
    cookie: Option<String>,
}

impl<'a> Browser<'a> {
    fn new(app: &'a TestApp) -> Self {
        let client = reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .unwrap();
        Self {
            app,
            client,
            cookie: None,
        }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        let mut req = self.client.get(self.app.url(path));
        if let Some(cookie) = &self.cookie {
            req = req.header(COOKIE, cookie);
        }
        req.send().await.unwrap()
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self.client.post(self.app.url(path)).form(form);
        if let Some(cookie) = &self.cookie {
            req = req.header(COOKIE, cookie);
        }
        let res = req.send().await.unwrap();
        if let Some(set) = res.headers().get(SET_COOKIE) {
            let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
            self.cookie = Some(pair);
        }
        res
    }

    async fn sign_in(&mut self, email: &str) {
        let res = self
            .post("/app/login", &[("email", email), ("password", PASSWORD)])
            .await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        assert!(self.cookie.is_some(), "a session cookie");
    }

    /// The page's CSRF token (every signed-in page carries one in its sign-out form).
    async fn csrf(&self, path: &str) -> String {
        let html = self.get(path).await.text().await.unwrap();
        value_after(&html, "name=\"csrf_token\" value=\"")
    }
}

fn value_after(html: &str, marker: &str) -> String {
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

fn location(res: &reqwest::Response) -> String {
    res.headers()[LOCATION].to_str().unwrap().to_owned()
}

async fn a_new_user_signs_up_creates_a_key_uses_and_revokes_it(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let mut browser = Browser::new(&app);
    // The root leads to the console, which asks for a sign-in.
    assert_eq!(location(&browser.get("/").await), "/app");
    let res = browser.get("/app").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/app/login");
    let res = browser.get("/app/login").await;
    assert_eq!(res.status(), 200);
    let csp = res.headers()[CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    // The vendored assets are served by the binary itself.
    for asset in ["console.css", "console.js", "htmx-2.0.11.min.js"] {
        let res = browser.get(&format!("/app/static/{asset}")).await;
        assert_eq!(res.status(), 200, "{asset}");
    }

    // Sign up with a first organization: straight to it, signed in.
    let res = browser
        .post(
            "/app/signup",
            &[
                ("name", "Dana"),
                ("email", "dana@example.com"),
                ("password", "a long enough passphrase"),
                ("org_name", "Dana Co"),
                ("org_slug", "dana-co"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let org_page = location(&res);
    let org = org_page.trim_start_matches("/app/orgs/").to_owned();
    assert!(org.starts_with("org_"), "{org_page}");
    let html = browser.get(&org_page).await.text().await.unwrap();
    assert!(html.contains("Dana Co") && html.contains(&org), "{html}");
    let home = browser.get("/app").await.text().await.unwrap();
    assert!(home.contains("Dana Co") && home.contains("owner"), "{home}");

    // A key with one scope: its secret is shown once.
    let keys = format!("/app/orgs/{org}/api-keys");
    let csrf = browser.csrf(&keys).await;
    let res = browser
        .post(
            &keys,
            &[
                ("csrf_token", &csrf),
                ("name", "ci"),
                ("scopes", "data:read"),
                ("scopes", "data:write"),
                ("expires_in_days", "30"),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("shown only this once"), "{html}");
    let start = html
        .find("<code id=\"new-secret\">")
        .expect("the new secret")
        + 22;
    let secret = html[start..].split('<').next().unwrap().to_owned();
    assert!(secret.starts_with("tk_"), "{secret}");
    let listed = browser.get(&keys).await.text().await.unwrap();
    assert!(!listed.contains(&secret), "the secret is not shown again");
    assert!(listed.contains("data:read, data:write"), "{listed}");

    // The key works on the API.
    let res = app
        .as_(&secret)
        .post(
            format!("/v1/orgs/{org}/data"),
            serde_json::json!({"name": "from the console", "value": 1}),
        )
        .await;
    assert_eq!(res.status(), 201);
    // The audit page shows the key's creation and the key's write.
    let audit = browser
        .get(&format!("/app/orgs/{org}/audit"))
        .await
        .text()
        .await
        .unwrap();
    assert!(audit.contains("api_key.created"), "{audit}");
    assert!(audit.contains("data_item.created"), "{audit}");

    // Revoked from the console, refused by the API at once.
    let key_id = value_after(&listed, &format!("action=\"/app/orgs/{org}/api-keys/"));
    let key_id = key_id.split('/').next().unwrap().to_owned();
    // Rotation shows a new secret once; the old one keeps working for the grace period.
    let res = browser
        .post(
            &format!("/app/orgs/{org}/api-keys/{key_id}/rotate"),
            &[("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    let start = html
        .find("<code id=\"new-secret\">")
        .expect("the new secret")
        + 22;
    let rotated = html[start..].split('<').next().unwrap().to_owned();
    assert_ne!(rotated, secret);
    for key in [&secret, &rotated] {
        let res = app.as_(key).get(format!("/v1/orgs/{org}/data")).await;
        assert_eq!(res.status(), 200);
    }
    let res = browser
        .post(
            &format!("/app/orgs/{org}/api-keys/{key_id}/revoke"),
            &[("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    for key in [&secret, &rotated] {
        let res = app.as_(key).get(format!("/v1/orgs/{org}/data")).await;
        assert_eq!(res.status(), 401);
    }
    let listed = browser.get(&keys).await.text().await.unwrap();
    assert!(listed.contains("revoked"), "{listed}");

    // Signing out ends the session: the cookie no longer opens a page.
    let stale = browser.cookie.clone();
    let res = browser.post("/app/logout", &[("csrf_token", &csrf)]).await;
    assert_eq!(location(&res), "/app/login");
    browser.cookie = stale;
    assert_eq!(location(&browser.get("/app").await), "/app/login");
}

async fn console_forms_need_the_sessions_csrf_token(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    app.user("erin@example.com").await;
    let mut browser = Browser::new(&app);
    // A wrong password stays on the form with a message.
    let res = browser
        .post(
            "/app/login",
            &[
                ("email", "erin@example.com"),
                ("password", "not the password"),
            ],
        )
        .await;
    assert_eq!(res.status(), 401);
    assert!(res.text().await.unwrap().contains("incorrect"));
    browser.sign_in("erin@example.com").await;
    let form = [("name", "Evil"), ("slug", "evil")];
    // Without the token: refused with the API's code, on an HTML page.
    let res = browser.post("/app/orgs", &form).await;
    assert_eq!(res.status(), 403);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(res.text().await.unwrap().contains("csrf_failed"));
    // A token of another value, or a form posted from another site: refused.
    let res = browser
        .post(
            "/app/orgs",
            &[("csrf_token", "forged"), ("name", "Evil"), ("slug", "evil")],
        )
        .await;
    assert_eq!(res.status(), 403);
    let csrf = browser.csrf("/app").await;
    let res = browser
        .client
        .post(app.url("/app/orgs"))
        .header(COOKIE, browser.cookie.clone().unwrap())
        .header(ORIGIN, "https://evil.example")
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("name", "Evil"),
            ("slug", "evil"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let home = browser.get("/app").await.text().await.unwrap();
    assert!(!home.contains("Evil"), "nothing was created");
    // With the token, it works; a taken slug is the API's 409 on a page.
    let with = [
        ("csrf_token", csrf.as_str()),
        ("name", "Erin Co"),
        ("slug", "erin-co"),
    ];
    let res = browser.post("/app/orgs", &with).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = browser.post("/app/orgs", &with).await;
    assert_eq!(res.status(), 409);
    assert!(res.text().await.unwrap().contains("slug_taken"));
}

async fn members_see_only_what_their_role_allows(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("olga@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let other = app.user("omar@example.com").await;
    let globex = app.org_of(&other, "globex").await;
    app.member(&acme, "rita@example.com", "readonly").await;
    let mut browser = Browser::new(&app);
    browser.sign_in("rita@example.com").await;
    // Her organization, without the sections her role cannot open.
    let html = browser
        .get(&format!("/app/orgs/{acme}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("acme"), "{html}");
    assert!(
        !html.contains("/audit\""),
        "no link to the audit log: {html}"
    );
    let res = browser.get(&format!("/app/orgs/{acme}/audit")).await;
    assert_eq!(res.status(), 403);
    // Reaching an admin action directly is the API's 403.
    let csrf = browser.csrf("/app").await;
    let res = browser
        .post(
            &format!("/app/orgs/{acme}/api-keys"),
            &[
                ("csrf_token", &csrf),
                ("name", "mine"),
                ("scopes", "data:read"),
            ],
        )
        .await;
    assert_eq!(res.status(), 403);
    // Another organization does not exist for her, on every page.
    for page in ["", "/members", "/api-keys", "/audit"] {
        let res = browser.get(&format!("/app/orgs/{globex}{page}")).await;
        assert_eq!(res.status(), 404, "{page}");
        let text = res.text().await.unwrap();
        assert!(!text.contains("globex"), "{page}: {text}");
    }
    let home = browser.get("/app").await.text().await.unwrap();
    assert!(home.contains("acme") && !home.contains("globex"), "{home}");
}

async fn an_invitation_sent_from_the_console_is_accepted_through_its_link(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("owen@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let mut admin = Browser::new(&app);
    admin.sign_in("owen@example.com").await;
    let members = format!("/app/orgs/{acme}/members");
    let csrf = admin.csrf(&members).await;
    let res = admin
        .post(
            &format!("/app/orgs/{acme}/invitations"),
            &[
                ("csrf_token", &csrf),
                ("email", "bea@example.com"),
                ("role", "member"),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    let start = html.find("accept-invitation?token=").expect("the link") + 24;
    let token = html[start..].split('<').next().unwrap().to_owned();
    assert!(
        html.contains("bea@example.com") && html.contains("pending"),
        "{html}"
    );

    // The invited person opens the link in another browser, signed out.
    let mut invited = Browser::new(&app);
    let page = invited
        .get(&format!("/accept-invitation?token={token}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("/app/signup?invitation="), "{page}");
    let signup = invited
        .get(&format!("/app/signup?invitation={token}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(!signup.contains("Your first organization"), "{signup}");
    let res = invited
        .post(
            "/app/signup",
            &[
                ("invitation_token", &token),
                ("name", "Bea"),
                ("email", "bea@example.com"),
                ("password", "a long enough passphrase"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), format!("/app/orgs/{acme}"));
    let listed = admin.get(&members).await.text().await.unwrap();
    assert!(
        listed.contains("Bea") && listed.contains("accepted"),
        "{listed}"
    );

    // Her role changed, then she is removed, through the API's rules.
    let marker = format!("action=\"/app/orgs/{acme}/members/");
    let member_id = |html: &str, email: &str| {
        let cell = format!("<td>{email}</td>");
        let rest = &html[html.find(&cell).expect("the member's row")..];
        let at = rest.find(&marker).expect("a member form") + marker.len();
        rest[at..].split('/').next().unwrap().to_owned()
    };
    let bea = member_id(&listed, "bea@example.com");
    let res = admin
        .post(
            &format!("/app/orgs/{acme}/members/{bea}/role"),
            &[("csrf_token", &csrf), ("role", "admin")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let html = admin.get(&members).await.text().await.unwrap();
    let row = &html[html.find("<td>bea@example.com</td>").unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains("value=\"admin\" selected"), "{row}");
    // The last owner cannot be demoted: the API's 409, on a page.
    let owen = member_id(&html, "owen@example.com");
    let res = admin
        .post(
            &format!("/app/orgs/{acme}/members/{owen}/role"),
            &[("csrf_token", &csrf), ("role", "member")],
        )
        .await;
    assert_eq!(res.status(), 409);
    let res = admin
        .post(
            &format!("/app/orgs/{acme}/members/{bea}/remove"),
            &[("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let html = admin.get(&members).await.text().await.unwrap();
    assert!(!html.contains("<td>Bea</td>"), "{html}");

    // A second invitation, revoked: its link no longer works.
    let res = admin
        .post(
            &format!("/app/orgs/{acme}/invitations"),
            &[
                ("csrf_token", &csrf),
                ("email", "cy@example.com"),
                ("role", "readonly"),
            ],
        )
        .await;
    let html = res.text().await.unwrap();
    let start = html.find("accept-invitation?token=").expect("the link") + 24;
    let second = html[start..].split('<').next().unwrap().to_owned();
    let id = value_after(&html, &format!("action=\"/app/orgs/{acme}/invitations/"));
    let id = id.split('/').next().unwrap().to_owned();
    assert!(html.contains("cy@example.com"), "{html}");
    let res = admin
        .post(
            &format!("/app/orgs/{acme}/invitations/{id}/revoke"),
            &[("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    app.user("cy@example.com").await;
    let mut cy = Browser::new(&app);
    cy.sign_in("cy@example.com").await;
    let csrf_cy = cy.csrf("/app").await;
    let res = cy
        .post(
            "/accept-invitation",
            &[("csrf_token", &csrf_cy), ("token", &second)],
        )
        .await;
    assert_eq!(res.status(), 422);
}

async fn workspaces_settings_and_deletion_from_the_console(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("wes@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let mut browser = Browser::new(&app);
    browser.sign_in("wes@example.com").await;
    let spaces = format!("/app/orgs/{acme}/workspaces");
    let csrf = browser.csrf(&spaces).await;
    let res = browser
        .post(
            &spaces,
            &[
                ("csrf_token", &csrf),
                ("name", "Research"),
                ("slug", "research"),
            ],
        )
        .await;
    assert_eq!(location(&res), spaces);
    let html = browser.get(&spaces).await.text().await.unwrap();
    assert!(html.contains("Research"), "{html}");
    let id = value_after(&html, &format!("action=\"/app/orgs/{acme}/workspaces/"));
    let id = id.split('/').next().unwrap().to_owned();
    let res = browser
        .post(&format!("{spaces}/{id}/delete"), &[("csrf_token", &csrf)])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(!browser
        .get(&spaces)
        .await
        .text()
        .await
        .unwrap()
        .contains("Research"));

    // Rename, then delete only with the slug typed.
    let res = browser
        .post(
            &format!("/app/orgs/{acme}/settings"),
            &[
                ("csrf_token", &csrf),
                ("name", "Acme Two"),
                ("slug", "acme-two"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let html = browser
        .get(&format!("/app/orgs/{acme}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("Acme Two") && html.contains("acme-two"),
        "{html}"
    );
    let delete = format!("/app/orgs/{acme}/delete");
    let res = browser
        .post(&delete, &[("csrf_token", &csrf), ("confirm", "acme")])
        .await;
    assert_eq!(res.status(), 422);
    let res = browser
        .post(&delete, &[("csrf_token", &csrf), ("confirm", "acme-two")])
        .await;
    assert_eq!(location(&res), "/app");
    assert_eq!(
        browser.get(&format!("/app/orgs/{acme}")).await.status(),
        404
    );
}

async fn the_emailed_links_and_the_account_page_work(backend: Backend) {
    let sink = SmtpSink::start().await;
    let url = sink.url();
    let Some(app) = TestApp::on(backend)
        .with_vars(|v| {
            v.insert("SMTP_URL".into(), url);
        })
        .await
    else {
        return;
    };
    let mut browser = Browser::new(&app);
    let res = browser
        .post(
            "/app/signup",
            &[
                ("name", "Vic"),
                ("email", "vic@example.com"),
                ("password", "a long enough passphrase"),
            ],
        )
        .await;
    assert_eq!(location(&res), "/app");
    // With a mail server there is no development mailbox.
    assert_eq!(browser.get("/app/dev/mail").await.status(), 404);
    // The verification email's link opens a page whose button spends the token.
    let mail = sink
        .wait_for("vic@example.com", "verify-email?token=")
        .await;
    let token = token_in(&mail);
    let page = browser
        .get(&format!("/verify-email?token={token}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("Verify my address"), "{page}");
    let res = browser.post("/verify-email", &[("token", &token)]).await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("Address verified"));
    let res = browser.post("/verify-email", &[("token", &token)]).await;
    assert_eq!(res.status(), 400, "a link works once");

    // The account page lists this browser's session; a password change keeps it.
    let account = browser.get("/app/account").await.text().await.unwrap();
    assert!(account.contains("this browser"), "{account}");
    let csrf = browser.csrf("/app/account").await;
    let res = browser
        .post(
            "/app/account/password",
            &[
                ("csrf_token", &csrf),
                ("current_password", "a long enough passphrase"),
                ("new_password", "another long passphrase"),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("Password changed"));

    // Forgot the password: the emailed link sets a new one.
    let mut other = Browser::new(&app);
    let res = other
        .post("/app/forgot", &[("email", "vic@example.com")])
        .await;
    assert!(res.text().await.unwrap().contains("Check your email"));
    let res = other
        .post("/app/forgot", &[("email", "nobody@example.com")])
        .await;
    assert!(
        res.text().await.unwrap().contains("Check your email"),
        "same answer"
    );
    let mail = sink
        .wait_for("vic@example.com", "reset-password?token=")
        .await;
    let token = token_in(&mail);
    let res = other
        .post(
            "/reset-password",
            &[("token", &token), ("new_password", "short")],
        )
        .await;
    assert_eq!(res.status(), 422, "a refused password stays on the form");
    let res = other
        .post(
            "/reset-password",
            &[("token", &token), ("new_password", "the third passphrase")],
        )
        .await;
    assert!(res.text().await.unwrap().contains("Password set"));
    let res = other
        .post(
            "/app/login",
            &[
                ("email", "vic@example.com"),
                ("password", "the third passphrase"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
}

async fn usage_and_jobs_pages_show_and_act(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("uma@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let key = crate::helpers::key_with(&app, &owner, &acme, &["data:read"]).await;
    for _ in 0..3 {
        let res = app.as_(&key).get(format!("/v1/orgs/{acme}/data")).await;
        assert_eq!(res.status(), 200);
    }
    let mut browser = Browser::new(&app);
    browser.sign_in("uma@example.com").await;
    // The metered calls, against the plan's allowance, and a chart of the days.
    let html = browser
        .get(&format!("/app/orgs/{acme}/usage"))
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("<code>api_calls</code>"), "{html}");
    assert!(html.contains("This month: 3 of "), "{html}");
    assert!(html.contains("<svg class=\"chart\""), "{html}");
    assert!(html.contains(": 3</title>"), "today's bar: {html}");

    // A job due later, cancelled from the console, then queued again.
    let run_at = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let res = app
        .as_(&owner)
        .post(
            format!("/v1/orgs/{acme}/jobs"),
            serde_json::json!({"kind": "echo", "payload": {"message": "later"}, "run_at": run_at}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let job: serde_json::Value = res.json().await;
    let id = job["id"].as_str().unwrap().to_owned();
    let jobs = format!("/app/orgs/{acme}/jobs");
    let html = browser.get(&jobs).await.text().await.unwrap();
    assert!(html.contains(&id) && html.contains("available"), "{html}");
    let csrf = browser.csrf(&jobs).await;
    let res = browser
        .post(&format!("{jobs}/{id}/cancel"), &[("csrf_token", &csrf)])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let html = browser
        .get(&format!("{jobs}?status=cancelled"))
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains(&id), "{html}");
    let res = browser
        .post(&format!("{jobs}/{id}/retry"), &[("csrf_token", &csrf)])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let html = browser
        .get(&format!("{jobs}?status=cancelled"))
        .await
        .text()
        .await
        .unwrap();
    assert!(!html.contains(&id), "queued again: {html}");
    // An unknown status is the API's 422, on a page.
    assert_eq!(
        browser.get(&format!("{jobs}?status=lost")).await.status(),
        422
    );
}

async fn custom_roles_and_the_audit_filter(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("rhea@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let mut browser = Browser::new(&app);
    browser.sign_in("rhea@example.com").await;
    let roles = format!("/app/orgs/{acme}/roles");
    let page = browser.get(&roles).await.text().await.unwrap();
    assert!(page.contains("value=\"audit:read\""), "the catalog: {page}");
    let csrf = browser.csrf(&roles).await;
    let res = browser
        .post(
            &roles,
            &[
                ("csrf_token", &csrf),
                ("name", "Auditor"),
                ("description", "Reads the audit log"),
                ("permissions", "audit:read"),
                ("permissions", "org:read"),
            ],
        )
        .await;
    assert_eq!(location(&res), roles);
    let page = browser.get(&roles).await.text().await.unwrap();
    assert!(
        page.contains("Auditor") && page.contains("audit:read, org:read"),
        "{page}"
    );
    // A permission outside the catalog is the API's 422.
    let res = browser
        .post(
            &roles,
            &[
                ("csrf_token", &csrf),
                ("name", "Bad"),
                ("permissions", "root"),
            ],
        )
        .await;
    assert_eq!(res.status(), 422);
    // The custom role is offered when inviting.
    let members = browser
        .get(&format!("/app/orgs/{acme}/members"))
        .await
        .text()
        .await
        .unwrap();
    let role_id = value_after(&members, "<option value=\"rol_");
    assert!(members.contains(">Auditor</option>"), "{members}");
    let res = browser
        .post(
            &format!("/app/orgs/{acme}/invitations"),
            &[
                ("csrf_token", &csrf),
                ("email", "ida@example.com"),
                ("role", &format!("rol_{role_id}")),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    // The audit log filtered to one action.
    let audit = browser
        .get(&format!("/app/orgs/{acme}/audit?action=role.created"))
        .await
        .text()
        .await
        .unwrap();
    assert!(audit.contains("role.created"), "{audit}");
    assert!(
        !audit.contains("invitation.created") && !audit.contains("organization.created"),
        "{audit}"
    );
    // A role nobody holds is deleted.
    let res = browser
        .post(
            &roles,
            &[
                ("csrf_token", &csrf),
                ("name", "Temp"),
                ("permissions", "org:read"),
            ],
        )
        .await;
    assert_eq!(location(&res), roles);
    let page = browser.get(&roles).await.text().await.unwrap();
    let row = &page[page.find(">Temp</a></td>").expect("the new role")..];
    let id = value_after(row, &format!("action=\"/app/orgs/{acme}/roles/"));
    let id = id.split('/').next().unwrap().to_owned();
    let res = browser
        .post(&format!("{roles}/{id}/delete"), &[("csrf_token", &csrf)])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = browser.get(&roles).await.text().await.unwrap();
    assert!(
        !page.contains(">Temp</a></td>") && page.contains(">Auditor</a></td>"),
        "{page}"
    );
}

async fn the_development_mailbox_shows_held_emails_with_their_links(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let mut browser = Browser::new(&app);
    let res = browser
        .post(
            "/app/signup",
            &[
                ("name", "Mo"),
                ("email", "mo@example.com"),
                ("password", "a long enough passphrase"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    // Without SMTP_URL the verification email waits in the outbox; the mailbox shows it
    // with its link, which verifies the address.
    let mut link = String::new();
    for _ in 0..50 {
        let html = browser.get("/app/dev/mail").await.text().await.unwrap();
        if let Some(at) = html.find("<a href=\"") {
            link = html[at + 9..].split('"').next().unwrap().to_owned();
            assert!(html.contains("mo@example.com"), "{html}");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(link.contains("/verify-email?token="), "{link}");
    let token = link.rsplit('=').next().unwrap().to_owned();
    let res = browser.post("/verify-email", &[("token", &token)]).await;
    assert_eq!(res.status(), 200);
}

async fn the_billing_page_upgrades_through_checkout_and_opens_the_portal(backend: Backend) {
    use crate::helpers::stripe::{deliver, event, FakeStripe, PRICE_PRO};
    let fake = FakeStripe::start().await;
    let Some(app) = TestApp::on(backend).with_vars(|v| fake.configure(v)).await else {
        return;
    };
    let owner = app.user("bill@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let mut browser = Browser::new(&app);
    browser.sign_in("bill@example.com").await;
    let billing = format!("/app/orgs/{acme}/billing");
    let html = browser.get(&billing).await.text().await.unwrap();
    assert!(html.contains("<dd id=\"plan\">free</dd>"), "{html}");
    assert!(html.contains("id=\"upgrade-pro\""), "{html}");
    assert!(html.contains("id=\"upgrade-enterprise\""), "{html}");
    assert!(!html.contains("id=\"portal\""), "no customer yet: {html}");
    assert!(html.contains(">Billing</a>"), "in the navigation: {html}");
    // Upgrading goes to Stripe's Checkout page (a page that moves on, since the CSP
    // forbids a form's redirect to another site).
    let csrf = browser.csrf(&billing).await;
    let res = browser
        .post(
            &format!("{billing}/checkout"),
            &[("csrf_token", &csrf), ("plan", "pro")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    let url = value_after(&html, "id=\"continue\" href=\"");
    assert!(
        url.starts_with(&format!("{}/checkout/cs_test", fake.base)),
        "{url}"
    );
    assert!(
        html.contains(&format!(
            "<meta http-equiv=\"refresh\" content=\"0; url={url}\">"
        )),
        "{html}"
    );
    // Stripe reports the payment; the page shows PRO and offers the portal.
    let account: serde_json::Value = app
        .as_(&owner)
        .get(format!("/v1/orgs/{acme}/billing"))
        .await
        .json()
        .await;
    let customer = account["customer_id"].as_str().unwrap().to_owned();
    fake.set_subscription(
        "sub_c",
        &customer,
        "active",
        PRICE_PRO,
        chrono::Utc::now().timestamp(),
        false,
    );
    let res = deliver(
        &app,
        &event(
            "evt_c",
            "customer.subscription.created",
            serde_json::json!({"id": "sub_c", "customer": customer}),
        ),
    )
    .await;
    assert_eq!(res.status(), 200);
    let mut html = String::new();
    for _ in 0..100 {
        html = browser
            .get(&format!("{billing}?checkout=success"))
            .await
            .text()
            .await
            .unwrap();
        if html.contains("<dd id=\"plan\">pro</dd>") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(html.contains("<dd id=\"plan\">pro</dd>"), "{html}");
    assert!(
        html.contains("Payment received: the subscription is active."),
        "{html}"
    );
    assert!(html.contains("id=\"portal\""), "{html}");
    assert!(!html.contains("id=\"upgrade-pro\""), "subscribed: {html}");
    let res = browser
        .post(&format!("{billing}/portal"), &[("csrf_token", &csrf)])
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    assert!(
        value_after(&html, "id=\"continue\" href=\"").contains("/portal/bps_test"),
        "{html}"
    );
    // A member without billing permissions sees no billing page and cannot act.
    app.member(&acme, "mia@example.com", "member").await;
    let mut other = Browser::new(&app);
    other.sign_in("mia@example.com").await;
    let html = other
        .get(&format!("/app/orgs/{acme}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(!html.contains(">Billing</a>"), "{html}");
    assert_eq!(other.get(&billing).await.status(), 403);
    let csrf = other.csrf(&format!("/app/orgs/{acme}")).await;
    let res = other
        .post(
            &format!("{billing}/checkout"),
            &[("csrf_token", &csrf), ("plan", "enterprise")],
        )
        .await;
    assert_eq!(res.status(), 403);
}

async fn without_stripe_the_billing_page_changes_the_plan_by_hand(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    app.user("hand@example.com").await;
    let owner = app.user("hand2@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let mut browser = Browser::new(&app);
    browser.sign_in("hand2@example.com").await;
    let billing = format!("/app/orgs/{acme}/billing");
    let html = browser.get(&billing).await.text().await.unwrap();
    assert!(html.contains("No billing provider"), "{html}");
    assert!(!html.contains("id=\"upgrade-pro\""), "{html}");
    let csrf = browser.csrf(&billing).await;
    let res = browser
        .post(
            &format!("{billing}/plan"),
            &[("csrf_token", &csrf), ("plan", "enterprise")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let html = browser.get(&billing).await.text().await.unwrap();
    assert!(html.contains("<dd id=\"plan\">enterprise</dd>"), "{html}");
    assert!(html.contains("members (no limit on this plan)"), "{html}");
}

async fn the_operator_signs_in_searches_and_overrides_a_plan(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("olga@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let globex = app.org_of(&owner, "globex").await;
    let pat = app.user("pat@example.com").await;
    let initech = app.org_of(&pat, "initech").await;
    let mut op = Browser::new(&app);
    // Not signed in: the operator's sign-in page, and a wrong token is refused inline.
    let res = op.get("/app/operator").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/app/operator/login");
    let res = op
        .post("/app/operator/login", &[("token", "not-the-token")])
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("That is not the operator token"));
    assert!(op.cookie.is_none());
    // A member's session is no operator session.
    let mut member = Browser::new(&app);
    member.sign_in("olga@example.com").await;
    assert_eq!(
        location(&member.get("/app/operator").await),
        "/app/operator/login"
    );

    let res = op
        .post("/app/operator/login", &[("token", &app.admin_token)])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let set = res.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        set.contains("HttpOnly")
            && set.contains("SameSite=Strict")
            && set.contains("Path=/app/operator"),
        "{set}"
    );
    assert!(
        !set.contains(&app.admin_token),
        "the cookie never holds the token"
    );
    let html = op.get("/app/operator").await.text().await.unwrap();
    for org in [&acme, &globex, &initech] {
        assert!(html.contains(org.as_str()), "{html}");
    }
    // Search by slug, by a member's email, and with LIKE's wildcards taken literally.
    let html = op.get("/app/operator?q=ACM").await.text().await.unwrap();
    assert!(
        html.contains(acme.as_str()) && !html.contains(globex.as_str()),
        "{html}"
    );
    let html = op
        .get("/app/operator?q=pat%40example")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains(initech.as_str()) && !html.contains(acme.as_str()),
        "{html}"
    );
    let html = op.get("/app/operator?q=%25").await.text().await.unwrap();
    assert!(html.contains("No organization matches"), "{html}");
    let res = app.admin_get("/v1/admin/orgs?q=globex").await;
    assert_eq!(res.status(), 200);
    let listed: serde_json::Value = res.json().await.unwrap();
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert_eq!(listed["data"][0]["id"], globex.as_str());

    // One organization: members, chain, plan; the override is audited as the operator.
    let page = format!("/app/operator/orgs/{acme}");
    let html = op.get(&page).await.text().await.unwrap();
    assert!(html.contains("olga@example.com"), "{html}");
    assert!(html.contains("<dd id=\"plan\">free</dd>"), "{html}");
    assert!(html.contains("verifies"), "{html}");
    let res = op.post(&format!("{page}/plan"), &[("plan", "pro")]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "no CSRF token");
    let csrf = value_after(&html, "name=\"csrf_token\" value=\"");
    let res = op
        .post(
            &format!("{page}/plan"),
            &[("csrf_token", &csrf), ("plan", "pro")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let html = op.get(&page).await.text().await.unwrap();
    assert!(html.contains("<dd id=\"plan\">pro</dd>"), "{html}");
    let audit: serde_json::Value = app
        .as_(&owner)
        .get(format!(
            "/v1/orgs/{acme}/audit-events?action=organization.plan_changed"
        ))
        .await
        .json()
        .await;
    assert_eq!(audit["data"][0]["actor"]["type"], "operator", "{audit}");
    assert_eq!(op.get("/app/operator/orgs/nope").await.status(), 404);
    let missing = format!("/app/operator/orgs/org_{}", "0".repeat(32));
    assert_eq!(op.get(&missing).await.status(), 404);

    // Sign out: the pages ask for the token again.
    let res = op
        .post("/app/operator/logout", &[("csrf_token", &csrf)])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(&op.get("/app/operator").await),
        "/app/operator/login"
    );
}

async fn workspace_roles_and_custom_role_editing_from_the_console(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("wendy@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let create = |slug: &'static str| {
        let app = &app;
        let owner = &owner;
        let acme = &acme;
        async move {
            let res = app
                .as_(owner)
                .post(
                    format!("/v1/orgs/{acme}/workspaces"),
                    serde_json::json!({"name": slug, "slug": slug}),
                )
                .await;
            assert_eq!(res.status(), 201);
            let ws: serde_json::Value = res.json().await;
            ws["id"].as_str().unwrap().to_owned()
        }
    };
    let ws = create("design").await;
    let other = create("ops").await;
    let mia = app.member(&acme, "mia@example.com", "readonly").await;
    let rename = |ws: &str| format!("/v1/orgs/{acme}/workspaces/{ws}");
    let res = app
        .as_(&mia)
        .patch(rename(&ws), serde_json::json!({"name": "x"}))
        .await;
    assert_eq!(res.status(), 403, "a reader cannot rename a workspace");

    let mut browser = Browser::new(&app);
    browser.sign_in("wendy@example.com").await;
    let page = format!("/app/orgs/{acme}/workspaces/{ws}");
    let list = browser
        .get(&format!("/app/orgs/{acme}/workspaces"))
        .await
        .text()
        .await
        .unwrap();
    assert!(list.contains(&format!("href=\"{page}\"")), "{list}");
    let html = browser.get(&page).await.text().await.unwrap();
    assert!(html.contains("No member has a role of their own"), "{html}");
    assert!(
        html.contains("mia@example.com"),
        "offered in the member list: {html}"
    );
    let csrf = browser.csrf(&page).await;
    let res = browser
        .post(
            &format!("{page}/roles"),
            &[
                ("csrf_token", &csrf),
                ("user_id", &mia.id.to_string()),
                ("role", "admin"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let html = browser.get(&page).await.text().await.unwrap();
    assert!(
        html.contains("Mia") || html.contains("mia@example.com"),
        "{html}"
    );
    assert!(html.contains("<td>admin</td>"), "{html}");
    // The workspace role takes effect in that workspace only.
    let res = app
        .as_(&mia)
        .patch(rename(&ws), serde_json::json!({"name": "Design team"}))
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .as_(&mia)
        .patch(rename(&other), serde_json::json!({"name": "x"}))
        .await;
    assert_eq!(res.status(), 403);
    // Rename from the console.
    let res = browser
        .post(
            &format!("{page}/rename"),
            &[
                ("csrf_token", &csrf),
                ("name", "Design studio"),
                ("slug", "studio"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let html = browser.get(&page).await.text().await.unwrap();
    assert!(
        html.contains("<h1>Design studio</h1>") && html.contains("<dd>studio</dd>"),
        "{html}"
    );
    // Remove the workspace role: back to the organization role.
    let res = browser
        .post(
            &format!("{page}/roles/{}/remove", mia.id),
            &[("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = app
        .as_(&mia)
        .patch(rename(&ws), serde_json::json!({"name": "y"}))
        .await;
    assert_eq!(res.status(), 403);
    assert_eq!(
        browser
            .get(&format!("/app/orgs/{acme}/workspaces/ws_nope"))
            .await
            .status(),
        404
    );

    // Edit a custom role: its new permissions apply at once.
    let res = app
        .as_(&owner)
        .post(
            format!("/v1/orgs/{acme}/roles"),
            serde_json::json!({"name": "Support", "description": "Helps", "permissions": ["members:read"]}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let role: serde_json::Value = res.json().await;
    let role_id = role["id"].as_str().unwrap().to_owned();
    let role_page = format!("/app/orgs/{acme}/roles/{role_id}");
    let html = browser.get(&role_page).await.text().await.unwrap();
    assert!(html.contains("value=\"members:read\" checked"), "{html}");
    assert!(html.contains("value=\"audit:read\">"), "unchecked: {html}");
    let res = browser
        .post(
            &role_page,
            &[
                ("csrf_token", &csrf),
                ("name", "Support desk"),
                ("description", "Helps customers"),
                ("permissions", "members:read"),
                ("permissions", "audit:read"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let saved: serde_json::Value = app
        .as_(&owner)
        .get(format!("/v1/orgs/{acme}/roles/{role_id}"))
        .await
        .json()
        .await;
    assert_eq!(saved["name"], "Support desk");
    assert_eq!(saved["description"], "Helps customers");
    let mut perms: Vec<&str> = saved["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    perms.sort_unstable();
    assert_eq!(perms, ["audit:read", "members:read"]);
    // A reader sees the role, not the form, and cannot post it.
    let mut reader = Browser::new(&app);
    reader.sign_in("mia@example.com").await;
    let html = reader.get(&role_page).await.text().await.unwrap();
    assert!(html.contains("<code>audit:read</code>"), "{html}");
    assert!(!html.contains(&format!("action=\"{role_page}\"")), "{html}");
    let csrf = reader.csrf(&format!("/app/orgs/{acme}")).await;
    let res = reader
        .post(&role_page, &[("csrf_token", &csrf), ("name", "Hijack")])
        .await;
    assert_eq!(res.status(), 403);
}

async fn the_audit_page_filters_and_exports_and_the_activity_page_broadcasts(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("ola@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let res = app
        .as_(&owner)
        .post(
            format!("/v1/orgs/{acme}/workspaces"),
            serde_json::json!({"name": "Ops", "slug": "ops"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let reader = app.member(&acme, "rex@example.com", "readonly").await;
    let mut browser = Browser::new(&app);
    browser.sign_in("ola@example.com").await;
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let audit = browser
        .get(&format!(
            "/app/orgs/{acme}/audit?action=workspace.*&from={today}&to={today}"
        ))
        .await;
    assert_eq!(audit.status(), StatusCode::OK);
    let audit = audit.text().await.unwrap();
    assert!(audit.contains("workspace.created"), "{audit}");
    assert!(
        !audit.contains("<code>organization.created"),
        "filtered: {audit}"
    );
    // The export link carries the same filters, in the API's terms.
    let href = value_after(&audit, "id=\"export-csv\" href=\"")
        .replace("&amp;", "&")
        .replace("&#38;", "&");
    assert!(
        href.starts_with(&format!("/v1/orgs/{acme}/audit-events?action=workspace.")),
        "{href}"
    );
    assert!(
        href.contains("format=csv") && href.contains("from="),
        "{href}"
    );
    let csv = browser.get(&href).await;
    assert_eq!(csv.status(), StatusCode::OK);
    let kind = csv.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(kind.starts_with("text/csv"), "{kind} {href}");
    let csv = csv.text().await.unwrap();
    assert!(
        csv.contains("workspace.created") && !csv.contains("organization.created"),
        "{csv}"
    );
    let bad = browser
        .get(&format!("/app/orgs/{acme}/audit?from=yesterday"))
        .await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // The activity page: the feed in words, live from the newest shown, and a broadcast.
    let page = format!("/app/orgs/{acme}/activity");
    let feed = browser.get(&page).await.text().await.unwrap();
    assert!(feed.contains("Ann created workspace Ops"), "{feed}");
    assert!(feed.contains("Ann joined as readonly"), "{feed}");
    assert!(
        feed.contains(&format!("data-live-org=\"{acme}\"")),
        "{feed}"
    );
    assert!(feed.contains("data-since=\"aud_"), "{feed}");
    let csrf = browser.csrf(&page).await;
    let res = browser
        .post(
            &format!("/app/orgs/{acme}/broadcast"),
            &[("csrf_token", &csrf), ("message", "Deploy at noon")],
        )
        .await;
    assert_eq!(location(&res), page);
    let feed = browser.get(&page).await.text().await.unwrap();
    assert!(feed.contains("Ann: Deploy at noon"), "{feed}");

    // A read-only member sees the feed, without the form, and no audit log.
    let mut other = Browser::new(&app);
    other.sign_in("rex@example.com").await;
    let _ = reader;
    let feed = other.get(&page).await.text().await.unwrap();
    assert!(
        feed.contains("Ann: Deploy at noon") && !feed.contains("name=\"message\""),
        "{feed}"
    );
    let audit = other.get(&format!("/app/orgs/{acme}/audit")).await;
    assert_eq!(audit.status(), StatusCode::FORBIDDEN);
}

async fn a_cookie_websocket_must_come_from_our_own_pages(backend: Backend) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("wes@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let mut browser = Browser::new(&app);
    browser.sign_in("wes@example.com").await;
    let cookie = browser.cookie.clone().unwrap();
    let url = format!("{}/v1/ws?org_id={acme}", app.base.replacen("http", "ws", 1));
    let host = app.base.trim_start_matches("http://").to_owned();
    let attempt = |origin: String| {
        let (url, cookie) = (url.clone(), cookie.clone());
        async move {
            let mut request = url.into_client_request().unwrap();
            request
                .headers_mut()
                .insert("cookie", cookie.parse().unwrap());
            request
                .headers_mut()
                .insert("origin", origin.parse().unwrap());
            match tokio_tungstenite::connect_async(request).await {
                Ok(_) => 101,
                Err(tokio_tungstenite::tungstenite::Error::Http(res)) => res.status().as_u16(),
                Err(other) => panic!("{other}"),
            }
        }
    };
    assert_eq!(attempt("https://evil.example".to_owned()).await, 403);
    assert_eq!(attempt(format!("http://{host}")).await, 101);
}

async fn the_operator_reads_the_summary_suspends_and_sets_flags(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("olga@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    app.member(&acme, "reader@example.com", "readonly").await;
    let mut op = Browser::new(&app);
    op.post("/app/operator/login", &[("token", &app.admin_token)])
        .await;
    let mut member = Browser::new(&app);
    member.sign_in("olga@example.com").await;
    let page = format!("/app/operator/orgs/{acme}");
    let html = op.get(&page).await.text().await.unwrap();
    assert!(
        html.contains("<dd id=\"roles\">owner: 1, readonly: 1</dd>"),
        "{html}"
    );
    assert!(html.contains("member.joined"), "{html}");
    assert!(
        html.contains("<td id=\"flag-scim\">off (plan)</td>"),
        "{html}"
    );
    let csrf = value_after(&html, "name=\"csrf_token\" value=\"");

    // A flag turned on by the operator shows on the member's organization page.
    let res = op
        .post(
            &format!("{page}/features"),
            &[("csrf_token", &csrf), ("flag", "scim"), ("value", "on")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let html = op.get(&page).await.text().await.unwrap();
    assert!(
        html.contains("<td id=\"flag-scim\">on (override)</td>"),
        "{html}"
    );
    let mine = member
        .get(&format!("/app/orgs/{acme}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(mine.contains("<td id=\"feature-scim\">yes</td>"), "{mine}");
    let res = op
        .post(
            &format!("{page}/features"),
            &[("csrf_token", &csrf), ("flag", "nope"), ("value", "on")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Suspended from the console: the member's pages refuse, the operator still reads it.
    let res = op
        .post(
            &format!("{page}/suspend"),
            &[("csrf_token", &csrf), ("reason", "abuse report")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let html = op.get(&page).await.text().await.unwrap();
    assert!(html.contains("<dd id=\"status\">suspended</dd>"), "{html}");
    assert!(html.contains("Reactivate"), "{html}");
    let res = member.get(&format!("/app/orgs/{acme}")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res.text().await.unwrap().contains("org_suspended"));
    let res = op
        .post(&format!("{page}/reactivate"), &[("csrf_token", &csrf)])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        member.get(&format!("/app/orgs/{acme}")).await.status(),
        StatusCode::OK
    );
    let audit: serde_json::Value = app
        .as_(&owner)
        .get(format!(
            "/v1/orgs/{acme}/audit-events?action=organization.*"
        ))
        .await
        .json()
        .await;
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        &actions[..3],
        [
            "organization.reactivated",
            "organization.suspended",
            "organization.feature_set"
        ],
        "{audit}"
    );
}

async fn a_demo_deployment_says_so_on_every_page(backend: Backend) {
    let Some(app) = TestApp::on(backend)
        .with_vars(|v| {
            v.insert("DEMO_MODE".into(), "true".into());
        })
        .await
    else {
        return;
    };
    let owner = app.user("olga@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let anon = Browser::new(&app);
    for path in ["/app/login", "/app/signup", "/app/operator/login"] {
        let html = anon.get(path).await.text().await.unwrap();
        assert!(html.contains("id=\"demo-banner\""), "{path}: {html}");
    }
    let mut member = Browser::new(&app);
    member.sign_in("olga@example.com").await;
    let html = member
        .get(&format!("/app/orgs/{acme}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("id=\"demo-banner\""), "{html}");
    // Deleting the organization from the console is refused like through the API.
    let csrf = value_after(&html, "name=\"csrf_token\" value=\"");
    let res = member
        .post(
            &format!("/app/orgs/{acme}/delete"),
            &[("csrf_token", &csrf), ("confirm", "acme")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res.text().await.unwrap().contains("demo_mode"));
    // Without demo mode there is no banner.
    let Some(plain) = TestApp::on(backend).await else {
        return;
    };
    let html = Browser::new(&plain)
        .get("/app/login")
        .await
        .text()
        .await
        .unwrap();
    assert!(!html.contains("demo-banner"), "{html}");
}

async fn scim_tokens_and_group_mappings_from_the_console(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("olga@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    app.member(&acme, "mo@example.com", "member").await;
    let mut browser = Browser::new(&app);
    browser.sign_in("olga@example.com").await;
    let page = format!("/app/orgs/{acme}/scim");
    // On FREE the page says SCIM is off; the plan turns it on.
    let html = browser.get(&page).await.text().await.unwrap();
    assert!(html.contains("id=\"scim-off\""), "{html}");
    assert!(html.contains("/scim/v2</code>"), "{html}");
    let res = app
        .admin_put(
            &format!("/v1/admin/orgs/{acme}/plan"),
            &serde_json::json!({"plan": "pro"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let html = browser.get(&page).await.text().await.unwrap();
    assert!(!html.contains("id=\"scim-off\""), "{html}");
    let csrf = value_after(&html, "name=\"csrf_token\" value=\"");

    // A token, shown once, that the identity provider can use.
    let res = browser
        .post(
            &format!("{page}/tokens"),
            &[("csrf_token", &csrf), ("name", "Okta")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    let secret = value_after(&html, "<code id=\"new-secret\">")
        .split('<')
        .next()
        .unwrap()
        .to_owned();
    assert!(secret.starts_with("scim_"), "{secret}");
    let scim = |token: String| {
        app.client
            .get(app.url("/scim/v2/Users"))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(scim(secret.clone()).await.unwrap().status(), 200);
    let html = browser.get(&page).await.text().await.unwrap();
    assert!(!html.contains(&secret), "the secret is shown only once");

    // Mappings: one per line; a refused role keeps the old ones.
    let res = browser
        .post(
            &format!("{page}/role-mappings"),
            &[
                ("csrf_token", &csrf),
                ("mappings", "Engineering = admin\nFinance = billing\n"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let mappings: serde_json::Value = app
        .as_(&owner)
        .get(format!("/v1/orgs/{acme}/scim/role-mappings"))
        .await
        .json()
        .await;
    assert_eq!(mappings["data"].as_array().unwrap().len(), 2, "{mappings}");
    assert_eq!(mappings["data"][0]["group"], "Engineering");
    let res = browser
        .post(
            &format!("{page}/role-mappings"),
            &[("csrf_token", &csrf), ("mappings", "Bosses = owner")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = browser.get(&page).await.text().await.unwrap();
    assert!(html.contains("Engineering = admin"), "{html}");

    // Revoked from the console: the identity provider is refused.
    let id = value_after(&html, "/scim/tokens/")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let res = browser
        .post(
            &format!("{page}/tokens/{id}/revoke"),
            &[("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(scim(secret).await.unwrap().status(), 401);

    // A plain member sees no SCIM tab and cannot open the page.
    let mut mo = Browser::new(&app);
    mo.sign_in("mo@example.com").await;
    let html = mo
        .get(&format!("/app/orgs/{acme}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(!html.contains("/scim\""), "{html}");
    assert_eq!(mo.get(&page).await.status(), StatusCode::FORBIDDEN);
}
