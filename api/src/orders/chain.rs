//! Chain events for an order's escrow, as the chain watcher reports them. The
//! watcher (and, until it exists, tests) call these; they are not part of the
//! public API.

use agora_domain::escrow::{EscrowEvent, EscrowState};
use agora_domain::money::{Amount, Asset};
use bitcoin::{OutPoint, Txid};
use sea_orm::TransactionTrait;
use uuid::Uuid;

use agora_domain::escrow::deposits::{classify, Deposit};
use agora_domain::escrow::Settled;

use super::bitcoin::{StoredUtxo, StrayDeposit};
use super::channel::{ChannelStatus, ClosedWith};
use super::xrpl::{SetupStatus, XrplEscrow};
use super::{load, transition, EscrowRecord, Order};
use crate::graphql::context::AppState;
use crate::graphql::errors::{ApiError, ApiResult};
use agora_domain::escrow::Actor;

/// What the chain shows about one Bitcoin escrow.
#[derive(Debug, Clone)]
pub enum BitcoinChainEvent {
    /// The escrow address holds these outputs, all in block `height` (a
    /// shorthand of [`BitcoinChainEvent::Outputs`] for one block); the outputs
    /// have `confirmations`.
    Funding {
        utxos: Vec<(OutPoint, u64)>,
        confirmations: u32,
        height: u64,
    },
    /// The outputs the escrow address received, each with the block that
    /// holds it, as of chain height `tip`. Confirmations count per output.
    Outputs { utxos: Vec<StoredUtxo>, tip: u64 },
    FundingReorged,
    /// Some funding outputs left the chain in a reorg; `remaining` are those
    /// still in the chain. An order funded but not delivered goes back to
    /// awaiting funding with them (and counts them when more arrive).
    FundingLost { remaining: Vec<StoredUtxo> },
    PayoutBroadcast { txid: Txid },
    PayoutConfirmed { txid: Txid },
    PayoutReorged,
    /// The buyer spent the escrow through the time-locked refund path.
    TimeoutSpend { txid: Txid },
    /// The accepted funding was spent by a transaction Agora did not prepare,
    /// now as deep as a payout must be; `outcome` is what it paid.
    OtherSpend { txid: Txid, outcome: Settled },
}

pub async fn deliver_bitcoin_event(app: &AppState, order_id: Uuid, event: BitcoinChainEvent) -> ApiResult<Order> {
    let txn = app.db.begin().await?;
    let order = apply_bitcoin_event(app, &txn, order_id, event).await?;
    txn.commit().await?;
    Ok(order)
}

/// Confirmations of an output in block `height` at chain height `tip`.
fn confirmations_at(height: Option<u64>, tip: u64) -> u32 {
    match height {
        Some(h) if h <= tip => u32::try_from(tip - h + 1).unwrap_or(u32::MAX),
        _ => 0,
    }
}

