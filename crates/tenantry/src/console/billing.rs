//! The console's billing page: plan, subscription, seats and usage against the quota;
//! upgrade through Stripe Checkout, the Customer Portal, or a manual plan change when no
//! billing provider is configured. The same service code as the API.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::pages::{org_chrome, page, Chrome, OrgView};
use crate::api::billing::{billing_view, open_portal, start_checkout, BillingOut};
use crate::auth::{CurrentUser, OrgMember};
use crate::config::Mode;
use crate::http::error::ApiError;
use crate::ids::OrgId;
use crate::rbac::{Permission, Plan};
use crate::state::AppState;

#[derive(Template)]
#[template(path = "console/billing.html")]
struct BillingPage {
    chrome: Chrome,
    view: OrgView,
    tab: &'static str,
    billing: BillingOut,
    can_manage: bool,
    /// Plans a manual change may pick (no provider, outside production).
    manual_plans: Vec<Plan>,
    notice: Option<&'static str>,
}

/// What Checkout came back with.
#[derive(Deserialize)]
pub(super) struct BillingQuery {
    checkout: Option<String>,
}

/// The billing page (`billing:read`).
pub(super) async fn billing(
    State(state): State<AppState>,
    user: CurrentUser,
    member: OrgMember,
    Query(q): Query<BillingQuery>,
) -> Result<Response, ApiError> {
    let (chrome, view) = org_chrome(&state, &user, &member).await?;
    member.require(Permission::BillingRead)?;
    let billing = billing_view(&state, &member.ctx).await?;
    let can_manage = member.permissions.contains(&Permission::BillingManage);
    let manual_plans = if state.billing.is_none() && state.config.mode != Mode::Production {
        Plan::ALL
            .iter()
            .copied()
            .filter(|p| *p != billing.plan)
            .collect()
    } else {
        Vec::new()
    };
    let active = crate::billing::model::is_billable(&billing.status);
    let notice = match q.checkout.as_deref() {
        Some("success") if active => Some("Payment received: the subscription is active."),
        Some("success") => Some(
            "Payment received. The plan changes as soon as Stripe confirms the subscription, usually within seconds.",
        ),
        Some("cancelled") => Some("Checkout was cancelled; nothing changed."),
        _ => None,
    };
    page(&BillingPage {
        chrome,
        view,
        tab: "billing",
        billing,
        can_manage,
        manual_plans,
        notice,
    })
}

#[derive(Template)]
#[template(path = "console/redirect.html")]
struct RedirectPage {
    chrome: Chrome,
    title: &'static str,
    url: String,
}

/// Sends the browser to a Stripe page. A page that moves on by itself rather than a
/// redirect: the console's CSP (`form-action 'self'`) forbids a form's redirect to
/// another site.
fn to_stripe(state: &AppState, title: &'static str, url: String) -> Result<Response, ApiError> {
    page(&RedirectPage {
        chrome: Chrome::plain(state),
        title,
        url,
    })
}

/// The plan picked on the billing page.
#[derive(Deserialize)]
pub(super) struct PlanForm {
    plan: String,
}

/// Starts a Checkout and goes to it (`billing:manage`).
pub(super) async fn checkout(
    State(state): State<AppState>,
    member: OrgMember,
    Form(form): Form<PlanForm>,
) -> Result<Response, ApiError> {
    member.require(Permission::BillingManage)?;
    let plan = Plan::from_input(&form.plan).map_err(|m| ApiError::validation("plan", m))?;
    let session = start_checkout(&state, &member.ctx, plan).await?;
    to_stripe(&state, "Continue to Stripe Checkout", session.url)
}

/// Opens the Customer Portal (`billing:manage`).
pub(super) async fn portal(
    State(state): State<AppState>,
    member: OrgMember,
) -> Result<Response, ApiError> {
    member.require(Permission::BillingManage)?;
    let session = open_portal(&state, &member.ctx).await?;
    to_stripe(
        &state,
        "Continue to the Stripe customer portal",
        session.url,
    )
}

/// Changes the plan by hand, when no billing provider is configured (`billing:manage`).
pub(super) async fn change_plan(
    State(state): State<AppState>,
    member: OrgMember,
    axum::extract::Path(org): axum::extract::Path<OrgId>,
    Form(form): Form<PlanForm>,
) -> Result<Response, ApiError> {
    member.require(Permission::BillingManage)?;
    let plan = Plan::from_input(&form.plan).map_err(|m| ApiError::validation("plan", m))?;
    crate::services::plans::change_by_member(
        &state.store,
        &state.config,
        state.billing.is_some(),
        &member.ctx,
        plan,
    )
    .await?;
    Ok(Redirect::to(&format!("/app/orgs/{org}/billing")).into_response())
}
