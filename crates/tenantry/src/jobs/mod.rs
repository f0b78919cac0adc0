//! Background jobs: typed job handlers registered in code, run by the worker.
//!
//! A handler names its `KIND`, decodes a typed payload and returns a JSON result or an
//! error; the worker retries failures with exponential backoff and jitter until
//! `max_attempts`, then marks the job dead. Handlers must be idempotent: a run can repeat
//! after a crash (at-least-once delivery).

mod builtin;
mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

pub use builtin::{AuditRetentionJob, EchoJob, EmailDispatchJob, UsageRollupJob};
pub use worker::{JobServices, Worker, WorkerHandle};

use crate::store::jobs::NewJob;
use crate::store::Store;

/// What a running job can use.
#[derive(Clone)]
pub struct JobContext {
    /// Storage.
    pub store: Store,
    /// Email delivery, when configured.
    pub mailer: Option<Arc<dyn crate::mail::Mailer>>,
    /// Billing, when configured.
    pub billing: Option<Arc<crate::billing::Billing>>,
    /// This run's number, from 1.
    pub attempt: i32,
}

/// A job type.
#[async_trait::async_trait]
pub trait JobHandler: Send + Sync + 'static {
    /// The `kind` stored with the job.
    const KIND: &'static str;
    /// May tenants enqueue it through the API?
    const PUBLIC: bool;
    /// Longest a run may take before it counts as failed.
    const TIMEOUT: Duration;
    /// Input.
    type Payload: DeserializeOwned + Send;

    /// Runs the job once.
    async fn run(
        &self,
        ctx: &JobContext,
        payload: Self::Payload,
    ) -> Result<serde_json::Value, String>;

    /// A job of this type with `payload`, run once as soon as possible; adjust the other
    /// fields before enqueueing.
    fn job(payload: serde_json::Value) -> NewJob {
        NewJob {
            kind: Self::KIND,
            payload,
            run_at: None,
            max_attempts: 1,
            idempotency_key: None,
        }
    }
}

/// A handler with its payload type erased, as the worker calls it.
#[async_trait::async_trait]
trait ErasedHandler: Send + Sync {
    fn public(&self) -> bool;
    fn timeout(&self) -> Duration;
    fn check(&self, payload: &serde_json::Value) -> Result<(), String>;
    async fn run(
        &self,
        ctx: &JobContext,
        payload: serde_json::Value,
    ) -> Result<serde_json::Value, String>;
}

struct Erased<H>(H);

#[async_trait::async_trait]
impl<H: JobHandler> ErasedHandler for Erased<H> {
    fn public(&self) -> bool {
        H::PUBLIC
    }

    fn timeout(&self) -> Duration {
        H::TIMEOUT
    }

    fn check(&self, payload: &serde_json::Value) -> Result<(), String> {
        serde_json::from_value::<H::Payload>(payload.clone())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn run(
        &self,
        ctx: &JobContext,
        payload: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        let payload = serde_json::from_value::<H::Payload>(payload)
            .map_err(|e| format!("bad payload: {e}"))?;
        self.0.run(ctx, payload).await
    }
}

/// The job types this process knows.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<&'static str, Arc<dyn ErasedHandler>>,
}

impl Registry {
    /// The built-in job types.
    pub fn builtin() -> Self {
        let mut registry = Self::default();
        registry.register(EchoJob);
        registry.register(EmailDispatchJob);
        registry.register(UsageRollupJob);
        registry.register(AuditRetentionJob);
        registry.register(crate::billing::jobs::StripeEventJob);
        registry.register(crate::billing::jobs::BillingSyncJob);
        registry
    }

    /// Adds a job type (the hook for a builder's own jobs).
    pub fn register<H: JobHandler>(&mut self, handler: H) {
        self.handlers.insert(H::KIND, Arc::new(Erased(handler)));
    }

    /// A job an API caller asked for: a public kind and a payload it accepts, or the
    /// field at fault and why.
    pub fn public_job(
        &self,
        kind: &str,
        payload: serde_json::Value,
    ) -> Result<NewJob, (&'static str, String)> {
        let (&kind, handler) = self
            .handlers
            .get_key_value(kind)
            .filter(|(_, h)| h.public())
            .ok_or_else(|| {
                let mut kinds: Vec<&str> = self
                    .handlers
                    .iter()
                    .filter(|(_, h)| h.public())
                    .map(|(k, _)| *k)
                    .collect();
                kinds.sort_unstable();
                (
                    "kind",
                    format!("unknown job type; available: {}", kinds.join(", ")),
                )
            })?;
        handler.check(&payload).map_err(|e| ("payload", e))?;
        Ok(NewJob {
            kind,
            payload,
            run_at: None,
            max_attempts: 1,
            idempotency_key: None,
        })
    }

    fn get(&self, kind: &str) -> Option<Arc<dyn ErasedHandler>> {
        self.handlers.get(kind).cloned()
    }
}
