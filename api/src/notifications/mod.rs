//! Notifications: a transactional outbox written in the same transaction as the
//! state change, and the dispatcher that e-mails it.
//!
//! Every notice is one row per recipient in `notifications`, inserted by the
//! code that makes the change, inside its transaction: a rolled-back change
//! leaves no notification, a committed one always has its notification. Users
//! read them through GraphQL (`myNotifications`); the dispatcher
//! ([`dispatcher`]) e-mails the ones whose kind the recipient has not switched
//! off ([`enqueue`] marks those `skipped`).
//!
//! Delivery is at least once. The `Message-ID` of an e-mail is derived from
//! the notification id (`<{id}@agora>`), so when a dispatcher dies between
//! sending and recording the send, the copy sent again carries the same
//! Message-ID and receiving mail systems and clients treat it as the same
//! message (they deduplicate on Message-ID).

pub mod compose;
pub mod dispatcher;
pub mod mailer;

use std::collections::HashSet;

use agora_domain::escrow::{Alert, Audience, Effect};
use agora_persistence::notifications::{self as store, EmailState, NotificationRecord};
use agora_persistence::StoreError;
use chrono::{DateTime, Utc};
use lettre::message::Mailbox;
use sea_orm::{ConnectionTrait, DatabaseTransaction};
use tokio::sync::broadcast;
use uuid::Uuid;

pub use self::dispatcher::{dispatch_once, dispatch_once_then_crash, message_id};
use self::compose::{OrderFacts, Recipient};
use self::mailer::MailTransport;
use crate::config::{Mode, NotificationSettings, Settings};
use crate::graphql::context::AppState;
use crate::graphql::errors::{ApiError, ApiResult};
use crate::orders::Order;

/// What a notification is about; users switch e-mail on or off per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotificationKind {
    OrderPlaced,
    Funded,
    Delivered,
    Released,
    Refunded,
    PayoutConfirmed,
    DisputeOpened,
    NewStatement,
    DeadlineApproaching,
    Decision,
    Appeal,
    TimelockMarginAlert,
    Escalated,
    /// A metered session's usage crossed one of the buyer's thresholds of the deposit.
    UsageThreshold,
    /// A metered session crossed the buyer's highest threshold: top up or stop.
    DepositNearlyExhausted,
    /// An automatic step of the service failed and is being retried.
    ActionFailed,
}

impl NotificationKind {
    pub const ALL: [NotificationKind; 16] = [
        NotificationKind::OrderPlaced,
        NotificationKind::Funded,
        NotificationKind::Delivered,
        NotificationKind::Released,
        NotificationKind::Refunded,
        NotificationKind::PayoutConfirmed,
        NotificationKind::DisputeOpened,
        NotificationKind::NewStatement,
        NotificationKind::DeadlineApproaching,
        NotificationKind::Decision,
        NotificationKind::Appeal,
        NotificationKind::TimelockMarginAlert,
        NotificationKind::Escalated,
        NotificationKind::UsageThreshold,
        NotificationKind::DepositNearlyExhausted,
        NotificationKind::ActionFailed,
    ];

    /// The stored code, stable across releases (also the GraphQL enum value).
    pub const fn code(self) -> &'static str {
        match self {
            NotificationKind::OrderPlaced => "ORDER_PLACED",
            NotificationKind::Funded => "FUNDED",
            NotificationKind::Delivered => "DELIVERED",
            NotificationKind::Released => "RELEASED",
            NotificationKind::Refunded => "REFUNDED",
            NotificationKind::PayoutConfirmed => "PAYOUT_CONFIRMED",
            NotificationKind::DisputeOpened => "DISPUTE_OPENED",
            NotificationKind::NewStatement => "NEW_STATEMENT",
            NotificationKind::DeadlineApproaching => "DEADLINE_APPROACHING",
            NotificationKind::Decision => "DECISION",
            NotificationKind::Appeal => "APPEAL",
            NotificationKind::TimelockMarginAlert => "TIMELOCK_MARGIN_ALERT",
            NotificationKind::Escalated => "ESCALATED",
            NotificationKind::UsageThreshold => "USAGE_THRESHOLD",
            NotificationKind::DepositNearlyExhausted => "DEPOSIT_NEARLY_EXHAUSTED",
            NotificationKind::ActionFailed => "ACTION_FAILED",
        }
    }

    /// Parses a code, case-insensitively (`dispute_opened` works too).
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code().eq_ignore_ascii_case(code))
    }
}

/// A notice for one user, as the code that causes it describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification {
    pub user_id: Uuid,
    pub kind: NotificationKind,
    /// One line, plain text; becomes the e-mail's subject.
    pub subject: String,
    /// Plain text: what happened, the order id, and what to do next.
    pub body: String,
    pub order_id: Option<Uuid>,
    pub dispute_id: Option<Uuid>,
}

