//! The deadline scheduler: turns passed deadlines into events (funding window
//! over, delivery deadline passed, review window elapsed). Runs periodically;
//! each order is handled in its own transaction, and an order another request
//! changed at the same moment is simply retried on the next sweep.

use std::sync::Arc;
use std::time::Duration;

use agora_domain::escrow::deadlines::passed;
use agora_domain::escrow::{Actor, EscrowEvent, EscrowState, PayoutBasis};
use agora_persistence::orders;
use chrono::{DateTime, Utc};
use sea_orm::TransactionTrait;

use super::{load, transition, EscrowRecord, Order};
use crate::graphql::context::AppState;
use crate::graphql::errors::ApiResult;

/// Whether the marketplace key already signed the order's payout.
fn marketplace_signed(order: &Order) -> bool {
    match &order.escrow {
        EscrowRecord::Bitcoin(b) => b
            .payout
            .as_ref()
            .is_some_and(|p| p.signed_by.contains(&agora_escrow::btc::EscrowParty::Arbitrator)),
        EscrowRecord::Xrpl(x) => x.signed_by().contains(&"arbitrator"),
    }
}

/// The event a passed deadline causes for `order` at `now`, if any. A pending
/// cancel stops no clock: the deadline of the state it came from still applies.
fn due_event(order: &Order, now: DateTime<Utc>) -> Option<EscrowEvent> {
    let d = order.terms.deadlines();
    match &order.state {
        EscrowState::AwaitingFunding { .. } if passed(now, d.funding_by) => Some(EscrowEvent::FundingDeadlinePassed),
        EscrowState::Funded { .. } | EscrowState::Cancelling { delivered_at: None, .. } if passed(now, d.delivery_by) => {
            Some(EscrowEvent::DeliveryDeadlinePassed)
        }
        // Metered sessions never auto-release the whole deposit (see `orders::act`).
        EscrowState::Delivered { delivered_at, .. }
        | EscrowState::Cancelling {
            delivered_at: Some(delivered_at),
            ..
        } if passed(now, d.review_ends(*delivered_at)) && !order.is_metered() => Some(EscrowEvent::ReviewWindowElapsed),
        // Late funds of an expired order: the marketplace may co-sign their
        // refund once the delivery deadline has passed too.
        EscrowState::PayingOut { payout, .. }
            if payout.basis == PayoutBasis::LateFunds && passed(now, d.delivery_by) && !marketplace_signed(order) =>
        {
            Some(EscrowEvent::DeliveryDeadlinePassed)
        }
        _ => None,
    }
}

/// Applies every passed deadline as of `now`. Returns how many orders changed.
pub async fn sweep(app: &AppState, now: DateTime<Utc>) -> ApiResult<usize> {
    let candidates = orders::orders_in_status(
        &app.db,
        &["AwaitingFunding", "Funded", "Delivered", "Cancelling", "Refunding"],
        500,
    )
    .await?;
    let mut changed = 0;
    for record in candidates {
        let order = Order::from_record(record)?;
        let Some(event) = due_event(&order, now) else { continue };
        let txn = app.db.begin().await?;
        // Reload inside the transaction: the order may have moved on.
        let fresh = load(&txn, order.id()).await?;
        if due_event(&fresh, now).as_ref() != Some(&event) {
            continue;
        }
        match transition(app, &txn, fresh, Actor::System, &event, now).await {
            Ok(_) => {
                txn.commit().await?;
                changed += 1;
            }
            Err(e) => tracing::warn!(order.id = %order.id(), error = ?e, "deadline event not applied; retrying on the next sweep"),
        }
    }
    Ok(changed)
}

/// Runs `sweep` every `interval` until the process ends.
pub fn spawn(app: Arc<AppState>, interval: Duration) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let now = app.clock.now();
            if let Err(e) = app.metrics.sweep("orders", sweep(&app, now)).await {
                tracing::warn!(error = ?e, "deadline sweep failed");
            }
            if let Err(e) = app.metrics.sweep("disputes", crate::disputes::sweep(&app, now)).await {
                tracing::warn!(error = ?e, "dispute deadline sweep failed");
            }
            if let Err(e) = app.metrics.sweep("metered", crate::metered::settle_abandoned(&app, now)).await {
                tracing::warn!(error = ?e, "abandoned-session sweep failed");
            }
        }
    });
}
