//! The durable job queue: enqueue (inside any transaction), claim with leases, complete,
//! retry with backoff, dead-letter, cancel.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::audit::{self, AuditEntry};
use super::{now, page_size, Store, StoreError};
use crate::auth::{Actor, ActorKind, RequestMeta, TenantCtx};
use crate::db::{on_conn, Access, Scope, Tx};
use crate::domain::DomainError;
use crate::ids::{JobId, OrgId};
use crate::vocab::{text_enum, JsonText};

/// PostgreSQL channel that wakes workers when a job is enqueued.
pub const NOTIFY_CHANNEL: &str = "tenantry_jobs";

text_enum! {
    /// Where a job is in its life.
    pub enum JobStatus {
        /// Waiting for its `run_at` and a worker.
        Available => "available",
        /// Claimed by a worker.
        Running => "running",
        /// Finished with a result.
        Succeeded => "succeeded",
        /// Failed every allowed attempt.
        Dead => "dead",
        /// Cancelled before it started.
        Cancelled => "cancelled",
    }
}

/// A job as shown through the API.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Job {
    /// Id.
    pub id: JobId,
    /// Owning organization.
    pub org_id: OrgId,
    /// Registered job type.
    pub kind: String,
    /// Input.
    pub payload: serde_json::Value,
    /// `available`, `running`, `succeeded`, `dead` or `cancelled`.
    #[schema(value_type = String)]
    pub status: JobStatus,
    /// Runs started so far.
    pub attempts: i32,
    /// Runs allowed before the job is dead.
    pub max_attempts: i32,
    /// Earliest next run.
    pub run_at: DateTime<Utc>,
    /// The idempotency key it was enqueued with.
    pub idempotency_key: Option<String>,
    /// Error of the last failed run.
    pub last_error: Option<String>,
    /// Output of the successful run.
    pub result: Option<serde_json::Value>,
    /// Enqueued at.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Start of the latest run.
    pub started_at: Option<DateTime<Utc>>,
    /// End of the final run.
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: JobId,
    org_id: OrgId,
    kind: String,
    payload: JsonText<serde_json::Value>,
    status: JobStatus,
    attempts: i32,
    max_attempts: i32,
    run_at: DateTime<Utc>,
    idempotency_key: Option<String>,
    request_hash: Option<String>,
    last_error: Option<String>,
    result: Option<JsonText<serde_json::Value>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, org_id, kind, payload, status, attempts, max_attempts, run_at, idempotency_key, \
                       request_hash, last_error, result, created_at, updated_at, started_at, finished_at";

impl Row {
    fn into_job(self) -> Job {
        Job {
            id: self.id,
            org_id: self.org_id,
            kind: self.kind,
            payload: self.payload.0,
            status: self.status,
            attempts: self.attempts,
            max_attempts: self.max_attempts,
            run_at: self.run_at,
            idempotency_key: self.idempotency_key,
            last_error: self.last_error,
            result: self.result.map(|r| r.0),
            created_at: self.created_at,
            updated_at: self.updated_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
        }
    }
}

/// A job to enqueue, made by its job type
/// ([`JobHandler::job`](crate::jobs::JobHandler::job)) or, for the API, by the registry from
/// a public kind ([`Registry::public_job`](crate::jobs::Registry::public_job)).
#[derive(Clone, Debug)]
pub struct NewJob {
    /// Registered job type: the handler's `KIND`.
    pub kind: &'static str,
    /// Input (already validated for the kind).
    pub payload: serde_json::Value,
    /// Earliest run (default now).
    pub run_at: Option<DateTime<Utc>>,
    /// Runs allowed.
    pub max_attempts: i32,
    /// Per-organization idempotency key.
    pub idempotency_key: Option<String>,
}

impl NewJob {
    /// Fingerprint of the request: the same key must come with the same request.
    pub(super) fn request_hash(&self) -> String {
        let canonical = serde_json::json!({
            "kind": self.kind, "payload": self.payload, "max_attempts": self.max_attempts,
            "run_at": self.run_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        });
        crate::secrets::token_hash(&canonical.to_string())
    }
}

