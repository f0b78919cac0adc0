//! The worker: claims due jobs in batches, runs them with bounded concurrency, renews
//! their leases, retries failures with backoff and jitter, reclaims jobs of dead workers,
//! enqueues periodic jobs, and drains on shutdown.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{EmailDispatchJob, JobContext, JobHandler as _, Registry, UsageRollupJob};
use crate::config::WorkerConfig;
use crate::ids::JobId;
use crate::store::jobs::{Claimed, NewJob, NOTIFY_CHANNEL};
use crate::store::{now, Store};

/// Periodic maintenance: (kind, every).
fn periodic(config: &WorkerConfig, billing: bool) -> Vec<(NewJob, Duration)> {
    let empty = || serde_json::json!({});
    let mut jobs = vec![
        (EmailDispatchJob::job(empty()), Duration::from_secs(5)),
        (UsageRollupJob::job(empty()), config.usage_rollup),
    ];
    if let Some(age) = config.audit_retention {
        let days = u32::try_from(age.as_secs() / 86_400).unwrap_or(u32::MAX);
        jobs.push((
            super::AuditRetentionJob::job(serde_json::json!({ "older_than_days": days })),
            config.audit_retention_interval,
        ));
    }
    if billing {
        jobs.push((
            crate::billing::jobs::BillingSyncJob::job(empty()),
            config.billing_sync,
        ));
    }
    jobs
}

/// A worker, ready to run.
pub struct Worker {
    store: Store,
    registry: Registry,
    mailer: Option<Arc<dyn crate::mail::Mailer>>,
    billing: Option<Arc<crate::billing::Billing>>,
    config: WorkerConfig,
    id: String,
    wake: Arc<Notify>,
}

/// The outside services jobs use.
#[derive(Clone, Default)]
pub struct JobServices {
    /// Email delivery, when configured.
    pub mailer: Option<Arc<dyn crate::mail::Mailer>>,
    /// Billing, when configured.
    pub billing: Option<Arc<crate::billing::Billing>>,
}

/// A running worker.
pub struct WorkerHandle {
    task: JoinHandle<()>,
}

impl WorkerHandle {
    /// Waits until the worker has drained (after its stop token was cancelled).
    pub async fn join(self) {
        if let Err(err) = self.task.await {
            tracing::error!(error = %err, "worker task failed");
        }
    }
}

struct Shared {
    store: Store,
    registry: Registry,
    mailer: Option<Arc<dyn crate::mail::Mailer>>,
    billing: Option<Arc<crate::billing::Billing>>,
    config: WorkerConfig,
    id: String,
    running: Mutex<HashSet<JobId>>,
}

impl Worker {
    /// A worker over `store`; `wake` is notified when this process enqueues a job.
    pub fn new(
        store: Store,
        registry: Registry,
        services: JobServices,
        config: WorkerConfig,
        wake: Arc<Notify>,
    ) -> Self {
        let id = format!("{}-{}", std::process::id(), crate::secrets::random_token(4));
        Self {
            store,
            registry,
            mailer: services.mailer,
            billing: services.billing,
            config,
            id,
            wake,
        }
    }

    /// This worker's id (stored as `locked_by`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Starts the worker; cancelling `stop` stops claiming and drains running jobs for up
    /// to `grace`.
    pub fn spawn(self, stop: CancellationToken, grace: Duration) -> WorkerHandle {
        WorkerHandle {
            task: tokio::spawn(self.run(stop, grace)),
        }
    }

