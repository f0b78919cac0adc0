//! Built-in job types.

use std::time::Duration;

use serde::Deserialize;

use super::{JobContext, JobHandler};

/// `echo`: returns its payload, whatever JSON it is (`{"msg":"hi"}` as the original
/// product's smoke test sends, or anything else). The example of a tenant job; two optional
/// members of an object payload make retries and long runs observable.
pub struct EchoJob;

/// Input of `echo`: any JSON value.
pub struct EchoPayload {
    /// Returned as `{"echo": payload}`.
    pub body: serde_json::Value,
    /// `fail_attempts`: fail the first this many runs (to see retries).
    pub fail_attempts: i32,
    /// `sleep_ms`: work this long before answering.
    pub sleep_ms: u64,
}

impl<'de> Deserialize<'de> for EchoPayload {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Default, Deserialize)]
        struct Knobs {
            #[serde(default)]
            fail_attempts: i32,
            #[serde(default)]
            sleep_ms: u64,
        }
        let body = serde_json::Value::deserialize(deserializer)?;
        let knobs = if body.is_object() {
            Knobs::deserialize(&body).map_err(serde::de::Error::custom)?
        } else {
            Knobs::default()
        };
        Ok(Self {
            body,
            fail_attempts: knobs.fail_attempts,
            sleep_ms: knobs.sleep_ms,
        })
    }
}

#[async_trait::async_trait]
impl JobHandler for EchoJob {
    const KIND: &'static str = "echo";
    const PUBLIC: bool = true;
    const TIMEOUT: Duration = Duration::from_secs(60);
    type Payload = EchoPayload;

    async fn run(
        &self,
        ctx: &JobContext,
        payload: EchoPayload,
    ) -> Result<serde_json::Value, String> {
        if payload.sleep_ms > 0 {
            tokio::time::sleep(Duration::from_millis(payload.sleep_ms.min(50_000))).await;
        }
        if ctx.attempt <= payload.fail_attempts {
            return Err(format!(
                "failing on purpose (attempt {} of {} planned failures)",
                ctx.attempt, payload.fail_attempts
            ));
        }
        Ok(serde_json::json!({ "echo": payload.body, "attempt": ctx.attempt }))
    }
}

/// `email.dispatch`: delivers due messages of the email outbox. Enqueued when mail is
/// queued and periodically; internal.
pub struct EmailDispatchJob;

#[async_trait::async_trait]
impl JobHandler for EmailDispatchJob {
    const KIND: &'static str = "email.dispatch";
    const PUBLIC: bool = false;
    const TIMEOUT: Duration = Duration::from_secs(120);
    type Payload = serde_json::Value;

    async fn run(
        &self,
        ctx: &JobContext,
        _payload: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        let sent = crate::mail::deliver_due(&ctx.store, ctx.mailer.as_deref()).await?;
        Ok(serde_json::json!({ "processed": sent }))
    }
}

impl EmailDispatchJob {
    /// Asks a worker to deliver queued mail now (enqueues `email.dispatch`). A failure only
    /// delays delivery until the periodic run, so it is logged, not returned.
    pub(crate) async fn request_now(store: &crate::store::Store, wake: &tokio::sync::Notify) {
        let job = Self::job(serde_json::json!({}));
        match store.enqueue_system_job(&job).await {
            Ok(_) => wake.notify_one(),
            Err(err) => {
                tracing::warn!(error = %crate::telemetry::error_chain(&err), "cannot request email delivery; the periodic run will send it")
            }
        }
    }
}

/// `usage.rollup`: adds usage events to the daily totals and forgets idempotency keys older
/// than 24 hours. Periodic; internal. Safe to run
/// twice at once: each event is rolled up exactly once.
pub struct UsageRollupJob;

#[async_trait::async_trait]
impl JobHandler for UsageRollupJob {
    const KIND: &'static str = "usage.rollup";
    const PUBLIC: bool = false;
    const TIMEOUT: Duration = Duration::from_secs(300);
    type Payload = serde_json::Value;

    async fn run(
        &self,
        ctx: &JobContext,
        _payload: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        let events = ctx
            .store
            .rollup_usage()
            .await
            .map_err(|e| crate::telemetry::error_chain(&e))?;
        // The same periodic housekeeping forgets idempotency keys past their 24 hours.
        let keys = ctx
            .store
            .prune_idempotency_keys()
            .await
            .map_err(|e| crate::telemetry::error_chain(&e))?;
        Ok(serde_json::json!({ "events": events, "idempotency_keys_pruned": keys }))
    }
}

/// `audit.retention`: removes every organization's audit records older than
/// `older_than_days` (`AUDIT_LOG_RETENTION_DAYS`) behind a signed checkpoint, so the
/// chain still verifies. Periodic; internal; safe to run twice (the second finds nothing).
pub struct AuditRetentionJob;

/// What `audit.retention` is told.
#[derive(serde::Deserialize, serde::Serialize)]
pub struct AuditRetention {
    /// Records older than this many days go.
    pub older_than_days: u32,
}

#[async_trait::async_trait]
impl JobHandler for AuditRetentionJob {
    const KIND: &'static str = "audit.retention";
    const PUBLIC: bool = false;
    const TIMEOUT: Duration = Duration::from_secs(600);
    type Payload = AuditRetention;

    async fn run(
        &self,
        ctx: &JobContext,
        payload: AuditRetention,
    ) -> Result<serde_json::Value, String> {
        if payload.older_than_days == 0 {
            return Err("older_than_days must be at least 1".to_owned());
        }
        let cutoff =
            crate::store::now() - chrono::Duration::days(i64::from(payload.older_than_days));
        let report = ctx
            .store
            .prune_audit_log(cutoff)
            .await
            .map_err(|e| crate::telemetry::error_chain(&e))?;
        if report.failed > 0 {
            return Err(format!(
                "{} organizations could not be pruned ({} records removed elsewhere)",
                report.failed, report.records
            ));
        }
        Ok(serde_json::json!({ "orgs": report.orgs, "records": report.records, "before": cutoff }))
    }
}
