//! Billing endpoints: the organization's billing state, Checkout and Customer Portal
//! sessions, and the Stripe webhook.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{OrgMember, TenantCtx};
use crate::billing::jobs::StripeEventJob;
use crate::billing::{signature, Billing, CheckoutRequest, HostedSession, ProviderError};
use crate::domain::DomainError;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::AppJson;
use crate::ids::OrgId;
use crate::rbac::{Permission, Plan};
use crate::state::AppState;
use crate::store::audit::AuditEntry;
use crate::store::billing::NewEvent;
use crate::store::now;
use crate::usage::API_CALLS;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_billing))
        .routes(routes!(checkout))
        .routes(routes!(portal))
        .routes(routes!(webhook))
}

/// The webhook also at `/billing/webhook`, the path the original product documents for
/// `stripe listen --forward-to`.
pub(crate) fn legacy_webhook_router() -> axum::Router<AppState> {
    axum::Router::new().route("/billing/webhook", axum::routing::post(webhook))
}

/// Seats: members against the plan's limit.
#[derive(Serialize, ToSchema)]
pub(crate) struct SeatsOut {
    /// Members now.
    pub used: i64,
    /// Invitations still pending (they take a seat when accepted).
    pub pending_invitations: i64,
    /// Members the plan allows (absent: unlimited).
    pub allowed: Option<i64>,
    /// More members than the plan allows (after a downgrade): existing members stay, new
    /// invitations are refused with 403 `plan_limit_reached`.
    pub over_limit: bool,
    /// Whether a new invitation would be accepted.
    pub invitations_allowed: bool,
}

/// Metered usage this month against the plan's quota.
#[derive(Serialize, ToSchema)]
pub(crate) struct QuotaOut {
    /// Meter: `api_calls`.
    pub meter: &'static str,
    /// Used this calendar month (UTC).
    pub used: i64,
    /// The plan's monthly allowance (absent: unlimited).
    pub quota: Option<u64>,
    /// First day of the month.
    pub period_start: String,
    /// When the allowance resets.
    pub resets_at: DateTime<Utc>,
}

/// An organization's plan and subscription.
#[derive(Serialize, ToSchema)]
pub(crate) struct BillingOut {
    /// `stripe` when a billing provider is configured, otherwise `manual` (plans change
    /// with `PUT /v1/orgs/{org_id}/plan` outside production, or by the operator).
    pub provider: &'static str,
    /// The plan in force: `free`, `pro` or `enterprise`.
    #[schema(value_type = String)]
    pub plan: Plan,
    /// The subscription's status as Stripe reports it (`active`, `trialing`, `past_due`,
    /// `canceled`, `unpaid`, `incomplete`, `incomplete_expired`, `paused`), or `none`.
    pub status: String,
    /// Stripe subscription id.
    pub subscription_id: Option<String>,
    /// Stripe customer id.
    pub customer_id: Option<String>,
    /// Price of the subscription.
    pub price_id: Option<String>,
    /// Start of the current billing period.
    pub current_period_start: Option<DateTime<Utc>>,
    /// End of the current billing period.
    pub current_period_end: Option<DateTime<Utc>>,
    /// The subscription ends (and the plan drops to FREE) at the period's end.
    pub cancel_at_period_end: bool,
    /// First failed payment of a `past_due` subscription.
    pub past_due_since: Option<DateTime<Utc>>,
    /// When a `past_due` subscription loses its plan unless paid.
    pub grace_ends_at: Option<DateTime<Utc>>,
    /// Members against the plan's limit.
    pub seats: SeatsOut,
    /// This month's metered API calls against the quota.
    pub usage: QuotaOut,
    /// Plans that can be bought through checkout now.
    #[schema(value_type = Vec<String>)]
    pub checkout_plans: Vec<Plan>,
    /// Whether the customer portal can be opened (the organization has a customer).
    pub portal_available: bool,
}