/// Applies a Bitcoin chain event inside `txn` (the watcher commits it together
/// with its cursor).
pub async fn apply_bitcoin_event(
    app: &AppState,
    txn: &sea_orm::DatabaseTransaction,
    order_id: Uuid,
    event: BitcoinChainEvent,
) -> ApiResult<Order> {
    let now = app.clock.now();
    let mut order = load(txn, order_id).await?;
    let frozen = funding_frozen(&order);
    let EscrowRecord::Bitcoin(btc) = &mut order.escrow else {
        return Err(ApiError::internal("a Bitcoin event for an order on another chain"));
    };
    let event = match event {
        BitcoinChainEvent::Funding {
            utxos,
            confirmations,
            height,
        } => BitcoinChainEvent::Outputs {
            utxos: utxos
                .iter()
                .map(|(o, v)| StoredUtxo {
                    txid: o.txid,
                    vout: o.vout,
                    value: *v,
                    height: (confirmations > 0).then_some(height),
                })
                .collect(),
            tip: height + u64::from(confirmations.max(1)) - 1,
        },
        other => other,
    };
    let domain_event = match event {
        BitcoinChainEvent::Outputs { utxos, tip } => {
            // Conservation (domain `deposits`): once the funding is accepted it
            // is frozen; anything else that reaches the address is a stray
            // deposit, refunded on its own, and never changes what payouts spend.
            let deposit = |u: &StoredUtxo| Deposit {
                id: format!("{}:{}", u.txid, u.vout),
                value: u.value,
            };
            let funding: Vec<Deposit> = btc.funding.iter().map(deposit).collect();
            let strays: Vec<Deposit> = btc.strays.iter().map(|s| deposit(&s.utxo)).collect();
            let seen: Vec<Deposit> = utxos.iter().map(deposit).collect();
            let classified = classify(&order.state, &funding, &strays, &seen);
            if frozen {
                let new: Vec<StoredUtxo> = utxos
                    .iter()
                    .filter(|u| classified.new_strays.iter().any(|d| d.id == deposit(u).id))
                    .copied()
                    .collect();
                if new.is_empty() {
                    return Ok(order);
                }
                for u in &new {
                    btc.strays.push(StrayDeposit {
                        utxo: *u,
                        refund: None,
                        dust: false,
                        spent_by: None,
                    });
                }
                let detail = new
                    .iter()
                    .map(|u| format!("{}:{} ({} sats)", u.txid, u.vout, u.value))
                    .collect::<Vec<_>>()
                    .join(", ");
                super::save_and_hint(app, txn, &mut order, now).await?;
                note(txn, &order, "StrayDeposit", &format!("received outside the accepted funding, to be refunded to the buyer: {detail}"), now).await?;
                return Ok(order);
            }
            // Not frozen: the funding is what `classify` says (every output
            // but the known strays).
            let utxos: Vec<StoredUtxo> =
                utxos.into_iter().filter(|u| classified.funding.iter().any(|d| d.id == deposit(u).id)).collect();
            btc.funding = utxos.clone();
            // The least-confirmed output decides; the timelock counts from the earliest.
            let confirmations = utxos.iter().map(|u| confirmations_at(u.height, tip)).min().unwrap_or(0);
            let earliest = utxos.iter().filter_map(|u| u.height).min().unwrap_or(0);
            btc.confirmations = confirmations;
            btc.funding_height = earliest;
            let total: u64 = utxos.iter().map(|u| u.value).sum();
            EscrowEvent::FundingSeen {
                amount: Amount::new(Asset::Btc, total).map_err(ApiError::internal)?,
                confirmations,
                funding_height: earliest,
            }
        }
        BitcoinChainEvent::Funding { .. } => return Err(ApiError::internal("funding shorthand not expanded")),
        BitcoinChainEvent::FundingReorged | BitcoinChainEvent::FundingLost { .. } => {
            let remaining = match event {
                BitcoinChainEvent::FundingLost { remaining } => remaining,
                _ => Vec::new(),
            };
            // Before delivery the order goes back to awaiting funding and
            // keeps what is still on the chain; after it, the domain keeps the
            // accepted funding (an operator looks; it usually confirms again).
            if matches!(order.state, agora_domain::escrow::EscrowState::Funded { .. }) || !frozen {
                btc.funding = remaining;
                btc.confirmations = 0;
            }
            EscrowEvent::FundingReorged
        }
        BitcoinChainEvent::PayoutBroadcast { txid } => EscrowEvent::PayoutBroadcast { txid: txid.to_string() },
        BitcoinChainEvent::PayoutConfirmed { txid } => {
            // Only the payout Agora prepared settles an order this way; other
            // spends arrive as `OtherSpend`.
            if btc.payout.as_ref().map(|p| p.txid) != Some(txid) {
                tracing::warn!(order.id = %order_id, escrow.txid = %txid, "unexpected spend of the escrow");
                return Err(ApiError::conflict("UNEXPECTED_SPEND", format!("{txid} is not this order's payout")));
            }
            EscrowEvent::PayoutConfirmed { txid: txid.to_string() }
        }
        BitcoinChainEvent::PayoutReorged => EscrowEvent::PayoutReorged,
        BitcoinChainEvent::TimeoutSpend { txid } => EscrowEvent::TimeoutSpendSeen { txid: txid.to_string() },
        BitcoinChainEvent::OtherSpend { txid, outcome } => EscrowEvent::OtherSpendSeen {
            txid: txid.to_string(),
            outcome,
        },
    };
    transition(app, txn, order, Actor::Chain, &domain_event, now).await
}

