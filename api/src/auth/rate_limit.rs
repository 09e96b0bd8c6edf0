//! Login and sign-up throttling, counted in the database so that every replica
//! shares the counts (`agora_persistence::rate_limits`).
//!
//! A login attempt is counted before the password is checked, in one atomic
//! statement, so parallel guesses cannot all pass a check made before any of
//! them is counted. Attempts are counted per (account, client address) and per
//! client address across accounts: an attacker is slowed at its own address
//! without locking the owner out from another, and one address cannot try many
//! accounts. A successful login clears its (account, client) count.

use std::net::IpAddr;

use agora_persistence::{rate_limits, StoreError};
use sea_orm::ConnectionTrait;
use sha2::{Digest, Sha256};

use crate::config::AuthSettings;

#[derive(Debug, thiserror::Error)]
pub enum ThrottleError {
    #[error("too many attempts; retry in {retry_after_secs} s")]
    Limited { retry_after_secs: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone)]
pub struct Throttle {
    login_per_pair: i64,
    login_per_client: i64,
    login_window_secs: i64,
    signups_per_client: i64,
    signup_window_secs: i64,
}

/// What a login counted, to be cleared if it succeeds.
#[derive(Debug)]
pub struct LoginAttempt {
    pair: String,
    client: String,
}

fn bucket(kind: &str, parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(kind.as_bytes());
    for part in parts {
        hasher.update([0u8]);
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

fn client_key(client: Option<IpAddr>) -> String {
    client.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
}

fn secs(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX / 4)
}

impl Throttle {
    pub fn from_settings(settings: &AuthSettings) -> Self {
        Self {
            login_per_pair: i64::from(settings.login_attempts_per_window),
            login_per_client: i64::from(settings.login_attempts_per_client_per_window),
            login_window_secs: secs(settings.login_window_secs).max(1),
            signups_per_client: i64::from(settings.signups_per_client_per_window),
            signup_window_secs: secs(settings.signup_window_secs).max(1),
        }
    }

    fn limited(window_start: i64, window: i64, now: i64) -> ThrottleError {
        let left = (window_start + window - now).max(1);
        ThrottleError::Limited {
            retry_after_secs: u64::try_from(left).unwrap_or(1),
        }
    }

    /// Counts a login attempt on `email` from `client`; `Limited` when either
    /// count is over its limit (the password is then not checked at all).
    pub async fn login_attempt<C: ConnectionTrait>(
        &self,
        db: &C,
        email: &str,
        client: Option<IpAddr>,
        now: i64,
    ) -> Result<LoginAttempt, ThrottleError> {
        let client = client_key(client);
        let attempt = LoginAttempt {
            pair: bucket("login", &[email, &client]),
            client: bucket("login-client", &[&client]),
        };
        let pair = rate_limits::hit(db, &attempt.pair, now, self.login_window_secs).await?;
        let by_client = rate_limits::hit(db, &attempt.client, now, self.login_window_secs).await?;
        if pair.hits > self.login_per_pair {
            return Err(Self::limited(pair.window_start, self.login_window_secs, now));
        }
        if by_client.hits > self.login_per_client {
            return Err(Self::limited(by_client.window_start, self.login_window_secs, now));
        }
        Ok(attempt)
    }

    /// The attempt was the owner's: its failures are forgotten and it does not
    /// count against the client address.
    pub async fn login_succeeded<C: ConnectionTrait>(&self, db: &C, attempt: LoginAttempt) -> Result<(), StoreError> {
        rate_limits::clear(db, &attempt.pair).await?;
        rate_limits::refund(db, &attempt.client).await
    }

    /// Counts a sign-up from `client`; `Limited` over the limit.
    pub async fn signup<C: ConnectionTrait>(&self, db: &C, client: Option<IpAddr>, now: i64) -> Result<(), ThrottleError> {
        let key = bucket("signup", &[&client_key(client)]);
        let hit = rate_limits::hit(db, &key, now, self.signup_window_secs).await?;
        if hit.hits > self.signups_per_client {
            return Err(Self::limited(hit.window_start, self.signup_window_secs, now));
        }
        Ok(())
    }

    /// Drops windows that ended (called by the scheduler).
    pub async fn sweep<C: ConnectionTrait>(&self, db: &C, now: i64) -> Result<u64, StoreError> {
        rate_limits::sweep(db, now - self.login_window_secs.max(self.signup_window_secs)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_separate_kinds_and_hide_their_inputs() {
        let a = bucket("login", &["a@example.org", "10.0.0.1"]);
        assert_eq!(a.len(), 64);
        assert!(!a.contains("example"));
        assert_ne!(a, bucket("login", &["a@example.org", "10.0.0.2"]));
        assert_ne!(a, bucket("login-client", &["a@example.org", "10.0.0.1"]));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(bucket("x", &["ab", "c"]), bucket("x", &["a", "bc"]));
    }
}
