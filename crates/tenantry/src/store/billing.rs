//! Billing: each organization's customer and subscription as last read from the provider,
//! the provider's webhook events, and the usage reported to it.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::audit::AuditEntry;
use super::jobs::{enqueue_in, NewJob};
use super::members::lock_org_plan;
use super::orgs::Organization;
use super::{now, Store, StoreError};
use crate::auth::TenantCtx;
use crate::billing::model::{effective_plan, is_terminal, Subscription};
use std::sync::LazyLock;

use crate::db::{on_conn, single_statement_tenant_write, Access, Db, Scope, Tx};
use crate::ids::OrgId;
use crate::rbac::Plan;

/// An organization's customer and subscription at the provider.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct BillingAccount {
    /// Organization.
    pub org_id: OrgId,
    /// Customer at the provider.
    pub customer_id: String,
    /// Current subscription.
    pub subscription_id: Option<String>,
    /// Its status, as the provider says.
    pub subscription_status: Option<String>,
    /// When it was created.
    pub subscription_created: Option<DateTime<Utc>>,
    /// Its price.
    pub price_id: Option<String>,
    /// Current period.
    pub current_period_start: Option<DateTime<Utc>>,
    /// End of the current period.
    pub current_period_end: Option<DateTime<Utc>>,
    /// Ends at the end of the period.
    pub cancel_at_period_end: bool,
    /// First failed payment of the current `past_due` spell.
    pub past_due_since: Option<DateTime<Utc>>,
    /// When the state above was read from the provider.
    pub synced_at: Option<DateTime<Utc>>,
    /// Linked at.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

const ACCOUNT_COLUMNS: &str = "org_id, customer_id, subscription_id, subscription_status, subscription_created, \
     price_id, current_period_start, current_period_end, cancel_at_period_end, past_due_since, synced_at, \
     created_at, updated_at";

/// A verified webhook event as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct StoredEvent {
    /// Provider id (`evt_…`).
    pub id: String,
    /// Type, such as `customer.subscription.updated`.
    pub event_type: String,
    /// The raw body.
    pub payload: String,
    /// When it was applied (or found not to apply).
    pub processed_at: Option<DateTime<Utc>>,
}

/// A verified webhook event to store.
#[derive(Clone, Debug)]
pub struct NewEvent<'a> {
    /// Provider id.
    pub id: &'a str,
    /// Type.
    pub event_type: &'a str,
    /// When the provider created it.
    pub created: DateTime<Utc>,
    /// The raw body.
    pub payload: &'a str,
}

/// A subscription read from the provider, to apply to an organization.
#[derive(Debug)]
pub struct SubscriptionChange<'a> {
    /// The event being applied (marked processed in the same transaction), if any.
    pub event_id: Option<&'a str>,
    /// The subscription as read.
    pub subscription: &'a Subscription,
    /// The plan its price buys (FREE when the price is not sold here).
    pub paid_plan: Plan,
    /// When it was read from the provider: an older read never overwrites a newer one.
    pub read_at: DateTime<Utc>,
    /// How long `past_due` keeps the plan.
    pub grace: Duration,
    /// A further record of the event (a failed or paid invoice).
    pub extra: Option<AuditEntry>,
}

/// What applying a subscription did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// State stored; the plan changed from `from` to `to` when they differ.
    Updated {
        /// Plan before.
        from: Plan,
        /// Plan after.
        to: Plan,
    },
    /// The provider's state was already the stored state.
    Unchanged,
    /// A newer read was applied already.
    Stale,
    /// Another, newer subscription of the customer is the current one.
    Superseded,
    /// The customer is not this organization's.
    ForeignCustomer,
    /// The event was applied before (a repeated delivery or a rerun).
    AlreadyProcessed,
}

impl Applied {
    /// Stored as the event's outcome.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Updated { .. } => "applied",
            Self::Unchanged => "unchanged",
            Self::Stale => "stale",
            Self::Superseded => "superseded",
            Self::ForeignCustomer => "foreign_customer",
            Self::AlreadyProcessed => "already_processed",
        }
    }
}

/// Seats of an organization: members and pending invitations.
#[derive(Clone, Copy, Debug)]
pub struct Seats {
    /// Members.
    pub members: i64,
    /// Invitations not yet accepted, revoked or expired.
    pub pending_invitations: i64,
}