/// Whether the order's funding is accepted (or it is over): from then on the
/// funding outputs never change.
pub fn funding_frozen(order: &Order) -> bool {
    agora_domain::escrow::deposits::funding_frozen(&order.state)
}

async fn note(txn: &sea_orm::DatabaseTransaction, order: &Order, event: &str, detail: &str, at: chrono::DateTime<chrono::Utc>) -> ApiResult<()> {
    agora_persistence::orders::insert_order_event(
        txn,
        &agora_persistence::orders::OrderEventRecord {
            order_id: order.id(),
            event: event.to_owned(),
            actor: "chain".into(),
            from_status: order.state.name().into(),
            to_status: order.state.name().into(),
            detail: detail.to_owned(),
            at,
        },
    )
    .await?;
    Ok(())
}

/// What the XRP Ledger shows about one escrow account (validated ledgers only).
#[derive(Debug, Clone)]
pub enum XrplChainEvent {
    /// The operating account's Payment (the account's reserve and set-up fees)
    /// was validated in `ledger_index`. Whoever created the account, its
    /// configuration is signed only once its real Sequence is read back
    /// ([`XrplChainEvent::ConfigurationDue`]).
    AccountCreated { ledger_index: u32 },
    /// The account's next Sequence on the validated ledger `validated` is
    /// `sequence` and the lock is not in place: sign (again) what is missing
    /// from there — both set-up transactions, or only the AccountSet when the
    /// signer list is already on the ledger.
    ConfigurationDue {
        sequence: u32,
        validated: u32,
        signer_list_in_place: bool,
    },
    /// The ledger shows the lock (the signer list the buyer verifies, the
    /// master key disabled); `next_sequence` is the account's next Sequence.
    /// Deposits that arrived before count from now on.
    SetupValidated { ledger_index: u32, next_sequence: u32 },
    /// The account holds `deposit_drops` above its reserve.
    Funding { deposit_drops: u64, ledger_index: u32 },
    /// A validated ledger holds a transaction of the escrow account with
    /// `sequence`: that Sequence is consumed, whatever its result.
    SequenceConsumed { sequence: u32, ledger_index: u32 },
    /// One payout Payment was validated.
    PayoutValidated { hash: String, ledger_index: u32 },
    /// The master-key refund of an escrow account that was never locked was validated.
    DepositRefunded { ledger_index: u32 },
    /// One payout Payment was applied with a `tec` result: its fee is burned
    /// and its share stays in the escrow account.
    PayoutFailed { hash: String, result: String, ledger_index: u32 },
    /// The channel's create is in a validated ledger with `result`: the
    /// channel is open (`tesSUCCESS`), or it never will be (a `tec`).
    ChannelCreateApplied { hash: String, result: String, ledger_index: u32 },
    /// The create's Sequence went to another transaction: it can never apply.
    ChannelCreateDead { ledger_index: u32 },
    /// A `PaymentChannelClaim` on the order's channel is in a validated
    /// ledger (the escrow's own, or the provider's). `balance_drops` is its
    /// `Balance` when it applied with `tesSUCCESS`; `destination_closed`
    /// when it was the provider's claim with `tfClose` (which closes at once).
    ChannelClaimApplied {
        hash: String,
        result: String,
        balance_drops: Option<u64>,
        destination_closed: bool,
        ledger_index: u32,
    },
    /// The provider's own closing claim (from `closeSession`) can never apply:
    /// the ledger refused it (its Sequence went to another of the provider's
    /// transactions, say) while the channel is still open. The escrow closes
    /// the channel instead.
    ProviderCloseDead { result: String, ledger_index: u32 },
    /// The channel as the validated ledger shows it (`None`: closed), with
    /// what the escrow account holds above its reserve.
    ChannelRead {
        channel: Option<agora_escrow::source::ChannelInfo>,
        spendable_drops: u64,
        ledger_index: u32,
    },
}

