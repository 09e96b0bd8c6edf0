//! Chain events for an order's escrow, as the chain watcher reports them. The
//! watcher (and, until it exists, tests) call these; they are not part of the
//! public API.

use agora_domain::escrow::EscrowEvent;
use agora_domain::money::{Amount, Asset};
use bitcoin::{OutPoint, Txid};
use sea_orm::TransactionTrait;
use uuid::Uuid;

use super::bitcoin::StoredUtxo;
use super::{load, transition, EscrowRecord, Order};
use crate::graphql::context::AppState;
use crate::graphql::errors::{ApiError, ApiResult};
use agora_domain::escrow::Actor;

/// What the chain shows about one Bitcoin escrow.
#[derive(Debug, Clone)]
pub enum BitcoinChainEvent {
    /// The escrow address holds these outputs; the least-confirmed has
    /// `confirmations`, the earliest is in block `height`.
    Funding {
        utxos: Vec<(OutPoint, u64)>,
        confirmations: u32,
        height: u64,
    },
    FundingReorged,
    PayoutBroadcast { txid: Txid },
    PayoutConfirmed { txid: Txid },
    PayoutReorged,
    /// The buyer spent the escrow through the time-locked refund path.
    TimeoutSpend { txid: Txid },
}

pub async fn deliver_bitcoin_event(app: &AppState, order_id: Uuid, event: BitcoinChainEvent) -> ApiResult<Order> {
    let now = app.clock.now();
    let txn = app.db.begin().await?;
    let mut order = load(&txn, order_id).await?;
    let EscrowRecord::Bitcoin(btc) = &mut order.escrow;
    let domain_event = match event {
        BitcoinChainEvent::Funding {
            utxos,
            confirmations,
            height,
        } => {
            // Once a payout is prepared its inputs are fixed; later outputs
            // are reported by the domain as a changed balance.
            if btc.payout.is_none() {
                btc.funding = utxos
                    .iter()
                    .map(|(o, v)| StoredUtxo {
                        txid: o.txid,
                        vout: o.vout,
                        value: *v,
                    })
                    .collect();
            }
            btc.confirmations = confirmations;
            btc.funding_height = height;
            let total: u64 = utxos.iter().map(|(_, v)| *v).sum();
            EscrowEvent::FundingSeen {
                amount: Amount::new(Asset::Btc, total).map_err(ApiError::internal)?,
                confirmations,
                funding_height: height,
            }
        }
        BitcoinChainEvent::FundingReorged => {
            btc.funding.clear();
            btc.confirmations = 0;
            EscrowEvent::FundingReorged
        }
        BitcoinChainEvent::PayoutBroadcast { txid } => EscrowEvent::PayoutBroadcast { txid: txid.to_string() },
        BitcoinChainEvent::PayoutConfirmed { txid } => EscrowEvent::PayoutConfirmed { txid: txid.to_string() },
        BitcoinChainEvent::PayoutReorged => EscrowEvent::PayoutReorged,
        BitcoinChainEvent::TimeoutSpend { txid } => EscrowEvent::TimeoutSpendSeen { txid: txid.to_string() },
    };
    let order = transition(app, &txn, order, Actor::Chain, &domain_event, now).await?;
    txn.commit().await?;
    Ok(order)
}
