//! Errors of the storage layer.

use crate::db::is_unavailable;
use crate::domain::DomainError;

/// Why a store method failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such row in the caller's tenant (or at all; the two are not distinguished).
    #[error("not found")]
    NotFound,
    /// A rule of the domain refused it (a uniqueness rule, the owner rules, a plan limit…).
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// An input refers to something that does not exist or is unusable: (field, why).
    #[error("invalid {0}: {1}")]
    Invalid(&'static str, String),
    /// The database cannot be reached now.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// Any other database failure.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// A stored value could not be read back: never replaced by a default.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// `refusal` when `err` is a unique violation (the database's own uniqueness rule),
    /// otherwise the database error.
    pub(crate) fn unique(err: sqlx::Error, refusal: DomainError) -> Self {
        match crate::db::unique_violation(&err) {
            Some(_) => refusal.into(),
            None => err.into(),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        if is_unavailable(&err) {
            Self::Unavailable(err)
        } else if let sqlx::Error::ColumnDecode { index, source } = &err {
            Self::Corrupt(format!("column {index}: {source}"))
        } else if let sqlx::Error::Decode(source) = &err {
            Self::Corrupt(source.to_string())
        } else {
            Self::Database(err)
        }
    }
}