/// Signs the operating account's Payment that creates the escrow account. The
/// watcher submits it; `operating_sequence` is the operating account's next
/// Sequence and `ledger_index` the current validated ledger.
pub async fn prepare_xrpl_account(app: &AppState, order_id: Uuid, operating_sequence: u32, ledger_index: u32) -> ApiResult<Order> {
    update_xrpl(app, order_id, "EscrowAccountPrepared", |x| x.sign_funding(&app.xrpl, operating_sequence, ledger_index)).await
}

async fn update_xrpl(
    app: &AppState,
    order_id: Uuid,
    what: &str,
    change: impl FnOnce(&mut XrplEscrow) -> ApiResult<()>,
) -> ApiResult<Order> {
    let txn = app.db.begin().await?;
    let order = update_xrpl_in(app, &txn, order_id, what, change).await?;
    txn.commit().await?;
    Ok(order)
}

async fn update_xrpl_in(
    app: &AppState,
    txn: &sea_orm::DatabaseTransaction,
    order_id: Uuid,
    what: &str,
    change: impl FnOnce(&mut XrplEscrow) -> ApiResult<()>,
) -> ApiResult<Order> {
    let now = app.clock.now();
    let mut order = load(txn, order_id).await?;
    let x = xrpl_mut(&mut order)?;
    change(x)?;
    super::save(txn, &mut order, now).await?;
    agora_persistence::orders::insert_order_event(
        txn,
        &agora_persistence::orders::OrderEventRecord {
            order_id,
            event: what.to_owned(),
            actor: "chain".into(),
            from_status: order.state.name().into(),
            to_status: order.state.name().into(),
            detail: String::new(),
            at: now,
        },
    )
    .await?;
    Ok(order)
}

pub async fn deliver_xrpl_event(app: &AppState, order_id: Uuid, event: XrplChainEvent) -> ApiResult<Order> {
    let txn = app.db.begin().await?;
    let order = apply_xrpl_event(app, &txn, order_id, event).await?;
    txn.commit().await?;
    Ok(order)
}

fn xrpl_mut(order: &mut Order) -> ApiResult<&mut XrplEscrow> {
    match &mut order.escrow {
        EscrowRecord::Xrpl(x) => Ok(x),
        EscrowRecord::Bitcoin(_) => Err(ApiError::internal("an XRPL event for an order on another chain")),
    }
}

/// `drops` seen in the escrow account in validated ledger `ledger_index`
/// (a validated ledger is final: one confirmation).
fn xrp_funding_seen(drops: u64, ledger_index: u32) -> ApiResult<EscrowEvent> {
    Ok(EscrowEvent::FundingSeen {
        amount: Amount::new(Asset::Xrp, drops).map_err(ApiError::internal)?,
        confirmations: 1,
        funding_height: u64::from(ledger_index),
    })
}

/// The payout Payment of `x` whose signed hash is `hash`, and its position.
fn payout_position<'a>(order_id: Uuid, x: &'a mut XrplEscrow, hash: &str) -> ApiResult<(&'a mut super::xrpl::XrplPayout, usize)> {
    let payout = x
        .payout
        .as_mut()
        .ok_or_else(|| ApiError::conflict("UNEXPECTED_SPEND", "no payout was prepared for this escrow"))?;
    let Some(position) = payout.finals.iter().position(|f| f.as_ref().is_some_and(|f| f.hash == hash)) else {
        tracing::warn!(order.id = %order_id, xrpl.hash = %hash, "unexpected transaction from the escrow account");
        return Err(ApiError::conflict("UNEXPECTED_SPEND", format!("{hash} is not one of this order's payouts")));
    };
    Ok((payout, position))
}

