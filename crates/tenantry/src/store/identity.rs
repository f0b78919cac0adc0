//! Users, refresh tokens, sessions and one-time email tokens.
//!
//! Users are global; their security events go to the platform audit chain
//! ([`OrgId::PLATFORM`]). Every token is looked up by its SHA-256 only.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::audit::{self, AuditEntry};
use super::outbox::{self, OutboundEmail};
use super::{now, Store, StoreError};
use crate::auth::{Actor, ActorKind, RequestMeta};
use crate::db::{on_conn, Access, Scope, Tx};
use crate::domain::DomainError;
use crate::ids::{OrgId, SessionId, UserId};

/// A user as shown to that user.
#[derive(Clone, Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct User {
    /// Id.
    pub id: UserId,
    /// Email address.
    pub email: String,
    /// Display name.
    pub name: String,
    /// When the address was verified.
    pub email_verified_at: Option<DateTime<Utc>>,
    /// Sign-up time.
    pub created_at: DateTime<Utc>,
}

const USER_COLUMNS: &str = "id, email, name, email_verified_at, created_at";

/// A browser session as listed to its user.
#[derive(Clone, Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Session {
    /// Id.
    pub id: SessionId,
    /// Owner.
    #[serde(skip)]
    pub user_id: UserId,
    /// Started at.
    pub created_at: DateTime<Utc>,
    /// Last request.
    pub last_seen_at: DateTime<Utc>,
    /// Absolute expiry.
    pub expires_at: DateTime<Utc>,
    /// Client address at sign-in.
    pub ip: Option<String>,
    /// Client user agent at sign-in.
    pub user_agent: Option<String>,
}

const SESSION_COLUMNS: &str = "id, user_id, created_at, last_seen_at, expires_at, ip, user_agent";

/// What a one-time email token is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmailPurpose {
    /// Proves the address.
    VerifyEmail,
    /// Sets a new password.
    ResetPassword,
}

impl EmailPurpose {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::ResetPassword => "reset_password",
        }
    }
}

/// A one-time token to create with its message.
#[derive(Clone, Debug)]
pub struct EmailToken {
    /// Purpose.
    pub purpose: EmailPurpose,
    /// SHA-256 of the token.
    pub hash: String,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
}

/// The outcome of presenting a refresh token.
#[derive(Debug)]
pub enum Refresh {
    /// Rotated: the presented token is spent, the new one is stored.
    Rotated {
        /// Owner.
        user: UserId,
        /// Family id.
        family: uuid::Uuid,
    },
    /// An already-rotated token was presented again: the whole family is now revoked.
    Reused,
    /// Unknown, expired or revoked.
    Invalid,
}

fn user_actor(user: UserId) -> Actor {
    Actor {
        kind: ActorKind::User,
        id: Some(user.to_string()),
    }
}

async fn audit_platform(
    tx: &mut Tx,
    actor: &Actor,
    meta: &RequestMeta,
    entry: AuditEntry,
) -> Result<(), StoreError> {
    audit::append(tx, OrgId::PLATFORM, actor, meta, entry)
        .await
        .map(|_| ())
}

