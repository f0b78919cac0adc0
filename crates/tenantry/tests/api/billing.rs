//! Billing through the public interface, against a fake Stripe the real client talks to:
//! checkout and the portal, signed webhooks stored once and applied by jobs (repeated,
//! concurrent, out of order, after a killed worker), plan effects, usage reports.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::stripe::{
    self, deliver, deliver_raw, event, sign, FakeStripe, PRICE_ENTERPRISE, PRICE_PRO,
};
use crate::helpers::{assert_problem, Backend, Org, TestApp};
use crate::on_both_backends;

on_both_backends!(
    checkout_creates_the_customer_once_and_the_paid_subscription_upgrades_the_plan,
    webhook_refuses_bad_signatures_and_bodies_and_stores_nothing,
    events_apply_once_whatever_the_order_or_the_repetition,
    downgrade_keeps_members_and_refuses_invitations,
    past_due_keeps_the_plan_through_the_grace_period,
    completed_days_of_usage_are_reported_once,
    an_event_interrupted_by_a_killed_worker_is_applied_once,
    without_stripe_plans_change_by_hand,
);

async fn app_with(backend: Backend, fake: &FakeStripe, extra: &[(&str, &str)]) -> Option<TestApp> {
    TestApp::on(backend)
        .with_vars(|v| {
            fake.configure(v);
            for (k, val) in extra {
                v.insert((*k).to_owned(), (*val).to_owned());
            }
        })
        .await
}

async fn billing(app: &TestApp, token: &str, org: &Org) -> Value {
    let res = app.as_(token).get(format!("/v1/orgs/{org}/billing")).await;
    assert_eq!(res.status(), 200);
    res.json().await
}