/// The billing state of `ctx`'s organization (shared with the console).
pub(crate) async fn billing_view(
    state: &AppState,
    ctx: &TenantCtx,
) -> Result<BillingOut, ApiError> {
    let month = crate::usage::month_of(now().date_naive());
    let overview = state
        .store
        .billing_overview(ctx, API_CALLS, &month.to_string())
        .await?;
    let (plan, used, seats, account) = (
        overview.plan,
        overview.used,
        overview.seats,
        overview.account,
    );
    let billing = state.billing.as_deref();
    let allowed = plan.member_limit();
    let status = account
        .as_ref()
        .and_then(|a| a.subscription_status.clone())
        .unwrap_or_else(|| "none".to_owned());
    let subscribed = crate::billing::model::is_billable(&status);
    let checkout_plans = match billing {
        Some(b) if b.provider().is_some() && !subscribed => [Plan::Pro, Plan::Enterprise]
            .into_iter()
            .filter(|p| b.price_of_plan(*p).is_some())
            .collect(),
        _ => Vec::new(),
    };
    let past_due_since = account.as_ref().and_then(|a| a.past_due_since);
    Ok(BillingOut {
        provider: if billing.is_some() {
            "stripe"
        } else {
            "manual"
        },
        plan,
        status,
        subscription_id: account.as_ref().and_then(|a| a.subscription_id.clone()),
        customer_id: account.as_ref().map(|a| a.customer_id.clone()),
        price_id: account.as_ref().and_then(|a| a.price_id.clone()),
        current_period_start: account.as_ref().and_then(|a| a.current_period_start),
        current_period_end: account.as_ref().and_then(|a| a.current_period_end),
        cancel_at_period_end: account.as_ref().is_some_and(|a| a.cancel_at_period_end),
        past_due_since,
        grace_ends_at: past_due_since.map(|since| {
            crate::billing::model::grace_ends_at(since, state.config.billing.past_due_grace)
        }),
        seats: SeatsOut {
            used: seats.members,
            pending_invitations: seats.pending_invitations,
            allowed,
            over_limit: allowed.is_some_and(|a| seats.members > a),
            invitations_allowed: allowed
                .is_none_or(|a| seats.members + seats.pending_invitations < a),
        },
        usage: QuotaOut {
            meter: API_CALLS,
            used,
            quota: state.config.limits.api_calls_quota(plan),
            period_start: month.to_string(),
            resets_at: crate::usage::next_month_start(now()),
        },
        checkout_plans,
        portal_available: billing.is_some_and(|b| b.provider().is_some()) && account.is_some(),
    })
}

/// The organization's plan, subscription, seats and usage against the quota
/// (`billing:read`).
#[utoipa::path(get, path = "/v1/orgs/{org_id}/billing", tag = "billing",
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id")),
    responses(
        (status = 200, description = "Billing state", body = BillingOut),
        (status = 403, description = "Missing permission", body = Problem),
        (status = 404, description = "No such organization", body = Problem)))]
async fn get_billing(
    State(state): State<AppState>,
    member: OrgMember,
) -> Result<Json<BillingOut>, ApiError> {
    member.require(Permission::BillingRead)?;
    Ok(Json(billing_view(&state, &member.ctx).await?))
}

/// A plan to buy.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckoutIn {
    /// `pro` or `enterprise` (any case).
    #[schema(pattern = "^(pro|enterprise|PRO|ENTERPRISE)$")]
    pub plan: String,
}

/// A hosted Stripe page to send the customer to.
#[derive(Serialize, ToSchema)]
pub(crate) struct SessionOut {
    /// Stripe's session id.
    pub id: String,
    /// Where to redirect the customer.
    pub url: String,
}

impl From<HostedSession> for SessionOut {
    fn from(s: HostedSession) -> Self {
        Self {
            id: s.id,
            url: s.url,
        }
    }
}

/// A provider failure as answered: 503 while Stripe is unreachable, 502 when it refused.
fn provider_error(err: ProviderError) -> ApiError {
    tracing::warn!(error = %err, "billing provider call failed");
    match err {
        ProviderError::Unavailable(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "billing_provider_unavailable",
            "Stripe cannot be reached right now; try again shortly.",
        ),
        // Stripe refusing our credentials is the operator's to fix; its message (which
        // names part of the key) stays in the log.
        ProviderError::Rejected { status: 401 | 403, .. } => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "billing_provider_error",
            "Stripe refused this deployment's credentials; the operator must check STRIPE_SECRET_KEY.",
        ),
        ProviderError::Rejected { message, .. } => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "billing_provider_error",
            format!("Stripe refused the request: {message}"),
        ),
        ProviderError::Unexpected(_) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "billing_provider_error",
            "Stripe answered something unexpected.",
        ),
    }
}

/// Refuses a session whose page is not Stripe's (see [`Billing::is_hosted_page`]).
fn hosted(billing: &Billing, session: &HostedSession) -> Result<(), ApiError> {
    if billing.is_hosted_page(&session.url) {
        return Ok(());
    }
    tracing::warn!(url = %session.url, "the billing provider returned a page outside stripe.com; not followed");
    Err(provider_error(ProviderError::Unexpected(
        "a hosted page outside stripe.com".into(),
    )))
}

fn configured(
    state: &AppState,
) -> Result<(&Billing, &dyn crate::billing::BillingProvider), ApiError> {
    let billing = state
        .billing
        .as_deref()
        .ok_or(DomainError::BillingNotConfigured(
            "set STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET and the plan prices",
        ))?;
    let provider = billing.provider().ok_or(DomainError::BillingNotConfigured(
        "STRIPE_SECRET_KEY is not set",
    ))?;
    Ok((billing, provider))
}

