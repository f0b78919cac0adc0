//! The billing jobs: `stripe.event` applies one stored webhook event; the periodic
//! `billing.sync` reports metered usage and ends expired grace periods.

use std::time::Duration;

use chrono::{NaiveDate, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::stripe::id_of;
use super::{Billing, MeterEvent, ProviderError};
use crate::auth::TenantCtx;
use crate::ids::OrgId;
use crate::jobs::{JobContext, JobHandler};
use crate::store::audit::AuditEntry;
use crate::store::billing::{Applied, SubscriptionChange};
use crate::store::jobs::NewJob;
use crate::store::{now, Store};
use crate::usage::API_CALLS;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn store_err(e: &crate::store::StoreError) -> String {
    crate::telemetry::error_chain(e)
}

/// `stripe.event`: applies one verified webhook event, exactly once (the event is marked
/// processed in the transaction that applies it). Internal.
pub struct StripeEventJob;

/// Input of `stripe.event`.
#[derive(Deserialize)]
pub struct StripeEventPayload {
    /// The stored event's id.
    pub event_id: String,
}

impl StripeEventJob {
    /// The job applying `event_id`: keyed by the event so it is enqueued once, retried with
    /// backoff while Stripe or the database is unreachable.
    pub fn for_event(event_id: &str) -> NewJob {
        let mut job = Self::job(serde_json::json!({ "event_id": event_id }));
        job.max_attempts = 12;
        job.idempotency_key = Some(format!("stripe.event:{event_id}"));
        job
    }
}

#[async_trait::async_trait]
impl JobHandler for StripeEventJob {
    const KIND: &'static str = "stripe.event";
    const PUBLIC: bool = false;
    const TIMEOUT: Duration = Duration::from_secs(60);
    type Payload = StripeEventPayload;

    async fn run(&self, ctx: &JobContext, payload: StripeEventPayload) -> Result<Value, String> {
        let billing = ctx
            .billing
            .as_deref()
            .ok_or("billing is not configured (no STRIPE_* variables)")?;
        let outcome = apply_event(&ctx.store, billing, &payload.event_id).await?;
        Ok(serde_json::json!({ "event_id": payload.event_id, "outcome": outcome }))
    }
}

/// The organization an object names in `client_reference_id` or `metadata.org_id`.
fn org_named(object: &Value) -> Option<OrgId> {
    object["client_reference_id"]
        .as_str()
        .or(object["metadata"]["org_id"].as_str())
        .and_then(|id| id.parse().ok())
}

/// The subscription an invoice belongs to (older API versions name it at the top, newer
/// ones under `parent.subscription_details`).
fn invoice_subscription(invoice: &Value) -> Option<&str> {
    id_of(&invoice["subscription"])
        .or_else(|| id_of(&invoice["parent"]["subscription_details"]["subscription"]))
}

/// Records that event `event_id` ended with `outcome` without applying anything, and
/// returns the outcome.
async fn finish(
    store: &Store,
    event_id: &str,
    org: Option<OrgId>,
    outcome: &str,
) -> Result<String, String> {
    store
        .finish_billing_event(event_id, org, outcome)
        .await
        .map_err(|e| store_err(&e))?;
    Ok(outcome.to_owned())
}

/// Applies stored event `event_id`; returns its outcome.
pub async fn apply_event(
    store: &Store,
    billing: &Billing,
    event_id: &str,
) -> Result<String, String> {
    let event = store
        .billing_event(event_id)
        .await
        .map_err(|e| store_err(&e))?
        .ok_or_else(|| format!("no stored event {event_id}"))?;
    if event.processed_at.is_some() {
        return Ok(Applied::AlreadyProcessed.as_str().to_owned());
    }
    let body: Value = serde_json::from_str(&event.payload).map_err(err)?;
    let object = &body["data"]["object"];
    let kind = event.event_type.as_str();
    let (subscription_id, customer, named_org, extra) = match kind {
        "checkout.session.completed" => (
            id_of(&object["subscription"]),
            id_of(&object["customer"]),
            org_named(object),
            None,
        ),
        "customer.subscription.created"
        | "customer.subscription.updated"
        | "customer.subscription.deleted"
        | "customer.subscription.paused"
        | "customer.subscription.resumed" => (
            object["id"].as_str(),
            id_of(&object["customer"]),
            None,
            None,
        ),
        "invoice.paid" | "invoice.payment_succeeded" | "invoice.payment_failed" => {
            let action = if kind == "invoice.payment_failed" {
                "billing.payment_failed"
            } else {
                "billing.invoice_paid"
            };
            let entry = AuditEntry::new(action, "invoice", object["id"].as_str().unwrap_or(""))
                .with_metadata(serde_json::json!({
                    "amount_due": object["amount_due"], "amount_paid": object["amount_paid"],
                    "currency": object["currency"], "attempt_count": object["attempt_count"],
                    "event_id": event_id,
                }));
            (
                invoice_subscription(object),
                id_of(&object["customer"]),
                None,
                Some(entry),
            )
        }
        _ => return finish(store, event_id, None, "ignored").await,
    };
    let Some(customer) = customer else {
        return finish(store, event_id, None, "no_customer").await;
    };
    let org = match store
        .org_of_billing_customer(customer)
        .await
        .map_err(|e| store_err(&e))?
    {
        Some(org) => Some(org),
        // A completed checkout names its organization; link the customer if the checkout
        // request could not (the organization must exist and have no other customer).
        None => match named_org {
            Some(org) => match store
                .link_billing_customer(&TenantCtx::billing(org), customer)
                .await
            {
                Ok(_) => Some(org),
                Err(crate::store::StoreError::NotFound) => None,
                Err(e) => return Err(store_err(&e)),
            },
            None => None,
        },
    };
    let Some(org) = org else {
        return finish(store, event_id, None, "unknown_customer").await;
    };
    let Some(subscription_id) = subscription_id else {
        // An invoice outside a subscription: recorded, nothing to apply.
        return finish(store, event_id, Some(org), "no_subscription").await;
    };
    let provider = billing.provider().ok_or(
        "STRIPE_SECRET_KEY is not set: events are applied from the subscription Stripe reports",
    )?;
    // Re-read: the event may be late, repeated or out of order; the subscription as Stripe
    // has it now is the truth, and a read older than the one stored is never applied.
    let read_at = now();
    let subscription = provider
        .get_subscription(subscription_id)
        .await
        .map_err(err)?;
    let paid_plan = match subscription.price_id.as_deref() {
        Some(price) => billing.plan_of_price(price),
        None => None,
    };
    if paid_plan.is_none() && super::model::is_billable(&subscription.status) {
        return Err(format!(
            "subscription {} is for price {:?}, which is neither STRIPE_PRICE_PRO nor STRIPE_PRICE_ENTERPRISE",
            subscription.id, subscription.price_id
        ));
    }
    let applied = store
        .apply_subscription(
            &TenantCtx::billing(org),
            SubscriptionChange {
                event_id: Some(event_id),
                subscription: &subscription,
                paid_plan: paid_plan.unwrap_or(crate::rbac::Plan::Free),
                read_at,
                grace: billing.past_due_grace,
                extra,
            },
        )
        .await
        .map_err(|e| store_err(&e))?;
    Ok(applied.as_str().to_owned())
}

/// `billing.sync`: ends expired `past_due` grace periods, reports each paying
/// organization's metered API calls of completed days, and deletes webhook events
/// processed more than 30 days ago. Periodic; internal. A failure for
/// one organization never stops the others; the run fails (and is retried) if any failed.
pub struct BillingSyncJob;

/// A day counts as complete this long after midnight UTC, once the last metering flush
/// and rollup of it have run.
const DAY_SETTLE: chrono::Duration = chrono::Duration::minutes(15);
/// Processed webhook events are kept this long (Stripe retries a delivery for 3 days).
const EVENT_RETENTION: chrono::Duration = chrono::Duration::days(30);
/// How far back usage is reported (Stripe accepts meter events up to 35 days old).
const REPORT_DAYS: i64 = 33;

#[async_trait::async_trait]
impl JobHandler for BillingSyncJob {
    const KIND: &'static str = "billing.sync";
    const PUBLIC: bool = false;
    const TIMEOUT: Duration = Duration::from_secs(600);
    type Payload = Value;

    async fn run(&self, ctx: &JobContext, _payload: Value) -> Result<Value, String> {
        let Some(billing) = ctx.billing.as_deref() else {
            return Ok(serde_json::json!({ "skipped": "billing is not configured" }));
        };
        let mut failures = Vec::new();
        let mut downgraded = 0;
        for org in ctx
            .store
            .billing_grace_expired(billing.past_due_grace)
            .await
            .map_err(|e| store_err(&e))?
        {
            match ctx
                .store
                .end_billing_grace(&TenantCtx::billing(org), billing.past_due_grace)
                .await
            {
                Ok(true) => downgraded += 1,
                Ok(false) => {}
                Err(e) => failures.push(format!("{org}: {}", store_err(&e))),
            }
        }
        let reported = report_usage(&ctx.store, billing, &mut failures).await?;
        let pruned = ctx
            .store
            .prune_billing_events(now() - EVENT_RETENTION)
            .await
            .map_err(|e| store_err(&e))?;
        let summary = serde_json::json!({
            "grace_ended": downgraded, "days_reported": reported, "events_pruned": pruned,
            "failures": failures,
        });
        if failures.is_empty() {
            Ok(summary)
        } else {
            Err(summary.to_string())
        }
    }
}

/// The last day whose usage is complete at `at`.
fn last_complete_day(at: chrono::DateTime<Utc>) -> NaiveDate {
    (at - DAY_SETTLE).date_naive() - chrono::Days::new(1)
}

/// Reports every completed, unreported day of metered API calls of every paying
/// organization; returns how many days were reported. Each day is sent with an identifier
/// unique to the organization, meter and day (and the same `Idempotency-Key`), and recorded
/// once Stripe accepted it: a retry after a crash resends the same identifier, which Stripe
/// counts once.
pub async fn report_usage(
    store: &Store,
    billing: &Billing,
    failures: &mut Vec<String>,
) -> Result<u64, String> {
    let Some(provider) = billing.provider() else {
        return Ok(0);
    };
    let to = last_complete_day(now());
    let earliest = to - chrono::Days::new(u64::try_from(REPORT_DAYS).unwrap_or(33));
    let mut reported = 0;
    for account in store.billable_accounts().await.map_err(|e| store_err(&e))? {
        let ctx = TenantCtx::billing(account.org_id);
        let from = account
            .subscription_created
            .map_or(earliest, |at| at.date_naive().max(earliest));
        if from > to {
            continue;
        }
        let days = match store
            .unreported_usage(&ctx, API_CALLS, &from.to_string(), &to.to_string())
            .await
        {
            Ok(days) => days,
            Err(e) => {
                failures.push(format!("{}: {}", account.org_id, store_err(&e)));
                continue;
            }
        };
        for (day, quantity) in days.into_iter().filter(|(_, q)| *q > 0) {
            let identifier = format!("tenantry:{}:{API_CALLS}:{day}", account.org_id);
            let Ok(date) = day.parse::<NaiveDate>() else {
                failures.push(format!(
                    "{}: stored day `{day}` is not a date",
                    account.org_id
                ));
                continue;
            };
            // The last second of the day: inside the day and inside its billing period.
            let timestamp = date
                .and_hms_opt(23, 59, 59)
                .map(|t| t.and_utc())
                .unwrap_or_else(now);
            let sent = provider
                .report_usage(MeterEvent {
                    event_name: &billing.stripe.meter_event_name,
                    customer_id: &account.customer_id,
                    value: quantity,
                    identifier: &identifier,
                    timestamp,
                })
                .await;
            match sent {
                Ok(()) => {}
                // Stripe refused this day (a deleted customer, a bad value): the other days
                // still go; the failure is reported and the day retried next run.
                Err(e @ (ProviderError::Rejected { .. } | ProviderError::Unexpected(_))) => {
                    failures.push(format!("{} {day}: {e}", account.org_id));
                    continue;
                }
                // Stripe unreachable: the next run resumes.
                Err(e @ ProviderError::Unavailable(_)) => {
                    failures.push(format!("{}: {e}", account.org_id));
                    break;
                }
            }
            if let Err(e) = store
                .record_usage_report(&ctx, API_CALLS, &day, quantity, &identifier)
                .await
            {
                failures.push(format!("{}: {}", account.org_id, store_err(&e)));
                break;
            }
            reported += 1;
        }
    }
    Ok(reported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_is_reported_once_it_has_settled() {
        let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let day = |s: &str| s.parse::<NaiveDate>().unwrap();
        assert_eq!(
            last_complete_day(at("2026-12-02T00:10:00Z")),
            day("2026-11-30")
        );
        assert_eq!(
            last_complete_day(at("2026-12-02T00:20:00Z")),
            day("2026-12-01")
        );
    }
}
