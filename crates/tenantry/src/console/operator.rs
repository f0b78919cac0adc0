//! The operator's console pages (`/app/operator`): sign in with the operator token, search
//! organizations, look at one (plan, billing, members, audit chain) and override its plan.
//! The same store methods as the operator API.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use axum_extra::extract::cookie::{Cookie, SameSite};
use axum_extra::extract::CookieJar;
use serde::Deserialize;

use super::pages::{page, Chrome};
use crate::api::support::OrgSummary;
use crate::auth::{operator_session_value, OperatorSession, OPERATOR_COOKIE, OPERATOR_SESSION};
use crate::features::FlagState;
use crate::http::error::ApiError;
use crate::ids::OrgId;
use crate::rbac::Plan;
use crate::state::AppState;
use crate::store::billing::BillingAccount;
use crate::store::members::Member;
use crate::store::orgs::Organization;

/// Where the operator pages live (and the cookie's path).
const BASE: &str = "/app/operator";

#[derive(Template)]
#[template(path = "console/operator_login.html")]
struct LoginPage {
    chrome: Chrome,
    error: Option<&'static str>,
}

/// The operator sign-in form.
pub(super) async fn login_page(State(state): State<AppState>) -> Result<Response, ApiError> {
    page(&LoginPage {
        chrome: Chrome::plain(&state),
        error: None,
    })
}

/// The sign-in form's field.
#[derive(Deserialize)]
pub(super) struct LoginForm {
    token: String,
}

fn cookie(state: &AppState, value: String, max_age: time::Duration) -> Cookie<'static> {
    Cookie::build((OPERATOR_COOKIE, value))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.config.auth.cookie_secure)
        .path(BASE)
        .max_age(max_age)
        .build()
}

/// Signs the operator in when the token is `INTERNAL_ADMIN_TOKEN` (compared in constant
/// time); the cookie holds an expiry and its MAC, never the token.
pub(super) async fn login(
    State(state): State<AppState>,
    jar: CookieJar,
    Form(form): Form<LoginForm>,
) -> Result<Response, ApiError> {
    if !crate::secrets::digest_eq(
        form.token.trim(),
        state.config.internal_admin_token.expose(),
    ) {
        let html = LoginPage {
            chrome: Chrome::plain(&state),
            error: Some("That is not the operator token (INTERNAL_ADMIN_TOKEN)."),
        };
        let mut response = page(&html)?;
        *response.status_mut() = axum::http::StatusCode::UNAUTHORIZED;
        return Ok(response);
    }
    let ttl = i64::try_from(OPERATOR_SESSION.as_secs()).unwrap_or(28_800);
    let expires = crate::store::now().timestamp() + ttl;
    let value = operator_session_value(&state, expires);
    let jar = jar.add(cookie(&state, value, time::Duration::seconds(ttl)));
    Ok((jar, Redirect::to(BASE)).into_response())
}

/// Signs the operator out.
pub(super) async fn logout(
    State(state): State<AppState>,
    _operator: OperatorSession,
    jar: CookieJar,
) -> Response {
    let jar = jar.add(cookie(&state, String::new(), time::Duration::ZERO));
    (jar, Redirect::to(&format!("{BASE}/login"))).into_response()
}

#[derive(Template)]
#[template(path = "console/operator_orgs.html")]
struct OrgsPage {
    chrome: Chrome,
    csrf: String,
    q: String,
    orgs: Vec<Organization>,
    next: Option<String>,
}

/// Search and page.
#[derive(Deserialize)]
pub(super) struct OrgsQuery {
    q: Option<String>,
    cursor: Option<OrgId>,
}

const PAGE: u32 = 50;

/// Organizations, searched by name, slug or a member's email, 50 per page.
pub(super) async fn orgs(
    State(state): State<AppState>,
    session: OperatorSession,
    Query(q): Query<OrgsQuery>,
) -> Result<Response, ApiError> {
    let query = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    if query.is_some_and(|s| s.chars().count() > 200) {
        return Err(ApiError::validation("q", "at most 200 characters"));
    }
    let orgs = state
        .store
        .list_all_orgs(&session.operator, query, q.cursor, Some(PAGE))
        .await?;
    let next = (orgs.len() == usize::try_from(PAGE).unwrap_or(50)).then(|| {
        let last = orgs.last().map(|o| o.id.to_string()).unwrap_or_default();
        let q: String =
            url::form_urlencoded::byte_serialize(query.unwrap_or("").as_bytes()).collect();
        format!("{BASE}?q={q}&cursor={last}")
    });
    page(&OrgsPage {
        chrome: Chrome::plain(&state),
        csrf: session.csrf,
        q: query.unwrap_or("").to_owned(),
        orgs,
        next,
    })
}

