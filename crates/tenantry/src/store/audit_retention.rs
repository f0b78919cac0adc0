//! Audit retention: removing a whole prefix of an organization's chain behind a signed
//! checkpoint, so that verification still proves every record that is left.
//!
//! The checkpoint is the last removed position and its hash, signed with a key the
//! database never sees (derived from `SESSION_SECRET`): someone able to write the database
//! can remove records, but cannot make a checkpoint that covers the removal. On PostgreSQL
//! the removal itself is `tenantry_prune_audit()`, the one path around the append-only
//! triggers; every removal is recorded on the platform chain (`audit.pruned`).

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::audit::{record_of, AuditEntry};
use super::{now, Store, StoreError};
use crate::auth::{Actor, ActorKind};
use crate::db::{on_conn, Access, Conn, Scope};
use crate::ids::OrgId;

/// Most positions one retention transaction removes.
const PRUNE_BATCH: i64 = 5000;

/// The key checkpoints are signed with.
pub struct CheckpointKey([u8; 32]);

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CheckpointKey(***)")
    }
}

impl CheckpointKey {
    /// The key derived from a deployment secret (`SESSION_SECRET`).
    pub fn derive(secret: &str) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(b"tenantry/audit-checkpoint/v1");
        Self(mac.finalize().into_bytes().into())
    }

    fn mac(&self, org: OrgId, seq: i64, hash: &str, at: DateTime<Utc>) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        let at = at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        mac.update(format!("{}\n{seq}\n{hash}\n{at}", org.as_uuid()).as_bytes());
        mac
    }

    /// The signature of a checkpoint.
    fn sign(&self, org: OrgId, seq: i64, hash: &str, at: DateTime<Utc>) -> String {
        hex::encode(self.mac(org, seq, hash, at).finalize().into_bytes())
    }

    /// True when `signature` is this key's signature of the checkpoint (constant time).
    pub(crate) fn verifies(
        &self,
        org: OrgId,
        seq: i64,
        hash: &str,
        at: DateTime<Utc>,
        signature: &str,
    ) -> bool {
        hex::decode(signature)
            .is_ok_and(|raw| self.mac(org, seq, hash, at).verify_slice(&raw).is_ok())
    }
}

/// What a retention pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Organizations whose chain got shorter.
    pub orgs: usize,
    /// Records removed.
    pub records: i64,
    /// Organizations whose records could not be removed (logged; the others went on).
    pub failed: usize,
}

impl Store {
    /// Signs retention checkpoints with `key`; without one, retention refuses to run.
    pub fn signing_audit_checkpoints_with(mut self, key: CheckpointKey) -> Self {
        self.checkpoint_key = Some(std::sync::Arc::new(key));
        self
    }

    pub(crate) fn checkpoint_key(&self) -> Option<&CheckpointKey> {
        self.checkpoint_key.as_deref()
    }

    /// Removes, in every organization's chain, the longest prefix of sealed records written
    /// before `cutoff`. One organization that fails is logged and skipped.
    pub async fn prune_audit_log(
        &self,
        cutoff: DateTime<Utc>,
    ) -> Result<RetentionReport, StoreError> {
        let mut tx = self.db().begin(Scope::System, Access::Read).await?;
        let orgs: Vec<OrgId> = on_conn!(tx.conn(), c => sqlx::query_scalar(
            "SELECT DISTINCT org_id FROM audit_events WHERE created_at < $1",
        )
        .bind(cutoff)
        .fetch_all(&mut *c)
        .await)?;
        tx.commit().await?;
        let mut report = RetentionReport::default();
        for org in orgs {
            match self.prune_org(org, cutoff).await {
                Ok(0) => {}
                Ok(n) => {
                    report.orgs += 1;
                    report.records += n;
                }
                Err(err @ StoreError::Unavailable(_)) => return Err(err),
                Err(err) => {
                    report.failed += 1;
                    tracing::error!(org = %org, error = %crate::telemetry::error_chain(&err),
                        "cannot apply audit retention to this organization");
                }
            }
        }
        Ok(report)
    }

