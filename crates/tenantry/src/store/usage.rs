//! Usage metering: events (reported by customers, or written by the service's own meter
//! in batches), daily rollups, and what an organization has used in a period.
//!
//! Days are UTC calendar days stored as `YYYY-MM-DD` text, so the same comparisons work on
//! both backends. A period's total is the rolled-up days plus the events not yet rolled up,
//! so totals are exact between rollups too.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::{now, Store, StoreError};
use crate::auth::TenantCtx;
use crate::db::{on_conn, single_statement_tenant_read, Access, Db, Scope, Tx};
use crate::ids::OrgId;
use crate::rbac::Plan;

/// Most a meter may count for one organization on one day (10^15): totals of a month stay
/// far from 64-bit overflow.
pub const MAX_DAILY_TOTAL: i64 = 1_000_000_000_000_000;

/// Rolled-up events are kept this long (longer than events may be backdated, 35 days).
pub const EVENT_RETENTION_DAYS: i64 = 40;

/// A usage event to record.
#[derive(Clone, Debug)]
pub struct UsageEvent {
    /// Meter name.
    pub meter: String,
    /// Amount (>= 0).
    pub quantity: i64,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// Unique per organization: a repeated key is not counted again.
    pub idempotency_key: String,
}

/// Outcome of an ingestion.
#[derive(Clone, Copy, Debug, Serialize, ToSchema, PartialEq, Eq)]
pub struct Ingested {
    /// Events recorded.
    pub accepted: u64,
    /// Events whose idempotency key was already recorded (ignored).
    pub duplicates: u64,
}

/// Usage of one meter on one day.
#[derive(Clone, Debug, Serialize, ToSchema, sqlx::FromRow, PartialEq, Eq)]
pub struct DailyUsage {
    /// Meter name.
    pub meter: String,
    /// UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// Total that day.
    pub quantity: i64,
}

