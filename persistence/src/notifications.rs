//! The notification outbox and e-mail preferences.
//!
//! Rows are written in the same transaction as the change they announce, so a
//! notification exists exactly when its change committed. The dispatcher then
//! works through rows whose e-mail is `pending`: it *claims* a row by pushing
//! `next_attempt_at` forward by a lease (on PostgreSQL after selecting it
//! `FOR UPDATE SKIP LOCKED`, so replicas never pick the same row; the claim is
//! also a conditional update, so two dispatchers of one SQLite process cannot
//! both win), sends, and only then marks it `sent`. A dispatcher that dies in
//! between leaves the row pending; it is sent again once the lease ends.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, LockBehavior, LockType, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use uuid::Uuid;

use crate::entities::{notification_preferences, notifications};
use crate::StoreError;

/// Where a notification's e-mail stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailState {
    /// Not sent yet (possibly waiting for a retry).
    Pending,
    Sent,
    /// The recipient switched e-mail off for this kind; nothing will be sent.
    Skipped,
    /// Every attempt failed, or the failure was permanent.
    Failed,
}

impl EmailState {
    pub const fn as_str(self) -> &'static str {
        match self {
            EmailState::Pending => "pending",
            EmailState::Sent => "sent",
            EmailState::Skipped => "skipped",
            EmailState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [EmailState::Pending, EmailState::Sent, EmailState::Skipped, EmailState::Failed]
            .into_iter()
            .find(|state| state.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRecord {
    /// Time-ordered (UUIDv7): newest first is id descending.
    pub id: Uuid,
    pub user_id: Uuid,
    /// The kind's stable code (e.g. `FUNDED`); the API maps it.
    pub kind: String,
    pub subject: String,
    pub body: String,
    pub order_id: Option<Uuid>,
    pub dispute_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
    pub email_state: EmailState,
    pub attempts: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub sent_at: Option<DateTime<Utc>>,
    pub message_id: Option<String>,
    pub last_error: Option<String>,
}

impl TryFrom<notifications::Model> for NotificationRecord {
    type Error = StoreError;

    fn try_from(m: notifications::Model) -> Result<Self, StoreError> {
        Ok(Self {
            email_state: EmailState::parse(&m.email_state)
                .ok_or_else(|| StoreError::Corrupt(format!("notification e-mail state {}", m.email_state)))?,
            attempts: u32::try_from(m.attempts)
                .map_err(|_| StoreError::Corrupt(format!("notification attempts {}", m.attempts)))?,
            id: m.id,
            user_id: m.user_id,
            kind: m.kind,
            subject: m.subject,
            body: m.body,
            order_id: m.order_id,
            dispute_id: m.dispute_id,
            created_at: m.created_at,
            read_at: m.read_at,
            next_attempt_at: m.next_attempt_at,
            sent_at: m.sent_at,
            message_id: m.message_id,
            last_error: m.last_error,
        })
    }
}

fn records(models: Vec<notifications::Model>) -> Result<Vec<NotificationRecord>, StoreError> {
    models.into_iter().map(TryInto::try_into).collect()
}

pub async fn insert_notification<C: ConnectionTrait>(db: &C, n: &NotificationRecord) -> Result<(), StoreError> {
    notifications::Entity::insert(notifications::ActiveModel {
        id: Set(n.id),
        user_id: Set(n.user_id),
        kind: Set(n.kind.clone()),
        subject: Set(n.subject.clone()),
        body: Set(n.body.clone()),
        order_id: Set(n.order_id),
        dispute_id: Set(n.dispute_id),
        created_at: Set(n.created_at),
        read_at: Set(n.read_at),
        email_state: Set(n.email_state.as_str().to_owned()),
        attempts: Set(i32::try_from(n.attempts).map_err(|_| StoreError::Corrupt("attempts".into()))?),
        next_attempt_at: Set(n.next_attempt_at),
        sent_at: Set(n.sent_at),
        message_id: Set(n.message_id.clone()),
        last_error: Set(n.last_error.clone()),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

pub async fn find_notification<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<Option<NotificationRecord>, StoreError> {
    notifications::Entity::find_by_id(id)
        .one(db)
        .await?
        .map(TryInto::try_into)
        .transpose()
}

/// `user_id`'s notifications, newest first, older than `before` (exclusive), at most `limit`.
pub async fn notifications_of<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    before: Option<Uuid>,
    limit: u64,
) -> Result<Vec<NotificationRecord>, StoreError> {
    let mut query = notifications::Entity::find().filter(notifications::Column::UserId.eq(user_id));
    if let Some(before) = before {
        query = query.filter(notifications::Column::Id.lt(before));
    }
    records(
        query
            .order_by_desc(notifications::Column::Id)
            .limit(limit)
            .all(db)
            .await?,
    )
}

/// The newest `limit` of `user_id`'s notifications created at or after
/// `since`, oldest first: what a subscription compares with what it already
/// pushed.
pub async fn notifications_since<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    since: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<NotificationRecord>, StoreError> {
    let mut newest = records(
        notifications::Entity::find()
            .filter(notifications::Column::UserId.eq(user_id))
            .filter(notifications::Column::CreatedAt.gte(since))
            .order_by_desc(notifications::Column::Id)
            .limit(limit)
            .all(db)
            .await?,
    )?;
    newest.reverse();
    Ok(newest)
}

/// Whether `user_id` already has a notification of `kind` about `order_id`.
pub async fn exists_for_order<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    order_id: Uuid,
    kind: &str,
) -> Result<bool, StoreError> {
    let n = notifications::Entity::find()
        .filter(notifications::Column::UserId.eq(user_id))
        .filter(notifications::Column::OrderId.eq(order_id))
        .filter(notifications::Column::Kind.eq(kind))
        .count(db)
        .await?;
    Ok(n > 0)
}

pub async fn unread_count<C: ConnectionTrait>(db: &C, user_id: Uuid) -> Result<u64, StoreError> {
    Ok(notifications::Entity::find()
        .filter(notifications::Column::UserId.eq(user_id))
        .filter(notifications::Column::ReadAt.is_null())
        .count(db)
        .await?)
}

/// Marks `user_id`'s notifications read: those in `ids`, or all when `ids` is
/// `None`. Other users' ids are ignored. Returns how many changed.
pub async fn mark_read<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    ids: Option<&[Uuid]>,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let mut update = notifications::Entity::update_many()
        .col_expr(notifications::Column::ReadAt, Expr::value(now))
        .filter(notifications::Column::UserId.eq(user_id))
        .filter(notifications::Column::ReadAt.is_null());
    if let Some(ids) = ids {
        update = update.filter(notifications::Column::Id.is_in(ids.iter().copied()));
    }
    Ok(update.exec(db).await?.rows_affected)
}

/// Pending e-mails whose time has come, oldest first. Inside a PostgreSQL
/// transaction the rows stay locked and other replicas skip them (SQLite has
/// no row locks and ignores the clause).
pub async fn due_for_email<C: ConnectionTrait>(
    db: &C,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<NotificationRecord>, StoreError> {
    records(
        notifications::Entity::find()
            .filter(notifications::Column::EmailState.eq(EmailState::Pending.as_str()))
            .filter(notifications::Column::NextAttemptAt.lte(now))
            .order_by_asc(notifications::Column::NextAttemptAt)
            .order_by_asc(notifications::Column::Id)
            .limit(limit)
            .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
            .all(db)
            .await?,
    )
}

/// Claims a due row for one attempt: counts the attempt and hides the row
/// from other dispatchers until `lease_until`. False when someone else
/// claimed or finished it first.
pub async fn claim<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let result = notifications::Entity::update_many()
        .col_expr(notifications::Column::Attempts, Expr::col(notifications::Column::Attempts).add(1))
        .col_expr(notifications::Column::NextAttemptAt, Expr::value(lease_until))
        .filter(notifications::Column::Id.eq(id))
        .filter(notifications::Column::EmailState.eq(EmailState::Pending.as_str()))
        .filter(notifications::Column::NextAttemptAt.lte(now))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Records a successful send. Only a pending row changes, so a late duplicate
/// dispatcher cannot overwrite a later state.
pub async fn mark_sent<C: ConnectionTrait>(db: &C, id: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError> {
    let result = notifications::Entity::update_many()
        .col_expr(notifications::Column::EmailState, Expr::value(EmailState::Sent.as_str()))
        .col_expr(notifications::Column::SentAt, Expr::value(now))
        .col_expr(notifications::Column::NextAttemptAt, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(notifications::Column::LastError, Expr::value(Option::<String>::None))
        .filter(notifications::Column::Id.eq(id))
        .filter(notifications::Column::EmailState.eq(EmailState::Pending.as_str()))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// A failed attempt: try again at `next_attempt_at`, or give up (`None`).
pub async fn mark_attempt_failed<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    next_attempt_at: Option<DateTime<Utc>>,
    error: &str,
) -> Result<(), StoreError> {
    let state = if next_attempt_at.is_some() {
        EmailState::Pending
    } else {
        EmailState::Failed
    };
    notifications::Entity::update_many()
        .col_expr(notifications::Column::EmailState, Expr::value(state.as_str()))
        .col_expr(notifications::Column::NextAttemptAt, Expr::value(next_attempt_at))
        .col_expr(notifications::Column::LastError, Expr::value(error.to_owned()))
        .filter(notifications::Column::Id.eq(id))
        .filter(notifications::Column::EmailState.eq(EmailState::Pending.as_str()))
        .exec(db)
        .await?;
    Ok(())
}

/// The user's stored e-mail choices, `(kind, email)`; kinds without a row use
/// the default (on).
pub async fn preferences_of<C: ConnectionTrait>(db: &C, user_id: Uuid) -> Result<Vec<(String, bool)>, StoreError> {
    Ok(notification_preferences::Entity::find()
        .filter(notification_preferences::Column::UserId.eq(user_id))
        .order_by_asc(notification_preferences::Column::Kind)
        .all(db)
        .await?
        .into_iter()
        .map(|m| (m.kind, m.email))
        .collect())
}

/// Whether `user_id` wants e-mail for `kind` (on unless switched off).
pub async fn email_enabled<C: ConnectionTrait>(db: &C, user_id: Uuid, kind: &str) -> Result<bool, StoreError> {
    Ok(notification_preferences::Entity::find()
        .filter(
            Condition::all()
                .add(notification_preferences::Column::UserId.eq(user_id))
                .add(notification_preferences::Column::Kind.eq(kind)),
        )
        .one(db)
        .await?
        .is_none_or(|m| m.email))
}

pub async fn set_preference<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    kind: &str,
    email: bool,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    notification_preferences::Entity::insert(notification_preferences::ActiveModel {
        user_id: Set(user_id),
        kind: Set(kind.to_owned()),
        email: Set(email),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::columns([
            notification_preferences::Column::UserId,
            notification_preferences::Column::Kind,
        ])
        .update_columns([
            notification_preferences::Column::Email,
            notification_preferences::Column::UpdatedAt,
        ])
        .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}
