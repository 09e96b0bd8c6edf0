//! Fixed-window counters in the database, so every replica counts together.
//! `hit` checks and counts in one statement: concurrent attempts each get a
//! different count, so a burst cannot slip past the limit.

use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};

use crate::StoreError;

/// The count of `bucket` in its current window after this hit, and when that
/// window started (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub hits: i64,
    pub window_start: i64,
}

fn statement(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    // Written with PostgreSQL's `$n`; SQLite's numbered form is `?n`.
    let sql = match backend {
        DbBackend::Sqlite => sql.replace('$', "?"),
        _ => sql.to_owned(),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// Counts one hit on `bucket` at `now`; a window older than `window_secs`
/// starts over.
pub async fn hit<C: ConnectionTrait>(db: &C, bucket: &str, now: i64, window_secs: i64) -> Result<Hit, StoreError> {
    let sql = "INSERT INTO rate_limits (bucket, window_start, hits) VALUES ($1, $2, 1) \
               ON CONFLICT (bucket) DO UPDATE SET \
               hits = CASE WHEN rate_limits.window_start <= $3 THEN 1 ELSE rate_limits.hits + 1 END, \
               window_start = CASE WHEN rate_limits.window_start <= $3 THEN $2 ELSE rate_limits.window_start END \
               RETURNING hits, window_start";
    let backend = db.get_database_backend();
    let row = db
        .query_one_raw(statement(
            backend,
            sql,
            vec![bucket.into(), now.into(), now.saturating_sub(window_secs).into()],
        ))
        .await?
        .ok_or(StoreError::NotFound)?;
    Ok(Hit {
        hits: row.try_get("", "hits")?,
        window_start: row.try_get("", "window_start")?,
    })
}

/// Forgets `bucket` (a successful login clears its failures).
pub async fn clear<C: ConnectionTrait>(db: &C, bucket: &str) -> Result<(), StoreError> {
    let backend = db.get_database_backend();
    db.execute_raw(statement(backend, "DELETE FROM rate_limits WHERE bucket = $1", vec![bucket.into()]))
        .await?;
    Ok(())
}

/// Takes one hit back from `bucket` (an attempt that turned out legitimate).
pub async fn refund<C: ConnectionTrait>(db: &C, bucket: &str) -> Result<(), StoreError> {
    let backend = db.get_database_backend();
    db.execute_raw(statement(
        backend,
        "UPDATE rate_limits SET hits = hits - 1 WHERE bucket = $1 AND hits > 0",
        vec![bucket.into()],
    ))
    .await?;
    Ok(())
}

/// Deletes windows that ended before `before` (Unix seconds).
pub async fn sweep<C: ConnectionTrait>(db: &C, before: i64) -> Result<u64, StoreError> {
    let backend = db.get_database_backend();
    let done = db
        .execute_raw(statement(backend, "DELETE FROM rate_limits WHERE window_start < $1", vec![before.into()]))
        .await?;
    Ok(done.rows_affected())
}
