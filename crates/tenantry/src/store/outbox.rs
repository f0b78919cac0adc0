//! The email outbox: messages are written in the transaction that decides to send them
//! and delivered afterwards by the mail dispatcher.

use chrono::{DateTime, Utc};

use super::{now, Store, StoreError};
use crate::db::{on_conn, Access, Scope, Tx};

/// A message to send.
#[derive(Clone, Debug)]
pub struct OutboundEmail {
    /// Recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
}

/// A queued message.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct QueuedEmail {
    /// Row id.
    pub id: uuid::Uuid,
    /// Recipient.
    pub recipient: String,
    /// Subject.
    pub subject: String,
    /// Body.
    pub body: String,
    /// Attempts so far.
    pub attempts: i32,
    /// Queued at.
    pub created_at: DateTime<Utc>,
}

/// Queues `email` inside the caller's transaction.
pub(crate) async fn enqueue(tx: &mut Tx, email: &OutboundEmail) -> Result<(), StoreError> {
    let at = now();
    on_conn!(tx.conn(), c => sqlx::query(
        "INSERT INTO email_outbox (id, recipient, subject, body, created_at, next_try_at) \
         VALUES ($1, $2, $3, $4, $5, $5)",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(&email.to)
    .bind(&email.subject)
    .bind(&email.body)
    .bind(at)
    .execute(&mut *c)
    .await
    .map(|_| ()))?;
    Ok(())
}

impl Store {
    /// The newest `limit` messages not sent (without `SMTP_URL` they are kept in the outbox):
    /// the development mailbox.
    pub async fn unsent_emails(&self, limit: i64) -> Result<Vec<QueuedEmail>, StoreError> {
        let mut tx = self.db().begin(Scope::Global, Access::Read).await?;
        let rows: Vec<QueuedEmail> = on_conn!(tx.conn(), c => sqlx::query_as(
            "SELECT id, recipient, subject, body, attempts, created_at FROM email_outbox \
             WHERE sent_at IS NULL ORDER BY created_at DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&mut *c)
        .await)?;
        tx.commit().await?;
        Ok(rows)
    }

    /// Claims up to `limit` messages due for (re)delivery, oldest first. A claim pushes
    /// the message's next try `lease` ahead, so another instance does not send it too; if
    /// this one dies, the message is retried when the lease runs out.
    pub async fn claim_due_emails(
        &self,
        limit: i64,
        lease: chrono::Duration,
    ) -> Result<Vec<QueuedEmail>, StoreError> {
        let at = now();
        let mut tx = self.db().begin(Scope::Global, Access::Write).await?;
        let rows: Vec<QueuedEmail> = on_conn!(tx.conn(), c => sqlx::query_as(
            "SELECT id, recipient, subject, body, attempts, created_at FROM email_outbox \
             WHERE sent_at IS NULL AND next_try_at <= $1 ORDER BY created_at LIMIT $2",
        )
        .bind(at)
        .bind(limit)
        .fetch_all(&mut *c)
        .await)?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            let updated = on_conn!(tx.conn(), c => sqlx::query(
                "UPDATE email_outbox SET next_try_at = $2 WHERE id = $1 AND sent_at IS NULL AND next_try_at <= $3",
            )
            .bind(row.id)
            .bind(at + lease)
            .bind(at)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))?;
            if updated == 1 {
                claimed.push(row);
            }
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// Marks a message delivered and scrubs its body, which may carry a one-time link.
    pub async fn mark_email_sent(&self, id: uuid::Uuid) -> Result<(), StoreError> {
        let mut tx = self.db().begin(Scope::Global, Access::Write).await?;
        on_conn!(tx.conn(), c => sqlx::query(
            "UPDATE email_outbox SET sent_at = $2, body = '', attempts = attempts + 1, last_error = NULL WHERE id = $1",
        )
        .bind(id)
        .bind(now())
        .execute(&mut *c)
        .await
        .map(|_| ()))?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a failed attempt and when to try again.
    pub async fn mark_email_failed(
        &self,
        id: uuid::Uuid,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.db().begin(Scope::Global, Access::Write).await?;
        on_conn!(tx.conn(), c => sqlx::query(
            "UPDATE email_outbox SET attempts = attempts + 1, last_error = $2, next_try_at = $3 WHERE id = $1",
        )
        .bind(id)
        .bind(error)
        .bind(retry_at)
        .execute(&mut *c)
        .await
        .map(|_| ()))?;
        tx.commit().await?;
        Ok(())
    }
}
