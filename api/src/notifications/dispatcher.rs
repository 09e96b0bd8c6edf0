//! The dispatcher: e-mails pending notifications, retrying with exponential
//! backoff, at least once and never twice in a normal run.
//!
//! One run claims up to `batch_size` due rows (see
//! `agora_persistence::notifications` for how a claim excludes other
//! dispatchers), sends each, and records the outcome: `sent` only after the
//! transport accepted the e-mail; on failure a retry `retry_base_secs · 2^(n−1)`
//! later (capped at `retry_max_secs`), or `failed` after `max_attempts` or a
//! permanent refusal. A dispatcher that dies after sending but before
//! recording leaves the row claimed; when the claim's lease ends another run
//! sends it again, with the same Message-ID.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use agora_persistence::accounts;
use agora_persistence::notifications::{self as store, NotificationRecord};
use agora_persistence::StoreError;
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, TransactionTrait};
use uuid::Uuid;

use super::mailer::{build_message, SendError};
use crate::config::NotificationSettings;
use crate::graphql::context::AppState;

/// The Message-ID of a notification's e-mail: the same for every copy sent.
pub fn message_id(notification_id: Uuid) -> String {
    format!("<{notification_id}@agora>")
}

/// How long to wait after the `attempts`-th failed attempt (1-based).
pub fn retry_delay(cfg: &NotificationSettings, attempts: u32) -> chrono::Duration {
    let doublings = attempts.saturating_sub(1).min(30);
    let secs = cfg.retry_base_secs.saturating_mul(1u64 << doublings).min(cfg.retry_max_secs);
    chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 1_000))
}

/// Sends what is due now; returns how many e-mails were sent and recorded.
pub async fn dispatch_once(app: &AppState) -> Result<usize, StoreError> {
    run(app, true).await
}

/// Test hook: a run that dies after sending, before recording anything, as a
/// process killed between the two would. Returns how many e-mails went out.
#[doc(hidden)]
pub async fn dispatch_once_then_crash(app: &AppState) -> Result<usize, StoreError> {
    run(app, false).await
}

async fn run(app: &AppState, record_sends: bool) -> Result<usize, StoreError> {
    let cfg = app.notifications.settings();
    let claimed = claim_due(app, app.clock.now()).await?;
    if claimed.is_empty() {
        return Ok(0);
    }
    let user_ids: Vec<Uuid> = claimed.iter().map(|n| n.user_id).collect();
    let emails: HashMap<Uuid, String> = accounts::find_users(&app.db, &user_ids)
        .await?
        .into_iter()
        .map(|u| (u.id, u.email))
        .collect();
    let mut sent = 0;
    for n in claimed {
        let result = match emails.get(&n.user_id) {
            Some(to) => send(app, &n, to).await,
            None => Err(SendError::Permanent("the recipient no longer exists".into())),
        };
        match result {
            Ok(()) if !record_sends => sent += 1,
            Ok(()) => {
                store::mark_sent(&app.db, n.id, app.clock.now()).await?;
                tracing::info!(notification.id = %n.id, notification.kind = %n.kind, email.attempts = n.attempts, "notification e-mailed");
                sent += 1;
            }
            Err(e) => record_failure(app, cfg, &n, &e, app.clock.now()).await?,
        }
    }
    Ok(sent)
}

/// Claims due rows. On PostgreSQL in one short transaction holding the rows
/// `FOR UPDATE SKIP LOCKED`, so concurrent replicas split the work. SQLite has
/// no row locks, and a read transaction upgraded to a write fails against a
/// concurrent claimer, so there each claim is its own atomic conditional
/// update. Either way the sends happen outside any transaction: no lock is
/// held during network I/O.
async fn claim_due(app: &AppState, now: DateTime<Utc>) -> Result<Vec<NotificationRecord>, StoreError> {
    let cfg = app.notifications.settings();
    let lease_until = now + chrono::Duration::seconds(i64::try_from(cfg.claim_lease_secs).unwrap_or(3_600));
    let limit = cfg.batch_size.max(1);
    if app.db.get_database_backend() == DbBackend::Postgres {
        let txn = app.db.begin().await?;
        let claimed = claim_on(&txn, now, lease_until, limit).await?;
        txn.commit().await?;
        Ok(claimed)
    } else {
        claim_on(&app.db, now, lease_until, limit).await
    }
}

async fn claim_on<C: ConnectionTrait>(
    db: &C,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<NotificationRecord>, StoreError> {
    let due = store::due_for_email(db, now, limit).await?;
    let mut claimed = Vec::with_capacity(due.len());
    for mut n in due {
        if store::claim(db, n.id, now, lease_until).await? {
            n.attempts += 1;
            claimed.push(n);
        }
    }
    Ok(claimed)
}

async fn send(app: &AppState, n: &NotificationRecord, to: &str) -> Result<(), SendError> {
    let id = n.message_id.clone().unwrap_or_else(|| message_id(n.id));
    let message = build_message(&app.notifications.from, to, &n.subject, &n.body, &id)?;
    let timeout = Duration::from_secs(app.notifications.settings().send_timeout_secs.max(1));
    match tokio::time::timeout(timeout, app.notifications.transport.send(message)).await {
        Ok(result) => result,
        Err(_) => Err(SendError::Temporary("the transport timed out".into())),
    }
}

async fn record_failure(
    app: &AppState,
    cfg: &NotificationSettings,
    n: &NotificationRecord,
    e: &SendError,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let retry_at = match e {
        SendError::Temporary(_) if n.attempts < cfg.max_attempts => Some(now + retry_delay(cfg, n.attempts)),
        _ => None,
    };
    store::mark_attempt_failed(&app.db, n.id, retry_at, e.message()).await?;
    match retry_at {
        Some(at) => tracing::warn!(
            notification.id = %n.id, email.attempts = n.attempts, email.retry_at = %at, error = e.message(),
            "notification e-mail failed; retrying later"
        ),
        None => tracing::error!(
            notification.id = %n.id, email.attempts = n.attempts, error = e.message(),
            "notification e-mail failed; giving up"
        ),
    }
    Ok(())
}

/// Runs the dispatcher every `dispatcher_interval_ms` until the process ends
/// (not at all when it is 0). A full batch is followed by another at once.
pub fn spawn(app: Arc<AppState>) {
    let interval_ms = app.notifications.settings().dispatcher_interval_ms;
    if interval_ms == 0 {
        return;
    }
    let batch = usize::try_from(app.notifications.settings().batch_size).unwrap_or(usize::MAX);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_millis(interval_ms));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            loop {
                match dispatch_once(&app).await {
                    Ok(sent) if sent >= batch => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = ?e, "notification dispatch failed");
                        break;
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        let mut cfg = crate::config::Settings::default().notifications;
        cfg.retry_base_secs = 30;
        cfg.retry_max_secs = 600;
        let secs: Vec<i64> = (1..=7).map(|n| retry_delay(&cfg, n).num_seconds()).collect();
        assert_eq!(secs, [30, 60, 120, 240, 480, 600, 600]);
        assert_eq!(retry_delay(&cfg, u32::MAX).num_seconds(), 600);
    }

    #[test]
    fn the_message_id_is_derived_from_the_notification_id() {
        let id = Uuid::parse_str("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b").unwrap();
        assert_eq!(message_id(id), "<0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b@agora>");
        assert_eq!(message_id(id), message_id(id));
    }
}
