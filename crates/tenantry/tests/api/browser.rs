//! The console in a real browser: headless Chromium driven over WebDriver (Debian's
//! `chromium` and `chromium-driver`), the same flows a customer's admin goes through.
//! Skipped with a `SKIPPED browser` line when no driver is installed, unless
//! `TENANTRY_TEST_REQUIRE_BROWSER=1` (as in CI). With `UPDATE_SCREENSHOTS=1` the main pages
//! are written to `docs/screenshots/`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    an_admin_signs_up_invites_creates_a_key_and_revokes_it_in_a_browser,
    an_owner_upgrades_through_stripe_checkout_in_a_browser,
    the_activity_page_updates_live_in_a_browser,
    the_operator_suspends_and_reactivates_in_a_browser,
    an_admin_connects_an_identity_provider_in_a_browser,
);

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and one browser session on it.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
}

fn driver_path() -> Option<&'static str> {
    ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
}

impl Browser {
    /// Starts a driver and a headless session, or `None` (with the SKIPPED line) when no
    /// browser is installed and none is required.
    async fn start() -> Option<Self> {
        let Some(path) = driver_path() else {
            if std::env::var("TENANTRY_TEST_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
                panic!("a browser is required (TENANTRY_TEST_REQUIRE_BROWSER) but chromedriver is not installed");
            }
            eprintln!(
                "SKIPPED browser test: no chromedriver (apt-get install chromium chromium-driver)"
            );
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if http.get(format!("{base}/status")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,900"]
            }
        }}});
        let res: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = res["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {res}"))
            .to_owned();
        let browser = Self {
            driver,
            base,
            session,
            http,
        };
        // Finding an element waits for it (a page still loading after a click), up to 15 s.
        browser
            .cmd(
                reqwest::Method::POST,
                "/timeouts",
                Some(json!({"implicit": 15_000, "pageLoad": 30_000})),
            )
            .await;
        Some(browser)
    }

    /// Waits (up to 15 s) until the current URL satisfies `done`; returns it.
    async fn wait_url(&self, done: impl Fn(&str) -> bool) -> String {
        let mut url = String::new();
        for _ in 0..150 {
            url = self.url().await;
            if done(&url) {
                return url;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the browser stayed at {url}");
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_cmd(method, path, body)
            .await
            .unwrap_or_else(|res| panic!("WebDriver {path}: {res}"))
    }

    /// A WebDriver command; its error answer as `Err`.
    async fn try_cmd(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Value> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method, url);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res: Value = req.send().await.unwrap().json().await.unwrap();
        if res["value"]["error"].is_string() {
            return Err(res);
        }
        Ok(res["value"].clone())
    }

    /// Waits (up to 15 s) until the element `css` of the page shown reads `expected`,
    /// across a page load (an element of the page being replaced goes stale).
    async fn wait_text(&self, css: &str, expected: &str) {
        let mut seen = String::new();
        for _ in 0..150 {
            let found = self
                .try_cmd(
                    reqwest::Method::POST,
                    "/element",
                    Some(json!({"using": "css selector", "value": css})),
                )
                .await;
            if let Ok(found) = found {
                let el = found[ELEMENT].as_str().unwrap_or_default().to_owned();
                let text = self
                    .try_cmd(reqwest::Method::GET, &format!("/element/{el}/text"), None)
                    .await;
                if let Ok(Value::String(text)) = text {
                    if text == expected {
                        return;
                    }
                    seen = text;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{css} reads {seen:?}, not {expected:?}");
    }

    async fn open(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    async fn find(&self, css: &str) -> String {
        let found = self
            .cmd(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found[ELEMENT].as_str().unwrap().to_owned()
    }

    async fn fill(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{el}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let el = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{el}/click"),
            Some(json!({})),
        )
        .await;
    }

    async fn text(&self, css: &str) -> String {
        let el = self.find(css).await;
        self.cmd(reqwest::Method::GET, &format!("/element/{el}/text"), None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn source(&self) -> String {
        self.cmd(reqwest::Method::GET, "/source", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn url(&self) -> String {
        self.cmd(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Accepts the page's `confirm()` dialog.
    async fn accept_dialog(&self) {
        self.cmd(reqwest::Method::POST, "/alert/accept", Some(json!({})))
            .await;
    }

    /// Writes the page to `docs/screenshots/<name>.png` when `UPDATE_SCREENSHOTS=1`.
    async fn screenshot(&self, name: &str) {
        if !std::env::var("UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
            return;
        }
        let png = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/screenshots");
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(format!("{dir}/{name}.png"), bytes).unwrap();
    }

    async fn stop(mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send()
            .await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

async fn an_admin_signs_up_invites_creates_a_key_and_revokes_it_in_a_browser(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let Some(admin) = Browser::start().await else {
        return;
    };
    let url = |path: &str| app.url(path);

    // Sign up with a first organization.
    admin.open(&url("/")).await;
    assert!(admin.url().await.ends_with("/app/login"));
    admin.screenshot("sign-in").await;
    admin.open(&url("/app/signup")).await;
    admin.fill("#name", "Ada Admin").await;
    admin.fill("#email", "ada@example.com").await;
    admin.fill("#password", "a long enough passphrase").await;
    admin.fill("#org_name", "Ada Labs").await;
    admin.fill("#org_slug", "ada-labs").await;
    admin.click("button[type=submit]").await;
    let org_url = admin.wait_url(|u| u.contains("/app/orgs/org_")).await;
    let org = org_url.rsplit('/').next().unwrap().to_owned();
    assert!(admin.text("h1").await.contains("Ada Labs"));
    admin.screenshot("organization").await;

    // Invite a member; she accepts in a second browser session.
    admin.open(&url(&format!("/app/orgs/{org}/members"))).await;
    admin.fill("#email", "bo@example.com").await;
    admin
        .click("form[action$='/invitations'] button[type=submit]")
        .await;
    let link = admin.text("#invite-link").await;
    assert!(link.contains("/accept-invitation?token="), "{link}");
    admin.screenshot("members").await;
    let token = link.rsplit('=').next().unwrap().to_owned();
    let member = Browser::start().await.expect("a second session");
    member
        .open(&url(&format!("/accept-invitation?token={token}")))
        .await;
    member.click("a[href^='/app/signup']").await;
    member.fill("#name", "Bo Member").await;
    member.fill("#email", "bo@example.com").await;
    member.fill("#password", "another long passphrase").await;
    member.click("button[type=submit]").await;
    member
        .wait_url(|u| u.ends_with(&format!("/app/orgs/{org}")))
        .await;
    // A plain member sees no API keys or audit log link (once the page has loaded).
    member.find("nav.tabs").await;
    let page = member.source().await;
    assert!(!page.contains("/audit\""), "{page}");
    member.stop().await;

    // An API key with one scope; the secret shown once works on the API.
    admin.open(&url(&format!("/app/orgs/{org}/api-keys"))).await;
    admin.fill("#name", "ci").await;
    admin.click("input[value='data:read']").await;
    admin
        .click("form[action$='/api-keys'] button[type=submit]")
        .await;
    let secret = admin.text("#new-secret").await;
    assert!(secret.starts_with("tk_"), "{secret}");
    admin.screenshot("api-key-created").await;
    let res = app.as_(&secret).get(format!("/v1/orgs/{org}/data")).await;
    assert_eq!(res.status(), 200);

    // The call on the usage page, the key's creation in the audit log.
    admin.open(&url(&format!("/app/orgs/{org}/usage"))).await;
    assert!(admin.source().await.contains("This month: 1 of "));
    admin.screenshot("usage").await;
    admin.open(&url(&format!("/app/orgs/{org}/audit"))).await;
    let audit = admin.source().await;
    assert!(
        audit.contains("api_key.created") && audit.contains("member.joined"),
        "{audit}"
    );
    admin.screenshot("audit-log").await;

    // Revoke, confirming the dialog: the API refuses the key at once.
    admin.open(&url(&format!("/app/orgs/{org}/api-keys"))).await;
    admin.click("button.danger").await;
    admin.accept_dialog().await;
    // The form is submitted once the dialog is accepted: wait for the page it leads to.
    let mut revoked = false;
    for _ in 0..100 {
        if admin.source().await.contains("revoked") {
            revoked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(revoked, "the keys page shows the key revoked");
    let res = app.as_(&secret).get(format!("/v1/orgs/{org}/data")).await;
    assert_eq!(res.status(), 401);
    admin.stop().await;
}

async fn an_owner_upgrades_through_stripe_checkout_in_a_browser(backend: Backend) {
    use crate::helpers::stripe::{deliver, event, FakeStripe, PRICE_PRO};
    let fake = FakeStripe::start().await;
    let Some(app) = TestApp::on(backend).with_vars(|v| fake.configure(v)).await else {
        return;
    };
    let Some(owner) = Browser::start().await else {
        return;
    };
    let url = |path: &str| app.url(path);
    owner.open(&url("/app/signup")).await;
    owner.fill("#name", "Cy Owner").await;
    owner.fill("#email", "cy@example.com").await;
    owner.fill("#password", "a long enough passphrase").await;
    owner.fill("#org_name", "Cy Co").await;
    owner.fill("#org_slug", "cy-co").await;
    owner.click("button[type=submit]").await;
    let org_url = owner.wait_url(|u| u.contains("/app/orgs/org_")).await;
    let org = org_url.rsplit('/').next().unwrap().to_owned();
    owner.click("a[href$='/billing']").await;
    owner.wait_url(|u| u.ends_with("/billing")).await;
    assert_eq!(owner.text("#plan").await, "free");

    // Upgrade: the browser lands on Stripe's (fake) Checkout page.
    owner.click("#upgrade-pro").await;
    let checkout = owner.wait_url(|u| u.contains("/checkout/cs_test")).await;
    assert!(checkout.starts_with(&fake.base), "{checkout}");
    assert!(owner.text("h1").await.contains("Fake Stripe checkout"));

    // Stripe reports the paid subscription; back on the billing page the plan is PRO.
    let customer = fake.requests_to("/v1/checkout/sessions")[0]
        .field("customer")
        .unwrap()
        .to_owned();
    fake.set_subscription(
        "sub_b",
        &customer,
        "active",
        PRICE_PRO,
        chrono::Utc::now().timestamp(),
        false,
    );
    let res = deliver(
        &app,
        &event("evt_b", "checkout.session.completed", serde_json::json!({
            "id": "cs_b", "customer": customer, "subscription": "sub_b", "client_reference_id": org,
        })),
    )
    .await;
    assert_eq!(res.status(), 200);
    let mut plan = String::new();
    for _ in 0..50 {
        owner
            .open(&url(&format!("/app/orgs/{org}/billing?checkout=success")))
            .await;
        plan = owner.text("#plan").await;
        if plan == "pro" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(plan, "pro");
    assert_eq!(owner.text("#status").await, "active");
    owner.screenshot("billing").await;
    // The customer portal, on Stripe's (fake) side.
    owner.click("#portal").await;
    owner.wait_url(|u| u.contains("/portal/bps_test")).await;
    owner.stop().await;
}

async fn the_activity_page_updates_live_in_a_browser(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let Some(owner) = Browser::start().await else {
        return;
    };
    owner.open(&app.url("/app/signup")).await;
    owner.fill("#name", "Liv Owner").await;
    owner.fill("#email", "liv@example.com").await;
    owner.fill("#password", "a long enough passphrase").await;
    owner.fill("#org_name", "Liv Co").await;
    owner.fill("#org_slug", "liv-co").await;
    owner.click("button[type=submit]").await;
    let org_url = owner.wait_url(|u| u.contains("/app/orgs/org_")).await;
    let org = org_url.rsplit('/').next().unwrap().to_owned();
    owner.click("a[href$='/activity']").await;
    owner.wait_url(|u| u.ends_with("/activity")).await;
    // Connected: the page says so.
    let mut status = String::new();
    for _ in 0..50 {
        status = owner.text("#live-status").await;
        if status.starts_with("Live") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(status.starts_with("Live"), "{status}");
    // Something happens elsewhere (the same person, through the API): it appears.
    let login: Value = app
        .anon()
        .post(
            "/v1/auth/login",
            json!({"email": "liv@example.com", "password": "a long enough passphrase"}),
        )
        .await
        .json()
        .await;
    let token = login["access_token"].as_str().unwrap();
    let res = app
        .as_(token)
        .post(
            format!("/v1/orgs/{org}/broadcast"),
            json!({"message": "Hello from the API"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let mut first = String::new();
    for _ in 0..100 {
        first = owner.text("#feed li:first-child .summary").await;
        if first.contains("Hello from the API") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(first, "Liv Owner: Hello from the API");
    owner.screenshot("activity").await;
    owner.stop().await;
}

async fn the_operator_suspends_and_reactivates_in_a_browser(backend: Backend) {
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
    let Some(op) = Browser::start().await else {
        return;
    };
    op.open(&app.url("/app/operator/login")).await;
    assert!(op.text("#demo-banner").await.starts_with("Demo deployment"));
    op.fill("#token", &app.admin_token).await;
    op.click("button[type=submit]").await;
    op.wait_url(|u| u.ends_with("/app/operator")).await;
    op.fill("input[name=q]", "acme").await;
    op.click("form[role=search] button").await;
    op.wait_url(|u| u.contains("q=acme")).await;
    op.click(&format!("a[href='/app/operator/orgs/{acme}']"))
        .await;
    op.wait_url(|u| u.ends_with(acme.as_str())).await;
    op.wait_text("#roles", "owner: 1").await;
    op.fill("#reason", "chargeback").await;
    op.click("#suspension button").await;
    op.wait_text("#status", "suspended").await;
    let res = app.as_(&owner).get(format!("/v1/orgs/{acme}")).await;
    assert_eq!(res.status(), 403);
    op.screenshot("operator-org").await;
    op.click("#suspension button").await;
    op.wait_text("#status", "active").await;
    assert_eq!(
        app.as_(&owner)
            .get(format!("/v1/orgs/{acme}"))
            .await
            .status(),
        200
    );
    op.stop().await;
}

async fn an_admin_connects_an_identity_provider_in_a_browser(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("olga@example.com").await;
    let acme = app.org_of(&owner, "acme").await;
    let res = app
        .admin_put(
            &format!("/v1/admin/orgs/{acme}/plan"),
            &json!({"plan": "enterprise"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let Some(admin) = Browser::start().await else {
        return;
    };
    admin.open(&app.url("/app/login")).await;
    admin.fill("#email", "olga@example.com").await;
    admin.fill("#password", crate::helpers::PASSWORD).await;
    admin.click("button[type=submit]").await;
    admin
        .wait_url(|u| u.contains("/app/orgs/") || u.ends_with("/app"))
        .await;
    admin.open(&app.url(&format!("/app/orgs/{acme}"))).await;
    admin.click("a[href$='/scim']").await;
    admin.wait_url(|u| u.ends_with("/scim")).await;
    assert!(admin.text("#scim-base").await.ends_with("/scim/v2"));
    admin.fill("#token-name", "Okta").await;
    admin.click("form[action$='/scim/tokens'] button").await;
    let secret = admin.text("#new-secret").await;
    assert!(secret.starts_with("scim_"), "{secret}");
    // The identity provider provisions a person with it.
    let res = app
        .client
        .post(app.url("/scim/v2/Users"))
        .bearer_auth(&secret)
        .header("content-type", "application/scim+json")
        .body(
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "new.hire@example.com",
                "name": {"givenName": "New", "familyName": "Hire"},
                "emails": [{"value": "new.hire@example.com", "type": "work", "primary": true}],
                "active": true
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    admin.fill("#mappings", "Engineering = admin").await;
    admin.click("form[action$='/role-mappings'] button").await;
    // The page comes back with the saved mapping, and without the secret.
    admin.wait_text("#mappings", "Engineering = admin").await;
    assert!(!admin.source().await.contains(&secret));
    admin.screenshot("scim").await;
    admin.stop().await;
}