pub(super) async fn insert_email_token(
    tx: &mut Tx,
    user: UserId,
    token: &EmailToken,
) -> Result<(), StoreError> {
    on_conn!(tx.conn(), c => sqlx::query(
        "INSERT INTO email_tokens (id, user_id, purpose, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(user)
    .bind(token.purpose.as_str())
    .bind(&token.hash)
    .bind(now())
    .bind(token.expires_at)
    .execute(&mut *c)
    .await
    .map(|_| ()))?;
    Ok(())
}

/// Announces (at commit, on PostgreSQL) that `families` were revoked, so every instance
/// refuses their access tokens.
pub(super) async fn announce_revoked(
    tx: &mut Tx,
    families: &[uuid::Uuid],
) -> Result<(), StoreError> {
    if let (Tx::Postgres(pg), false) = (&mut *tx, families.is_empty()) {
        let ids: Vec<String> = families.iter().map(|f| f.simple().to_string()).collect();
        sqlx::query("SELECT pg_notify($1, f) FROM unnest($2::text[]) AS f")
            .bind(crate::store::revocation::REVOKED_FAMILIES_CHANNEL)
            .bind(ids)
            .execute(&mut **pg)
            .await?;
    }
    Ok(())
}

/// Revokes every refresh token and session of `user`, except session `keep`; returns the
/// refresh families revoked (announced to every instance at commit).
pub(super) async fn revoke_all_for(
    tx: &mut Tx,
    user: UserId,
    keep: Option<SessionId>,
) -> Result<Vec<uuid::Uuid>, StoreError> {
    let at = now();
    let mut families: Vec<uuid::Uuid> = on_conn!(tx.conn(), c => sqlx::query_scalar(
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL RETURNING family_id",
    )
    .bind(user)
    .bind(at)
    .fetch_all(&mut *c)
    .await)?;
    families.sort_unstable();
    families.dedup();
    announce_revoked(tx, &families).await?;
    on_conn!(tx.conn(), c => sqlx::query(
        "UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL AND ($3 IS NULL OR id <> $3)",
    )
    .bind(user)
    .bind(at)
    .bind(keep)
    .execute(&mut *c)
    .await
    .map(|_| ()))?;
    Ok(families)
}

impl Store {
    /// Creates a user with a verification token and its email, audited, in one transaction.
    pub async fn register_user(
        &self,
        email: &str,
        name: &str,
        password_hash: &str,
        verify: (EmailToken, OutboundEmail),
        org: Option<super::orgs::NewOrg>,
        meta: &RequestMeta,
    ) -> Result<(User, Option<super::orgs::Organization>), StoreError> {
        let id = UserId::new();
        let at = now();
        let mut tx = self
            .db()
            .begin(Scope::Tenant(OrgId::PLATFORM), Access::Write)
            .await?;
        let sql = format!(
            "INSERT INTO users (id, email, name, password_hash, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING {USER_COLUMNS}"
        );
        let user: User = on_conn!(tx.conn(), c => sqlx::query_as(&sql)
            .bind(id)
            .bind(email)
            .bind(name)
            .bind(password_hash)
            .bind(at)
            .fetch_one(&mut *c)
            .await)
        .map_err(|e| StoreError::unique(e, DomainError::EmailTaken))?;
        insert_email_token(&mut tx, id, &verify.0).await?;
        outbox::enqueue(&mut tx, &verify.1).await?;
        audit_platform(
            &mut tx,
            &user_actor(id),
            meta,
            AuditEntry::new("user.registered", "user", id),
        )
        .await?;
        let org = match org {
            Some(new) => {
                let org_id = OrgId::new();
                tx.set_tenant(org_id).await?;
                Some(super::members::create_owned_org(&mut tx, org_id, id, &new, meta).await?)
            }
            None => None,
        };
        tx.commit().await?;
        Ok((user, org))
    }

    /// The user with `email` and their password hash, if any.
    pub async fn user_for_login(&self, email: &str) -> Result<Option<(User, String)>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            user: User,
            password_hash: String,
        }
        let mut tx = self.db().begin(Scope::Global, Access::Read).await?;
        let sql = format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE email = $1");
        let row: Option<Row> = on_conn!(tx.conn(), c => sqlx::query_as(&sql).bind(email).fetch_optional(&mut *c).await)?;
        tx.commit().await?;
        Ok(row.map(|r| (r.user, r.password_hash)))
    }

    /// A user by id.
    pub async fn get_user(&self, id: UserId) -> Result<User, StoreError> {
        let mut tx = self.db().begin(Scope::Global, Access::Read).await?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let user: Option<User> =
            on_conn!(tx.conn(), c => sqlx::query_as(&sql).bind(id).fetch_optional(&mut *c).await)?;
        tx.commit().await?;
        user.ok_or(StoreError::NotFound)
    }

    /// Audits a sign-in attempt; on success also stores the first refresh token of a new
    /// family (when `refresh` is given) or the new session (when `session` is given).
    pub async fn record_login(
        &self,
        attempt: LoginAttempt<'_>,
        meta: &RequestMeta,
    ) -> Result<LoginGrant, StoreError> {
        let mut tx = self
            .db()
            .begin(Scope::Tenant(OrgId::PLATFORM), Access::Write)
            .await?;
        let Some(user) = attempt.user else {
            let entry = AuditEntry {
                action: "login.failed",
                target_type: Some("email"),
                target_id: Some(attempt.email.to_owned()),
                metadata: serde_json::json!({ "method": attempt.method }),
            };
            audit_platform(
                &mut tx,
                &Actor {
                    kind: ActorKind::User,
                    id: None,
                },
                meta,
                entry,
            )
            .await?;
            tx.commit().await?;
            return Ok(LoginGrant::default());
        };
        let mut grant = LoginGrant::default();
        if let Some((hash, expires_at)) = attempt.refresh {
            let family = uuid::Uuid::now_v7();
            insert_refresh(&mut tx, user, family, hash, expires_at).await?;
            grant.family = Some(family);
        }
        if let Some(session) = attempt.session {
            grant.session = Some(insert_session(&mut tx, user, session, meta).await?);
        }
        let entry = AuditEntry::new("login.succeeded", "user", user)
            .with_metadata(serde_json::json!({ "method": attempt.method }));
        audit_platform(&mut tx, &user_actor(user), meta, entry).await?;
        tx.commit().await?;
        Ok(grant)
    }

    /// Spends a refresh token and stores its successor in the same family. Presenting a
    /// spent token again revokes the family (it was stolen or replayed) and is audited.
    pub async fn rotate_refresh(
        &self,
        presented_hash: &str,
        next_hash: &str,
        next_expires_at: DateTime<Utc>,
        meta: &RequestMeta,
    ) -> Result<Refresh, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            id: uuid::Uuid,
            user_id: UserId,
            family_id: uuid::Uuid,
            expires_at: DateTime<Utc>,
            used_at: Option<DateTime<Utc>>,
            revoked_at: Option<DateTime<Utc>>,
        }
        let at = now();
        let mut tx = self
            .db()
            .begin(Scope::Tenant(OrgId::PLATFORM), Access::Write)
            .await?;
        let row: Option<Row> = on_conn!(tx.conn(), c => sqlx::query_as(
            "SELECT id, user_id, family_id, expires_at, used_at, revoked_at FROM refresh_tokens WHERE token_hash = $1",
        )
        .bind(presented_hash)
        .fetch_optional(&mut *c)
        .await)?;
        let Some(row) = row else {
            return Ok(Refresh::Invalid);
        };
        if row.revoked_at.is_some() || row.expires_at <= at {
            return Ok(Refresh::Invalid);
        }
        let spent = row.used_at.is_some()
            || on_conn!(tx.conn(), c => sqlx::query(
                "UPDATE refresh_tokens SET used_at = $2 WHERE id = $1 AND used_at IS NULL",
            )
            .bind(row.id)
            .bind(at)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))?
                == 0;
        if spent {
            on_conn!(tx.conn(), c => sqlx::query(
                "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
            )
            .bind(row.family_id)
            .bind(at)
            .execute(&mut *c)
            .await
            .map(|_| ()))?;
            announce_revoked(&mut tx, &[row.family_id]).await?;
            let entry = AuditEntry::new("refresh_token.reuse_detected", "user", row.user_id)
                .with_metadata(serde_json::json!({ "family": row.family_id.simple().to_string() }));
            audit_platform(&mut tx, &user_actor(row.user_id), meta, entry).await?;
            tx.commit().await?;
            self.revoked_families()
                .revoke(&row.family_id.simple().to_string());
            return Ok(Refresh::Reused);
        }
        insert_refresh(
            &mut tx,
            row.user_id,
            row.family_id,
            next_hash,
            next_expires_at,
        )
        .await?;
        tx.commit().await?;
        Ok(Refresh::Rotated {
            user: row.user_id,
            family: row.family_id,
        })
    }

    /// Refresh families revoked at or after `since`.
    pub async fn families_revoked_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<uuid::Uuid>, StoreError> {
        let mut tx = self.db().begin(Scope::Global, Access::Read).await?;
        let families = on_conn!(tx.conn(), c => sqlx::query_scalar(
            "SELECT DISTINCT family_id FROM refresh_tokens WHERE revoked_at IS NOT NULL AND revoked_at >= $1",
        )
        .bind(since)
        .fetch_all(&mut *c)
        .await)?;
        tx.commit().await?;
        Ok(families)
    }

    /// Revokes the family of a refresh token (logout). False if the token is unknown.
    pub async fn logout_refresh(
        &self,
        presented_hash: &str,
        meta: &RequestMeta,
    ) -> Result<bool, StoreError> {
        let mut tx = self
            .db()
            .begin(Scope::Tenant(OrgId::PLATFORM), Access::Write)
            .await?;
        let found: Option<(UserId, uuid::Uuid)> = on_conn!(tx.conn(), c => sqlx::query_as(
            "SELECT user_id, family_id FROM refresh_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
        )
        .bind(presented_hash)
        .fetch_optional(&mut *c)
        .await)?;
        let Some((user, family)) = found else {
            return Ok(false);
        };
        on_conn!(tx.conn(), c => sqlx::query("UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL")
            .bind(family)
            .bind(now())
            .execute(&mut *c)
            .await
            .map(|_| ()))?;
        announce_revoked(&mut tx, &[family]).await?;
        let entry = AuditEntry::new("logout", "user", user)
            .with_metadata(serde_json::json!({ "method": "token" }));
        audit_platform(&mut tx, &user_actor(user), meta, entry).await?;
        tx.commit().await?;
        self.revoked_families().revoke(&family.simple().to_string());
        Ok(true)
    }
}