    async fn run(self, stop: CancellationToken, grace: Duration) {
        let Worker {
            store,
            registry,
            mailer,
            billing,
            config,
            id,
            wake,
        } = self;
        let concurrency = config.concurrency;
        let shared = Arc::new(Shared {
            store,
            registry,
            mailer,
            billing,
            config,
            id,
            running: Mutex::new(HashSet::new()),
        });
        let permits = Arc::new(Semaphore::new(concurrency));
        let background = CancellationToken::new();
        let listener = listen(
            shared.store.direct_options(),
            wake.clone(),
            background.clone(),
        );
        let upkeep = tokio::spawn(upkeep(shared.clone(), background.clone()));
        let sealer = tokio::spawn(seal_audit(shared.store.clone(), background.clone()));
        let (done, finished) = tokio::sync::mpsc::unbounded_channel();
        let completer = tokio::spawn(completer(shared.clone(), finished));
        let mut busy = false;
        tracing::info!(worker = %shared.id, concurrency, "worker started");
        loop {
            let first = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                permit = permits.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => break },
            };
            if busy {
                // The queue is busy: let a few more slots free up so claims come in batches.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let mut batch = vec![first];
            while let Ok(more) = permits.clone().try_acquire_owned() {
                batch.push(more);
            }
            let lease_until =
                now() + chrono::Duration::from_std(shared.config.lease).unwrap_or_default();
            let limit = i64::try_from(batch.len()).unwrap_or(1);
            let claimed = match shared
                .store
                .bounded(shared.store.claim_jobs(&shared.id, limit, lease_until))
                .await
            {
                Ok(jobs) => jobs,
                Err(err) => {
                    tracing::warn!(error = %crate::telemetry::error_chain(&err), "cannot claim jobs");
                    Vec::new()
                }
            };
            let idle = claimed.len() < batch.len();
            busy = !idle;
            for job in claimed {
                // A claim never returns more than `limit` rows; should it, the extra job runs
                // after waiting for a slot rather than being stranded until its lease expires.
                let permit = match batch.pop() {
                    Some(p) => p,
                    None => match permits.clone().acquire_owned().await {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                };
                tokio::spawn(execute(shared.clone(), job, permit, done.clone()));
            }
            drop(batch);
            if idle {
                tokio::select! {
                    biased;
                    () = stop.cancelled() => break,
                    () = wake.notified() => {}
                    () = tokio::time::sleep(shared.config.poll_interval) => {}
                }
            }
        }
        // Drain: running jobs finish (or are left to be reclaimed after `grace`).
        let all = u32::try_from(concurrency).unwrap_or(u32::MAX);
        if tokio::time::timeout(grace, permits.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!(worker = %shared.id, "shutdown grace over with jobs still running; their leases will expire");
        }
        drop(done);
        let _ = completer.await;
        background.cancel();
        let _ = upkeep.await;
        let _ = sealer.await;
        if let Some(listener) = listener {
            let _ = listener.await;
        }
        tracing::info!(worker = %shared.id, "worker stopped");
    }
}

/// Runs one claimed job and records its outcome.
async fn execute(
    shared: Arc<Shared>,
    job: Claimed,
    permit: OwnedSemaphorePermit,
    done: Completions,
) {
    shared
        .running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(job.id);
    let started = std::time::Instant::now();
    // A payload that is not JSON fails its own job, never the claim of the others.
    let payload = serde_json::from_str::<serde_json::Value>(&job.payload);
    let outcome = match (shared.registry.get(&job.kind), payload) {
        (None, _) => Err(format!("no handler for job type `{}`", job.kind)),
        (Some(_), Err(err)) => Err(format!("the stored payload is not JSON: {err}")),
        (Some(handler), Ok(payload)) => {
            let ctx = JobContext {
                store: shared.store.clone(),
                mailer: shared.mailer.clone(),
                billing: shared.billing.clone(),
                attempt: job.attempts,
            };
            let timeout = handler.timeout();
            // Its own task, so a panicking handler fails the job instead of the worker.
            let run = tokio::spawn(async move { handler.run(&ctx, payload).await });
            match tokio::time::timeout(timeout, run).await {
                Ok(Ok(result)) => result,
                Ok(Err(join)) => Err(format!("job panicked: {join}")),
                Err(_) => Err(format!("timed out after {}s", timeout.as_secs())),
            }
        }
    };
    let label = match &outcome {
        Ok(_) => "succeeded",
        Err(_) if job.attempts < job.max_attempts => "retried",
        Err(_) => "dead",
    };
    metrics::counter!("jobs_finished_total", "kind" => job.kind.clone(), "outcome" => label)
        .increment(1);
    metrics::histogram!("job_duration_seconds", "kind" => job.kind.clone())
        .record(started.elapsed().as_secs_f64());
    match outcome {
        // Successes are recorded in batches by the completer, which also ends the lease
        // renewal of the job once it is written.
        Ok(result) => {
            if done.send((job.id, result)).is_err() {
                tracing::warn!(job_id = %job.id, "completer gone; the lease will expire and the job will run again");
            }
        }
        Err(error) => {
            let retry_at = (job.attempts < job.max_attempts)
                .then(|| now() + backoff(shared.config.retry_base, job.attempts));
            tracing::info!(job_id = %job.id, kind = %job.kind, attempt = job.attempts, outcome = label, error = %error, "job failed");
            if let Err(err) = shared
                .store
                .fail_job(&shared.id, &job, &error, retry_at)
                .await
            {
                tracing::warn!(job_id = %job.id, error = %crate::telemetry::error_chain(&err), "cannot record job outcome; the lease will expire and it will run again");
            }
            shared
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&job.id);
        }
    }
    drop(permit);
}

/// Successful runs waiting to be recorded.
type Completions = tokio::sync::mpsc::UnboundedSender<(JobId, serde_json::Value)>;