/// Applies an XRPL chain event inside `txn` (the watcher commits it together
/// with its cursor).
pub async fn apply_xrpl_event(
    app: &AppState,
    txn: &sea_orm::DatabaseTransaction,
    order_id: Uuid,
    event: XrplChainEvent,
) -> ApiResult<Order> {
    match event {
        XrplChainEvent::AccountCreated { ledger_index } => {
            update_xrpl_in(app, txn, order_id, "EscrowAccountCreated", |x| {
                if x.setup.status != SetupStatus::AwaitingAccount {
                    return Err(ApiError::conflict("WRONG_STATE", "the escrow account's reserve arrived already"));
                }
                x.setup.status = SetupStatus::Configuring;
                x.ledger_index = x.ledger_index.max(ledger_index);
                Ok(())
            })
            .await
        }
        XrplChainEvent::ConfigurationDue {
            sequence,
            validated,
            signer_list_in_place,
        } => {
            update_xrpl_in(app, txn, order_id, "EscrowAccountConfigurationSigned", |x| {
                if x.setup.status == SetupStatus::Ready {
                    return Err(ApiError::conflict("WRONG_STATE", "the escrow account is locked already"));
                }
                x.sign_configuration(&app.xrpl, sequence, validated, signer_list_in_place)
            })
            .await
        }
        XrplChainEvent::SetupValidated {
            ledger_index,
            next_sequence,
        } => {
            let now = app.clock.now();
            let mut order = load(txn, order_id).await?;
            let x = xrpl_mut(&mut order)?;
            if x.setup.status != SetupStatus::Configuring {
                return Err(ApiError::conflict("WRONG_STATE", "the escrow account's configuration is not signed yet"));
            }
            x.setup.status = SetupStatus::Ready;
            x.ledger_index = x.ledger_index.max(ledger_index);
            x.next_sequence = Some(x.next_sequence.unwrap_or(0).max(next_sequence));
            let early = x.funded_drops;
            super::save(txn, &mut order, now).await?;
            note(txn, &order, "EscrowAccountReady", "the ledger shows the 2-of-3 signer list and the master key disabled", now)
                .await?;
            if early == 0 {
                return Ok(order);
            }
            // What arrived before the lock counts now that it holds.
            transition(app, txn, order, Actor::Chain, &xrp_funding_seen(early, ledger_index)?, now).await
        }
        XrplChainEvent::Funding { deposit_drops, ledger_index } => {
            let now = app.clock.now();
            let mut order = load(txn, order_id).await?;
            let x = xrpl_mut(&mut order)?;
            let before = x.funded_drops;
            x.funded_drops = deposit_drops;
            x.ledger_index = x.ledger_index.max(ledger_index);
            if x.setup.status != SetupStatus::Ready {
                // The account is not locked yet: the deposit is kept in the
                // count but the order is not funded until the lock holds.
                let detail = format!(
                    "{} drops arrived in ledger {ledger_index} before the escrow account was locked; they count once the ledger shows the lock",
                    deposit_drops.saturating_sub(before)
                );
                super::save(txn, &mut order, now).await?;
                note(txn, &order, "DepositBeforeLock", &detail, now).await?;
                return Ok(order);
            }
            transition(app, txn, order, Actor::Chain, &xrp_funding_seen(deposit_drops, ledger_index)?, now).await
        }
        XrplChainEvent::DepositRefunded { ledger_index } => {
            update_xrpl_in(app, txn, order_id, "DepositRefunded", |x| {
                x.setup.refunded = true;
                x.ledger_index = x.ledger_index.max(ledger_index);
                Ok(())
            })
            .await
        }
        XrplChainEvent::SequenceConsumed { sequence, ledger_index } => {
            let now = app.clock.now();
            let mut order = load(txn, order_id).await?;
            let x = xrpl_mut(&mut order)?;
            let next = sequence.saturating_add(1);
            if x.next_sequence.is_some_and(|n| n >= next) {
                return Ok(order);
            }
            x.next_sequence = Some(next);
            x.ledger_index = x.ledger_index.max(ledger_index);
            super::save(txn, &mut order, now).await?;
            Ok(order)
        }
        XrplChainEvent::PayoutValidated { hash, ledger_index } => {
            let now = app.clock.now();
            let mut order = load(txn, order_id).await?;
            let x = xrpl_mut(&mut order)?;
            x.ledger_index = x.ledger_index.max(ledger_index);
            let (payout, position) = payout_position(order_id, x, &hash)?;
            if !payout.validated.contains(&position) {
                payout.validated.push(position);
            }
            let id = payout.id().unwrap_or_default();
            if payout.all_validated() {
                let event = EscrowEvent::PayoutConfirmed { txid: id };
                transition(app, txn, order, Actor::Chain, &event, now).await
            } else {
                super::save(txn, &mut order, now).await?;
                Ok(order)
            }
        }
        XrplChainEvent::PayoutFailed {
            hash,
            result,
            ledger_index,
        } => {
            let now = app.clock.now();
            let mut order = load(txn, order_id).await?;
            let x = xrpl_mut(&mut order)?;
            x.ledger_index = x.ledger_index.max(ledger_index);
            let (payout, position) = payout_position(order_id, x, &hash)?;
            if payout.failed_at(position).is_some() || payout.validated.contains(&position) {
                return Ok(order);
            }
            payout.failed.push(super::xrpl::FailedShare {
                position,
                hash: hash.clone(),
                result: result.clone(),
                ledger_index,
            });
            let spec = &payout.transactions[position];
            let whose = super::xrpl::recipient_name(spec.recipient);
            let detail = format!(
                "the ledger refused the Payment of {} drops to the {whose} ({}{}) with {result} in ledger {ledger_index}; the share stays in the escrow until the {whose} names a destination that can receive it (setPayoutDestination)",
                spec.amount_drops,
                spec.destination.address,
                spec.destination.tag.map(|t| format!(", tag {t}")).unwrap_or_default(),
            );
            super::save(txn, &mut order, now).await?;
            note(txn, &order, "PayoutShareRefused", &detail, now).await?;
            Ok(order)
        }
        XrplChainEvent::ChannelCreateApplied { .. }
        | XrplChainEvent::ChannelCreateDead { .. }
        | XrplChainEvent::ChannelClaimApplied { .. }
        | XrplChainEvent::ProviderCloseDead { .. }
        | XrplChainEvent::ChannelRead { .. } => Box::pin(apply_channel_event(app, txn, order_id, event)).await,
    }
}


