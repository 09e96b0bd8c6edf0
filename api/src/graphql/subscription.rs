//! GraphQL subscriptions (graphql-transport-ws on `/graphql/ws`).
//!
//! Each sends the record as it is, then again after every change; see
//! `follow` for how changes are noticed on any replica.

use async_graphql::{Context, Subscription, ID};
use futures_util::stream::Stream;

use super::context::{state, viewer};
use super::follow::follow_versions;
use super::node::{expect, NodeType};
use super::order::OrderObject;
use crate::orders;


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
        let version = order.record.version;
        let hints = app.order_updates.subscribe();
        Ok(follow_versions(OrderObject(order), version, hints, order_id, move || {
            let app = app.clone();
            async move {
                let (order, _) = orders::load_for(&app.db, order_id, v.user_id).await.ok()?;
                let version = order.record.version;
                Some((OrderObject(order), version))
            }
        }))
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
        let version = first.version;
        // Dispute writes send no hint: the stream follows by its poll.
        let hints = app.order_updates.subscribe();
        Ok(follow_versions(super::dispute::DisputeObject(first), version, hints, dispute_id, move || {
            let (app, v) = (app.clone(), v.clone());
            async move {
                let (d, _) = crate::disputes::load_for(&app.db, &v, dispute_id).await.ok()?;
                let version = d.version;
                Some((super::dispute::DisputeObject(d), version))
            }
        }))
    }
}
