//! Electing one watcher per chain across replicas. On PostgreSQL a session
//! advisory lock on a connection held for the watcher's lifetime; on SQLite
//! (a single process by design) an exclusive lock on a file in the data
//! directory. A watcher that loses its lock (the connection died) stops acting.

use std::fs::File;
use std::path::Path;

use sea_orm::{DatabaseConnection, DbBackend};

/// A held leadership; dropping it releases the lock.
pub enum WatcherLock {
    /// A connection taken out of the pool for good: when it is dropped the
    /// session ends and PostgreSQL releases the lock.
    Postgres {
        conn: sea_orm::sqlx::PgConnection,
        /// Kept for the explicit unlock on drop's behalf in logs.
        key: i64,
    },
    File(File),
}

/// A stable advisory-lock key per chain.
fn key_of(chain: &str) -> i64 {
    // FNV-1a, so every replica computes the same key without a table.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in format!("agora-watcher-{chain}").bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

impl WatcherLock {
    /// Tries to become the watcher of `chain`; `None` when another holds it.
    pub async fn try_acquire(db: &DatabaseConnection, data_dir: &Path, chain: &str) -> anyhow::Result<Option<Self>> {
        match db.get_database_backend() {
            DbBackend::Postgres => {
                let pool = db.get_postgres_connection_pool();
                let mut conn = pool.acquire().await?.detach();
                let key = key_of(chain);
                let (acquired,): (bool,) = sea_orm::sqlx::query_as("SELECT pg_try_advisory_lock($1)")
                    .bind(key)
                    .fetch_one(&mut conn)
                    .await?;
                Ok(acquired.then_some(WatcherLock::Postgres { conn, key }))
            }
            _ => {
                std::fs::create_dir_all(data_dir)?;
                let file = File::options()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(data_dir.join(format!("watcher-{chain}.lock")))?;
                match file.try_lock() {
                    Ok(()) => Ok(Some(WatcherLock::File(file))),
                    Err(std::fs::TryLockError::WouldBlock) => Ok(None),
                    Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
                }
            }
        }
    }

    /// Whether the lock is still held (the Postgres session is alive).
    pub async fn still_held(&mut self) -> bool {
        match self {
            // A session-level advisory lock lives as long as its session: the
            // lock is held exactly while this connection still answers.
            WatcherLock::Postgres { conn, .. } => sea_orm::sqlx::query("SELECT 1").execute(&mut *conn).await.is_ok(),
            WatcherLock::File(_) => true,
        }
    }
}