/// Starts a Checkout for `plan` (shared with the console).
pub(crate) async fn start_checkout(
    state: &AppState,
    ctx: &TenantCtx,
    plan: Plan,
) -> Result<HostedSession, ApiError> {
    crate::services::demo::refuse(&state.config)?;
    let (billing, provider) = configured(state)?;
    if plan == Plan::Free {
        return Err(ApiError::validation(
            "plan",
            "FREE needs no checkout: cancel the subscription in the customer portal",
        ));
    }
    let price = billing.price_of_plan(plan).ok_or_else(|| {
        ApiError::validation(
            "plan",
            format!("the {plan} plan is not sold: no Stripe price is configured for it"),
        )
    })?;
    let org = ctx.org_id();
    let account = match state.store.billing_account(ctx).await? {
        Some(account) => {
            if account
                .subscription_status
                .as_deref()
                .is_some_and(crate::billing::model::is_billable)
            {
                return Err(DomainError::SubscriptionExists.into());
            }
            // A subscription paid moments ago may not be applied yet: ask Stripe, so a
            // second click never starts a second subscription.
            let live = provider
                .customer_subscriptions(&account.customer_id)
                .await
                .map_err(provider_error)?;
            if live
                .iter()
                .any(|s| crate::billing::model::is_billable(&s.status))
            {
                return Err(DomainError::SubscriptionExists.into());
            }
            account
        }
        None => {
            // Created once per organization: the same key returns the same customer, and
            // the account keeps the first one linked.
            let name = state.store.get_org(ctx).await?.name;
            let customer = provider
                .create_customer(org, &name, &format!("tenantry-customer-{org}"))
                .await
                .map_err(provider_error)?;
            state.store.link_billing_customer(ctx, &customer).await?
        }
    };
    let session = provider
        .create_checkout_session(CheckoutRequest {
            org_id: org,
            customer_id: &account.customer_id,
            price_id: price,
            success_url: &Billing::url_for(&billing.stripe.success_url, org),
            cancel_url: &Billing::url_for(&billing.stripe.cancel_url, org),
            idempotency_key: &format!("tenantry-checkout-{org}-{}", uuid::Uuid::new_v4()),
        })
        .await
        .map_err(provider_error)?;
    hosted(billing, &session)?;
    state
        .store
        .audit_action(
            ctx,
            AuditEntry::new("billing.checkout_started", "organization", org).with_metadata(
                serde_json::json!({ "plan": plan, "price_id": price, "session_id": session.id }),
            ),
        )
        .await?;
    Ok(session)
}

/// Opens a Customer Portal session (shared with the console).
pub(crate) async fn open_portal(
    state: &AppState,
    ctx: &TenantCtx,
) -> Result<HostedSession, ApiError> {
    crate::services::demo::refuse(&state.config)?;
    let (billing, provider) = configured(state)?;
    let account = state
        .store
        .billing_account(ctx)
        .await?
        .ok_or(DomainError::NoBillingCustomer)?;
    let org = ctx.org_id();
    let session = provider
        .create_portal_session(
            &account.customer_id,
            &Billing::url_for(&billing.stripe.portal_return_url, org),
            &format!("tenantry-portal-{org}-{}", uuid::Uuid::new_v4()),
        )
        .await
        .map_err(provider_error)?;
    hosted(billing, &session)?;
    state
        .store
        .audit_action(
            ctx,
            AuditEntry::new("billing.portal_opened", "organization", org)
                .with_metadata(serde_json::json!({ "session_id": session.id })),
        )
        .await?;
    Ok(session)
}

/// Creates a Stripe Checkout session for a plan (`billing:manage`): redirect the customer
/// to `url`. The organization's Stripe customer is created on first use; the plan changes
/// when Stripe reports the paid subscription (webhook).
#[utoipa::path(post, path = "/v1/orgs/{org_id}/billing/checkout", tag = "billing", request_body = CheckoutIn,
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id")),
    responses(
        (status = 201, description = "Checkout session", body = SessionOut),
        (status = 403, description = "Missing permission", body = Problem),
        (status = 409, description = "`billing_not_configured`, or `subscription_exists` (use the portal)", body = Problem),
        (status = 422, description = "Unknown plan, FREE, or a plan without a price", body = Problem),
        (status = 502, description = "`billing_provider_error`: Stripe refused the request", body = Problem),
        (status = 503, description = "`billing_provider_unavailable`", body = Problem)))]
async fn checkout(
    State(state): State<AppState>,
    member: OrgMember,
    AppJson(body): AppJson<CheckoutIn>,
) -> Result<(StatusCode, Json<SessionOut>), ApiError> {
    member.require(Permission::BillingManage)?;
    let plan = Plan::from_input(&body.plan).map_err(|m| ApiError::validation("plan", m))?;
    let session = start_checkout(&state, &member.ctx, plan).await?;
    Ok((StatusCode::CREATED, Json(session.into())))
}

