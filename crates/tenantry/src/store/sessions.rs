//! Session lookup and revocation, one-time email tokens, password changes.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::audit::AuditEntry;
use super::identity::{EmailPurpose, EmailToken, Session, User};
use super::outbox::{self, OutboundEmail};
use super::{now, Store, StoreError};
use crate::auth::{Actor, ActorKind, RequestMeta};
use crate::db::{on_conn, Access, Scope, Tx};
use crate::ids::{OrgId, SessionId, UserId};

/// Sliding sessions record activity at most this often, to keep reads cheap.
const TOUCH_EVERY: chrono::Duration = chrono::Duration::seconds(60);

fn actor(user: UserId) -> Actor {
    Actor {
        kind: ActorKind::User,
        id: Some(user.to_string()),
    }
}

async fn audit(
    tx: &mut Tx,
    user: UserId,
    meta: &RequestMeta,
    entry: AuditEntry,
) -> Result<(), StoreError> {
    super::audit::append(tx, OrgId::PLATFORM, &actor(user), meta, entry)
        .await
        .map(|_| ())
}

fn duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Store {
    /// The live session with this cookie hash and its user: not revoked, not past its
    /// absolute expiry, used within `idle`. With `sliding`, records this use.
    pub async fn session_by_token(
        &self,
        hash: &str,
        idle: Duration,
        sliding: bool,
    ) -> Result<Option<(Session, User)>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            session: Session,
            email: String,
            name: String,
            email_verified_at: Option<DateTime<Utc>>,
            user_created_at: DateTime<Utc>,
        }
        let at = now();
        let mut tx = self.db().begin(Scope::Global, Access::Read).await?;
        let row: Option<Row> = on_conn!(tx.conn(), c => sqlx::query_as(
            "SELECT s.id, s.user_id, s.created_at, s.last_seen_at, s.expires_at, s.ip, s.user_agent, \
             u.email, u.name, u.email_verified_at, u.created_at AS user_created_at \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > $2 AND s.last_seen_at > $3",
        )
        .bind(hash)
        .bind(at)
        .bind(at - duration(idle))
        .fetch_optional(&mut *c)
        .await)?;
        tx.commit().await?;
        let Some(row) = row else { return Ok(None) };
        if sliding && at - row.session.last_seen_at > TOUCH_EVERY {
            let mut tx = self.db().begin(Scope::Global, Access::Write).await?;
            on_conn!(tx.conn(), c => sqlx::query("UPDATE sessions SET last_seen_at = $2 WHERE id = $1")
                .bind(row.session.id)
                .bind(at)
                .execute(&mut *c)
                .await
                .map(|_| ()))?;
            tx.commit().await?;
        }
        let user = User {
            id: row.session.user_id,
            email: row.email,
            name: row.name,
            email_verified_at: row.email_verified_at,
            created_at: row.user_created_at,
        };
        Ok(Some((row.session, user)))
    }

    /// The user's live sessions, newest first.
    pub async fn list_sessions(&self, user: UserId) -> Result<Vec<Session>, StoreError> {
        let mut tx = self.db().begin(Scope::Global, Access::Read).await?;
        let rows = on_conn!(tx.conn(), c => sqlx::query_as(
            "SELECT id, user_id, created_at, last_seen_at, expires_at, ip, user_agent FROM sessions \
             WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 ORDER BY created_at DESC",
        )
        .bind(user)
        .bind(now())
        .fetch_all(&mut *c)
        .await)?;
        tx.commit().await?;
        Ok(rows)
    }

    /// Revokes one of the user's sessions; another user's session is `NotFound`.
    pub async fn revoke_session(
        &self,
        user: UserId,
        id: SessionId,
        meta: &RequestMeta,
    ) -> Result<(), StoreError> {
        let mut tx = self
            .db()
            .begin(Scope::Tenant(OrgId::PLATFORM), Access::Write)
            .await?;
        let n = on_conn!(tx.conn(), c => sqlx::query(
            "UPDATE sessions SET revoked_at = $3 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(user)
        .bind(now())
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        audit(
            &mut tx,
            user,
            meta,
            AuditEntry::new("session.revoked", "session", id),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Revokes all the user's sessions but `keep`; returns how many.
    pub async fn revoke_other_sessions(
        &self,
        user: UserId,
        keep: SessionId,
        meta: &RequestMeta,
    ) -> Result<u64, StoreError> {
        let mut tx = self
            .db()
            .begin(Scope::Tenant(OrgId::PLATFORM), Access::Write)
            .await?;
        let n = on_conn!(tx.conn(), c => sqlx::query(
            "UPDATE sessions SET revoked_at = $3 WHERE user_id = $1 AND id <> $2 AND revoked_at IS NULL",
        )
        .bind(user)
        .bind(keep)
        .bind(now())
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
        let entry = AuditEntry::new("session.revoked_others", "user", user)
            .with_metadata(serde_json::json!({ "count": n }));
        audit(&mut tx, user, meta, entry).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Ends a session by its own request (logout).
    pub async fn logout_session(
        &self,
        user: UserId,
        id: SessionId,
        meta: &RequestMeta,
    ) -> Result<(), StoreError> {
        let mut tx = self
            .db()
            .begin(Scope::Tenant(OrgId::PLATFORM), Access::Write)
            .await?;
        on_conn!(tx.conn(), c => sqlx::query("UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .bind(now())
            .execute(&mut *c)
            .await
            .map(|_| ()))?;
        let entry = AuditEntry::new("logout", "user", user)
            .with_metadata(serde_json::json!({ "method": "cookie" }));
        audit(&mut tx, user, meta, entry).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores a one-time token and queues its email.
    pub async fn issue_email_token(
        &self,
        user: UserId,
        token: &EmailToken,
        email: &OutboundEmail,
    ) -> Result<(), StoreError> {
        let mut tx = self.db().begin(Scope::Global, Access::Write).await?;
        super::identity::insert_email_token(&mut tx, user, token).await?;
        outbox::enqueue(&mut tx, email).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Marks the address of the token's user verified. `None` if the token is unknown,
    /// used or expired.
    pub async fn verify_email(
        &self,
        hash: &str,
        meta: &RequestMeta,
    ) -> Result<Option<UserId>, StoreError> {
        let mut tx = self
            .db()
            .begin(Scope::Tenant(OrgId::PLATFORM), Access::Write)
            .await?;
        let Some(user) = consume(&mut tx, EmailPurpose::VerifyEmail, hash).await? else {
            return Ok(None);
        };
        on_conn!(tx.conn(), c => sqlx::query("UPDATE users SET email_verified_at = $2, updated_at = $2 WHERE id = $1")
            .bind(user)
            .bind(now())
            .execute(&mut *c)
            .await
            .map(|_| ()))?;
        audit(
            &mut tx,
            user,
            meta,
            AuditEntry::new("email.verified", "user", user),
        )
        .await?;
        tx.commit().await?;
        Ok(Some(user))
    }

    /// Sets a new password from a reset token and revokes every session and refresh
    /// token of the user. `None` if the token is unknown, used or expired.
    pub async fn reset_password(
        &self,
        hash: &str,
        password_hash: &str,
        meta: &RequestMeta,
    ) -> Result<Option<UserId>, StoreError> {
        let mut tx = self
            .db()
            .begin(Scope::Tenant(OrgId::PLATFORM), Access::Write)
            .await?;
        let Some(user) = consume(&mut tx, EmailPurpose::ResetPassword, hash).await? else {
            return Ok(None);
        };
        set_password(&mut tx, user, password_hash).await?;
        let families = super::identity::revoke_all_for(&mut tx, user, None).await?;
        audit(
            &mut tx,
            user,
            meta,
            AuditEntry::new("password.reset", "user", user),
        )
        .await?;
        tx.commit().await?;
        self.revoked_families()
            .revoke_all(families.iter().map(|f| f.simple().to_string()));
        Ok(Some(user))
    }

    /// Changes a password, revoking refresh tokens and every session except `keep`.
    pub async fn change_password(
        &self,
        user: UserId,
        password_hash: &str,
        keep: Option<SessionId>,
        meta: &RequestMeta,
    ) -> Result<(), StoreError> {
        let mut tx = self
            .db()
            .begin(Scope::Tenant(OrgId::PLATFORM), Access::Write)
            .await?;
        set_password(&mut tx, user, password_hash).await?;
        let families = super::identity::revoke_all_for(&mut tx, user, keep).await?;
        audit(
            &mut tx,
            user,
            meta,
            AuditEntry::new("password.changed", "user", user),
        )
        .await?;
        tx.commit().await?;
        self.revoked_families()
            .revoke_all(families.iter().map(|f| f.simple().to_string()));
        Ok(())
    }

    /// The stored password hash of a user.
    pub async fn password_hash(&self, user: UserId) -> Result<String, StoreError> {
        let mut tx = self.db().begin(Scope::Global, Access::Read).await?;
        let hash: Option<String> = on_conn!(tx.conn(), c => sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
            .bind(user)
            .fetch_optional(&mut *c)
            .await)?;
        tx.commit().await?;
        hash.ok_or(StoreError::NotFound)
    }
}

async fn set_password(tx: &mut Tx, user: UserId, password_hash: &str) -> Result<(), StoreError> {
    on_conn!(tx.conn(), c => sqlx::query("UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1")
        .bind(user)
        .bind(password_hash)
        .bind(now())
        .execute(&mut *c)
        .await
        .map(|_| ()))?;
    Ok(())
}

/// Spends a live one-time token; returns its user.
async fn consume(
    tx: &mut Tx,
    purpose: EmailPurpose,
    hash: &str,
) -> Result<Option<UserId>, StoreError> {
    let at = now();
    let user: Option<UserId> = on_conn!(tx.conn(), c => sqlx::query_scalar(
        "UPDATE email_tokens SET used_at = $3 WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3 \
         RETURNING user_id",
    )
    .bind(hash)
    .bind(purpose.as_str())
    .bind(at)
    .fetch_optional(&mut *c)
    .await)?;
    Ok(user)
}
