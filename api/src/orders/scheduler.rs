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

/// What a passed deadline makes the service do for `order` at `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Due {
    Event(EscrowEvent),
    /// A metered order whose automatic outcome is due and whose buyer signed
    /// a claim: the claim is settled (the provider paid, the rest refunded).
    SettleLatestClaim,
}

/// The work a passed deadline causes for `order` at `now`, if any. A pending
/// cancel stops no clock: the deadline of the state it came from still applies.
fn due_work(order: &Order, now: DateTime<Utc>, has_claim: bool) -> Option<Due> {
    let d = order.terms.deadlines();
    let automatic = |event: EscrowEvent| {
        if order.is_metered() && has_claim {
            Some(Due::SettleLatestClaim)
        } else {
            Some(Due::Event(event))
        }
    };
    match &order.state {
        EscrowState::AwaitingFunding { .. } if passed(now, d.funding_by) => Some(Due::Event(EscrowEvent::FundingDeadlinePassed)),
        EscrowState::Funded { .. } | EscrowState::Cancelling { delivered_at: None, .. } if passed(now, d.delivery_by) => {
            automatic(EscrowEvent::DeliveryDeadlinePassed)
        }
        // A metered deposit is never released whole (see `orders::act`): with
        // a claim it is settled, without one the abandoned-session sweep and
        // the buyer's refund handle it.
        EscrowState::Delivered { delivered_at, .. }
        | EscrowState::Cancelling {
            delivered_at: Some(delivered_at),
            ..
        } if passed(now, d.review_ends(*delivered_at)) => {
            if order.is_metered() {
                has_claim.then_some(Due::SettleLatestClaim)
            } else {
                Some(Due::Event(EscrowEvent::ReviewWindowElapsed))
            }
        }
        // Late funds of an expired order: the marketplace may co-sign their
        // refund once the delivery deadline has passed too.
        EscrowState::PayingOut { payout, .. }
            if payout.basis == PayoutBasis::LateFunds && passed(now, d.delivery_by) && !marketplace_signed(order) =>
        {
            Some(Due::Event(EscrowEvent::DeliveryDeadlinePassed))
        }
        // A buyer who released and never signed: the marketplace co-signs.
        EscrowState::PayingOut { payout, .. }
            if matches!(payout.basis, PayoutBasis::BuyerReleased { at } if passed(now, d.release_signing_ends(at)))
                && !marketplace_signed(order)
                && !order.escrow.payout_complete() =>
        {
            Some(Due::Event(EscrowEvent::ReleaseSigningOverdue))
        }
        _ => None,
    }
}

/// Orders the sweep looks at, a page at a time.
const PAGE: u64 = 200;
const STATUSES: &[&str] = &["AwaitingFunding", "Funded", "Delivered", "Cancelling", "Refunding", "Releasing"];

/// Applies every passed deadline as of `now`, walking every candidate order
/// (a page at a time); an order that fails is reported on the order and
/// skipped, never blocking the ones after it. Returns how many orders changed.
pub async fn sweep(app: &AppState, now: DateTime<Utc>) -> ApiResult<usize> {
    let mut changed = 0;
    let mut after = None;
    loop {
        let page = orders::orders_in_status_after(&app.db, STATUSES, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for record in page {
            let order = match Order::from_record(record) {
                Ok(order) => order,
                Err(e) => {
                    tracing::error!(error = ?e, "an order cannot be read; skipped");
                    continue;
                }
            };
            match handle(app, &order, now).await {
                Ok(true) => changed += 1,
                Ok(false) => {}
                Err(e) => report_failure(app, &order, now, &e).await,
            }
        }
    }
    Ok(changed)
}

/// Does what is due for one order, in its own transaction.
async fn handle(app: &AppState, order: &Order, now: DateTime<Utc>) -> ApiResult<bool> {
    let has_claim = order.is_metered() && crate::metered::latest_claimed(&app.db, order.id()).await?.is_some_and(|c| c > 0);
    let Some(work) = due_work(order, now, has_claim) else { return Ok(false) };
    let txn = app.db.begin().await?;
    // Reload inside the transaction: the order may have moved on.
    let fresh = load(&txn, order.id()).await?;
    if due_work(&fresh, now, has_claim).as_ref() != Some(&work) {
        return Ok(false);
    }
    match work {
        Due::Event(event) => {
            transition(app, &txn, fresh, Actor::System, &event, now).await?;
        }
        Due::SettleLatestClaim => {
            crate::metered::settle_latest_by_system(app, &txn, fresh, now).await?;
        }
    }
    txn.commit().await?;
    Ok(true)
}

/// A failing automatic action is told to the parties once per reason and
/// shown in the order's history, instead of being retried silently.
async fn report_failure(app: &AppState, order: &Order, now: DateTime<Utc>, error: &crate::graphql::errors::ApiError) {
    tracing::warn!(order.id = %order.id(), error = ?error, "automatic action failed; retrying on the next sweep");
    let detail = format!("the service's automatic action failed and is retried: {}", error.message());
    let result: ApiResult<()> = async {
        let history = orders::order_events_of(&app.db, order.id()).await?;
        if history.last().is_some_and(|e| e.event == "AutomaticActionFailed" && e.detail == detail) {
            return Ok(());
        }
        let txn = app.db.begin().await?;
        orders::insert_order_event(
            &txn,
            &orders::OrderEventRecord {
                order_id: order.id(),
                event: "AutomaticActionFailed".into(),
                actor: "system".into(),
                from_status: order.state.name().into(),
                to_status: order.state.name().into(),
                detail: detail.clone(),
                at: now,
            },
        )
        .await?;
        crate::notifications::notify_parties(app, &txn, order, "An automatic step of your order failed", &detail, now).await?;
        txn.commit().await?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(order.id = %order.id(), error = ?e, "could not report the failed automatic action");
    }
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