/// Creates a Stripe Customer Portal session (`billing:manage`): redirect the customer to
/// `url` to change plan, payment method or cancel.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/billing/portal", tag = "billing",
    security(("bearer" = []), ("session" = []), ("api_key" = [])),
    params(("org_id" = OrgId, Path, description = "Organization id")),
    responses(
        (status = 201, description = "Portal session", body = SessionOut),
        (status = 403, description = "Missing permission", body = Problem),
        (status = 409, description = "`billing_not_configured`, or `no_billing_customer` (check out first)", body = Problem),
        (status = 502, description = "`billing_provider_error`", body = Problem),
        (status = 503, description = "`billing_provider_unavailable`", body = Problem)))]
async fn portal(
    State(state): State<AppState>,
    member: OrgMember,
) -> Result<(StatusCode, Json<SessionOut>), ApiError> {
    member.require(Permission::BillingManage)?;
    let session = open_portal(&state, &member.ctx).await?;
    Ok((StatusCode::CREATED, Json(session.into())))
}

/// Acknowledgement of a webhook event.
#[derive(Serialize, ToSchema)]
pub(crate) struct WebhookOut {
    /// Always true.
    pub received: bool,
    /// The event id.
    pub event_id: String,
    /// The event was received before (nothing is done again).
    pub duplicate: bool,
}

fn bad_signature(err: signature::SignatureError) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_signature",
        err.to_string(),
    )
}

fn bad_payload(detail: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_payload",
        format!("The body is not a Stripe event: {detail}."),
    )
}

/// Receives Stripe events (unauthenticated; verified by the `Stripe-Signature` header over
/// the raw body). Each event is stored once by its id and applied by a job, enqueued in the
/// same transaction; a repeated delivery is acknowledged and ignored. Also at
/// `/billing/webhook`.
#[utoipa::path(post, path = "/v1/billing/webhook", tag = "billing",
    request_body(content = Object, description = "A Stripe event, exactly as Stripe sent it", content_type = "application/json"),
    params(("Stripe-Signature" = String, Header, description = "`t=<unix time>,v1=<hex HMAC-SHA256>`")),
    responses(
        (status = 200, description = "Stored (or stored before)", body = WebhookOut),
        (status = 400, description = "`invalid_signature` (missing, malformed, stale, no match) or `invalid_payload`; nothing stored", body = Problem),
        (status = 409, description = "`billing_not_configured`: no STRIPE_WEBHOOK_SECRET", body = Problem),
        (status = 503, description = "The database cannot store it now; Stripe retries", body = Problem)))]
async fn webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WebhookOut>, ApiError> {
    let secrets = state
        .billing
        .as_deref()
        .map(|b| b.stripe.webhook_secrets.as_slice())
        .filter(|s| !s.is_empty())
        .ok_or(DomainError::BillingNotConfigured(
            "STRIPE_WEBHOOK_SECRET is not set",
        ))?;
    let tolerance = state
        .billing
        .as_deref()
        .map_or(std::time::Duration::from_secs(300), |b| {
            b.stripe.webhook_tolerance
        });
    let header = headers
        .get("stripe-signature")
        .map(|v| v.to_str().unwrap_or(""));
    signature::verify(header, &body, secrets, tolerance, now().timestamp())
        .map_err(bad_signature)?;
    let payload = std::str::from_utf8(&body).map_err(|_| bad_payload("not UTF-8"))?;
    let event: serde_json::Value =
        serde_json::from_str(payload).map_err(|_| bad_payload("not JSON"))?;
    let id = event["id"]
        .as_str()
        .filter(|id| !id.is_empty() && id.len() <= 255)
        .ok_or_else(|| bad_payload("no `id`"))?;
    let event_type = event["type"]
        .as_str()
        .filter(|t| !t.is_empty() && t.len() <= 255)
        .ok_or_else(|| bad_payload("no `type`"))?;
    let created = event["created"]
        .as_i64()
        .and_then(|t| DateTime::from_timestamp(t, 0))
        .ok_or_else(|| bad_payload("no `created` time"))?;
    if !event["data"]["object"].is_object() {
        return Err(bad_payload("no `data.object`"));
    }
    let stored = state
        .store
        .record_billing_event(
            &NewEvent {
                id,
                event_type,
                created,
                payload,
            },
            &StripeEventJob::for_event(id),
        )
        .await?;
    if stored {
        state.job_wake.notify_one();
    }
    Ok(Json(WebhookOut {
        received: true,
        event_id: id.to_owned(),
        duplicate: !stored,
    }))
}
