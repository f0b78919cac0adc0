//! SCIM provisioning storage: tokens, provisioned users, groups and group-to-role
//! mappings. Rules (what a provisioned user may become, role order) live in `crate::scim`;
//! this module is SQL.

pub mod groups;
pub mod tokens;
pub mod users;

use super::StoreError;
use crate::db::{on_conn, Tx};
use crate::domain::DomainError;
use crate::ids::OrgId;

/// Bumps `table`'s row `(org, id)` to `version + 1` if it is at `expected` (any version
/// when `None`); `NotFound` without the row, `VersionMismatch` when it moved on.
pub(super) async fn bump_version(
    tx: &mut Tx,
    table: &'static str,
    org: OrgId,
    id: uuid::Uuid,
    expected: Option<i64>,
) -> Result<i64, StoreError> {
    let sql = format!(
        "UPDATE {table} SET version = version + 1, updated_at = $4 \
         WHERE org_id = $1 AND id = $2 AND ($3 IS NULL OR version = $3) RETURNING version"
    );
    let version: Option<i64> = on_conn!(tx.conn(), c => sqlx::query_scalar(&sql)
        .bind(org)
        .bind(id)
        .bind(expected)
        .bind(super::now())
        .fetch_optional(&mut *c)
        .await)?;
    if let Some(version) = version {
        return Ok(version);
    }
    let exists: Option<i32> = on_conn!(tx.conn(), c => sqlx::query_scalar(
        &format!("SELECT 1 FROM {table} WHERE org_id = $1 AND id = $2"))
        .bind(org)
        .bind(id)
        .fetch_optional(&mut *c)
        .await)?;
    match exists {
        Some(_) => Err(DomainError::VersionMismatch.into()),
        None => Err(StoreError::NotFound),
    }
}
