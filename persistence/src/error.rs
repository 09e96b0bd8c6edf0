//! Storage errors the callers can act on, and an opaque variant for the rest.

use sea_orm::{DbErr, RuntimeErr, SqlErr};

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
    /// The database cannot be reached: the server is down or restarting, a
    /// connection was cut, or no pooled connection came free in time. Nothing
    /// the request did is wrong; the same request can be retried later.
    #[error("the database is unavailable: {0}")]
    Unavailable(DbErr),
    #[error(transparent)]
    Db(DbErr),
}

impl From<DbErr> for StoreError {
    fn from(e: DbErr) -> Self {
        match e.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => StoreError::Duplicate,
            _ if is_sqlite_busy(&e) => StoreError::Busy,
            _ if is_unavailable(&e) => StoreError::Unavailable(e),
            _ => StoreError::Db(e),
        }
    }
}

/// SQLITE_BUSY (5) and its extended codes, e.g. a read transaction that cannot
/// upgrade to a write because another writer committed first (517).
fn is_sqlite_busy(e: &DbErr) -> bool {
    let text = e.to_string();
    text.contains("database is locked")
        || text.contains("(code: 5)")
        || text.contains("(code: 517)")
}

/// Whether `e` says the database could not be reached rather than that the
/// statement was wrong.
///
/// sea-orm reports a failed pool acquire (timed out, pool closed) as
/// `ConnectionAcquire` and a failed `BEGIN` or connect as `Conn` (a refused `BEGIN` on a busy
/// SQLite file is `Busy`, checked first); a connection
/// that breaks in the middle of a statement surfaces as an `Exec`/`Query`
/// error wrapping sqlx's I/O error, or as PostgreSQL's own refusal: SQLSTATE
/// class 08 (connection exception) or 57P01–57P03 (the server is shutting
/// down, crashed, or is still starting up).
pub fn is_unavailable(e: &DbErr) -> bool {
    match e {
        DbErr::ConnectionAcquire(_) => true,
        DbErr::Conn(RuntimeErr::SqlxError(x))
        | DbErr::Exec(RuntimeErr::SqlxError(x))
        | DbErr::Query(RuntimeErr::SqlxError(x)) => sqlx_unavailable(x),
        // sea-orm's own "Disconnected" and the like.
        DbErr::Conn(_) => true,
        _ => false,
    }
}

fn sqlx_unavailable(e: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error as E;
    match e {
        E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed => true,
        E::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::ConnAcquireErr;
    use std::sync::Arc;

    #[test]
    fn pool_and_connection_failures_are_unavailable() {
        let timeout = StoreError::from(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout));
        assert!(matches!(timeout, StoreError::Unavailable(_)));
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let io = DbErr::Query(RuntimeErr::SqlxError(Arc::new(sea_orm::sqlx::Error::Io(
            refused,
        ))));
        assert!(matches!(StoreError::from(io), StoreError::Unavailable(_)));
    }

    #[test]
    fn statement_errors_stay_what_they_are() {
        let decode = DbErr::Query(RuntimeErr::SqlxError(Arc::new(
            sea_orm::sqlx::Error::RowNotFound,
        )));
        assert!(matches!(StoreError::from(decode), StoreError::Db(_)));
        assert!(matches!(
            StoreError::from(DbErr::Custom("x".into())),
            StoreError::Db(_)
        ));
    }
}
