//! Backups of the embedded database.

use std::path::Path;

use anyhow::{bail, Context};

use super::Db;

/// Writes a consistent copy of the SQLite database to `dest` with `VACUUM INTO`, which
/// reads the whole database in one read transaction: writers carry on meanwhile (WAL), and
/// the copy is the database as of that transaction's start, compacted, with every index.
/// Returns the copy's size. Refuses an existing `dest` and a PostgreSQL database (whose
/// backups are `pg_dump` or continuous archiving).
pub async fn sqlite(db: &Db, dest: &Path) -> anyhow::Result<u64> {
    let Db::Sqlite(pool) = db else {
        bail!("`backup` copies the embedded SQLite database; back PostgreSQL up with pg_dump or continuous archiving (docs/operations.md)");
    };
    if dest.exists() {
        bail!(
            "{} exists already; the backup never overwrites a file",
            dest.display()
        );
    }
    let target = dest
        .to_str()
        .context("the backup path must be valid UTF-8")?;
    sqlx::query("VACUUM INTO $1")
        .bind(target)
        .execute(pool)
        .await
        .with_context(|| format!("writing the backup to {}", dest.display()))?;
    let size = std::fs::metadata(dest)
        .with_context(|| format!("reading the backup at {}", dest.display()))?
        .len();
    Ok(size)
}
