//! The append-only audit log with a per-organization hash chain.
//!
//! Each record's `hash` is SHA-256 over the previous record's hash and the record's own
//! canonical JSON, so a changed, removed or reordered record breaks every hash after it.
//! Appends lock the chain head row, which serializes writers of one organization only.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::{now, page_size, Store, StoreError};
use crate::auth::{Actor, ActorKind, RequestMeta, TenantCtx};
use crate::db::{on_conn, Access, Tx};
use crate::ids::{AuditEventId, OrgId};

/// Hash that precedes the first record of every chain.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened, as the caller describes it.
#[derive(Clone, Debug)]
pub struct AuditEntry {
    /// Dotted action name such as `organization.created`.
    pub action: &'static str,
    /// Kind of object acted on.
    pub target_type: Option<&'static str>,
    /// Its id.
    pub target_id: Option<String>,
    /// Extra facts (never secrets).
    pub metadata: serde_json::Value,
}

impl AuditEntry {
    /// An entry about one target.
    pub fn new(action: &'static str, target_type: &'static str, target_id: impl ToString) -> Self {
        Self {
            action,
            target_type: Some(target_type),
            target_id: Some(target_id.to_string()),
            metadata: serde_json::Value::Object(Default::default()),
        }
    }

    /// Adds metadata.
    pub fn with_metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = metadata;
        self
    }
}

/// The principal recorded with an audit event.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AuditActor {
    /// Kind of principal.
    #[serde(rename = "type")]
    pub kind: ActorKind,
    /// Its id, if it has one.
    pub id: Option<String>,
}

/// One audit record.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AuditEvent {
    /// Record id.
    pub id: AuditEventId,
    /// Position in the organization's chain, from 1 without gaps.
    pub seq: i64,
    /// Who acted.
    pub actor: AuditActor,
    /// What was done.
    pub action: String,
    /// Kind of object acted on.
    pub target_type: Option<String>,
    /// Id of the object acted on.
    pub target_id: Option<String>,
    /// Extra facts.
    pub metadata: serde_json::Value,
    /// Client address.
    pub ip: Option<String>,
    /// Client user agent.
    pub user_agent: Option<String>,
    /// Request id of the request that did it.
    pub request_id: Option<String>,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Hash of the previous record (all zeros for the first).
    pub prev_hash: String,
    /// This record's hash.
    pub hash: String,
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    org_id: OrgId,
    seq: i64,
    id: AuditEventId,
    actor_type: String,
    actor_id: Option<String>,
    action: String,
    target_type: Option<String>,
    target_id: Option<String>,
    metadata: String,
    ip: Option<String>,
    user_agent: Option<String>,
    request_id: Option<String>,
    created_at: DateTime<Utc>,
    prev_hash: String,
    hash: String,
}

const COLUMNS: &str = "org_id, seq, id, actor_type, actor_id, action, target_type, target_id, \
                       metadata, ip, user_agent, request_id, created_at, prev_hash, hash";

/// The hashed form of a record: every field but the hash itself, in a fixed order.
#[derive(Serialize)]
struct HashInput<'a> {
    org_id: OrgId,
    seq: i64,
    id: AuditEventId,
    actor_type: &'a str,
    actor_id: Option<&'a str>,
    action: &'a str,
    target_type: Option<&'a str>,
    target_id: Option<&'a str>,
    metadata: &'a str,
    ip: Option<&'a str>,
    user_agent: Option<&'a str>,
    request_id: Option<&'a str>,
    created_at: String,
}

impl AuditRow {
    fn compute_hash(&self) -> Result<String, StoreError> {
        let input = HashInput {
            org_id: self.org_id,
            seq: self.seq,
            id: self.id,
            actor_type: &self.actor_type,
            actor_id: self.actor_id.as_deref(),
            action: &self.action,
            target_type: self.target_type.as_deref(),
            target_id: self.target_id.as_deref(),
            metadata: &self.metadata,
            ip: self.ip.as_deref(),
            user_agent: self.user_agent.as_deref(),
            request_id: self.request_id.as_deref(),
            created_at: self
                .created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        };
        let json = serde_json::to_vec(&input)
            .map_err(|e| StoreError::Corrupt(format!("audit hash input: {e}")))?;
        let mut hasher = Sha256::new();
        hasher.update(self.prev_hash.as_bytes());
        hasher.update(b"\n");
        hasher.update(&json);
        Ok(hex::encode(hasher.finalize()))
    }

    fn into_event(self) -> Result<AuditEvent, StoreError> {
        let kind = ActorKind::parse(&self.actor_type)
            .ok_or_else(|| StoreError::Corrupt(format!("actor type {}", self.actor_type)))?;
        let metadata = serde_json::from_str(&self.metadata)
            .map_err(|e| StoreError::Corrupt(format!("audit metadata: {e}")))?;
        Ok(AuditEvent {
            id: self.id,
            seq: self.seq,
            actor: AuditActor {
                kind,
                id: self.actor_id,
            },
            action: self.action,
            target_type: self.target_type,
            target_id: self.target_id,
            metadata,
            ip: self.ip,
            user_agent: self.user_agent,
            request_id: self.request_id,
            created_at: self.created_at,
            prev_hash: self.prev_hash,
            hash: self.hash,
        })
    }
}

