//! GraphQL subscriptions (graphql-transport-ws on `/graphql/ws`).
//!
//! `orderUpdated(id)` sends the order as it is, then again after every change.
//! A change on this replica wakes the stream at once (a broadcast hint sent
//! when an order is saved); changes made by other replicas are picked up by a
//! version check every second, so no update is lost whichever replica made it.

use std::time::Duration;

use async_graphql::{Context, Subscription, ID};
use futures_util::stream::{self, Stream};
use tokio::sync::broadcast::error::RecvError;

use super::context::{state, viewer};
use super::node::{expect, NodeType};
use super::order::OrderObject;
use crate::orders;

const POLL: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct Subscription;

#[Subscription]
impl Subscription {
    /// One of your orders: now, and after every change (status, funding,
    /// signatures, confirmations).
    async fn order_updated(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<impl Stream<Item = OrderObject>> {
        let v = viewer(ctx).await?;
        let order_id = expect(NodeType::Order, &id, "id")?;
        let app = state(ctx).clone();
        let (order, _) = orders::load_for(&app.db, order_id, v.user_id).await?;
        let hints = app.order_updates.subscribe();
        let first = Some(order);
        let user = v.user_id;
        Ok(stream::unfold(
            (app, hints, first, -1i32),
            move |(app, mut hints, first, mut seen)| async move {
                if let Some(order) = first {
                    let version = order.record.version;
                    return Some((OrderObject(order), (app, hints, None, version)));
                }
                loop {
                    // Wake on a hint for this order or after the poll interval.
                    let _ = tokio::time::timeout(POLL, async {
                        loop {
                            match hints.recv().await {
                                Ok(id) if id == order_id => return,
                                Ok(_) | Err(RecvError::Lagged(_)) => continue,
                                Err(RecvError::Closed) => {
                                    tokio::time::sleep(POLL).await;
                                    return;
                                }
                            }
                        }
                    })
                    .await;
                    // The hint is sent before the change commits: look again shortly.
                    for delay_ms in [0u64, 50, 200] {
                        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                        match orders::load_for(&app.db, order_id, user).await {
                            Ok((order, _)) if order.record.version > seen => {
                                seen = order.record.version;
                                return Some((OrderObject(order), (app, hints, None, seen)));
                            }
                            Ok(_) => {}
                            // The order vanished or the caller lost access: end the stream.
                            Err(_) => return None,
                        }
                    }
                }
            },
        ))
    }

    /// The metered session of one of your orders: now, and after every change
    /// (usage, claims, cap, close), with its running totals.
    async fn session_updated(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<impl Stream<Item = super::metered::SessionObject>> {
        super::metered::follow_session(ctx, &id).await
    }

    /// Your new notifications, as they happen (see `myNotifications` for the past ones).
    async fn my_notifications(&self, ctx: &Context<'_>) -> async_graphql::Result<impl Stream<Item = super::notification::NotificationObject>> {
        super::notification::follow_my_notifications(ctx).await
    }

    /// One of your disputes (party or arbitrator): now, and after every change.
    async fn dispute_updated(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<impl Stream<Item = super::dispute::DisputeObject>> {
        let v = viewer(ctx).await?;
        let dispute_id = expect(NodeType::Dispute, &id, "id")?;
        let app = state(ctx).clone();
        let (first, _) = crate::disputes::load_for(&app.db, &v, dispute_id).await?;
        Ok(stream::unfold((app, v, Some(first), -1i32), move |(app, v, first, mut seen)| async move {
            if let Some(d) = first {
                let version = d.version;
                return Some((super::dispute::DisputeObject(d), (app, v, None, version)));
            }
            loop {
                tokio::time::sleep(POLL).await;
                match crate::disputes::load_for(&app.db, &v, dispute_id).await {
                    Ok((d, _)) if d.version > seen => {
                        seen = d.version;
                        return Some((super::dispute::DisputeObject(d), (app, v, None, seen)));
                    }
                    Ok(_) => {}
                    Err(_) => return None,
                }
            }
        }))
    }
}