    /// Removes `org`'s prefix of records older than `cutoff`, [`PRUNE_BATCH`] positions per
    /// transaction, each moving the checkpoint and recorded on the platform chain.
    async fn prune_org(&self, org: OrgId, cutoff: DateTime<Utc>) -> Result<i64, StoreError> {
        let key = self.checkpoint_key().ok_or_else(|| {
            StoreError::Corrupt("audit retention needs a checkpoint signing key".to_owned())
        })?;
        let mut removed = 0;
        loop {
            let mut tx = self.db().begin(Scope::System, Access::Write).await?;
            let start: i64 = on_conn!(tx.conn(), c => sqlx::query_scalar(
                "SELECT coalesce((SELECT seq FROM audit_checkpoints WHERE org_id = $1), 0)",
            )
            .bind(org)
            .fetch_one(&mut *c)
            .await)?;
            // The next positions in order, up to the first one young enough to keep: a
            // bounded range of the dense positions, so the statement's cost stays bounded
            // whatever plan stale statistics lead to.
            let sql = format!(
                "SELECT c.seq, c.hash, e.created_at FROM audit_chain c{} \
                 WHERE c.org_id = $1 AND c.seq > $2 AND c.seq <= $2 + $3 ORDER BY c.seq LIMIT $3",
                record_of(self.db(), "c")
            );
            let next: Vec<(i64, String, DateTime<Utc>)> = on_conn!(tx.conn(), c => sqlx::query_as(&sql)
            .bind(org)
            .bind(start)
            .bind(PRUNE_BATCH)
            .fetch_all(&mut *c)
            .await)?;
            let prefix = next.iter().take_while(|(_, _, at)| *at < cutoff).count();
            let Some((upto, hash, _)) = prefix.checked_sub(1).and_then(|i| next.get(i)) else {
                tx.commit().await?;
                return Ok(removed);
            };
            let at = now();
            let signature = key.sign(org, *upto, hash, at);
            let count = match tx.conn() {
                Conn::Postgres(c) => {
                    sqlx::query_scalar::<_, i64>("SELECT tenantry_prune_audit($1, $2, $3, $4, $5)")
                        .bind(org)
                        .bind(upto)
                        .bind(hash)
                        .bind(at)
                        .bind(&signature)
                        .fetch_one(&mut *c)
                        .await?
                }
                Conn::Sqlite(c) => {
                    sqlx::query("INSERT INTO audit_pruning (org_id, upto_seq) VALUES ($1, $2)")
                        .bind(org)
                        .bind(upto)
                        .execute(&mut *c)
                        .await?;
                    let gone = sqlx::query(
                        "DELETE FROM audit_events WHERE org_id = $1 AND id IN \
                         (SELECT record_id FROM audit_chain WHERE org_id = $1 AND seq <= $2)",
                    )
                    .bind(org)
                    .bind(upto)
                    .execute(&mut *c)
                    .await?
                    .rows_affected();
                    sqlx::query("DELETE FROM audit_chain WHERE org_id = $1 AND seq <= $2")
                        .bind(org)
                        .bind(upto)
                        .execute(&mut *c)
                        .await?;
                    sqlx::query("DELETE FROM audit_pruning WHERE org_id = $1")
                        .bind(org)
                        .execute(&mut *c)
                        .await?;
                    sqlx::query(
                        "INSERT INTO audit_checkpoints (org_id, seq, hash, pruned_at, signature) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (org_id) DO UPDATE \
                         SET seq = excluded.seq, hash = excluded.hash, \
                             pruned_at = excluded.pruned_at, signature = excluded.signature",
                    )
                    .bind(org)
                    .bind(upto)
                    .bind(hash)
                    .bind(at)
                    .bind(&signature)
                    .execute(&mut *c)
                    .await?;
                    i64::try_from(gone).unwrap_or(i64::MAX)
                }
            };
            let entry = AuditEntry::new("audit.pruned", "organization", org).with_metadata(
                serde_json::json!({
                    "through_seq": upto, "records": count, "before": cutoff, "checkpoint_hash": hash,
                }),
            );
            super::audit::append(
                &mut tx,
                OrgId::PLATFORM,
                &Actor {
                    kind: ActorKind::System,
                    id: Some("retention".to_owned()),
                },
                &Default::default(),
                entry,
            )
            .await?;
            tx.commit().await?;
            removed += count;
            if prefix < next.len() || next.len() < usize::try_from(PRUNE_BATCH).unwrap_or(0) {
                return Ok(removed);
            }
        }
    }
}
