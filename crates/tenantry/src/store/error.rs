//! Errors of the storage layer.

use crate::db::is_unavailable;

/// Why a store method failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such row in the caller's tenant (or at all; the two are not distinguished).
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was hit; the value is a stable error code.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The current state forbids it (409): a stable code and a detail naming the facts.
    #[error("refused: {0}: {1}")]
    Refused(&'static str, String),
    /// A rule of the domain forbids it; the value is a stable error code.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// An input refers to something that does not exist or is unusable: (field, why).
    #[error("invalid {0}: {1}")]
    Invalid(&'static str, String),
    /// The database cannot be reached now.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// Any other database failure.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// A stored value could not be read back.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        if is_unavailable(&err) {
            Self::Unavailable(err)
        } else {
            Self::Database(err)
        }
    }
}