/// Records successful runs in batches: whatever has finished since the last write, up to
/// 500 at a time, in one transaction.
async fn completer(
    shared: Arc<Shared>,
    mut finished: tokio::sync::mpsc::UnboundedReceiver<(JobId, serde_json::Value)>,
) {
    let mut batch = Vec::new();
    while let Some(first) = finished.recv().await {
        batch.push(first);
        while batch.len() < 500 {
            match finished.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        if let Err(err) = shared
            .store
            .bounded(shared.store.complete_jobs(&shared.id, &batch))
            .await
        {
            tracing::warn!(error = %crate::telemetry::error_chain(&err), jobs = batch.len(), "cannot record finished jobs; their leases will expire and they will run again");
        }
        let mut running = shared.running.lock().unwrap_or_else(|e| e.into_inner());
        for (id, _) in batch.drain(..) {
            running.remove(&id);
        }
    }
}

/// `base * 2^(attempt-1)`, at most an hour, with ±25% jitter so retries spread out.
fn backoff(base: Duration, attempt: i32) -> chrono::Duration {
    let exp = u32::try_from(attempt.saturating_sub(1))
        .unwrap_or(0)
        .min(20);
    let raw = base
        .saturating_mul(2u32.saturating_pow(exp))
        .min(Duration::from_secs(3600));
    let jitter = rand::thread_rng().gen_range(0.75..1.25);
    chrono::Duration::from_std(raw.mul_f64(jitter)).unwrap_or_default()
}

/// Renews leases of running jobs, reclaims expired ones and enqueues periodic jobs.
/// Links new audit records into their organizations' chains every
/// [`SEAL_INTERVAL`](crate::store::audit::SEAL_INTERVAL), and once more on the way out.
async fn seal_audit(store: Store, stop: CancellationToken) {
    loop {
        let stopping = stop.is_cancelled();
        let started = std::time::Instant::now();
        match store.bounded(store.seal_audit_chains()).await {
            Ok(0) => {}
            Ok(n) => {
                metrics::counter!("audit_records_sealed_total")
                    .increment(u64::try_from(n).unwrap_or(u64::MAX));
                metrics::histogram!("audit_seal_pass_seconds")
                    .record(started.elapsed().as_secs_f64());
            }
            Err(err) => {
                tracing::warn!(error = %crate::telemetry::error_chain(&err), "cannot seal audit records")
            }
        }
        if stopping {
            return;
        }
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(crate::store::audit::SEAL_INTERVAL) => {}
        }
    }
}

async fn upkeep(shared: Arc<Shared>, stop: CancellationToken) {
    let tick = (shared.config.lease / 3).max(Duration::from_millis(200));
    let mut last_periodic = std::time::Instant::now() - Duration::from_secs(3600);
    loop {
        let ids: Vec<JobId> = shared
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect();
        if !ids.is_empty() {
            let until = now() + chrono::Duration::from_std(shared.config.lease).unwrap_or_default();
            if let Err(err) = shared
                .store
                .bounded(shared.store.extend_leases(&shared.id, &ids, until))
                .await
            {
                tracing::warn!(error = %crate::telemetry::error_chain(&err), "cannot renew job leases");
            }
        }
        match shared
            .store
            .bounded(shared.store.reclaim_expired_jobs())
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::warn!(reclaimed = n, "reclaimed jobs whose worker stopped"),
            Err(err) => {
                tracing::warn!(error = %crate::telemetry::error_chain(&err), "cannot reclaim jobs")
            }
        }
        if last_periodic.elapsed() >= Duration::from_secs(5) {
            last_periodic = std::time::Instant::now();
            enqueue_periodic(&shared.store, &shared.config, shared.billing.is_some()).await;
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(tick) => {}
        }
    }
}

/// Enqueues each periodic job once per period across all workers (the period's number is
/// its idempotency key).
async fn enqueue_periodic(store: &Store, config: &WorkerConfig, billing: bool) {
    let secs = now().timestamp();
    for (mut job, every) in periodic(config, billing) {
        let period = i64::try_from(every.as_secs()).unwrap_or(i64::MAX).max(1);
        let kind = job.kind;
        job.idempotency_key = Some(format!("periodic:{kind}:{}", secs / period));
        if let Err(err) = store.bounded(store.enqueue_system_job(&job)).await {
            tracing::warn!(kind, error = %crate::telemetry::error_chain(&err), "cannot enqueue periodic job");
        }
    }
}

/// On PostgreSQL, forwards `NOTIFY tenantry_jobs` to `wake` so enqueues anywhere start
/// work at once (the poll interval covers any notification missed while reconnecting).
fn listen(
    direct: Option<sqlx::postgres::PgConnectOptions>,
    wake: Arc<Notify>,
    stop: CancellationToken,
) -> Option<JoinHandle<()>> {
    crate::db::notify::follow(
        direct,
        NOTIFY_CHANNEL,
        stop,
        || std::future::ready(Ok::<(), sqlx::Error>(())),
        move |_| wake.notify_one(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_bounded_jitter() {
        let base = Duration::from_millis(1000);
        for attempt in 1..=5 {
            let expected = 1000.0 * 2f64.powi(attempt - 1);
            let got = f64::from(i32::try_from(backoff(base, attempt).num_milliseconds()).unwrap());
            assert!(
                got >= expected * 0.75 - 1.0 && got <= expected * 1.25 + 1.0,
                "attempt {attempt}: {got}"
            );
        }
        assert!(backoff(base, 40).num_seconds() <= 3600 * 5 / 4);
    }
}