/// The payment-channel events, apart so that [`apply_xrpl_event`] stays a
/// small future.
async fn apply_channel_event(
    app: &AppState,
    txn: &sea_orm::DatabaseTransaction,
    order_id: Uuid,
    event: XrplChainEvent,
) -> ApiResult<Order> {
    match event {
        XrplChainEvent::ChannelCreateApplied { hash, result, ledger_index } => {
            let now = app.clock.now();
            let mut order = load_seen(txn, order_id, ledger_index).await?;
            let x = xrpl_mut(&mut order)?;
            let ch = channel_mut(x)?;
            if !ch.create.fin.as_ref().is_some_and(|f| f.hash.eq_ignore_ascii_case(&hash)) || ch.create.applied() {
                return Ok(order);
            }
            ch.create.result = Some(result.clone());
            let (what, detail) = if result == "tesSUCCESS" {
                ch.status = ChannelStatus::Open;
                ("ChannelOpened", format!("payment channel {} of {} drops to the provider opened in ledger {ledger_index}", ch.id, ch.amount_drops))
            } else {
                ch.status = ChannelStatus::Abandoned;
                ("ChannelNotOpened", format!("the ledger refused the channel's create with {result} in ledger {ledger_index}; the deposit stays in the escrow account"))
            };
            note(txn, &order, what, &detail, now).await?;
            Box::pin(after_channel_change(app, txn, order, now)).await
        }
        XrplChainEvent::ChannelCreateDead { ledger_index } => {
            let now = app.clock.now();
            let mut order = load_seen(txn, order_id, ledger_index).await?;
            let x = xrpl_mut(&mut order)?;
            let ch = channel_mut(x)?;
            if ch.status != ChannelStatus::Proposed {
                return Ok(order);
            }
            ch.status = ChannelStatus::Abandoned;
            note(txn, &order, "ChannelNotOpened", "another transaction took the create's Sequence: the channel will not open", now).await?;
            Box::pin(after_channel_change(app, txn, order, now)).await
        }
        XrplChainEvent::ChannelClaimApplied {
            hash,
            result,
            balance_drops,
            destination_closed,
            ledger_index,
        } => {
            let now = app.clock.now();
            let mut order = load_seen(txn, order_id, ledger_index).await?;
            let x = xrpl_mut(&mut order)?;
            let ch = channel_mut(x)?;
            let mut close_failed = false;
            for step in ch.close.iter_mut() {
                if step.fin.as_ref().is_some_and(|f| f.hash.eq_ignore_ascii_case(&hash)) && !step.applied() {
                    step.result = Some(result.clone());
                    close_failed |= result != "tesSUCCESS";
                }
            }
            if let Some(balance) = balance_drops {
                ch.balance_drops = ch.balance_drops.max(balance);
            }
            ch.recheck = true;
            let closed_by_provider = destination_closed && ch.status == ChannelStatus::Open;
            if close_failed && !closed_by_provider {
                // E.g. the provider redeemed more than the close would have
                // delivered, just before it: close again, from the new balance.
                ch.close.clear();
                let detail = format!("the escrow's close of the channel was refused with {result} ({hash}); a new one is built and must be signed again");
                return close_again(app, txn, order, &detail, now).await;
            }
            super::save(txn, &mut order, now).await?;
            if closed_by_provider {
                note(txn, &order, "ChannelClosedByProvider", &format!("the provider redeemed its claim and closed the channel ({hash})"), now).await?;
            }
            Ok(order)
        }
        XrplChainEvent::ChannelRead {
            channel,
            spendable_drops,
            ledger_index,
        } => {
            let now = app.clock.now();
            let mut order = load_seen(txn, order_id, ledger_index).await?;
            let x = xrpl_mut(&mut order)?;
            let funded_drops = x.funded_drops;
            let ch = channel_mut(x)?;
            ch.recheck = false;
            match channel {
                Some(info) => {
                    ch.balance_drops = ch.balance_drops.max(info.balance_drops);
                    ch.expiration = info.expiration;
                    if !ch.close.is_empty() && ch.close.iter().all(|s| s.applied()) {
                        // Both closing transactions applied and the channel is
                        // still there (the second came before the expiration):
                        // close again.
                        ch.close.clear();
                        let detail = "the channel is still open after the escrow's closing transactions; new ones are built and must be signed again";
                        return close_again(app, txn, order, detail, now).await;
                    }
                    super::save(txn, &mut order, now).await?;
                    Ok(order)
                }
                None if ch.status == ChannelStatus::Open => {
                    ch.status = ChannelStatus::Closed;
                    ch.closed_with = Some(ClosedWith { spendable_drops, funded_drops });
                    let detail = format!(
                        "the channel is closed: it delivered {} drops to the provider; {spendable_drops} drops are back in the escrow account",
                        ch.balance_drops
                    );
                    note(txn, &order, "ChannelClosed", &detail, now).await?;
                    Box::pin(after_channel_change(app, txn, order, now)).await
                }
                None => {
                    super::save(txn, &mut order, now).await?;
                    Ok(order)
                }
            }
        }
        XrplChainEvent::ProviderCloseDead { result, ledger_index } => {
            let now = app.clock.now();
            let mut order = load_seen(txn, order_id, ledger_index).await?;
            let ch = channel_mut(xrpl_mut(&mut order)?)?;
            if ch.status != ChannelStatus::Open || ch.provider_close.take().is_none() {
                return Ok(order);
            }
            let detail = format!("the ledger refused the provider's closing claim ({result}); the escrow closes the channel, delivering the latest claim");
            note(txn, &order, "ProviderCloseRefused", &detail, now).await?;
            Box::pin(after_channel_change(app, txn, order, now)).await
        }
        other => Err(ApiError::internal(format!("not a channel event: {other:?}"))),
    }
}