/// Appends a record to `org_id`'s chain inside the caller's transaction, so the record
/// exists if and only if the change it describes commits.
pub(crate) async fn append(
    tx: &mut Tx,
    org_id: OrgId,
    actor: &Actor,
    meta: &RequestMeta,
    entry: AuditEntry,
) -> Result<AuditEvent, StoreError> {
    // A request's first audited change also claims its idempotency key, atomically.
    super::idempotency::claim_in(tx).await?;
    on_conn!(tx.conn(), c => sqlx::query(
        "INSERT INTO audit_heads (org_id, seq, hash) VALUES ($1, 0, $2) ON CONFLICT (org_id) DO NOTHING",
    )
    .bind(org_id)
    .bind(GENESIS_HASH)
    .execute(&mut *c)
    .await
    .map(|_| ()))?;
    // The UPDATE takes the head's row lock: appends to one chain queue here.
    let (seq, prev_hash): (i64, String) = on_conn!(tx.conn(), c => sqlx::query_as(
        "UPDATE audit_heads SET seq = seq + 1 WHERE org_id = $1 RETURNING seq, hash",
    )
    .bind(org_id)
    .fetch_one(&mut *c)
    .await)?;
    let mut row = AuditRow {
        org_id,
        seq,
        id: AuditEventId::new(),
        actor_type: actor.kind.as_str().to_owned(),
        actor_id: actor.id.clone(),
        action: entry.action.to_owned(),
        target_type: entry.target_type.map(str::to_owned),
        target_id: entry.target_id,
        metadata: entry.metadata.to_string(),
        ip: meta.ip.clone(),
        user_agent: meta.user_agent.clone(),
        request_id: meta.request_id.clone(),
        created_at: now(),
        prev_hash,
        hash: String::new(),
    };
    row.hash = row.compute_hash()?;
    let insert = format!(
        "INSERT INTO audit_events ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
    );
    on_conn!(tx.conn(), c => sqlx::query(&insert)
        .bind(row.org_id)
        .bind(row.seq)
        .bind(row.id)
        .bind(&row.actor_type)
        .bind(&row.actor_id)
        .bind(&row.action)
        .bind(&row.target_type)
        .bind(&row.target_id)
        .bind(&row.metadata)
        .bind(&row.ip)
        .bind(&row.user_agent)
        .bind(&row.request_id)
        .bind(row.created_at)
        .bind(&row.prev_hash)
        .bind(&row.hash)
        .execute(&mut *c)
        .await
        .map(|_| ()))?;
    on_conn!(tx.conn(), c => sqlx::query("UPDATE audit_heads SET hash = $2 WHERE org_id = $1")
        .bind(org_id)
        .bind(&row.hash)
        .execute(&mut *c)
        .await
        .map(|_| ()))?;
    row.into_event()
}

/// Filters of an audit listing.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// Only this action.
    pub action: Option<String>,
    /// Only records after this sequence number (cursor).
    pub after_seq: Option<i64>,
    /// Page size.
    pub limit: Option<u32>,
}

/// Result of checking an organization's chain.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ChainReport {
    /// True when every record's hash and link is intact and the chain reaches the head.
    pub valid: bool,
    /// Records checked.
    pub checked: i64,
    /// Sequence number of the first record that does not verify.
    pub first_invalid_seq: Option<i64>,
    /// Hash of the last record.
    pub head_hash: String,
}

impl Store {
    /// Lists an organization's audit records, oldest first.
    pub async fn list_audit_events(
        &self,
        ctx: &TenantCtx,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Read).await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_events WHERE org_id = $1 AND seq > $2 \
             AND ($3 IS NULL OR action = $3) ORDER BY seq LIMIT $4"
        );
        let rows: Vec<AuditRow> = on_conn!(tx.conn(), c => sqlx::query_as(&sql)
            .bind(ctx.org_id())
            .bind(filter.after_seq.unwrap_or(0))
            .bind(&filter.action)
            .bind(page_size(filter.limit))
            .fetch_all(&mut *c)
            .await)?;
        tx.commit().await?;
        rows.into_iter().map(AuditRow::into_event).collect()
    }

    /// Recomputes an organization's whole chain.
    pub async fn verify_audit_chain(&self, ctx: &TenantCtx) -> Result<ChainReport, StoreError> {
        let mut tx = self.tenant_tx(ctx, Access::Read).await?;
        let sql = format!("SELECT {COLUMNS} FROM audit_events WHERE org_id = $1 AND seq > $2 ORDER BY seq LIMIT 1000");
        let head: Option<(i64, String)> = on_conn!(tx.conn(), c => sqlx::query_as(
            "SELECT seq, hash FROM audit_heads WHERE org_id = $1",
        )
        .bind(ctx.org_id())
        .fetch_optional(&mut *c)
        .await)?;
        let mut report = ChainReport {
            valid: true,
            checked: 0,
            first_invalid_seq: None,
            head_hash: GENESIS_HASH.to_owned(),
        };
        loop {
            let rows: Vec<AuditRow> = on_conn!(tx.conn(), c => sqlx::query_as(&sql)
                .bind(ctx.org_id())
                .bind(report.checked)
                .fetch_all(&mut *c)
                .await)?;
            if rows.is_empty() {
                break;
            }
            for row in rows {
                let intact = row.seq == report.checked + 1
                    && row.prev_hash == report.head_hash
                    && row.compute_hash()? == row.hash;
                if !intact {
                    report.valid = false;
                    report.first_invalid_seq = Some(report.checked + 1);
                    tx.commit().await?;
                    return Ok(report);
                }
                report.checked = row.seq;
                report.head_hash = row.hash;
            }
        }
        tx.commit().await?;
        let (head_seq, head_hash) = head.unwrap_or((0, GENESIS_HASH.to_owned()));
        if head_seq != report.checked || head_hash != report.head_hash {
            report.valid = false;
            report.first_invalid_seq = Some(report.checked + 1);
        }
        Ok(report)
    }
}
