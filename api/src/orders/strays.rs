//! Stray deposits: outputs that reach a Bitcoin escrow's address outside its
//! accepted funding (after the funding was frozen, or after settlement).
//! Conservation says each goes back to the buyer, whole but for the network
//! fee: once an output has the confirmations the order requires, its refund
//! is built (one input, one output to the buyer's refund address), co-signed
//! by the marketplace through the signing gate, and waits for the buyer's
//! signature (`submitStrayRefundSignature`); the watcher broadcasts it.
//! A stray never changes what the order's own payouts spend.

use agora_domain::escrow::EscrowState;
use agora_persistence::orders::{self as store, OrderEventRecord};
use sea_orm::{DatabaseTransaction, TransactionTrait};
use uuid::Uuid;

use super::signing::SigningGate;
use super::{load, load_for, save_and_hint, EscrowRecord, Order};
use crate::graphql::context::AppState;
use crate::graphql::errors::{ApiError, ApiResult};
use agora_domain::escrow::Actor;

/// Prepares and co-signs the refund of every stray output of `order_id` that
/// is deep enough at chain height `tip`.
pub async fn prepare_refunds(app: &AppState, txn: &DatabaseTransaction, order_id: Uuid, tip: u64) -> ApiResult<usize> {
    let now = app.clock.now();
    let mut order = load(txn, order_id).await?;
    let required = u64::from(order.terms.required_confirmations().max(1));
    let rate = match &order.escrow {
        EscrowRecord::Bitcoin(b) => b.payout_fee_rate(&app.bitcoin.fees),
        EscrowRecord::Xrpl(_) => return Ok(0),
    };
    let due: Vec<usize> = match &order.escrow {
        EscrowRecord::Bitcoin(b) => b
            .strays
            .iter()
            .enumerate()
            .filter(|(_, s)| s.refund.is_none() && !s.dust && s.spent_by.is_none())
            .filter(|(_, s)| s.utxo.height.is_some_and(|h| h <= tip && tip + 1 - h >= required))
            .map(|(i, _)| i)
            .collect(),
        EscrowRecord::Xrpl(_) => Vec::new(),
    };
    if due.is_empty() {
        return Ok(0);
    }
    let mut prepared = 0;
    for index in due {
        if let EscrowRecord::Bitcoin(b) = &mut order.escrow {
            b.prepare_stray_refund(index, rate)?;
        }
        let ready = matches!(&order.escrow, EscrowRecord::Bitcoin(b) if b.strays[index].refund.is_some());
        let detail = if ready {
            SigningGate::sign_stray_refund(app, txn, &mut order, index, now).await?;
            prepared += 1;
            "refund to the buyer prepared and co-signed by the marketplace; the buyer signs it"
        } else {
            "too small to pay its own refund fee; left in place"
        };
        note(txn, &order, "StrayRefundPrepared", detail).await?;
    }
    save_and_hint(app, txn, &mut order, now).await?;
    Ok(prepared)
}

/// The buyer (or provider) adds its signature to stray refund `index`.
pub async fn submit_signature(app: &AppState, order_id: Uuid, user_id: Uuid, index: usize, psbt: &str) -> ApiResult<Order> {
    let now = app.clock.now();
    let txn = app.db.begin().await?;
    let (mut order, actor) = load_for(&txn, order_id, user_id).await?;
    if !matches!(actor, Actor::Buyer | Actor::Provider) {
        return Err(ApiError::forbidden("WRONG_ROLE", "only the buyer and the provider sign refunds"));
    }
    let EscrowRecord::Bitcoin(b) = &mut order.escrow else {
        return Err(ApiError::bad_input("input.orderId", "NOT_BITCOIN", "stray deposits are Bitcoin outputs"));
    };
    b.import_stray_signatures(index, psbt)?;
    let complete = b.strays.get(index).and_then(|s| s.refund.as_ref()).is_some_and(|r| r.final_tx.is_some());
    save_and_hint(app, &txn, &mut order, now).await?;
    note(&txn, &order, "StrayRefundSigned", if complete { "fully signed; broadcast next" } else { "" }).await?;
    txn.commit().await?;
    Ok(order)
}

async fn note(txn: &DatabaseTransaction, order: &Order, event: &str, detail: &str) -> ApiResult<()> {
    let status = match &order.state {
        EscrowState::Settled { .. } => "Settled",
        other => other.name(),
    };
    store::insert_order_event(
        txn,
        &OrderEventRecord {
            order_id: order.id(),
            event: event.into(),
            actor: "system".into(),
            from_status: status.into(),
            to_status: status.into(),
            detail: detail.into(),
            at: order.record.updated_at,
        },
    )
    .await?;
    Ok(())
}
