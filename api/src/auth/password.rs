//! Password hashing with argon2id (the crate's defaults: 19 MiB, 2 passes), run
//! off the async workers because it is deliberately slow. Requests hash through
//! a [`HashingPool`]: at most one hash per core at a time, so a flood of logins
//! queues (bounded in time) instead of taking the memory and the threads.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use std::time::Duration;

use agora_domain::account::Password;
use tokio::sync::{Semaphore, SemaphorePermit};

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("the hashing task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// Every slot stayed taken for the whole queue timeout.
    #[error("all password hashing slots are busy")]
    Busy { retry_after: Duration },
}

/// Bounds concurrent password hashing.
pub struct HashingPool {
    slots: Semaphore,
    queue_timeout: Duration,
}

impl HashingPool {
    /// `concurrency` slots (at least one); a caller waits at most `queue_timeout`.
    pub fn new(concurrency: usize, queue_timeout: Duration) -> Self {
        Self {
            slots: Semaphore::new(concurrency.max(1)),
            queue_timeout,
        }
    }

    /// One slot per core unless configured.
    pub fn from_settings(settings: &crate::config::AuthSettings) -> Self {
        let cores = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
        Self::new(
            settings.hashing_concurrency.unwrap_or(cores),
            Duration::from_millis(settings.hashing_queue_timeout_ms),
        )
    }

    /// Waits for a slot; `Busy` after the queue timeout. Hold the permit while hashing.
    pub async fn acquire(&self) -> Result<SemaphorePermit<'_>, PasswordError> {
        let busy = PasswordError::Busy {
            retry_after: self.queue_timeout.max(Duration::from_secs(1)),
        };
        match tokio::time::timeout(self.queue_timeout, self.slots.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; treat it as busy all the same.
            Ok(Err(_)) | Err(_) => Err(busy),
        }
    }

    pub async fn hash(&self, password: Password) -> Result<String, PasswordError> {
        let _slot = self.acquire().await?;
        hash(password).await
    }

    pub async fn verify(&self, candidate: String, stored: Option<String>) -> Result<bool, PasswordError> {
        let _slot = self.acquire().await?;
        verify(candidate, stored).await
    }
}

pub async fn hash(password: Password) -> Result<String, PasswordError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.expose().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| PasswordError::Hash(e.to_string()))
    })
    .await?
}

/// A valid argon2id hash of a random password, verified against when the e-mail
/// is unknown so that a login takes as long whether or not the account exists.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$1nDBUqDZOBw1hNcx6WcWUzmbd+ku3phg2HZSyTzdclg";

/// Checks `candidate` against `stored` (or against a dummy hash when there is no
/// account), always doing the same amount of work.
pub async fn verify(candidate: String, stored: Option<String>) -> Result<bool, PasswordError> {
    tokio::task::spawn_blocking(move || {
        let exists = stored.is_some();
        let stored = stored.unwrap_or_else(|| DUMMY_HASH.to_owned());
        let parsed = PasswordHash::new(&stored).map_err(|e| PasswordError::Hash(e.to_string()))?;
        let ok = Argon2::default()
            .verify_password(candidate.as_bytes(), &parsed)
            .is_ok();
        Ok(ok && exists)
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_only_the_right_password() {
        let h = hash(Password::parse("correct horse battery").unwrap()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse battery".into(), Some(h.clone())).await.unwrap());
        assert!(!verify("wrong horse battery".into(), Some(h)).await.unwrap());
    }

    #[tokio::test]
    async fn a_full_pool_answers_busy_after_its_queue_timeout() {
        let pool = HashingPool::new(1, Duration::from_millis(10));
        let held = pool.acquire().await.unwrap();
        let err = pool.verify("x".into(), None).await.unwrap_err();
        assert!(matches!(err, PasswordError::Busy { retry_after } if retry_after >= Duration::from_secs(1)));
        drop(held);
        assert!(!pool.verify("x".into(), None).await.unwrap());
    }

    #[tokio::test]
    async fn unknown_accounts_never_verify_but_cost_the_same() {
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
        assert!(!verify("anything at all".into(), None).await.unwrap());
    }
}