/// Metered quantities the service counted itself: (org, meter, UTC day) -> quantity.
pub type MeteredBatch = Vec<((OrgId, &'static str, chrono::NaiveDate), i64)>;

/// The UTC day of `at` as stored.
pub fn day_of(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
}

impl Store {
    /// Records customer-reported events; events whose key was seen before are skipped.
    pub async fn ingest_usage(
        &self,
        ctx: &TenantCtx,
        events: &[UsageEvent],
    ) -> Result<Ingested, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        let mut added: std::collections::BTreeMap<(&str, String), i64> = Default::default();
        for event in events {
            *added
                .entry((event.meter.as_str(), day_of(event.occurred_at)))
                .or_insert(0) += event.quantity;
        }
        for ((meter, day), quantity) in &added {
            let stored: i64 = on_conn!(tx.conn(), c => sqlx::query_scalar(
                "SELECT CAST(coalesce((SELECT SUM(quantity) FROM usage_daily WHERE org_id = $1 AND meter = $2 AND day = $3), 0) \
                 + coalesce((SELECT SUM(quantity) FROM usage_events WHERE org_id = $1 AND meter = $2 AND day = $3 AND NOT rolled_up), 0) AS BIGINT)",
            )
            .bind(ctx.org_id())
            .bind(*meter)
            .bind(day)
            .fetch_one(&mut *c)
            .await)?;
            if stored.saturating_add(*quantity) > MAX_DAILY_TOTAL {
                return Err(StoreError::Invalid(
                    "events",
                    format!("`{meter}` would exceed {MAX_DAILY_TOTAL} on {day}"),
                ));
            }
        }
        let mut accepted = 0;
        for event in events {
            accepted += insert_event(&mut tx, ctx.org_id(), event).await?;
        }
        tx.commit().await?;
        Ok(Ingested {
            accepted,
            duplicates: u64::try_from(events.len()).unwrap_or(u64::MAX) - accepted,
        })
    }

    /// Writes the service's own meter readings as one event per (org, meter, day), each
    /// keyed by `batch_key` so a retried write is not counted twice. Readings of
    /// organizations that no longer exist are not written (one deleted tenant must not
    /// block the others' metering); their ids are returned.
    pub async fn record_metered(
        &self,
        batch: &MeteredBatch,
        batch_key: &str,
    ) -> Result<Vec<OrgId>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let at = now();
        let mut tx = self.db().begin(Scope::System, Access::Write).await?;
        if let Tx::Postgres(conn) = &mut tx {
            let gone = insert_batch_pg(conn, batch, batch_key, at).await?;
            tx.commit().await?;
            return Ok(gone);
        }
        let mut gone: Vec<OrgId> = Vec::new();
        for ((org, meter, day), quantity) in batch {
            if gone.contains(org) {
                continue;
            }
            // Written only while the organization exists: one deleted tenant must not fail
            // the batch of every other (an organization deleted after this statement makes
            // the batch fail on its foreign key; the retry then skips it).
            let event = UsageEvent {
                meter: (*meter).to_owned(),
                quantity: *quantity,
                occurred_at: at,
                idempotency_key: format!("{batch_key}:{meter}:{day}"),
            };
            let written = insert_event_on_day(&mut tx, *org, &event, &day.to_string()).await?;
            // Nothing written: a retried batch already recorded it, or the organization
            // is gone (rare; only then is it looked up).
            if written == 0 {
                let exists: Option<i32> = on_conn!(tx.conn(), c => sqlx::query_scalar(
                    "SELECT 1 FROM organizations WHERE id = $1",
                )
                .bind(*org)
                .fetch_optional(&mut *c)
                .await)?;
                if exists.is_none() {
                    gone.push(*org);
                }
            }
        }
        tx.commit().await?;
        Ok(gone)
    }

    /// Adds every event not yet rolled up to the daily totals, exactly once even when two
    /// rollups run at once, then deletes rolled-up events older than
    /// [`EVENT_RETENTION_DAYS`] (their totals stay in `usage_daily`; their idempotency keys
    /// stop deduplicating). Returns how many events were rolled up.
    pub async fn rollup_usage(&self) -> Result<u64, StoreError> {
        let mut tx = self.db().begin(Scope::System, Access::Write).await?;
        let n = match &mut tx {
            // The UPDATE locks the rows it marks: a concurrent rollup waits, then skips them.
            Tx::Postgres(pg) => {
                let n: i64 = sqlx::query_scalar(
                    "WITH batch AS (UPDATE usage_events SET rolled_up = TRUE WHERE NOT rolled_up \
                         RETURNING org_id, meter, day, quantity), \
                     sums AS (INSERT INTO usage_daily (org_id, meter, day, quantity) \
                         SELECT org_id, meter, day, CAST(SUM(quantity) AS BIGINT) FROM batch GROUP BY org_id, meter, day \
                         ON CONFLICT (org_id, meter, day) DO UPDATE SET quantity = usage_daily.quantity + excluded.quantity) \
                     SELECT count(*) FROM batch",
                )
                .fetch_one(&mut **pg)
                .await?;
                n.max(0).unsigned_abs()
            }
            // SQLite's writers are serialized by BEGIN IMMEDIATE.
            Tx::Sqlite(lite) => {
                sqlx::query(
                    "INSERT INTO usage_daily (org_id, meter, day, quantity) \
                     SELECT org_id, meter, day, SUM(quantity) FROM usage_events WHERE NOT rolled_up GROUP BY org_id, meter, day \
                     ON CONFLICT (org_id, meter, day) DO UPDATE SET quantity = usage_daily.quantity + excluded.quantity",
                )
                .execute(&mut **lite)
                .await?;
                sqlx::query("UPDATE usage_events SET rolled_up = TRUE WHERE NOT rolled_up")
                    .execute(&mut **lite)
                    .await?
                    .rows_affected()
            }
        };
        let horizon = now() - chrono::Duration::days(EVENT_RETENTION_DAYS);
        on_conn!(tx.conn(), c => sqlx::query("DELETE FROM usage_events WHERE rolled_up AND created_at < $1")
            .bind(horizon)
            .execute(&mut *c)
            .await
            .map(|_| ()))?;
        tx.commit().await?;
        Ok(n)
    }

    /// Daily usage of the caller's organization from `from` to `to` (days, inclusive).
    pub async fn usage_by_day(
        &self,
        ctx: &TenantCtx,
        from: &str,
        to: &str,
    ) -> Result<Vec<DailyUsage>, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Read).await?;
        let rows: Vec<DailyUsage> = on_conn!(tx.conn(), c => sqlx::query_as(
            "SELECT meter, day, CAST(SUM(quantity) AS BIGINT) AS quantity FROM ( \
                 SELECT meter, day, quantity FROM usage_daily WHERE org_id = $1 AND day >= $2 AND day <= $3 \
                 UNION ALL \
                 SELECT meter, day, quantity FROM usage_events WHERE org_id = $1 AND NOT rolled_up AND day >= $2 AND day <= $3 \
             ) u GROUP BY meter, day ORDER BY meter, day",
        )
        .bind(ctx.org_id())
        .bind(from)
        .bind(to)
        .fetch_all(&mut *c)
        .await)?;
        tx.commit().await?;
        Ok(rows)
    }

    /// The plans and the use of `meter` since day `from` of many organizations at once (the
    /// meter's refresh of every active organization); a deleted organization is left out.
    pub async fn plans_and_usage(
        &self,
        orgs: &[OrgId],
        meter: &str,
        from: &str,
    ) -> Result<Vec<(OrgId, Plan, i64)>, StoreError> {
        let mut rows: Vec<(OrgId, Plan, i64)> = Vec::with_capacity(orgs.len());
        match self.db() {
            Db::Postgres(_) => {
                let mut tx = self.db().begin(Scope::System, Access::Read).await?;
                if let Tx::Postgres(conn) = &mut tx {
                    let ids: Vec<uuid::Uuid> = orgs.iter().map(|o| o.as_uuid()).collect();
                    rows = sqlx::query_as(
                        "SELECT o.id, o.plan, CAST(coalesce(( \
                             SELECT SUM(quantity) FROM usage_daily d WHERE d.org_id = o.id AND d.meter = $2 AND d.day >= $3), 0) \
                           + coalesce(( \
                             SELECT SUM(quantity) FROM usage_events e WHERE e.org_id = o.id AND e.meter = $2 AND e.day >= $3 AND NOT e.rolled_up), 0) AS BIGINT) \
                         FROM organizations o WHERE o.id = ANY($1)",
                    )
                    .bind(ids)
                    .bind(meter)
                    .bind(from)
                    .fetch_all(&mut **conn)
                    .await?;
                }
                tx.commit().await?;
            }
            // In process: one statement per organization costs no round trip.
            Db::Sqlite(_) => {
                for org in orgs {
                    if let Some((plan, used)) = self.plan_and_usage(*org, meter, from).await? {
                        rows.push((*org, plan, used));
                    }
                }
            }
        }
        // A total that cannot be (negative) is left out and logged: the other organizations'
        // totals are good, and that one's request re-reads it and fails alone.
        rows.retain(|(org, _, used)| {
            if *used < 0 {
                tracing::error!(org.id = %org, used, "negative usage total; not refreshed");
            }
            *used >= 0
        });
        Ok(rows)
    }

    /// An organization's plan and its use of `meter` since day `from` (for quotas).
    pub async fn plan_and_usage(
        &self,
        org: OrgId,
        meter: &str,
        from: &str,
    ) -> Result<Option<(Plan, i64)>, StoreError> {
        // Re-read for every active organization every few seconds: one statement, without
        // BEGIN and COMMIT round trips (see `single_statement_tenant_read`; on SQLite one
        // statement is its own snapshot).
        static SELECT: &str = "SELECT o.plan, CAST(coalesce(( \
                 SELECT SUM(quantity) FROM usage_daily WHERE org_id = $2 AND meter = $3 AND day >= $4), 0) \
               + coalesce(( \
                 SELECT SUM(quantity) FROM usage_events WHERE org_id = $2 AND meter = $3 AND day >= $4 AND NOT rolled_up), 0) AS BIGINT) \
             FROM organizations o WHERE o.id = $2";
        let row: Option<(Plan, i64)> = match self.db() {
            Db::Postgres(pool) => {
                static SQL: LazyLock<String> =
                    LazyLock::new(|| single_statement_tenant_read(SELECT));
                let mut conn = self.hot().take(pool).await?;
                let row = sqlx::query_as(&SQL)
                    .bind(org)
                    .bind(org)
                    .bind(meter)
                    .bind(from)
                    .fetch_optional(&mut *conn)
                    .await?;
                self.hot().give_back(conn, pool);
                row
            }
            Db::Sqlite(pool) => {
                static SQL: LazyLock<String> = LazyLock::new(|| {
                    SELECT
                        .replace("$2", "$1")
                        .replace("$3", "$2")
                        .replace("$4", "$3")
                });
                sqlx::query_as(&SQL)
                    .bind(org)
                    .bind(meter)
                    .bind(from)
                    .fetch_optional(pool)
                    .await?
            }
        };
        if let Some((_, used)) = row.filter(|(_, used)| *used < 0) {
            return Err(StoreError::Corrupt(format!("usage total {used}")));
        }
        Ok(row)
    }
}

