//! Notifications in GraphQL: the caller's notifications (`myNotifications`,
//! newest first), marking them read, e-mail preferences per kind, and the
//! `myNotifications` subscription that pushes new ones.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use agora_persistence::notifications::{self as store, EmailState, NotificationRecord};
use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use futures_util::stream::{self, Stream};
use sea_orm::TransactionTrait;
use uuid::Uuid;

use super::context::{state, viewer};
use super::errors::{ApiError, ApiResult};
use super::listing::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use super::node::{global_id, NodeType};
use crate::notifications::NotificationKind;

/// What a notification is about; e-mail is switched on or off per kind.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "NotificationKind")]
pub enum NotificationKindGql {
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
    UsageThreshold,
    DepositNearlyExhausted,
    ActionFailed,
}

impl From<NotificationKind> for NotificationKindGql {
    fn from(k: NotificationKind) -> Self {
        match k {
            NotificationKind::OrderPlaced => Self::OrderPlaced,
            NotificationKind::Funded => Self::Funded,
            NotificationKind::Delivered => Self::Delivered,
            NotificationKind::Released => Self::Released,
            NotificationKind::Refunded => Self::Refunded,
            NotificationKind::PayoutConfirmed => Self::PayoutConfirmed,
            NotificationKind::DisputeOpened => Self::DisputeOpened,
            NotificationKind::NewStatement => Self::NewStatement,
            NotificationKind::DeadlineApproaching => Self::DeadlineApproaching,
            NotificationKind::Decision => Self::Decision,
            NotificationKind::Appeal => Self::Appeal,
            NotificationKind::TimelockMarginAlert => Self::TimelockMarginAlert,
            NotificationKind::Escalated => Self::Escalated,
            NotificationKind::UsageThreshold => Self::UsageThreshold,
            NotificationKind::DepositNearlyExhausted => Self::DepositNearlyExhausted,
            NotificationKind::ActionFailed => Self::ActionFailed,
        }
    }
}

impl From<NotificationKindGql> for NotificationKind {
    fn from(k: NotificationKindGql) -> Self {
        match k {
            NotificationKindGql::OrderPlaced => Self::OrderPlaced,
            NotificationKindGql::Funded => Self::Funded,
            NotificationKindGql::Delivered => Self::Delivered,
            NotificationKindGql::Released => Self::Released,
            NotificationKindGql::Refunded => Self::Refunded,
            NotificationKindGql::PayoutConfirmed => Self::PayoutConfirmed,
            NotificationKindGql::DisputeOpened => Self::DisputeOpened,
            NotificationKindGql::NewStatement => Self::NewStatement,
            NotificationKindGql::DeadlineApproaching => Self::DeadlineApproaching,
            NotificationKindGql::Decision => Self::Decision,
            NotificationKindGql::Appeal => Self::Appeal,
            NotificationKindGql::TimelockMarginAlert => Self::TimelockMarginAlert,
            NotificationKindGql::Escalated => Self::Escalated,
            NotificationKindGql::UsageThreshold => Self::UsageThreshold,
            NotificationKindGql::DepositNearlyExhausted => Self::DepositNearlyExhausted,
            NotificationKindGql::ActionFailed => Self::ActionFailed,
        }
    }
}

/// Where a notification's e-mail stands.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "NotificationEmailState")]
pub enum EmailStateGql {
    /// Not sent yet (or waiting to be retried).
    Pending,
    Sent,
    /// You switched e-mail off for this kind.
    Skipped,
    /// Every attempt to e-mail it failed.
    Failed,
}

impl From<EmailState> for EmailStateGql {
    fn from(s: EmailState) -> Self {
        match s {
            EmailState::Pending => Self::Pending,
            EmailState::Sent => Self::Sent,
            EmailState::Skipped => Self::Skipped,
            EmailState::Failed => Self::Failed,
        }
    }
}

const ID_PREFIX: &str = "Notification:";

/// Opaque like every other id (base64 of `Notification:uuid`).
fn encode_id(id: Uuid) -> ID {
    ID(URL_SAFE_NO_PAD.encode(format!("{ID_PREFIX}{id}")))
}

fn decode_id(id: &str, field: &str, reason: &'static str) -> ApiResult<Uuid> {
    URL_SAFE_NO_PAD
        .decode(id.trim())
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|raw| raw.strip_prefix(ID_PREFIX).and_then(|u| Uuid::parse_str(u).ok()))
        .ok_or_else(|| ApiError::bad_input(field, reason, format!("{field}: not a notification id")))
}

pub struct NotificationObject(pub NotificationRecord);

/// Something that concerns you; also e-mailed unless you switched its kind off.
#[Object(name = "Notification")]
impl NotificationObject {
    async fn id(&self) -> ID {
        encode_id(self.0.id)
    }

