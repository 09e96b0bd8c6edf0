//! Reputation: reviews of settled orders and the scores computed from them.
//!
//! The formula lives in `agora_domain::reputation`; this module gathers its
//! inputs from storage, records what each settled order means for its
//! parties, and keeps the stored provider score (`providers.rating_milli`,
//! copied to `listings.provider_rating`) current: it is recomputed on every
//! new or edited review of a provider and whenever one of its orders settles.

pub mod review;

use agora_domain::escrow::{EscrowEvent, EscrowState, Party, Settled};
use agora_domain::reputation::{
    buyer_lost_dispute, buyer_record, provider_at_fault, provider_score, BuyerRecord, Observation, ProviderScore,
    Rating, ScoreParams, SettlementFacts,
};
use agora_persistence::orders::{self as order_store, OrderEventRecord};
use agora_persistence::reviews::{self, OutcomeRecord};
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseTransaction};
use uuid::Uuid;

use crate::graphql::context::AppState;
use crate::graphql::errors::{ApiError, ApiResult};
use crate::orders::Order;

/// The constants of the score. Fixed in code rather than configured: a
/// change rescores every provider, so it belongs in a reviewed commit.
pub fn score_params() -> ScoreParams {
    ScoreParams::default()
}

/// Called by every order transition, inside its transaction, after the new
/// state is stored (settlements change scores).
pub async fn on_order_changed(_app: &AppState, txn: &DatabaseTransaction, order: &Order, now: DateTime<Utc>) -> ApiResult<()> {
    let EscrowState::Settled { outcome, at, .. } = &order.state else {
        return Ok(());
    };
    let events = order_store::order_events_of(txn, order.id()).await?;
    let facts = settlement_facts(*outcome, &events);
    reviews::upsert_outcome(
        txn,
        &OutcomeRecord {
            order_id: order.id(),
            buyer_id: order.record.buyer_id,
            provider_id: order.record.provider_id,
            order_value: order.terms.amount_due(),
            outcome: facts.outcome,
            refunded_for_late_delivery: facts.refunded_for_late_delivery,
            dispute_opened_by: facts.dispute_opened_by,
            provider_fault: provider_at_fault(&facts),
            buyer_lost_dispute: buyer_lost_dispute(&facts),
            settled_at: *at,
        },
    )
    .await?;
    tracing::info!(
        order.id = %order.id(),
        reputation.provider_fault = provider_at_fault(&facts),
        "settled order recorded for reputation"
    );
    refresh_provider_score(txn, order.record.provider_id, now).await
}

/// What the order's history says about how it ended. The settled state keeps
/// only the outcome, so the reason for a refund and the opener of a dispute
/// are read from the order's recorded transitions.
fn settlement_facts(outcome: Settled, events: &[OrderEventRecord]) -> SettlementFacts {
    let late_refund_events = [EscrowEvent::RequestRefund.name(), EscrowEvent::DeliveryDeadlinePassed.name()];
    let refunded_for_late_delivery = outcome == Settled::Refunded
        && events
            .iter()
            .any(|e| e.to_status == "Refunding" && late_refund_events.contains(&e.event.as_str()));
    let dispute_opened_by = events
        .iter()
        .find(|e| e.event == EscrowEvent::OpenDispute.name())
        .and_then(|e| match e.actor.as_str() {
            "buyer" => Some(Party::Buyer),
            "provider" => Some(Party::Provider),
            _ => None,
        });
    SettlementFacts {
        outcome,
        refunded_for_late_delivery,
        dispute_opened_by,
    }
}

/// The provider's score at `now`, with its inputs.
pub async fn compute_provider_score<C: ConnectionTrait>(db: &C, provider_id: Uuid, now: DateTime<Utc>) -> ApiResult<ProviderScore> {
    let mut observations = Vec::new();
    for review in reviews::reviews_about(db, provider_id, Party::Buyer, None, None).await? {
        let rating = Rating::parse(i64::from(review.rating)).map_err(ApiError::internal)?;
        observations.push(Observation::review(review.order_id, rating, review.order_value, review.settled_at));
    }
    for fault in reviews::provider_faults(db, provider_id).await? {
        observations.push(Observation::dispute_fault(fault.order_id, fault.order_value, fault.settled_at));
    }
    Ok(provider_score(&observations, now, &score_params()))
}

/// Recomputes and stores the provider's score inside `txn`. The provider's
/// row is locked first, so concurrent recomputations serialise and the last
/// one to commit has seen every input.
pub async fn refresh_provider_score(txn: &DatabaseTransaction, provider_id: Uuid, now: DateTime<Utc>) -> ApiResult<()> {
    reviews::lock_provider(txn, provider_id).await?;
    let score = compute_provider_score(txn, provider_id, now).await?;
    reviews::set_provider_rating(txn, provider_id, score.milli(), score.review_count).await?;
    tracing::info!(
        provider.id = %provider_id,
        reputation.score_milli = score.milli(),
        reputation.reviews = score.review_count,
        reputation.faults = score.fault_count,
        "provider score updated"
    );
    Ok(())
}

/// A buyer's record from its settled orders and the providers' reviews of it.
pub async fn compute_buyer_record<C: ConnectionTrait>(db: &C, buyer_id: Uuid) -> ApiResult<BuyerRecord> {
    let settlements: Vec<SettlementFacts> = reviews::outcomes_of_buyer(db, buyer_id)
        .await?
        .into_iter()
        .map(|o| SettlementFacts {
            outcome: o.outcome,
            refunded_for_late_delivery: o.refunded_for_late_delivery,
            dispute_opened_by: o.dispute_opened_by,
        })
        .collect();
    let ratings = reviews::reviews_about(db, buyer_id, Party::Provider, None, None)
        .await?
        .into_iter()
        .map(|r| Rating::parse(i64::from(r.rating)).map_err(ApiError::internal))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(buyer_record(&settlements, &ratings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_domain::money::BasisPoints;

    fn event(event: &str, actor: &str, to: &str) -> OrderEventRecord {
        OrderEventRecord {
            order_id: Uuid::nil(),
            event: event.into(),
            actor: actor.into(),
            from_status: String::new(),
            to_status: to.into(),
            detail: String::new(),
            at: Utc::now(),
        }
    }

    #[test]
    fn a_refund_after_the_delivery_deadline_is_told_apart_from_a_mutual_cancel() {
        let late = [event("RequestRefund", "buyer", "Refunding"), event("PayoutConfirmed", "chain", "Settled")];
        assert!(settlement_facts(Settled::Refunded, &late).refunded_for_late_delivery);
        let swept = [event("DeliveryDeadlinePassed", "system", "Refunding")];
        assert!(settlement_facts(Settled::Refunded, &swept).refunded_for_late_delivery);
        let cancel = [event("ProposeCancel", "buyer", "Cancelling"), event("AcceptCancel", "provider", "Refunding")];
        assert!(!settlement_facts(Settled::Refunded, &cancel).refunded_for_late_delivery);
    }

    #[test]
    fn the_opener_of_a_dispute_is_read_from_the_history() {
        let split = Settled::Split {
            provider_bps: BasisPoints::new(3_000).unwrap(),
        };
        let events = [event("OpenDispute", "provider", "Disputed"), event("Decide", "arbitrator", "Settling")];
        assert_eq!(settlement_facts(split, &events).dispute_opened_by, Some(Party::Provider));
        assert_eq!(settlement_facts(split, &[]).dispute_opened_by, None);
    }
}