/// The meter's batch as one statement on PostgreSQL, whatever the number of organizations
/// in it: one event per (organization, meter, day), skipped when its key was recorded
/// before (a retried batch) or its organization no longer exists; returns those
/// organizations.
async fn insert_batch_pg(
    conn: &mut sqlx::PgConnection,
    batch: &MeteredBatch,
    batch_key: &str,
    at: DateTime<Utc>,
) -> Result<Vec<OrgId>, StoreError> {
    let mut orgs = Vec::with_capacity(batch.len());
    let mut ids = Vec::with_capacity(batch.len());
    let mut meters = Vec::with_capacity(batch.len());
    let mut quantities = Vec::with_capacity(batch.len());
    let mut days = Vec::with_capacity(batch.len());
    let mut keys = Vec::with_capacity(batch.len());
    for ((org, meter, day), quantity) in batch {
        orgs.push(org.as_uuid());
        ids.push(uuid::Uuid::now_v7());
        meters.push(*meter);
        quantities.push(*quantity);
        days.push(day.to_string());
        keys.push(format!("{batch_key}:{meter}:{day}"));
    }
    let gone: Vec<uuid::Uuid> = sqlx::query_scalar(
        "WITH input AS (SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::bigint[], $5::text[], $6::text[]) \
             AS u(org_id, id, meter, quantity, day, idempotency_key)), \
         written AS (INSERT INTO usage_events (org_id, id, meter, quantity, occurred_at, day, idempotency_key, created_at) \
             SELECT org_id, id, meter, quantity, $7, day, idempotency_key, $7 FROM input \
             WHERE EXISTS (SELECT 1 FROM organizations o WHERE o.id = input.org_id) \
             ON CONFLICT (org_id, idempotency_key) DO NOTHING RETURNING 1) \
         SELECT DISTINCT org_id FROM input \
         WHERE NOT EXISTS (SELECT 1 FROM organizations o WHERE o.id = input.org_id)",
    )
    .bind(orgs)
    .bind(ids)
    .bind(meters)
    .bind(quantities)
    .bind(days)
    .bind(keys)
    .bind(at)
    .fetch_all(conn)
    .await?;
    Ok(gone.into_iter().map(OrgId::from_uuid).collect())
}

async fn insert_event(tx: &mut Tx, org: OrgId, event: &UsageEvent) -> Result<u64, StoreError> {
    insert_event_on_day(tx, org, event, &day_of(event.occurred_at)).await
}

/// Inserts one event unless its key was recorded before or the organization no longer
/// exists; returns how many rows were written (0 or 1).
async fn insert_event_on_day(
    tx: &mut Tx,
    org: OrgId,
    event: &UsageEvent,
    day: &str,
) -> Result<u64, StoreError> {
    let n = on_conn!(tx.conn(), c => sqlx::query(
        "INSERT INTO usage_events (org_id, id, meter, quantity, occurred_at, day, idempotency_key, created_at) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE EXISTS (SELECT 1 FROM organizations WHERE id = $1) \
         ON CONFLICT (org_id, idempotency_key) DO NOTHING",
    )
    .bind(org)
    .bind(uuid::Uuid::now_v7())
    .bind(&event.meter)
    .bind(event.quantity)
    .bind(event.occurred_at)
    .bind(day)
    .bind(&event.idempotency_key)
    .bind(now())
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n)
}