/// An organization's plan, usage, seats and billing account, from one snapshot.
#[derive(Clone, Debug)]
pub struct BillingOverview {
    /// The plan in force.
    pub plan: Plan,
    /// Use of the meter asked for in the period asked for.
    pub used: i64,
    /// Seats in use.
    pub seats: Seats,
    /// The billing account, if the organization has a customer.
    pub account: Option<BillingAccount>,
}

/// A paying organization whose usage is reported.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct BillableAccount {
    /// Organization.
    pub org_id: OrgId,
    /// Customer at the provider.
    pub customer_id: String,
    /// When its subscription started (usage before is not billed).
    pub subscription_created: Option<DateTime<Utc>>,
}

async fn account_in(tx: &mut Tx, org: OrgId) -> Result<Option<BillingAccount>, StoreError> {
    let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM billing_accounts WHERE org_id = $1");
    Ok(on_conn!(tx.conn(), c => sqlx::query_as(&sql).bind(org).fetch_optional(&mut *c).await)?)
}

async fn mark_event(
    tx: &mut Tx,
    event_id: &str,
    org: Option<OrgId>,
    outcome: &str,
) -> Result<(), StoreError> {
    on_conn!(tx.conn(), c => sqlx::query(
        "UPDATE billing_events SET processed_at = $2, org_id = $3, outcome = $4 WHERE id = $1",
    )
    .bind(event_id)
    .bind(now())
    .bind(org)
    .bind(outcome)
    .execute(&mut *c)
    .await
    .map(|_| ()))?;
    Ok(())
}

/// Whether the event was processed; on PostgreSQL its row stays locked until the end of
/// the transaction, so two runs of the same event apply it once.
async fn event_processed(tx: &mut Tx, event_id: &str) -> Result<bool, StoreError> {
    let sql = match tx {
        Tx::Postgres(_) => "SELECT processed_at FROM billing_events WHERE id = $1 FOR UPDATE",
        Tx::Sqlite(_) => "SELECT processed_at FROM billing_events WHERE id = $1",
    };
    let row: Option<Option<DateTime<Utc>>> = on_conn!(tx.conn(), c => sqlx::query_scalar(sql)
        .bind(event_id)
        .fetch_optional(&mut *c)
        .await)?;
    match row {
        None => Err(StoreError::NotFound),
        Some(processed) => Ok(processed.is_some()),
    }
}

async fn set_plan_in(tx: &mut Tx, org: OrgId, plan: Plan) -> Result<Organization, StoreError> {
    Ok(on_conn!(tx.conn(), c => sqlx::query_as(
        "UPDATE organizations SET plan = $2, updated_at = $3 WHERE id = $1 \
         RETURNING id, name, slug, plan, status, created_at, updated_at",
    )
    .bind(org)
    .bind(plan)
    .bind(now())
    .fetch_one(&mut *c)
    .await)?)
}

/// Whether `incoming` replaces the account's current subscription.
fn adopts(account: &BillingAccount, incoming: &Subscription) -> bool {
    match (&account.subscription_id, &account.subscription_status) {
        (None, _) => true,
        (Some(current), _) if *current == incoming.id => true,
        (Some(_), Some(status)) if is_terminal(status) => true,
        (Some(_), _) if is_terminal(&incoming.status) => false,
        (Some(_), _) => account
            .subscription_created
            .is_none_or(|created| incoming.created > created),
    }
}