/// Whether an enqueue created the job or found it by its idempotency key.
#[derive(Debug)]
pub enum Enqueued {
    /// A new job.
    Created(Job),
    /// The job first enqueued with this key and the same request.
    Existing(Job),
}

/// Enqueues inside the caller's transaction (scoped to `org` or system): the job exists
/// if and only if the transaction commits. On PostgreSQL, workers are notified at commit.
pub async fn enqueue_in(tx: &mut Tx, org: OrgId, new: &NewJob) -> Result<Enqueued, StoreError> {
    let at = now();
    let hash = new.idempotency_key.as_ref().map(|_| new.request_hash());
    let sql = format!(
        "INSERT INTO jobs (org_id, id, kind, payload, status, max_attempts, run_at, idempotency_key, request_hash, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'available', $5, $6, $7, $8, $9, $9) \
         ON CONFLICT (org_id, idempotency_key) DO NOTHING RETURNING {COLUMNS}"
    );
    let inserted: Option<Row> = on_conn!(tx.conn(), c => sqlx::query_as(&sql)
        .bind(org)
        .bind(JobId::new())
        .bind(new.kind)
        .bind(JsonText(&new.payload))
        .bind(new.max_attempts)
        .bind(new.run_at.unwrap_or(at))
        .bind(&new.idempotency_key)
        .bind(&hash)
        .bind(at)
        .fetch_optional(&mut *c)
        .await)?;
    if let Some(row) = inserted {
        if let Tx::Postgres(pg) = tx {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(NOTIFY_CHANNEL)
                .execute(&mut **pg)
                .await?;
        }
        return Ok(Enqueued::Created(row.into_job()));
    }
    let sql = format!("SELECT {COLUMNS} FROM jobs WHERE org_id = $1 AND idempotency_key = $2");
    let existing: Row = on_conn!(tx.conn(), c => sqlx::query_as(&sql)
        .bind(org)
        .bind(&new.idempotency_key)
        .fetch_one(&mut *c)
        .await)?;
    if existing.request_hash != hash {
        return Err(StoreError::Invalid(
            "idempotency_key",
            "was already used with a different request".to_owned(),
        ));
    }
    Ok(Enqueued::Existing(existing.into_job()))
}

/// Session settings for worker bookkeeping (claims, completions, leases) on PostgreSQL:
///
/// - It commits without waiting for the WAL flush: a crash can only lose the last moments of
///   it, which makes those jobs run again, as at-least-once delivery already allows.
///   Enqueues stay fully durable.
/// - Its plans must not depend on statistics, which are always stale on a queue table: with
///   sorts, bitmap and sequential scans off, a claim walks `jobs_available` in order and stops
///   after `limit` rows (marking entries of already-claimed rows dead on the way), and a
///   completion looks each id up, whatever the planner believes about the table's size.
async fn queue_session(tx: &mut Tx) -> Result<(), StoreError> {
    if let Tx::Postgres(pg) = tx {
        sqlx::query(
            "SELECT set_config('synchronous_commit', 'off', true), set_config('enable_sort', 'off', true), \
             set_config('enable_bitmapscan', 'off', true), set_config('enable_seqscan', 'off', true)",
        )
        .execute(&mut **pg)
        .await?;
    }
    Ok(())
}

/// A job claimed by a worker.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Claimed {
    /// Organization.
    pub org_id: OrgId,
    /// Id.
    pub id: JobId,
    /// Kind.
    pub kind: String,
    /// Input as stored (JSON text), decoded by the worker: a corrupt payload fails only
    /// its own job.
    pub payload: String,
    /// This run's number, from 1.
    pub attempts: i32,
    /// Runs allowed.
    pub max_attempts: i32,
}

/// Filters of a job listing.
#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    /// Only this status.
    pub status: Option<JobStatus>,
    /// Jobs older than this id (cursor, newest first).
    pub before: Option<JobId>,
    /// Page size.
    pub limit: Option<u32>,
}

fn system_actor() -> Actor {
    Actor {
        kind: ActorKind::System,
        id: Some("worker".to_owned()),
    }
}