    async fn kind(&self) -> ApiResult<NotificationKindGql> {
        NotificationKind::from_code(&self.0.kind)
            .map(Into::into)
            .ok_or_else(|| ApiError::internal(format!("unknown notification kind {}", self.0.kind)))
    }

    /// One line, also the e-mail's subject.
    async fn subject(&self) -> &str {
        &self.0.subject
    }

    /// Plain text: what happened and what to do next.
    async fn body(&self) -> &str {
        &self.0.body
    }

    /// The order it is about, if any.
    async fn order_id(&self) -> Option<ID> {
        self.0.order_id.map(|id| global_id(NodeType::Order, id))
    }

    /// The dispute it is about, if any.
    async fn dispute_id(&self) -> Option<ID> {
        self.0.dispute_id.map(|id| global_id(NodeType::Dispute, id))
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn read_at(&self) -> Option<DateTime<Utc>> {
        self.0.read_at
    }

    async fn email_state(&self) -> EmailStateGql {
        self.0.email_state.into()
    }

    async fn email_sent_at(&self) -> Option<DateTime<Utc>> {
        self.0.sent_at
    }
}

#[derive(SimpleObject)]
pub struct NotificationEdge {
    pub cursor: String,
    pub node: NotificationObject,
}

pub struct NotificationConnection {
    user_id: Uuid,
    edges: Vec<NotificationEdge>,
    has_next_page: bool,
}

#[Object]
impl NotificationConnection {
    async fn edges(&self) -> &[NotificationEdge] {
        &self.edges
    }

    async fn has_next_page(&self) -> bool {
        self.has_next_page
    }

    async fn end_cursor(&self) -> Option<&str> {
        self.edges.last().map(|e| e.cursor.as_str())
    }

    /// All your unread notifications (not only this page); counted only when asked for.
    async fn unread_count(&self, ctx: &Context<'_>) -> ApiResult<u64> {
        Ok(store::unread_count(&state(ctx).db, self.user_id).await?)
    }
}

/// Whether notifications of one kind are e-mailed to you.
#[derive(SimpleObject)]
#[graphql(name = "NotificationPreference")]
pub struct NotificationPreferenceGql {
    pub kind: NotificationKindGql,
    pub email: bool,
}

#[derive(InputObject)]
pub struct NotificationPreferenceInput {
    pub kind: NotificationKindGql,
    pub email: bool,
}

#[derive(InputObject)]
pub struct UpdateNotificationPreferencesInput {
    /// The kinds to change; kinds not listed keep their setting.
    pub preferences: Vec<NotificationPreferenceInput>,
}

#[derive(SimpleObject)]
pub struct UpdateNotificationPreferencesPayload {
    /// Every kind, after the change.
    pub preferences: Vec<NotificationPreferenceGql>,
}

#[derive(InputObject)]
pub struct MarkNotificationsReadInput {
    /// The notifications to mark read; omitted: all of yours.
    pub ids: Option<Vec<ID>>,
}

#[derive(SimpleObject)]
pub struct MarkNotificationsReadPayload {
    /// How many were unread and are now read.
    pub marked_count: u64,
    pub unread_count: u64,
}

/// Every kind with the user's setting (e-mail is on unless switched off).
async fn preferences_of(db: &sea_orm::DatabaseConnection, user_id: Uuid) -> ApiResult<Vec<NotificationPreferenceGql>> {
    let stored: HashMap<String, bool> = store::preferences_of(db, user_id).await?.into_iter().collect();
    Ok(NotificationKind::ALL
        .into_iter()
        .map(|kind| NotificationPreferenceGql {
            kind: kind.into(),
            email: stored.get(kind.code()).copied().unwrap_or(true),
        })
        .collect())
}

#[derive(Default)]
pub struct NotificationQuery;

#[Object]
impl NotificationQuery {
    /// Your notifications, newest first.
    #[graphql(complexity = "super::listing::page_complexity(first, None, child_complexity)")]
    async fn my_notifications(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<NotificationConnection> {
        let v = viewer(ctx).await?;
        let first = first.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(0..=MAX_PAGE_SIZE).contains(&first) {
            return Err(ApiError::bad_input("first", "OUT_OF_RANGE", "first: must be between 0 and 100"));
        }
        let after = after.map(|c| decode_id(&c, "after", "INVALID_CURSOR")).transpose()?;
        let limit = u64::try_from(first).unwrap_or(0);
        let mut rows = store::notifications_of(&state(ctx).db, v.user_id, after, limit + 1).await?;
        let has_next_page = rows.len() as u64 > limit;
        rows.truncate(first as usize);
        let edges = rows
            .into_iter()
            .map(|r| NotificationEdge {
                cursor: encode_id(r.id).0,
                node: NotificationObject(r),
            })
            .collect();
        Ok(NotificationConnection {
            user_id: v.user_id,
            edges,
            has_next_page,
        })
    }

    /// Which kinds of notification are e-mailed to you (all by default).
    async fn notification_preferences(&self, ctx: &Context<'_>) -> ApiResult<Vec<NotificationPreferenceGql>> {
        let v = viewer(ctx).await?;
        preferences_of(&state(ctx).db, v.user_id).await
    }
}

#[derive(Default)]
pub struct NotificationMutation;

#[Object]
impl NotificationMutation {
    /// Switches e-mail on or off per kind. Notifications are still listed in
    /// `myNotifications` whatever you choose.
    async fn update_notification_preferences(
        &self,
        ctx: &Context<'_>,
        input: UpdateNotificationPreferencesInput,
    ) -> ApiResult<UpdateNotificationPreferencesPayload> {
        let v = viewer(ctx).await?;
        if input.preferences.len() > NotificationKind::ALL.len() {
            return Err(ApiError::bad_input(
                "input.preferences",
                "TOO_MANY",
                "input.preferences: at most one entry per kind",
            ));
        }
        let app = state(ctx);
        let now = app.clock.now();
        let txn = app.db.begin().await?;
        for p in &input.preferences {
            let kind = NotificationKind::from(p.kind);
            store::set_preference(&txn, v.user_id, kind.code(), p.email, now).await?;
        }
        txn.commit().await?;
        Ok(UpdateNotificationPreferencesPayload {
            preferences: preferences_of(&app.db, v.user_id).await?,
        })
    }