const MAX_SUBJECT_CHARS: usize = 200;

/// Writes `n` to the outbox on `db` (pass the transaction of the change it
/// announces). Its e-mail is `pending`, or `skipped` when the user switched
/// e-mail off for this kind; either way the user sees it in the API.
pub async fn enqueue<C: ConnectionTrait>(db: &C, n: NewNotification, now: DateTime<Utc>) -> Result<Uuid, StoreError> {
    let id = Uuid::now_v7();
    let email = store::email_enabled(db, n.user_id, n.kind.code()).await?;
    // A subject is one header line: no line breaks, bounded length.
    let subject: String = n
        .subject
        .split(['\r', '\n'])
        .filter(|part| !part.trim().is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(MAX_SUBJECT_CHARS)
        .collect();
    store::insert_notification(
        db,
        &NotificationRecord {
            id,
            user_id: n.user_id,
            kind: n.kind.code().to_owned(),
            subject,
            body: n.body,
            order_id: n.order_id,
            dispute_id: n.dispute_id,
            created_at: now,
            read_at: None,
            email_state: if email { EmailState::Pending } else { EmailState::Skipped },
            attempts: 0,
            next_attempt_at: email.then_some(now),
            sent_at: None,
            message_id: email.then(|| message_id(id)),
            last_error: None,
        },
    )
    .await?;
    Ok(id)
}

/// The notification side of the application state: the e-mail transport,
/// the dispatcher's settings and the hints that wake `myNotifications`.
pub struct Notifications {
    settings: NotificationSettings,
    transport: MailTransport,
    from: Mailbox,
    hints: broadcast::Sender<Uuid>,
}

impl Notifications {
    /// Checks the settings and opens the transport (SMTP, or in development
    /// the file transport into `<data_dir>/mail/` when no SMTP URL is set).
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let cfg = &settings.notifications;
        let has_smtp = cfg.smtp_url.as_ref().is_some_and(|u| !u.expose().trim().is_empty());
        if settings.mode == Mode::Production && !has_smtp {
            anyhow::bail!(
                "e-mail needs an SMTP server in production: set notifications.smtp_url (AGORA__NOTIFICATIONS__SMTP_URL)"
            );
        }
        let from: Mailbox = cfg
            .from
            .parse()
            .map_err(|e| anyhow::anyhow!("notifications.from is not an e-mail address: {e}"))?;
        if cfg.claim_lease_secs <= cfg.send_timeout_secs {
            anyhow::bail!("notifications.claim_lease_secs must be longer than notifications.send_timeout_secs");
        }
        Ok(Self {
            transport: MailTransport::from_settings(cfg, &settings.data_dir)?,
            settings: cfg.clone(),
            from,
            hints: broadcast::channel(1024).0,
        })
    }

    pub fn settings(&self) -> &NotificationSettings {
        &self.settings
    }

    /// Hints (user ids) that a user may have a new notification.
    pub fn subscribe(&self) -> broadcast::Receiver<Uuid> {
        self.hints.subscribe()
    }

    /// Wakes the user's subscriptions on this replica (they re-read after the
    /// commit; other replicas' subscriptions notice by polling).
    pub fn hint(&self, user_id: Uuid) {
        let _ = self.hints.send(user_id);
    }
}

/// Called by every order transition, inside its transaction, with the effects
/// the escrow state machine returned: turns the notices parties care about
/// into notifications.
///
/// `DisputeOpened` is left to the dispute service, which announces the case
/// with its id; notices without a kind (funding seen, cancel proposals,
/// broadcasts) stay in the order history only.
pub async fn on_effects(
    app: &AppState,
    txn: &DatabaseTransaction,
    order: &Order,
    effects: &[Effect],
    now: DateTime<Utc>,
) -> ApiResult<()> {
    let facts = OrderFacts::of(order);
    let mut out: Vec<NewNotification> = Vec::new();
    for effect in effects {
        match effect {
            Effect::Notify { to, notice } => {
                for (user_id, recipient) in recipients(order, *to) {
                    if let Some((kind, subject, body)) = compose::for_notice(&facts, recipient, notice) {
                        out.push(NewNotification {
                            user_id,
                            kind,
                            subject,
                            body,
                            order_id: Some(order.id()),
                            dispute_id: None,
                        });
                    }
                }
            }
            Effect::Alert(Alert::TimelockMarginReached(watch)) => {
                // The alert rides on every transition past the margin: tell each person once.
                let kind = NotificationKind::TimelockMarginAlert;
                for (user_id, recipient) in everyone(order) {
                    if store::exists_for_order(txn, user_id, order.id(), kind.code()).await? {
                        continue;
                    }
                    let (subject, body) = compose::timelock_margin(&facts, recipient, watch);
                    out.push(NewNotification {
                        user_id,
                        kind,
                        subject,
                        body,
                        order_id: Some(order.id()),
                        dispute_id: None,
                    });
                }
            }
            _ => {}
        }
    }
    write_all(app, txn, out, now).await
}