impl Store {
    /// Enqueues a tenant job, audited when created.
    pub async fn enqueue_job(&self, ctx: &TenantCtx, new: &NewJob) -> Result<Enqueued, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        let outcome = enqueue_in(&mut tx, ctx.org_id(), new).await?;
        if let Enqueued::Created(job) = &outcome {
            let entry = AuditEntry::new("job.enqueued", "job", job.id)
                .with_metadata(serde_json::json!({ "kind": job.kind }));
            tx.audit(entry).await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    /// Enqueues one of Tenantry's own jobs (platform scope, not audited).
    pub async fn enqueue_system_job(&self, new: &NewJob) -> Result<Enqueued, StoreError> {
        let mut tx = self
            .db()
            .begin(Scope::Tenant(OrgId::PLATFORM), Access::Write)
            .await?;
        let outcome = enqueue_in(&mut tx, OrgId::PLATFORM, new).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// One job of the organization.
    pub async fn get_job(&self, ctx: &TenantCtx, id: JobId) -> Result<Job, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Read).await?;
        let sql = format!("SELECT {COLUMNS} FROM jobs WHERE org_id = $1 AND id = $2");
        let row: Option<Row> = on_conn!(tx.conn(), c => sqlx::query_as(&sql).bind(ctx.org_id()).bind(id).fetch_optional(&mut *c).await)?;
        tx.commit().await?;
        row.map(Row::into_job).ok_or(StoreError::NotFound)
    }