    /// Marks your notifications read (those listed, or all).
    async fn mark_notifications_read(
        &self,
        ctx: &Context<'_>,
        input: MarkNotificationsReadInput,
    ) -> ApiResult<MarkNotificationsReadPayload> {
        let v = viewer(ctx).await?;
        let ids = match &input.ids {
            Some(ids) if ids.len() > 100 => {
                return Err(ApiError::bad_input("input.ids", "TOO_MANY", "input.ids: at most 100"))
            }
            Some(ids) => Some(
                ids.iter()
                    .map(|id| decode_id(id, "input.ids", "INVALID_FORMAT"))
                    .collect::<ApiResult<Vec<_>>>()?,
            ),
            None => None,
        };
        let app = state(ctx);
        let marked = store::mark_read(&app.db, v.user_id, ids.as_deref(), app.clock.now()).await?;
        Ok(MarkNotificationsReadPayload {
            marked_count: marked,
            unread_count: store::unread_count(&app.db, v.user_id).await?,
        })
    }
}

/// How far back a subscription looks for notifications it has not pushed:
/// a transaction that took longer than this to commit would go unpushed
/// (still listed by `myNotifications`).
const LOOKBACK_SECS: i64 = 120;

struct Follow {
    app: std::sync::Arc<crate::graphql::context::AppState>,
    hints: tokio::sync::broadcast::Receiver<Uuid>,
    user_id: Uuid,
    /// Pushed (or existing at the start) and still inside the look-back window.
    seen: HashMap<Uuid, DateTime<Utc>>,
    queue: VecDeque<NotificationRecord>,
}

impl Follow {
    /// Notifications committed since the last look and not pushed yet.
    async fn look(&mut self) -> ApiResult<()> {
        let since = self.app.clock.now() - chrono::Duration::seconds(LOOKBACK_SECS);
        let rows = store::notifications_since(&self.app.db, self.user_id, since, 200).await?;
        self.seen.retain(|_, at| *at >= since);
        for row in rows {
            if self.seen.insert(row.id, row.created_at).is_none() {
                self.queue.push_back(row);
            }
        }
        Ok(())
    }
}

/// The `myNotifications` subscription: each new notification of the caller,
/// as it is committed. A notification made on this replica wakes the stream
/// at once; others are found by polling every second, so none is missed
/// whichever replica wrote it.
pub async fn follow_my_notifications(
    ctx: &Context<'_>,
) -> async_graphql::Result<impl Stream<Item = NotificationObject>> {
    let v = viewer(ctx).await?;
    let app = state(ctx).clone();
    let mut follow = Follow {
        hints: app.notifications.subscribe(),
        app,
        user_id: v.user_id,
        seen: HashMap::new(),
        queue: VecDeque::new(),
    };
    // What exists now is not news.
    follow.look().await?;
    follow.queue.clear();
    Ok(stream::unfold(follow, |mut f| async move {
        loop {
            if let Some(row) = f.queue.pop_front() {
                return Some((NotificationObject(row), f));
            }
            super::follow::wait_for_hint(&mut f.hints, f.user_id).await;
            // The hint is sent before the change commits: look again shortly.
            for delay_ms in super::follow::REREAD_MS {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                if f.look().await.is_err() {
                    return None;
                }
                if !f.queue.is_empty() {
                    break;
                }
            }
        }
    }))
}