/// The organization named in a path; a malformed id is answered like a missing one.
fn parse_org(raw: &str) -> Result<OrgId, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found())
}

/// Back to the organization's page after a change.
fn back_to(org_id: OrgId) -> Response {
    Redirect::to(&format!("{BASE}/orgs/{org_id}")).into_response()
}

#[derive(Template)]
#[template(path = "console/operator_org.html")]
struct OrgPage {
    chrome: Chrome,
    csrf: String,
    org: Organization,
    account: Option<BillingAccount>,
    summary: OrgSummary,
    features: Vec<FlagState>,
    members: Vec<Member>,
    chain_valid: bool,
    chain_checked: i64,
    chain_unsealed: i64,
    plans: Vec<Plan>,
}

/// One organization as the operator sees it.
pub(super) async fn org(
    State(state): State<AppState>,
    session: OperatorSession,
    Path(org_id): Path<String>,
) -> Result<Response, ApiError> {
    let org_id = parse_org(&org_id)?;
    let ctx = session.on_org(org_id);
    // The summary reads the organization (a 404 for a missing one); not read twice.
    let summary = crate::api::support::summary(&state, &ctx).await?;
    let org = summary.organization.clone();
    let account = state.store.billing_account(&ctx).await?;
    let features = state.store.org_features(&ctx).await?.all();
    let members = state.store.list_members(&ctx).await?;
    let chain = state.store.verify_audit_chain(&ctx).await?;
    page(&OrgPage {
        chrome: Chrome::plain(&state),
        csrf: session.csrf,
        plans: Plan::ALL
            .iter()
            .copied()
            .filter(|p| *p != org.plan)
            .collect(),
        org,
        account,
        summary,
        features,
        members,
        chain_valid: chain.valid,
        chain_checked: chain.checked,
        chain_unsealed: chain.unsealed,
    })
}

/// The plan override's fields.
#[derive(Deserialize)]
pub(super) struct PlanForm {
    plan: String,
    /// `on` when the operator goes below the members in use.
    force: Option<String>,
}

/// Overrides the organization's plan (audited as the operator), as
/// `PUT /v1/admin/orgs/{org_id}/plan` does.
pub(super) async fn set_plan(
    State(state): State<AppState>,
    session: OperatorSession,
    Path(org_id): Path<String>,
    Form(form): Form<PlanForm>,
) -> Result<Response, ApiError> {
    let org_id = parse_org(&org_id)?;
    let plan = Plan::from_input(&form.plan).map_err(|m| ApiError::validation("plan", m))?;
    let ctx = session.on_org(org_id);
    state
        .store
        .set_plan(&ctx, plan, form.force.is_some())
        .await?;
    Ok(back_to(org_id))
}

/// The suspension form's field.
#[derive(Deserialize)]
pub(super) struct SuspendForm {
    reason: Option<String>,
}

/// Suspends the organization, as `POST /v1/admin/orgs/{org_id}/suspend` does.
pub(super) async fn suspend(
    State(state): State<AppState>,
    session: OperatorSession,
    Path(org_id): Path<String>,
    Form(form): Form<SuspendForm>,
) -> Result<Response, ApiError> {
    let org_id = parse_org(&org_id)?;
    let ctx = session.on_org(org_id);
    crate::api::support::set_suspended(&state, &ctx, true, form.reason.as_deref()).await?;
    Ok(back_to(org_id))
}

/// Reactivates the organization, as `POST /v1/admin/orgs/{org_id}/reactivate` does.
pub(super) async fn reactivate(
    State(state): State<AppState>,
    session: OperatorSession,
    Path(org_id): Path<String>,
) -> Result<Response, ApiError> {
    let org_id = parse_org(&org_id)?;
    let ctx = session.on_org(org_id);
    crate::api::support::set_suspended(&state, &ctx, false, None).await?;
    Ok(back_to(org_id))
}

/// The flag form's fields: `on`, `off` or `plan` (clear the override).
#[derive(Deserialize)]
pub(super) struct FlagForm {
    flag: String,
    value: String,
}

/// Overrides a feature flag or gives it back to the plan, as
/// `PUT`/`DELETE /v1/admin/orgs/{org_id}/features/{flag}` do.
pub(super) async fn set_flag(
    State(state): State<AppState>,
    session: OperatorSession,
    Path(org_id): Path<String>,
    Form(form): Form<FlagForm>,
) -> Result<Response, ApiError> {
    let org_id = parse_org(&org_id)?;
    let enabled = match form.value.as_str() {
        "on" => Some(true),
        "off" => Some(false),
        "plan" => None,
        _ => return Err(ApiError::validation("value", "must be on, off or plan")),
    };
    let ctx = session.on_org(org_id);
    crate::api::features::set_override(&state, &ctx, &form.flag, enabled).await?;
    Ok(back_to(org_id))
}