    /// The organization's jobs, newest first.
    pub async fn list_jobs(
        &self,
        ctx: &TenantCtx,
        filter: &JobFilter,
    ) -> Result<Vec<Job>, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Read).await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM jobs WHERE org_id = $1 AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR id < $3) \
             ORDER BY id DESC LIMIT $4"
        );
        let rows: Vec<Row> = on_conn!(tx.conn(), c => sqlx::query_as(&sql)
            .bind(ctx.org_id())
            .bind(filter.status)
            .bind(filter.before)
            .bind(page_size(filter.limit))
            .fetch_all(&mut *c)
            .await)?;
        tx.commit().await?;
        Ok(rows.into_iter().map(Row::into_job).collect())
    }

    /// Up to `limit` jobs of the organization whose last run failed and that will run
    /// again, most recently failed first (for the operator's support summary).
    pub async fn failing_jobs(&self, ctx: &TenantCtx, limit: i64) -> Result<Vec<Job>, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Read).await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM jobs WHERE org_id = $1 AND status IN ('available', 'running') \
             AND last_error IS NOT NULL ORDER BY updated_at DESC LIMIT $2"
        );
        let rows: Vec<Row> = on_conn!(tx.conn(), c => sqlx::query_as(&sql)
            .bind(ctx.org_id())
            .bind(limit)
            .fetch_all(&mut *c)
            .await)?;
        tx.commit().await?;
        Ok(rows.into_iter().map(Row::into_job).collect())
    }

    /// Cancels a job that has not started.
    pub async fn cancel_job(&self, ctx: &TenantCtx, id: JobId) -> Result<Job, StoreError> {
        self.transition(
            ctx,
            id,
            &[JobStatus::Available],
            JobStatus::Cancelled,
            "job.cancelled",
        )
        .await
    }

    /// Puts a dead or cancelled job back in the queue with fresh attempts.
    pub async fn retry_job(&self, ctx: &TenantCtx, id: JobId) -> Result<Job, StoreError> {
        self.transition(
            ctx,
            id,
            &[JobStatus::Dead, JobStatus::Cancelled],
            JobStatus::Available,
            "job.retried",
        )
        .await
    }

    async fn transition(
        &self,
        ctx: &TenantCtx,
        id: JobId,
        from: &[JobStatus],
        to: JobStatus,
        action: &'static str,
    ) -> Result<Job, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Write).await?;
        let sql = format!("SELECT {COLUMNS} FROM jobs WHERE org_id = $1 AND id = $2");
        let row: Row = on_conn!(tx.conn(), c => sqlx::query_as(&sql).bind(ctx.org_id()).bind(id).fetch_optional(&mut *c).await)?
            .ok_or(StoreError::NotFound)?;
        if !from.contains(&row.status) {
            return Err(DomainError::JobState.into());
        }
        let at = now();
        let sql = format!(
            "UPDATE jobs SET status = $3, attempts = CASE WHEN $3 = 'available' THEN 0 ELSE attempts END, \
             run_at = CASE WHEN $3 = 'available' THEN $4 ELSE run_at END, updated_at = $4, \
             finished_at = CASE WHEN $3 = 'cancelled' THEN $4 ELSE NULL END \
             WHERE org_id = $1 AND id = $2 AND status = $5 RETURNING {COLUMNS}"
        );
        let row: Option<Row> = on_conn!(tx.conn(), c => sqlx::query_as(&sql)
            .bind(ctx.org_id())
            .bind(id)
            .bind(to)
            .bind(at)
            .bind(row.status)
            .fetch_optional(&mut *c)
            .await)?;
        let row = row.ok_or(DomainError::JobState)?;
        if let Tx::Postgres(pg) = &mut *tx {
            if to == JobStatus::Available {
                sqlx::query("SELECT pg_notify($1, '')")
                    .bind(NOTIFY_CHANNEL)
                    .execute(&mut **pg)
                    .await?;
            }
        }
        tx.audit(AuditEntry::new(action, "job", id)).await?;
        tx.commit().await?;
        Ok(row.into_job())
    }

    /// Claims up to `limit` due jobs for `worker`, leased until `lease_until`.
    pub async fn claim_jobs(
        &self,
        worker: &str,
        limit: i64,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<Claimed>, StoreError> {
        let at = now();
        let mut tx = self.db().begin(Scope::System, Access::Write).await?;
        queue_session(&mut tx).await?;
        let lock = match &tx {
            Tx::Postgres(_) => " FOR UPDATE SKIP LOCKED",
            Tx::Sqlite(_) => "",
        };
        // The locking CTE runs exactly once; `id IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)`
        // may be re-evaluated by PostgreSQL and claim more than `n` rows.
        let sql = format!(
            "WITH next AS (SELECT id FROM jobs WHERE status = 'available' AND run_at <= $3 \
             AND NOT EXISTS (SELECT 1 FROM organizations o WHERE o.id = jobs.org_id AND o.status = 'suspended') \
             ORDER BY run_at, id LIMIT $4{lock}) \
             UPDATE jobs SET status = 'running', attempts = attempts + 1, locked_by = $1, locked_until = $2, \
             started_at = $3, updated_at = $3 \
             WHERE id IN (SELECT id FROM next) \
             RETURNING org_id, id, kind, payload, attempts, max_attempts"
        );
        let claimed: Vec<Claimed> = on_conn!(tx.conn(), c => sqlx::query_as(&sql)
            .bind(worker)
            .bind(lease_until)
            .bind(at)
            .bind(limit)
            .fetch_all(&mut *c)
            .await)?;
        tx.commit().await?;
        Ok(claimed)
    }

    /// Extends the lease of jobs `worker` still runs.
    pub async fn extend_leases(
        &self,
        worker: &str,
        ids: &[JobId],
        lease_until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.db().begin(Scope::System, Access::Write).await?;
        queue_session(&mut tx).await?;
        match &mut tx {
            Tx::Postgres(pg) => {
                let ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.as_uuid()).collect();
                sqlx::query("UPDATE jobs SET locked_until = $3 WHERE id = ANY($1) AND locked_by = $2 AND status = 'running'")
                    .bind(ids)
                    .bind(worker)
                    .bind(lease_until)
                    .execute(&mut **pg)
                    .await?;
            }
            Tx::Sqlite(_) => {
                for id in ids {
                    on_conn!(tx.conn(), c => sqlx::query("UPDATE jobs SET locked_until = $3 WHERE id = $1 AND locked_by = $2 AND status = 'running'")
                        .bind(*id)
                        .bind(worker)
                        .bind(lease_until)
                        .execute(&mut *c)
                        .await
                        .map(|_| ()))?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records successful runs in one transaction (one statement on PostgreSQL). Runs whose
    /// lease was lost (another worker owns them now) are left alone.
    pub async fn complete_jobs(
        &self,
        worker: &str,
        done: &[(JobId, serde_json::Value)],
    ) -> Result<(), StoreError> {
        if done.is_empty() {
            return Ok(());
        }
        let at = now();
        let mut tx = self.db().begin(Scope::System, Access::Write).await?;
        queue_session(&mut tx).await?;
        match &mut tx {
            Tx::Postgres(pg) => {
                let ids: Vec<uuid::Uuid> = done.iter().map(|(id, _)| id.as_uuid()).collect();
                let results: Vec<String> = done.iter().map(|(_, r)| r.to_string()).collect();
                sqlx::query(
                    "UPDATE jobs SET status = 'succeeded', result = d.result, finished_at = $3, updated_at = $3, \
                     locked_by = NULL, locked_until = NULL \
                     FROM UNNEST($1::uuid[], $2::text[]) AS d(id, result) \
                     WHERE jobs.id = d.id AND jobs.locked_by = $4 AND jobs.status = 'running'",
                )
                .bind(ids)
                .bind(results)
                .bind(at)
                .bind(worker)
                .execute(&mut **pg)
                .await?;
            }
            Tx::Sqlite(_) => {
                for (id, result) in done {
                    on_conn!(tx.conn(), c => sqlx::query(
                        "UPDATE jobs SET status = 'succeeded', result = $3, finished_at = $4, updated_at = $4, locked_by = NULL, locked_until = NULL \
                         WHERE id = $1 AND locked_by = $2 AND status = 'running'",
                    )
                    .bind(*id)
                    .bind(worker)
                    .bind(result.to_string())
                    .bind(at)
                    .execute(&mut *c)
                    .await
                    .map(|_| ()))?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records a failed run: back to the queue at `retry_at`, or dead (audited for tenant
    /// jobs) when `retry_at` is `None`.
    pub async fn fail_job(
        &self,
        worker: &str,
        job: &Claimed,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let at = now();
        let mut tx = self.db().begin(Scope::System, Access::Write).await?;
        let (status, run_at, finished) = match retry_at {
            Some(t) => (JobStatus::Available, t, None),
            None => (JobStatus::Dead, at, Some(at)),
        };
        let n = on_conn!(tx.conn(), c => sqlx::query(
            "UPDATE jobs SET status = $3, run_at = $4, last_error = $5, finished_at = $6, updated_at = $7, locked_by = NULL, locked_until = NULL \
             WHERE id = $1 AND locked_by = $2 AND status = 'running'",
        )
        .bind(job.id)
        .bind(worker)
        .bind(status)
        .bind(run_at)
        .bind(error)
        .bind(finished)
        .bind(at)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
        if n == 1 && retry_at.is_none() && job.org_id != OrgId::PLATFORM {
            let entry = AuditEntry::new("job.dead", "job", job.id).with_metadata(
                serde_json::json!({ "kind": job.kind, "attempts": job.attempts, "error": error }),
            );
            audit::append(
                &mut tx,
                job.org_id,
                &system_actor(),
                &RequestMeta::default(),
                entry,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Returns jobs whose worker stopped renewing its lease to the queue (or to `dead` when
    /// they have no attempts left). Returns how many were reclaimed.
    pub async fn reclaim_expired_jobs(&self) -> Result<u64, StoreError> {
        let at = now();
        let mut tx = self.db().begin(Scope::System, Access::Write).await?;
        queue_session(&mut tx).await?;
        let n = on_conn!(tx.conn(), c => sqlx::query(
            "UPDATE jobs SET status = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'available' END, \
             last_error = 'lease expired: the worker stopped while running the job', \
             finished_at = CASE WHEN attempts >= max_attempts THEN $1 ELSE NULL END, \
             run_at = $1, updated_at = $1, locked_by = NULL, locked_until = NULL \
             WHERE status = 'running' AND locked_until < $1",
        )
        .bind(at)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
        tx.commit().await?;
        Ok(n)
    }
}
