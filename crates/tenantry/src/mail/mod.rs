//! Email delivery: the outbox dispatcher and the SMTP transport.
//!
//! Messages are queued in `email_outbox` by the transaction that decides to send them;
//! the dispatcher claims due ones and sends them over SMTP (`SMTP_URL`), retrying with
//! exponential backoff. Without SMTP the message stays in the outbox and one line is
//! logged (never its body, which may carry a one-time link).

pub(crate) mod templates;

use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::transport::smtp::client::Tls;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::AuthConfig;
use crate::store::outbox::QueuedEmail;
use crate::store::Store;

/// How long a claimed message is reserved for the instance sending it.
const CLAIM_LEASE_SECS: i64 = 60;
/// Attempts before a message is given up.
const MAX_ATTEMPTS: i32 = 10;

/// Sends one message.
#[async_trait::async_trait]
pub trait Mailer: Send + Sync {
    /// Delivers `email` or says why not.
    async fn send(&self, email: &QueuedEmail) -> Result<(), String>;
}

/// SMTP delivery with lettre.
pub(crate) struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpMailer {
    /// A mailer for `smtp://[user:pass@]host[:port]` (no TLS) or `smtps://…` (TLS).
    pub(crate) fn new(url: &str, from: &str) -> anyhow::Result<Self> {
        let parsed = url::Url::parse(url)?;
        let host = parsed
            .host_str()
            .ok_or_else(|| anyhow::anyhow!("SMTP_URL has no host"))?;
        let tls = parsed.scheme() == "smtps";
        let mut builder = if tls {
            AsyncSmtpTransport::<Tokio1Executor>::relay(host)?
        } else {
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).tls(Tls::None)
        };
        if let Some(port) = parsed.port() {
            builder = builder.port(port);
        }
        if !parsed.username().is_empty() {
            let password = parsed.password().unwrap_or_default();
            builder = builder.credentials((parsed.username(), password).into());
        }
        let transport = builder.timeout(Some(Duration::from_secs(10))).build();
        Ok(Self {
            transport,
            from: from.parse()?,
        })
    }
}

#[async_trait::async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, email: &QueuedEmail) -> Result<(), String> {
        let to: Mailbox = email
            .recipient
            .parse()
            .map_err(|e| format!("bad recipient: {e}"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(&email.subject)
            .body(email.body.clone())
            .map_err(|e| e.to_string())?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Delivers due outbox messages (the `email.dispatch` job). Without a mailer, claims them
/// for good and logs one line each. Returns how many were handled.
pub(crate) async fn deliver_due(
    store: &Store,
    mailer: Option<&dyn Mailer>,
) -> Result<usize, String> {
    let Some(mailer) = mailer else {
        let batch = store
            .claim_due_emails(100, chrono::Duration::days(365 * 100))
            .await
            .map_err(|e| crate::telemetry::error_chain(&e))?;
        for email in &batch {
            tracing::info!(outbox_id = %email.id, subject = %email.subject, "SMTP_URL not set; email kept in the outbox");
        }
        return Ok(batch.len());
    };
    let lease = chrono::Duration::seconds(CLAIM_LEASE_SECS);
    let batch = store
        .claim_due_emails(20, lease)
        .await
        .map_err(|e| crate::telemetry::error_chain(&e))?;
    let count = batch.len();
    for email in batch {
        let recorded = match mailer.send(&email).await {
            Ok(()) => store.mark_email_sent(email.id).await,
            Err(why) => {
                tracing::warn!(outbox_id = %email.id, attempt = email.attempts + 1, error = %why, "email delivery failed");
                let give_up = email.attempts + 1 >= MAX_ATTEMPTS;
                let backoff =
                    2i64.saturating_pow(u32::try_from(email.attempts).unwrap_or(0).min(12)) * 5;
                let retry_at = if give_up {
                    chrono::DateTime::<chrono::Utc>::MAX_UTC
                } else {
                    crate::store::now() + chrono::Duration::seconds(backoff)
                };
                store.mark_email_failed(email.id, &why, retry_at).await
            }
        };
        recorded.map_err(|e| crate::telemetry::error_chain(&e))?;
    }
    Ok(count)
}

/// The mailer for this configuration: SMTP when `SMTP_URL` is set.
pub(crate) fn mailer(config: &AuthConfig) -> anyhow::Result<Option<Arc<dyn Mailer>>> {
    match &config.smtp_url {
        Some(url) => Ok(Some(Arc::new(SmtpMailer::new(
            url.expose(),
            &config.smtp_from,
        )?))),
        None => Ok(None),
    }
}