/// Waits until the organization's billing state satisfies `done`.
async fn wait_billing(
    app: &TestApp,
    token: &str,
    org: &Org,
    done: impl Fn(&Value) -> bool,
) -> Value {
    for _ in 0..200 {
        let state = billing(app, token, org).await;
        if done(&state) {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "billing never reached the expected state: {}",
        billing(app, token, org).await
    );
}

async fn audit_actions(app: &TestApp, token: &str, org: &Org, action: &str) -> Vec<Value> {
    let res = app
        .as_(token)
        .get(format!(
            "/v1/orgs/{org}/audit-events?action={action}&limit=200&order=oldest"
        ))
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await;
    body["data"].as_array().unwrap().clone()
}

/// Waits until stored event `id` is processed.
async fn processed(app: &TestApp, id: &str) {
    for _ in 0..200 {
        let stored = app.store.billing_event(id).await.unwrap();
        if stored.is_some_and(|e| e.processed_at.is_some()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("event {id} was never processed");
}

async fn checkout(app: &TestApp, token: &str, org: &Org, plan: &str) -> reqwest::Response {
    app.as_(token)
        .post(
            format!("/v1/orgs/{org}/billing/checkout"),
            json!({"plan": plan}),
        )
        .await
        .into_inner()
}

/// Checks out `plan`, then has Stripe report the paid subscription `sub` and waits for it.
async fn subscribe(
    app: &TestApp,
    fake: &FakeStripe,
    token: &str,
    org: &Org,
    sub: &str,
    price: &str,
) -> String {
    let res = checkout(
        app,
        token,
        org,
        if price == PRICE_PRO {
            "pro"
        } else {
            "enterprise"
        },
    )
    .await;
    assert_eq!(res.status(), 201);
    let customer = billing(app, token, org).await["customer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let created = chrono::Utc::now().timestamp() - 5 * 86_400;
    fake.set_subscription(sub, &customer, "active", price, created, false);
    let session = json!({"id": format!("cs_{sub}"), "object": "checkout.session", "customer": customer,
        "subscription": sub, "client_reference_id": org.as_str(), "metadata": {"org_id": org.as_str()}});
    let res = deliver(
        app,
        &event(
            &format!("evt_checkout_{sub}"),
            "checkout.session.completed",
            session,
        ),
    )
    .await;
    assert_eq!(res.status(), 200);
    wait_billing(app, token, org, |b| b["status"] == "active").await;
    customer
}

async fn checkout_creates_the_customer_once_and_the_paid_subscription_upgrades_the_plan(
    backend: Backend,
) {
    let fake = FakeStripe::start().await;
    let Some(app) = app_with(backend, &fake, &[]).await else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let org = app.org_of(&owner, "acme").await;
    let before = billing(&app, &owner, &org).await;
    assert_eq!(before["provider"], "stripe");
    assert_eq!(before["plan"], "free");
    assert_eq!(before["status"], "none");
    assert_eq!(before["checkout_plans"], json!(["pro", "enterprise"]));
    assert_eq!(before["portal_available"], false);
    assert_eq!(before["seats"]["allowed"], 3);
    assert_eq!(before["usage"]["quota"], 10_000);

    // Checkout twice: one customer, two sessions, each create with its own idempotency key.
    for _ in 0..2 {
        let res = checkout(&app, &owner, &org, "PRO").await;
        assert_eq!(res.status(), 201);
        let session: Value = res.json().await.unwrap();
        assert!(
            session["url"].as_str().unwrap().starts_with(&fake.base),
            "{session}"
        );
    }
    let customers = fake.requests_to("/v1/customers");
    assert_eq!(customers.len(), 1, "the customer is created once");
    assert_eq!(customers[0].field("metadata[org_id]"), Some(org.as_str()));
    assert_eq!(
        customers[0].header("idempotency-key"),
        Some(format!("tenantry-customer-{org}").as_str())
    );
    let sessions = fake.requests_to("/v1/checkout/sessions");
    assert_eq!(sessions.len(), 2);
    let customer = billing(&app, &owner, &org).await["customer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for s in &sessions {
        assert_eq!(
            s.header("stripe-version"),
            Some(tenantry::billing::stripe::STRIPE_VERSION)
        );
        assert!(s
            .header("idempotency-key")
            .unwrap()
            .starts_with("tenantry-checkout-"));
        assert_eq!(s.field("mode"), Some("subscription"));
        assert_eq!(s.field("customer"), Some(customer.as_str()));
        assert_eq!(s.field("client_reference_id"), Some(org.as_str()));
        assert_eq!(s.field("metadata[org_id]"), Some(org.as_str()));
        assert_eq!(
            s.field("subscription_data[metadata][org_id]"),
            Some(org.as_str())
        );
        assert_eq!(s.field("line_items[0][price]"), Some(PRICE_PRO));
        let success = s.field("success_url").unwrap();
        assert!(
            success.ends_with(&format!("/app/orgs/{org}/billing?checkout=success")),
            "{success}"
        );
    }
    assert_ne!(
        sessions[0].header("idempotency-key"),
        sessions[1].header("idempotency-key")
    );

    // FREE needs no checkout; an unknown plan is refused.
    assert_problem(
        checkout(&app, &owner, &org, "free").await,
        422,
        "validation_failed",
    )
    .await;
    assert_problem(
        checkout(&app, &owner, &org, "gold").await,
        422,
        "validation_failed",
    )
    .await;
    // A member without billing:manage cannot start one.
    let member = app.member(&org, "member@example.com", "member").await;
    assert_problem(checkout(&app, &member, &org, "pro").await, 403, "forbidden").await;

    // Stripe reports the paid checkout: PRO at once, with its limits.
    let created = chrono::Utc::now().timestamp() - 86_400;
    fake.set_subscription("sub_acme", &customer, "active", PRICE_PRO, created, false);
    // Paid, not yet reported: a second checkout is refused (Stripe is asked).
    assert_problem(
        checkout(&app, &owner, &org, "pro").await,
        409,
        "subscription_exists",
    )
    .await;
    let session = json!({"id": "cs_done", "object": "checkout.session", "customer": customer,
        "subscription": "sub_acme", "client_reference_id": org.as_str(), "metadata": {"org_id": org.as_str()}});
    let res = deliver(
        &app,
        &event("evt_checkout_done", "checkout.session.completed", session),
    )
    .await;
    assert_eq!(res.status(), 200);
    let ack: Value = res.json().await.unwrap();
    assert_eq!(
        ack,
        json!({"received": true, "event_id": "evt_checkout_done", "duplicate": false})
    );
    let after = wait_billing(&app, &owner, &org, |b| b["plan"] == "pro").await;
    assert_eq!(after["status"], "active");
    assert_eq!(after["subscription_id"], "sub_acme");
    assert_eq!(after["price_id"], PRICE_PRO);
    assert_eq!(after["seats"]["allowed"], 10);
    assert_eq!(after["usage"]["quota"], 1_000_000);
    assert_eq!(
        after["checkout_plans"],
        json!([]),
        "subscribed: change plans in the portal"
    );
    assert_eq!(after["portal_available"], true);
    assert!(after["current_period_end"].is_string());
    let usage: Value = app
        .as_(&owner)
        .get(format!("/v1/orgs/{org}/usage"))
        .await
        .json()
        .await;
    assert_eq!(
        crate::helpers::meter(&usage, "api_calls")["limit"],
        1_000_000
    );
    // Ten members now fit: three more than FREE allowed.
    for i in 0..3 {
        app.member(&org, &format!("m{i}@example.com"), "member")
            .await;
    }
    let changed = audit_actions(&app, &owner, &org, "billing.plan_changed").await;
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(changed[0]["metadata"]["from"], "free");
    assert_eq!(changed[0]["metadata"]["to"], "pro");
    assert_eq!(
        changed[0]["actor"],
        json!({"type": "system", "id": "billing"})
    );
    assert_eq!(
        audit_actions(&app, &owner, &org, "billing.checkout_started")
            .await
            .len(),
        2,
        "the refused third checkout started nothing"
    );

    // With Stripe configured the plan follows the subscription, not a hand-made change.
    let res = app
        .as_(&owner)
        .put(
            format!("/v1/orgs/{org}/plan"),
            json!({"plan": "enterprise"}),
        )
        .await;
    assert_problem(res, 409, "plan_managed_by_billing").await;
    // A second checkout while subscribed is refused: the portal changes plans.
    assert_problem(
        checkout(&app, &owner, &org, "enterprise").await,
        409,
        "subscription_exists",
    )
    .await;
    let res = app
        .as_(&owner)
        .post_empty(format!("/v1/orgs/{org}/billing/portal"))
        .await;
    assert_eq!(res.status(), 201);
    let portal: Value = res.json().await;
    assert!(portal["url"].as_str().unwrap().contains("/portal/"));
    let portals = fake.requests_to("/v1/billing_portal/sessions");
    assert_eq!(portals[0].field("customer"), Some(customer.as_str()));
    assert!(portals[0].header("idempotency-key").is_some());
    assert_eq!(
        audit_actions(&app, &owner, &org, "billing.portal_opened")
            .await
            .len(),
        1
    );

    // The operator can still override, audited.
    let res = app
        .admin_put(
            &format!("/v1/admin/orgs/{org}/plan"),
            &json!({"plan": "enterprise"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(billing(&app, &owner, &org).await["plan"], "enterprise");
}

async fn webhook_refuses_bad_signatures_and_bodies_and_stores_nothing(backend: Backend) {
    let fake = FakeStripe::start().await;
    let Some(mut app) = app_with(backend, &fake, &[]).await else {
        return;
    };
    let now = chrono::Utc::now().timestamp();
    let body = event(
        "evt_sig",
        "customer.created",
        json!({"id": "cus_x", "object": "customer"}),
    )
    .to_string();
    let good = sign(stripe::WEBHOOK_SECRET, now, &body);
    let cases: Vec<(&str, String, Option<String>, &str)> = vec![
        ("missing header", body.clone(), None, "invalid_signature"),
        (
            "tampered body",
            body.replace("cus_x", "cus_y"),
            Some(good.clone()),
            "invalid_signature",
        ),
        (
            "wrong secret",
            body.clone(),
            Some(sign("whsec_wrong", now, &body)),
            "invalid_signature",
        ),
        (
            "stale",
            body.clone(),
            Some(sign(stripe::WEBHOOK_SECRET, now - 301, &body)),
            "invalid_signature",
        ),
        (
            "future",
            body.clone(),
            Some(sign(stripe::WEBHOOK_SECRET, now + 301, &body)),
            "invalid_signature",
        ),
        (
            "malformed header",
            body.clone(),
            Some("v1=abc".to_owned()),
            "invalid_signature",
        ),
        (
            "not json",
            "{nope".to_owned(),
            Some(sign(stripe::WEBHOOK_SECRET, now, "{nope")),
            "invalid_payload",
        ),
        (
            "not an event",
            r#"{"id":"evt_x"}"#.to_owned(),
            Some(sign(stripe::WEBHOOK_SECRET, now, r#"{"id":"evt_x"}"#)),
            "invalid_payload",
        ),
    ];
    for (what, body, sig, code) in cases {
        let res = deliver_raw(&app, "/v1/billing/webhook", &body, sig).await;
        assert_eq!(res.status(), 400, "{what}");
        assert_problem(res, 400, code).await;
    }
    assert!(
        app.store.billing_event("evt_sig").await.unwrap().is_none(),
        "nothing stored"
    );
    assert!(
        app.store.billing_event("evt_x").await.unwrap().is_none(),
        "nothing stored"
    );

    // The previous secret still verifies during rotation, on the original product's path.
    let old = sign(stripe::OLD_WEBHOOK_SECRET, now, &body);
    let res = deliver_raw(&app, "/billing/webhook", &body, Some(old)).await;
    assert_eq!(res.status(), 200);
    assert!(app.store.billing_event("evt_sig").await.unwrap().is_some());
    // A type Tenantry does not act on is recorded and ignored.
    processed(&app, "evt_sig").await;
    app.stop().await;
}

async fn events_apply_once_whatever_the_order_or_the_repetition(backend: Backend) {
    let fake = FakeStripe::start().await;
    let Some(app) = app_with(backend, &fake, &[]).await else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let org = app.org_of(&owner, "acme").await;
    let customer = subscribe(&app, &fake, &owner, &org, "sub_1", PRICE_PRO).await;

    // The same delivery five times at once: stored once, one job, acknowledged every time.
    let upgraded =
        json!({"id": "sub_1", "object": "subscription", "customer": customer, "status": "active"});
    fake.set_subscription(
        "sub_1",
        &customer,
        "active",
        PRICE_ENTERPRISE,
        chrono::Utc::now().timestamp() - 5 * 86_400,
        false,
    );
    let upgrade = event(
        "evt_upgrade",
        "customer.subscription.updated",
        upgraded.clone(),
    );
    let results = futures::future::join_all((0..5).map(|_| deliver(&app, &upgrade))).await;
    let mut fresh = 0;
    for res in results {
        assert_eq!(res.status(), 200);
        let ack: Value = res.json().await.unwrap();
        if ack["duplicate"] == false {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 1, "stored once");
    wait_billing(&app, &owner, &org, |b| b["plan"] == "enterprise").await;
    let res = deliver(&app, &upgrade).await;
    assert_eq!(res.json::<Value>().await.unwrap()["duplicate"], true);

    // Stripe cancels at the period's end, then deletes: FREE.
    fake.set_subscription(
        "sub_1",
        &customer,
        "active",
        PRICE_ENTERPRISE,
        chrono::Utc::now().timestamp() - 5 * 86_400,
        true,
    );
    deliver(
        &app,
        &event(
            "evt_cancel_flag",
            "customer.subscription.updated",
            upgraded.clone(),
        ),
    )
    .await;
    wait_billing(&app, &owner, &org, |b| b["cancel_at_period_end"] == true).await;
    assert_eq!(
        billing(&app, &owner, &org).await["plan"],
        "enterprise",
        "kept until the period ends"
    );
    fake.set_subscription(
        "sub_1",
        &customer,
        "canceled",
        PRICE_ENTERPRISE,
        chrono::Utc::now().timestamp() - 5 * 86_400,
        false,
    );
    deliver(
        &app,
        &event(
            "evt_deleted",
            "customer.subscription.deleted",
            upgraded.clone(),
        ),
    )
    .await;
    wait_billing(&app, &owner, &org, |b| b["plan"] == "free").await;

    // A late, older event (created before the deletion) arrives last: nothing goes back.
    let mut late = event(
        "evt_late",
        "customer.subscription.updated",
        upgraded.clone(),
    );
    late["created"] = json!(chrono::Utc::now().timestamp() - 3600);
    deliver(&app, &late).await;
    processed(&app, "evt_late").await;
    let state = billing(&app, &owner, &org).await;
    assert_eq!(state["plan"], "free");
    assert_eq!(state["status"], "canceled");

    // A new subscription replaces the canceled one; a late event of the old one then
    // changes nothing.
    let created = chrono::Utc::now().timestamp();
    fake.set_subscription("sub_2", &customer, "active", PRICE_PRO, created, false);
    deliver(
        &app,
        &event(
            "evt_new",
            "customer.subscription.created",
            json!({"id": "sub_2", "customer": customer}),
        ),
    )
    .await;
    wait_billing(&app, &owner, &org, |b| b["plan"] == "pro").await;
    deliver(
        &app,
        &event(
            "evt_old_again",
            "customer.subscription.deleted",
            json!({"id": "sub_1", "customer": customer}),
        ),
    )
    .await;
    processed(&app, "evt_old_again").await;
    let state = billing(&app, &owner, &org).await;
    assert_eq!(
        (state["plan"].as_str(), state["subscription_id"].as_str()),
        (Some("pro"), Some("sub_2"))
    );

    // Every change is recorded once: free→pro, pro→enterprise, enterprise→free, free→pro.
    let changes: Vec<(String, String)> = audit_actions(&app, &owner, &org, "billing.plan_changed")
        .await
        .iter()
        .map(|e| {
            (
                e["metadata"]["from"].as_str().unwrap().to_owned(),
                e["metadata"]["to"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("free", "pro"),
        ("pro", "enterprise"),
        ("enterprise", "free"),
        ("free", "pro"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    assert_eq!(changes, expected);

    // An event for a customer of no organization is recorded and ignored.
    deliver(
        &app,
        &event(
            "evt_stranger",
            "customer.subscription.updated",
            json!({"id": "sub_9", "customer": "cus_nobody"}),
        ),
    )
    .await;
    processed(&app, "evt_stranger").await;
}

async fn downgrade_keeps_members_and_refuses_invitations(backend: Backend) {
    let fake = FakeStripe::start().await;
    let Some(app) = app_with(backend, &fake, &[]).await else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let org = app.org_of(&owner, "acme").await;
    let customer = subscribe(&app, &fake, &owner, &org, "sub_d", PRICE_PRO).await;
    for i in 0..4 {
        app.member(&org, &format!("m{i}@example.com"), "member")
            .await;
    }
    fake.set_subscription(
        "sub_d",
        &customer,
        "canceled",
        PRICE_PRO,
        chrono::Utc::now().timestamp() - 86_400,
        false,
    );
    deliver(
        &app,
        &event(
            "evt_gone",
            "customer.subscription.deleted",
            json!({"id": "sub_d", "customer": customer}),
        ),
    )
    .await;
    let state = wait_billing(&app, &owner, &org, |b| b["plan"] == "free").await;
    assert_eq!(state["seats"]["used"], 5, "members stay");
    assert_eq!(state["seats"]["allowed"], 3);
    assert_eq!(state["seats"]["over_limit"], true);
    assert_eq!(state["seats"]["invitations_allowed"], false);
    let res = app
        .as_(&owner)
        .post(
            format!("/v1/orgs/{org}/invitations"),
            json!({"email": "late@example.com", "role": "member"}),
        )
        .await;
    assert_problem(res, 403, "plan_limit_reached").await;
    let members: Value = app
        .as_(&owner)
        .get(format!("/v1/orgs/{org}/members"))
        .await
        .json()
        .await;
    assert_eq!(members["data"].as_array().unwrap().len(), 5);
    // Checkout is offered again.
    assert_eq!(state["checkout_plans"], json!(["pro", "enterprise"]));
}

async fn past_due_keeps_the_plan_through_the_grace_period(backend: Backend) {
    let fake = FakeStripe::start().await;
    let Some(app) = app_with(backend, &fake, &[("BILLING_PAST_DUE_GRACE_DAYS", "3")]).await else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let org = app.org_of(&owner, "acme").await;
    let customer = subscribe(&app, &fake, &owner, &org, "sub_p", PRICE_PRO).await;
    fake.set_subscription(
        "sub_p",
        &customer,
        "past_due",
        PRICE_PRO,
        chrono::Utc::now().timestamp() - 86_400,
        false,
    );
    let invoice = json!({"id": "in_1", "object": "invoice", "customer": customer, "subscription": "sub_p",
        "amount_due": 2900, "amount_paid": 0, "currency": "usd", "attempt_count": 1});
    deliver(
        &app,
        &event("evt_failed", "invoice.payment_failed", invoice.clone()),
    )
    .await;
    let state = wait_billing(&app, &owner, &org, |b| b["status"] == "past_due").await;
    assert_eq!(state["plan"], "pro", "kept during the grace period");
    let since =
        chrono::DateTime::parse_from_rfc3339(state["past_due_since"].as_str().unwrap()).unwrap();
    let ends =
        chrono::DateTime::parse_from_rfc3339(state["grace_ends_at"].as_str().unwrap()).unwrap();
    assert_eq!((ends - since).num_days(), 3);
    let failed = audit_actions(&app, &owner, &org, "billing.payment_failed").await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["target_id"], "in_1");
    assert_eq!(failed[0]["metadata"]["amount_due"], 2900);

    // Once the grace period is over, the periodic sync drops the plan to FREE (here with a
    // grace of zero, through the store method the `billing.sync` job calls).
    let org_id: tenantry::ids::OrgId = org.as_str().parse().unwrap();
    let three_days = Duration::from_secs(3 * 86_400);
    assert!(app
        .store
        .billing_grace_expired(three_days)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        app.store
            .billing_grace_expired(Duration::ZERO)
            .await
            .unwrap(),
        vec![org_id]
    );
    let ctx = tenantry::auth::TenantCtx::for_tests(org_id);
    assert!(app
        .store
        .end_billing_grace(&ctx, Duration::ZERO)
        .await
        .unwrap());
    assert_eq!(billing(&app, &owner, &org).await["plan"], "free");
    let ended = audit_actions(&app, &owner, &org, "billing.plan_changed").await;
    assert_eq!(
        ended.last().unwrap()["metadata"]["reason"],
        "past_due_grace_ended"
    );

    // The retry pays: active again, nothing lost.
    fake.set_subscription(
        "sub_p",
        &customer,
        "active",
        PRICE_PRO,
        chrono::Utc::now().timestamp() - 86_400,
        false,
    );
    deliver(&app, &event("evt_paid", "invoice.paid", invoice)).await;
    let state = wait_billing(&app, &owner, &org, |b| b["status"] == "active").await;
    assert_eq!(state["plan"], "pro");
    assert!(state["past_due_since"].is_null());
    assert_eq!(
        audit_actions(&app, &owner, &org, "billing.invoice_paid")
            .await
            .len(),
        1
    );
    let changes: Vec<Value> = audit_actions(&app, &owner, &org, "billing.plan_changed")
        .await
        .iter()
        .map(|e| json!([e["metadata"]["from"], e["metadata"]["to"]]))
        .collect();
    assert_eq!(
        changes,
        vec![
            json!(["free", "pro"]),
            json!(["pro", "free"]),
            json!(["free", "pro"])
        ]
    );
}

async fn completed_days_of_usage_are_reported_once(backend: Backend) {
    let fake = FakeStripe::start().await;
    let Some(mut app) = app_with(backend, &fake, &[("BILLING_SYNC_INTERVAL_SEC", "1")]).await
    else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let org = app.org_of(&owner, "acme").await;
    let other = app.org_of(&owner, "unpaid").await;
    let customer = subscribe(&app, &fake, &owner, &org, "sub_u", PRICE_PRO).await;
    let today = chrono::Utc::now().date_naive();
    let day = |n: u64| today - chrono::Days::new(n);
    let org_id: tenantry::ids::OrgId = org.as_str().parse().unwrap();
    let other_id: tenantry::ids::OrgId = other.as_str().parse().unwrap();
    let batch = vec![
        ((org_id, tenantry::usage::API_CALLS, day(3)), 7),
        ((org_id, tenantry::usage::API_CALLS, day(2)), 5),
        ((org_id, tenantry::usage::API_CALLS, today), 3),
        ((other_id, tenantry::usage::API_CALLS, day(2)), 11),
    ];
    app.store
        .record_metered(&batch, "test-usage")
        .await
        .unwrap();
    // The first report is accepted by Stripe but its answer is lost; the next fails outright.
    fake.fail("/v1/billing/meter_events", 1, true);
    let expected = [
        (format!("tenantry:{org}:api_calls:{}", day(3)), 7),
        (format!("tenantry:{org}:api_calls:{}", day(2)), 5),
    ];
    let mut counted = Default::default();
    for _ in 0..300 {
        counted = fake.meter_events();
        if expected.iter().all(|(id, _)| counted.contains_key(id))
            && fake.requests_to("/v1/billing/meter_events").len() >= 3
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        counted.len(),
        2,
        "only completed days of the paying org: {counted:?}"
    );
    for (id, value) in &expected {
        assert_eq!(counted[id], (customer.clone(), *value), "{id}");
    }
    // Sent again after the lost answer, with the same identifier and idempotency key.
    let sent = fake.requests_to("/v1/billing/meter_events");
    let first = sent[0].field("identifier").unwrap().to_owned();
    assert!(
        sent.iter()
            .filter(|r| r.field("identifier") == Some(first.as_str()))
            .count()
            >= 2
    );
    for r in &sent {
        assert_eq!(r.header("idempotency-key"), r.field("identifier"));
        assert_eq!(r.field("event_name"), Some("api_calls"));
    }
    // Later runs report nothing new.
    let before = sent.len();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        fake.requests_to("/v1/billing/meter_events").len(),
        before,
        "each day reported once"
    );
    // The run whose answer was lost failed and left a dead job, on purpose.
    app.expect_leftover_jobs();
    app.stop().await;
}

async fn an_event_interrupted_by_a_killed_worker_is_applied_once(backend: Backend) {
    let fake = FakeStripe::start().await;
    let Some(db) = tenantry::testing::TestDatabase::create(backend).await else {
        return;
    };
    let mut vars = db.vars();
    fake.configure(&mut vars);
    vars.insert("JOB_LEASE_SEC".into(), "2".into());
    // The HTTP side without a worker.
    let api = crate::helpers::Instance::start(&vars).await;
    let config = tenantry::config::Config::from_vars(&vars).unwrap();
    let store = tenantry::store::Store::new(
        tenantry::startup::connect_and_migrate(&config)
            .await
            .unwrap(),
    );
    let client = reqwest::Client::new();
    let register = client
        .post(format!("{}/v1/auth/register", api.base))
        .json(&json!({"email": "owner@example.com", "password": crate::helpers::PASSWORD, "name": "Ann"}))
        .send()
        .await
        .unwrap();
    assert_eq!(register.status(), 201);
    let token = register.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let org: Value = client
        .post(format!("{}/v1/orgs", api.base))
        .bearer_auth(&token)
        .json(&json!({"name": "acme", "slug": "acme"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let org_id = org["id"].as_str().unwrap().to_owned();
    let res = client
        .post(format!("{}/v1/orgs/{org_id}/billing/checkout", api.base))
        .bearer_auth(&token)
        .json(&json!({"plan": "pro"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let customer = fake.requests_to("/v1/checkout/sessions")[0]
        .field("customer")
        .unwrap()
        .to_owned();
    fake.set_subscription(
        "sub_k",
        &customer,
        "active",
        PRICE_PRO,
        chrono::Utc::now().timestamp(),
        false,
    );
    // The first read of the subscription hangs: the worker is killed while waiting on it.
    fake.delay_subscription_reads(Some(Duration::from_secs(30)));
    let body = event(
        "evt_killed",
        "customer.subscription.created",
        json!({"id": "sub_k", "customer": customer}),
    )
    .to_string();
    let sig = sign(
        stripe::WEBHOOK_SECRET,
        chrono::Utc::now().timestamp(),
        &body,
    );
    let res = client
        .post(format!("{}/v1/billing/webhook", api.base))
        .header("stripe-signature", sig)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .arg("worker")
        .env_clear()
        .envs(&vars)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..300 {
        if !fake.requests_to("/v1/subscriptions/sub_k").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        fake.requests_to("/v1/subscriptions/sub_k").len(),
        1,
        "the worker started the event"
    );
    child.kill().unwrap(); // SIGKILL mid-event.
    child.wait().unwrap();
    fake.delay_subscription_reads(None);
    // Another worker reclaims it after the lease and applies it.
    let billing_setup = tenantry::billing::Billing::from_config(&config.billing).unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = tenantry::jobs::Worker::new(
        store.clone(),
        tenantry::jobs::Registry::builtin(),
        tenantry::jobs::JobServices {
            mailer: None,
            billing: billing_setup,
        },
        config.worker.clone(),
        std::sync::Arc::new(tokio::sync::Notify::new()),
    )
    .spawn(stop.clone(), Duration::from_secs(10));
    let mut state = Value::Null;
    for _ in 0..300 {
        state = client
            .get(format!("{}/v1/orgs/{org_id}/billing", api.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if state["plan"] == "pro" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state["plan"], "pro", "{state}");
    assert!(
        fake.requests_to("/v1/subscriptions/sub_k").len() >= 2,
        "read again after the reclaim"
    );
    let audit: Value = client
        .get(format!(
            "{}/v1/orgs/{org_id}/audit-events?action=billing.plan_changed",
            api.base
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        audit["data"].as_array().unwrap().len(),
        1,
        "applied exactly once"
    );
    let stored = store.billing_event("evt_killed").await.unwrap().unwrap();
    assert!(stored.processed_at.is_some());
    stop.cancel();
    worker.join().await;
    api.stop().await;
    store.close().await;
}

async fn without_stripe_plans_change_by_hand(backend: Backend) {
    let Some(app) = TestApp::on(backend).await else {
        return;
    };
    let owner = app.user("owner@example.com").await;
    let org = app.org_of(&owner, "acme").await;
    let state = billing(&app, &owner, &org).await;
    assert_eq!(state["provider"], "manual");
    assert_eq!(state["checkout_plans"], json!([]));
    assert_problem(
        checkout(&app, &owner, &org, "pro").await,
        409,
        "billing_not_configured",
    )
    .await;
    let res = app
        .as_(&owner)
        .post_empty(format!("/v1/orgs/{org}/billing/portal"))
        .await;
    assert_problem(res, 409, "billing_not_configured").await;
    let body = event("evt_1", "invoice.paid", json!({"id": "in_1"})).to_string();
    let res = deliver_raw(
        &app,
        "/v1/billing/webhook",
        &body,
        Some(sign(
            stripe::WEBHOOK_SECRET,
            chrono::Utc::now().timestamp(),
            &body,
        )),
    )
    .await;
    assert_problem(res, 409, "billing_not_configured").await;
    let res = app
        .as_(&owner)
        .put(format!("/v1/orgs/{org}/plan"), json!({"plan": "pro"}))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(billing(&app, &owner, &org).await["plan"], "pro");
}
