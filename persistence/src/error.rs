//! Storage errors the callers can act on, and an opaque variant for the rest.

use sea_orm::{DbErr, SqlErr};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint rejected the write (e.g. an e-mail already registered).
    #[error("duplicate value")]
    Duplicate,
    /// An optimistic-concurrency check failed: someone else changed the row first.
    #[error("the record was changed concurrently")]
    VersionConflict,
    #[error("record not found")]
    NotFound,
    /// A stored value no longer parses: a bug or manual tampering, never user input.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Db(DbErr),
}

impl From<DbErr> for StoreError {
    fn from(e: DbErr) -> Self {
        match e.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => StoreError::Duplicate,
            _ => StoreError::Db(e),
        }
    }
}
