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
    /// SQLite refused a write because another transaction holds the lock (two
    /// writers at the same moment): the request can be retried.
    #[error("the database is busy with a concurrent write")]
    Busy,
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
            _ if is_sqlite_busy(&e) => StoreError::Busy,
            _ => StoreError::Db(e),
        }
    }
}

/// SQLITE_BUSY (5) and its extended codes, e.g. a read transaction that cannot
/// upgrade to a write because another writer committed first (517).
fn is_sqlite_busy(e: &DbErr) -> bool {
    let text = e.to_string();
    text.contains("database is locked") || text.contains("(code: 5)") || text.contains("(code: 517)")
}