/// Tells buyer and provider, in `txn`, that an automatic step of their order
/// failed (`detail` says which and why); once per distinct failure.
pub async fn notify_parties(
    _app: &AppState,
    txn: &DatabaseTransaction,
    order: &Order,
    subject: &str,
    detail: &str,
    now: DateTime<Utc>,
) -> ApiResult<()> {
    for user_id in [order.record.buyer_id, order.record.provider_id] {
        enqueue(
            txn,
            NewNotification {
                user_id,
                kind: NotificationKind::ActionFailed,
                subject: subject.to_owned(),
                body: format!("Order {}: {detail}. Agora keeps trying; nothing is lost.", order.id()),
                order_id: Some(order.id()),
                dispute_id: None,
            },
            now,
        )
        .await?;
    }
    Ok(())
}

/// Tells buyer and provider about a new order. Call it in the transaction
/// that inserts the order (`orders::place`), as that is not an escrow effect.
pub async fn order_placed<C: ConnectionTrait>(db: &C, order: &Order, now: DateTime<Utc>) -> ApiResult<()> {
    let facts = OrderFacts::of(order);
    for (user_id, recipient) in [
        (order.record.buyer_id, Recipient::Buyer),
        (order.record.provider_id, Recipient::Provider),
    ] {
        let (subject, body) = compose::order_placed(&facts, recipient);
        enqueue(
            db,
            NewNotification {
                user_id,
                kind: NotificationKind::OrderPlaced,
                subject,
                body,
                order_id: Some(order.id()),
                dispute_id: None,
            },
            now,
        )
        .await?;
    }
    Ok(())
}

/// A dispute's notice to one participant, written in the caller's transaction.
/// `kind` is a kind's code in any case (`dispute_opened`, `new_statement`,
/// `deadline_approaching`, `escalated`, `decision`, `appeal`).
#[allow(clippy::too_many_arguments)]
pub async fn dispute_notice(
    txn: &DatabaseTransaction,
    user_id: Uuid,
    kind: &str,
    subject: &str,
    body: &str,
    order_id: Uuid,
    dispute_id: Uuid,
    now: DateTime<Utc>,
) -> ApiResult<()> {
    let kind = NotificationKind::from_code(kind)
        .ok_or_else(|| ApiError::internal(format!("unknown notification kind {kind}")))?;
    enqueue(
        txn,
        NewNotification {
            user_id,
            kind,
            subject: subject.to_owned(),
            body: body.to_owned(),
            order_id: Some(order_id),
            dispute_id: Some(dispute_id),
        },
        now,
    )
    .await?;
    Ok(())
}

async fn write_all(app: &AppState, txn: &DatabaseTransaction, out: Vec<NewNotification>, now: DateTime<Utc>) -> ApiResult<()> {
    let mut users = HashSet::new();
    for n in out {
        users.insert(n.user_id);
        enqueue(txn, n, now).await?;
    }
    for user_id in users {
        app.notifications.hint(user_id);
    }
    Ok(())
}

/// Who an audience is for this order. Arbitrators means the one assigned, if any.
fn recipients(order: &Order, to: Audience) -> Vec<(Uuid, Recipient)> {
    let buyer = (order.record.buyer_id, Recipient::Buyer);
    let provider = (order.record.provider_id, Recipient::Provider);
    match to {
        Audience::Buyer => vec![buyer],
        Audience::Provider => vec![provider],
        Audience::Parties => vec![buyer, provider],
        Audience::Arbitrators => order
            .record
            .arbitrator_id
            .map(|a| (a, Recipient::Arbitrator))
            .into_iter()
            .collect(),
    }
}

/// Both parties and the assigned arbitrator, if any.
fn everyone(order: &Order) -> Vec<(Uuid, Recipient)> {
    let mut all = recipients(order, Audience::Parties);
    all.extend(recipients(order, Audience::Arbitrators));
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_refuses_to_start_without_an_smtp_server() {
        let mut settings = Settings {
            mode: Mode::Production,
            ..Settings::default()
        };
        let err = Notifications::from_settings(&settings).err().unwrap();
        assert!(err.to_string().contains("AGORA__NOTIFICATIONS__SMTP_URL"), "{err}");
        settings.notifications.smtp_url = Some(crate::config::Secret::new("smtp://mail.internal:25"));
        assert!(Notifications::from_settings(&settings).is_ok());
    }

    #[test]
    fn every_kind_round_trips_through_its_code() {
        for kind in NotificationKind::ALL {
            assert_eq!(NotificationKind::from_code(kind.code()), Some(kind));
            assert_eq!(NotificationKind::from_code(&kind.code().to_lowercase()), Some(kind));
        }
        assert_eq!(NotificationKind::from_code("nope"), None);
    }
}