impl Store {
    /// The organization's billing account, if it has a customer.
    pub async fn billing_account(
        &self,
        ctx: &TenantCtx,
    ) -> Result<Option<BillingAccount>, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Read).await?;
        let account = account_in(&mut tx, ctx.org_id()).await?;
        tx.commit().await?;
        Ok(account)
    }

    /// The organization's plan, its use of `meter` since day `from`, its seats and its
    /// billing account, read in one statement (one snapshot: a change applied meanwhile is
    /// seen whole or not at all).
    pub async fn billing_overview(
        &self,
        ctx: &TenantCtx,
        meter: &str,
        from: &str,
    ) -> Result<BillingOverview, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            plan: Plan,
            used: i64,
            members: i64,
            pending: i64,
            customer_id: Option<String>,
            subscription_id: Option<String>,
            subscription_status: Option<String>,
            subscription_created: Option<DateTime<Utc>>,
            price_id: Option<String>,
            current_period_start: Option<DateTime<Utc>>,
            current_period_end: Option<DateTime<Utc>>,
            cancel_at_period_end: Option<bool>,
            past_due_since: Option<DateTime<Utc>>,
            synced_at: Option<DateTime<Utc>>,
            created_at: Option<DateTime<Utc>>,
            updated_at: Option<DateTime<Utc>>,
        }
        let mut tx = self.tenant_tx(ctx, Access::Read).await?;
        let row: Option<Row> = on_conn!(tx.conn(), c => sqlx::query_as(
            "SELECT o.plan, CAST(coalesce(( \
                 SELECT SUM(quantity) FROM usage_daily WHERE org_id = $1 AND meter = $2 AND day >= $3), 0) \
               + coalesce(( \
                 SELECT SUM(quantity) FROM usage_events WHERE org_id = $1 AND meter = $2 AND day >= $3 AND NOT rolled_up), 0) AS BIGINT) AS used, \
             (SELECT count(*) FROM memberships WHERE org_id = $1) AS members, \
             (SELECT count(*) FROM invitations WHERE org_id = $1 AND accepted_at IS NULL \
                AND revoked_at IS NULL AND expires_at > $4) AS pending, \
             b.customer_id, b.subscription_id, b.subscription_status, b.subscription_created, b.price_id, \
             b.current_period_start, b.current_period_end, b.cancel_at_period_end, b.past_due_since, \
             b.synced_at, b.created_at, b.updated_at \
             FROM organizations o LEFT JOIN billing_accounts b ON b.org_id = o.id WHERE o.id = $1",
        )
        .bind(ctx.org_id())
        .bind(meter)
        .bind(from)
        .bind(now())
        .fetch_optional(&mut *c)
        .await)?;
        tx.commit().await?;
        let row = row.ok_or(StoreError::NotFound)?;
        let account = match (row.customer_id, row.created_at, row.updated_at) {
            (Some(customer_id), Some(created_at), Some(updated_at)) => Some(BillingAccount {
                org_id: ctx.org_id(),
                customer_id,
                subscription_id: row.subscription_id,
                subscription_status: row.subscription_status,
                subscription_created: row.subscription_created,
                price_id: row.price_id,
                current_period_start: row.current_period_start,
                current_period_end: row.current_period_end,
                cancel_at_period_end: row.cancel_at_period_end.unwrap_or(false),
                past_due_since: row.past_due_since,
                synced_at: row.synced_at,
                created_at,
                updated_at,
            }),
            _ => None,
        };
        if row.used < 0 {
            return Err(StoreError::Corrupt(format!("usage total {}", row.used)));
        }
        Ok(BillingOverview {
            plan: row.plan,
            used: row.used,
            seats: Seats {
                members: row.members,
                pending_invitations: row.pending,
            },
            account,
        })
    }

    /// Links the organization to its customer at the provider (once: a customer already
    /// linked stays) and returns the account; audited when linked.
    pub async fn link_billing_customer(
        &self,
        ctx: &TenantCtx,
        customer_id: &str,
    ) -> Result<BillingAccount, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        let at = now();
        let inserted = on_conn!(tx.conn(), c => sqlx::query(
            "INSERT INTO billing_accounts (org_id, customer_id, created_at, updated_at) \
             SELECT $1, $2, $3, $3 WHERE EXISTS (SELECT 1 FROM organizations WHERE id = $1) \
             ON CONFLICT (org_id) DO NOTHING",
        )
        .bind(ctx.org_id())
        .bind(customer_id)
        .bind(at)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| StoreError::unique(e, crate::domain::DomainError::BillingCustomerTaken))?;
        if inserted == 1 {
            tx.audit(
                AuditEntry::new("billing.customer_linked", "organization", ctx.org_id())
                    .with_metadata(serde_json::json!({ "customer_id": customer_id })),
            )
            .await?;
        }
        let account = account_in(&mut tx, ctx.org_id())
            .await?
            .ok_or(StoreError::NotFound)?;
        tx.commit().await?;
        Ok(account)
    }

    /// Stores a verified webhook event and enqueues `job` to apply it, in one transaction;
    /// `false` when the event was stored before (nothing is enqueued again).
    pub async fn record_billing_event(
        &self,
        event: &NewEvent<'_>,
        job: &NewJob,
    ) -> Result<bool, StoreError> {
        // On PostgreSQL one statement in one round trip (atomic without an explicit
        // transaction, see `single_statement_tenant_write`); a request with an idempotency
        // key to claim takes the transaction path.
        if let Db::Postgres(pool) = self.db() {
            if !super::idempotency::claim_outstanding() {
                static SQL: LazyLock<String> = LazyLock::new(|| {
                    single_statement_tenant_write(
                        "ev AS (INSERT INTO billing_events (id, event_type, created, payload, received_at) \
                         SELECT $2, $3, $4, $5, $6 FROM s WHERE s.scope IS NOT NULL \
                         ON CONFLICT (id) DO NOTHING RETURNING id), \
                         job AS (INSERT INTO jobs (org_id, id, kind, payload, status, max_attempts, run_at, \
                           idempotency_key, request_hash, created_at, updated_at) \
                         SELECT $7, $8, $9, $10, 'available', $11, $6, $12, $13, $6, $6 FROM ev \
                         ON CONFLICT (org_id, idempotency_key) DO NOTHING RETURNING id)",
                        "SELECT pg_notify($14, '')::text FROM job",
                    )
                });
                let mut conn = self.hot().take(pool).await?;
                let stored: Option<(String,)> = sqlx::query_as(&SQL)
                    .bind(OrgId::PLATFORM)
                    .bind(event.id)
                    .bind(event.event_type)
                    .bind(event.created)
                    .bind(event.payload)
                    .bind(now())
                    .bind(OrgId::PLATFORM)
                    .bind(crate::ids::JobId::new())
                    .bind(job.kind)
                    .bind(crate::vocab::JsonText(&job.payload))
                    .bind(job.max_attempts)
                    .bind(&job.idempotency_key)
                    .bind(job.idempotency_key.as_ref().map(|_| job.request_hash()))
                    .bind(super::jobs::NOTIFY_CHANNEL)
                    .fetch_optional(&mut *conn)
                    .await?;
                self.hot().give_back(conn, pool);
                return Ok(stored.is_some());
            }
        }
        let mut tx = self
            .db()
            .begin(Scope::Tenant(OrgId::PLATFORM), Access::Write)
            .await?;
        let inserted = on_conn!(tx.conn(), c => sqlx::query(
            "INSERT INTO billing_events (id, event_type, created, payload, received_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
        )
        .bind(event.id)
        .bind(event.event_type)
        .bind(event.created)
        .bind(event.payload)
        .bind(now())
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
        if inserted == 0 {
            return Ok(false);
        }
        enqueue_in(&mut tx, OrgId::PLATFORM, job).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A stored webhook event.
    pub async fn billing_event(&self, id: &str) -> Result<Option<StoredEvent>, StoreError> {
        let mut tx = self
            .db()
            .begin(Scope::Tenant(OrgId::PLATFORM), Access::Read)
            .await?;
        let event: Option<StoredEvent> = on_conn!(tx.conn(), c => sqlx::query_as(
            "SELECT id, event_type, payload, processed_at FROM billing_events WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *c)
        .await)?;
        tx.commit().await?;
        Ok(event)
    }

    /// Records that an event applies to no organization (or was only recorded).
    pub async fn finish_billing_event(
        &self,
        id: &str,
        org: Option<OrgId>,
        outcome: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self
            .db()
            .begin(Scope::Tenant(OrgId::PLATFORM), Access::Write)
            .await?;
        mark_event(&mut tx, id, org, outcome).await?;
        Ok(tx.commit().await?)
    }

    /// Deletes events processed before `before` (their ids no longer deduplicate: a
    /// delivery that late is applied again, harmlessly, since applying re-reads the
    /// subscription); returns how many.
    pub async fn prune_billing_events(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self
            .db()
            .begin(Scope::Tenant(OrgId::PLATFORM), Access::Write)
            .await?;
        let n = on_conn!(tx.conn(), c => sqlx::query(
            "DELETE FROM billing_events WHERE processed_at < $1",
        )
        .bind(before)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
        tx.commit().await?;
        Ok(n)
    }

    /// The organization whose customer this is.
    pub async fn org_of_billing_customer(
        &self,
        customer_id: &str,
    ) -> Result<Option<OrgId>, StoreError> {
        let mut tx = self.db().begin(Scope::System, Access::Read).await?;
        let org: Option<OrgId> = on_conn!(tx.conn(), c => sqlx::query_scalar(
            "SELECT org_id FROM billing_accounts WHERE customer_id = $1",
        )
        .bind(customer_id)
        .fetch_optional(&mut *c)
        .await)?;
        tx.commit().await?;
        Ok(org)
    }

    /// Applies a subscription read from the provider to `ctx`'s organization: stores it
    /// unless a newer read was stored, derives the plan and changes it, audited, and marks
    /// the event processed, all in one transaction.
    pub async fn apply_subscription(
        &self,
        ctx: &TenantCtx,
        change: SubscriptionChange<'_>,
    ) -> Result<Applied, StoreError> {
        let org = ctx.org_id();
        let sub = change.subscription;
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        if let Some(event) = change.event_id {
            if event_processed(&mut tx, event).await? {
                return Ok(Applied::AlreadyProcessed);
            }
        }
        // Serializes every plan change of the organization (and member-limit checks).
        let current_plan = lock_org_plan(&mut tx, org).await?;
        let outcome = match account_in(&mut tx, org).await? {
            Some(account) if account.customer_id != sub.customer_id => Applied::ForeignCustomer,
            None => Applied::ForeignCustomer,
            // An older read of the same subscription never overwrites a newer one; between
            // different subscriptions `adopts` decides.
            Some(account)
                if account.subscription_id.as_deref() == Some(sub.id.as_str())
                    && account.synced_at.is_some_and(|at| at >= change.read_at) =>
            {
                Applied::Stale
            }
            Some(account) if !adopts(&account, sub) => Applied::Superseded,
            Some(account) => {
                let same = account.subscription_id.as_deref() == Some(sub.id.as_str());
                let past_due_since = (sub.status == "past_due").then(|| {
                    account
                        .past_due_since
                        .filter(|_| {
                            same && account.subscription_status.as_deref() == Some("past_due")
                        })
                        .unwrap_or(change.read_at)
                });
                let plan = effective_plan(
                    &sub.status,
                    change.paid_plan,
                    past_due_since,
                    change.grace,
                    now(),
                );
                on_conn!(tx.conn(), c => sqlx::query(
                    "UPDATE billing_accounts SET subscription_id = $2, subscription_status = $3, \
                     subscription_created = $4, price_id = $5, current_period_start = $6, \
                     current_period_end = $7, cancel_at_period_end = $8, past_due_since = $9, \
                     synced_at = $10, updated_at = $11 WHERE org_id = $1",
                )
                .bind(org)
                .bind(&sub.id)
                .bind(&sub.status)
                .bind(sub.created)
                .bind(&sub.price_id)
                .bind(sub.current_period_start)
                .bind(sub.current_period_end)
                .bind(sub.cancel_at_period_end)
                .bind(past_due_since)
                .bind(change.read_at)
                .bind(now())
                .execute(&mut *c)
                .await
                .map(|_| ()))?;
                let changed = !same
                    || account.subscription_status.as_deref() != Some(sub.status.as_str())
                    || account.price_id != sub.price_id
                    || account.cancel_at_period_end != sub.cancel_at_period_end
                    || account.current_period_end != sub.current_period_end;
                if changed {
                    tx.audit(
                        AuditEntry::new("billing.subscription_updated", "subscription", &sub.id)
                            .with_metadata(serde_json::json!({
                                "status": sub.status,
                                "previous_status": account.subscription_status.filter(|_| same),
                                "price_id": sub.price_id,
                                "cancel_at_period_end": sub.cancel_at_period_end,
                                "current_period_end": sub.current_period_end,
                            })),
                    )
                    .await?;
                }
                if plan != current_plan {
                    set_plan_in(&mut tx, org, plan).await?;
                    tx.audit(
                        AuditEntry::new("billing.plan_changed", "organization", org).with_metadata(
                            serde_json::json!({
                                "from": current_plan, "to": plan,
                                "status": sub.status, "subscription_id": sub.id,
                            }),
                        ),
                    )
                    .await?;
                }
                if changed || plan != current_plan {
                    Applied::Updated {
                        from: current_plan,
                        to: plan,
                    }
                } else {
                    Applied::Unchanged
                }
            }
        };
        // A second subscription being paid for next to the current one (two checkouts
        // completed at once): kept visible, since one of them should be cancelled.
        if outcome == Applied::Superseded && crate::billing::model::is_billable(&sub.status) {
            tx.audit(
                AuditEntry::new("billing.duplicate_subscription", "subscription", &sub.id)
                    .with_metadata(serde_json::json!({ "status": sub.status })),
            )
            .await?;
        }
        if let (Some(extra), Applied::Updated { .. } | Applied::Unchanged | Applied::Stale) =
            (change.extra, outcome)
        {
            tx.audit(extra).await?;
        }
        if let Some(event) = change.event_id {
            mark_event(&mut tx, event, Some(org), outcome.as_str()).await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    /// Organizations whose `past_due` grace has ended but which still have a paid plan.
    pub async fn billing_grace_expired(&self, grace: Duration) -> Result<Vec<OrgId>, StoreError> {
        let cutoff = now() - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        let mut tx = self.db().begin(Scope::System, Access::Read).await?;
        let orgs: Vec<OrgId> = on_conn!(tx.conn(), c => sqlx::query_scalar(
            "SELECT b.org_id FROM billing_accounts b JOIN organizations o ON o.id = b.org_id \
             WHERE b.subscription_status = 'past_due' AND b.past_due_since <= $1 AND o.plan <> 'free' \
             ORDER BY b.org_id",
        )
        .bind(cutoff)
        .fetch_all(&mut *c)
        .await)?;
        tx.commit().await?;
        Ok(orgs)
    }

    /// Drops an organization whose `past_due` grace has ended to FREE (checked again under
    /// the plan lock); `true` when it changed.
    pub async fn end_billing_grace(
        &self,
        ctx: &TenantCtx,
        grace: Duration,
    ) -> Result<bool, StoreError> {
        let org = ctx.org_id();
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        let current = lock_org_plan(&mut tx, org).await?;
        let Some(account) = account_in(&mut tx, org).await? else {
            return Ok(false);
        };
        let status = account.subscription_status.as_deref().unwrap_or("");
        let plan = effective_plan(status, current, account.past_due_since, grace, now());
        if plan == current {
            return Ok(false);
        }
        set_plan_in(&mut tx, org, plan).await?;
        tx.audit(
            AuditEntry::new("billing.plan_changed", "organization", org).with_metadata(
                serde_json::json!({
                    "from": current, "to": plan, "status": status,
                    "subscription_id": account.subscription_id, "reason": "past_due_grace_ended",
                }),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Organizations with a subscription being paid for, whose usage is reported.
    pub async fn billable_accounts(&self) -> Result<Vec<BillableAccount>, StoreError> {
        let mut tx = self.db().begin(Scope::System, Access::Read).await?;
        let rows: Vec<BillableAccount> = on_conn!(tx.conn(), c => sqlx::query_as(
            "SELECT org_id, customer_id, subscription_created FROM billing_accounts \
             WHERE subscription_status IN ('active', 'trialing', 'past_due') ORDER BY org_id",
        )
        .fetch_all(&mut *c)
        .await)?;
        tx.commit().await?;
        Ok(rows)
    }

    /// Daily totals of `meter` from `from` to `to` (inclusive) not yet reported.
    pub async fn unreported_usage(
        &self,
        ctx: &TenantCtx,
        meter: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Read).await?;
        let rows: Vec<(String, i64)> = on_conn!(tx.conn(), c => sqlx::query_as(
            "SELECT day, CAST(SUM(quantity) AS BIGINT) FROM ( \
                 SELECT day, quantity FROM usage_daily WHERE org_id = $1 AND meter = $2 AND day >= $3 AND day <= $4 \
                 UNION ALL \
                 SELECT day, quantity FROM usage_events WHERE org_id = $1 AND meter = $2 AND NOT rolled_up AND day >= $3 AND day <= $4 \
             ) u WHERE NOT EXISTS (SELECT 1 FROM billing_usage_reports r WHERE r.org_id = $1 AND r.meter = $2 AND r.day = u.day) \
             GROUP BY day ORDER BY day",
        )
        .bind(ctx.org_id())
        .bind(meter)
        .bind(from)
        .bind(to)
        .fetch_all(&mut *c)
        .await)?;
        tx.commit().await?;
        Ok(rows)
    }

    /// Records that a day's usage was reported.
    pub async fn record_usage_report(
        &self,
        ctx: &TenantCtx,
        meter: &str,
        day: &str,
        quantity: i64,
        identifier: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        on_conn!(tx.conn(), c => sqlx::query(
            "INSERT INTO billing_usage_reports (org_id, meter, day, quantity, identifier, reported_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (org_id, meter, day) DO NOTHING",
        )
        .bind(ctx.org_id())
        .bind(meter)
        .bind(day)
        .bind(quantity)
        .bind(identifier)
        .bind(now())
        .execute(&mut *c)
        .await
        .map(|_| ()))?;
        tx.commit().await
    }
}