/// The escrow's closing transactions were dropped (`detail` says why): the
/// history says so and new ones are built (and co-signed where the
/// marketplace co-signs this payout).
async fn close_again(
    app: &AppState,
    txn: &sea_orm::DatabaseTransaction,
    order: Order,
    detail: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> ApiResult<Order> {
    note(txn, &order, "ChannelCloseRebuilt", detail, now).await?;
    Box::pin(after_channel_change(app, txn, order, now)).await
}

/// The order, with `ledger_index` recorded as seen by its escrow.
async fn load_seen(txn: &sea_orm::DatabaseTransaction, order_id: Uuid, ledger_index: u32) -> ApiResult<Order> {
    let mut order = load(txn, order_id).await?;
    let x = xrpl_mut(&mut order)?;
    x.ledger_index = x.ledger_index.max(ledger_index);
    Ok(order)
}

fn channel_mut(x: &mut XrplEscrow) -> ApiResult<&mut super::channel::XrplChannel> {
    x.channel
        .as_mut()
        .ok_or_else(|| ApiError::conflict("NO_CHANNEL", "this order has no payment channel"))
}

/// After the channel opened, closed or was abandoned: a payout that waited
/// for it is built now (and co-signed if the marketplace signs this payout);
/// a channel the provider closed while the session was open settles the
/// buyer's latest claim.
async fn after_channel_change(
    app: &AppState,
    txn: &sea_orm::DatabaseTransaction,
    mut order: Order,
    now: chrono::DateTime<chrono::Utc>,
) -> ApiResult<Order> {
    let validated = u32::try_from(app.tips.xrpl()).unwrap_or(u32::MAX);
    let paying = match &order.state {
        EscrowState::PayingOut { payout, .. } => Some((payout.plan, payout.outcome())),
        _ => None,
    };
    let session_open = matches!(order.state, EscrowState::Funded { .. } | EscrowState::Delivered { .. });
    let closed = xrpl_mut(&mut order)?.channel.as_ref().is_some_and(|c| c.status == ChannelStatus::Closed);
    match paying {
        Some((plan, outcome)) => {
            let x = xrpl_mut(&mut order)?;
            let cosigns = x.channel.as_ref().is_some_and(|c| c.marketplace_cosigns);
            x.prepare_payout(&plan, &app.xrpl, validated)?;
            if cosigns {
                let ctx = super::system_context(&order, u64::from(validated), now);
                Box::pin(super::signing::SigningGate::sign_payout(app, txn, &mut order, outcome, &ctx)).await?;
            }
            let nothing_left = xrpl_mut(&mut order)?.payout.as_ref().is_some_and(|p| p.transactions.is_empty());
            if nothing_left {
                // The channel paid everything there was: nothing to send.
                let event = EscrowEvent::PayoutConfirmed { txid: String::new() };
                return Box::pin(transition(app, txn, order, Actor::Chain, &event, now)).await;
            }
            super::save_and_hint(app, txn, &mut order, now).await?;
            Ok(order)
        }
        // The provider closed the channel itself: the session is over.
        None if session_open && closed => Box::pin(crate::metered::settle_closed_channel(app, txn, order, now)).await,
        _ => {
            super::save_and_hint(app, txn, &mut order, now).await?;
            Ok(order)
        }
    }
}