/// A sign-in attempt to record.
#[derive(Debug)]
pub struct LoginAttempt<'a> {
    /// The email given.
    pub email: &'a str,
    /// The user, when the password matched.
    pub user: Option<UserId>,
    /// `token` or `cookie`.
    pub method: &'static str,
    /// Refresh token hash and expiry to store on success.
    pub refresh: Option<(&'a str, DateTime<Utc>)>,
    /// Session to start on success.
    pub session: Option<NewSession<'a>>,
}

/// A session to start.
#[derive(Clone, Copy, Debug)]
pub struct NewSession<'a> {
    /// SHA-256 of the cookie value.
    pub hash: &'a str,
    /// Absolute expiry.
    pub expires_at: DateTime<Utc>,
    /// Sessions kept per user; the oldest beyond are revoked.
    pub max_per_user: u32,
}

/// What a successful sign-in created.
#[derive(Debug, Default)]
pub struct LoginGrant {
    /// Refresh family.
    pub family: Option<uuid::Uuid>,
    /// Session.
    pub session: Option<Session>,
}

async fn insert_refresh(
    tx: &mut Tx,
    user: UserId,
    family: uuid::Uuid,
    hash: &str,
    expires_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    on_conn!(tx.conn(), c => sqlx::query(
        "INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(user)
    .bind(family)
    .bind(hash)
    .bind(now())
    .bind(expires_at)
    .execute(&mut *c)
    .await
    .map(|_| ()))?;
    Ok(())
}

async fn insert_session(
    tx: &mut Tx,
    user: UserId,
    new: NewSession<'_>,
    meta: &RequestMeta,
) -> Result<Session, StoreError> {
    let at = now();
    let sql = format!(
        "INSERT INTO sessions (id, user_id, token_hash, created_at, last_seen_at, expires_at, ip, user_agent) \
         VALUES ($1, $2, $3, $4, $4, $5, $6, $7) RETURNING {SESSION_COLUMNS}"
    );
    let session: Session = on_conn!(tx.conn(), c => sqlx::query_as(&sql)
        .bind(SessionId::new())
        .bind(user)
        .bind(new.hash)
        .bind(at)
        .bind(new.expires_at)
        .bind(&meta.ip)
        .bind(&meta.user_agent)
        .fetch_one(&mut *c)
        .await)?;
    // Keep the newest `max_per_user` live sessions; revoke the rest, oldest first.
    let live: Vec<SessionId> = on_conn!(tx.conn(), c => sqlx::query_scalar(
        "SELECT id FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 ORDER BY created_at DESC, id DESC",
    )
    .bind(user)
    .bind(at)
    .fetch_all(&mut *c)
    .await)?;
    let keep = usize::try_from(new.max_per_user).unwrap_or(usize::MAX);
    for old in live.into_iter().skip(keep) {
        on_conn!(tx.conn(), c => sqlx::query("UPDATE sessions SET revoked_at = $2 WHERE id = $1")
            .bind(old)
            .bind(at)
            .execute(&mut *c)
            .await
            .map(|_| ()))?;
    }
    Ok(session)
}
