//! Orders: placing them, and moving their escrows through the domain's state
//! machine. Every change happens in one database transaction: load the order,
//! apply one event, carry out the effects that touch the escrow (build the
//! payout, co-sign it where the policy allows, append to the audit log), store
//! the new state with an optimistic-concurrency check, record the history.

pub mod bitcoin;
pub mod chain;
pub mod channel;
pub mod place;
pub mod refused;
pub mod scheduler;
pub mod signing;
pub mod strays;
pub mod xrpl;

use agora_domain::escrow::{
    apply, Actor, Context, Effect, ErrorKind, EscrowError, EscrowEvent, EscrowState, Outcome, SigningRule,
};
use agora_domain::money::Amount;
use agora_domain::order::OrderTerms;
use agora_persistence::orders::{self, OrderEventRecord, OrderRecord};
use agora_persistence::StoreError;
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseTransaction, TransactionTrait};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use self::bitcoin::BtcEscrow;
use self::xrpl::XrplEscrow;
use crate::graphql::context::AppState;
use crate::graphql::errors::{ApiError, ApiResult};

/// The chain-specific part of an order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "chain", rename_all = "lowercase")]
pub enum EscrowRecord {
    Bitcoin(BtcEscrow),
    Xrpl(XrplEscrow),
}

impl EscrowRecord {
    pub fn chain(&self) -> &'static str {
        match self {
            EscrowRecord::Bitcoin(_) => "bitcoin",
            EscrowRecord::Xrpl(_) => "xrpl",
        }
    }

    /// Whether the payout has every signature it needs and each was verified.
    pub fn payout_complete(&self) -> bool {
        match self {
            EscrowRecord::Bitcoin(b) => b.payout.as_ref().is_some_and(|p| p.final_tx.is_some()),
            EscrowRecord::Xrpl(x) => x.payout.as_ref().is_some_and(|p| p.complete()),
        }
    }
}

/// An order as the services work with it.
#[derive(Debug, Clone)]
pub struct Order {
    pub record: OrderRecord,
    pub terms: OrderTerms,
    pub state: EscrowState,
    pub escrow: EscrowRecord,
}

impl Order {
    pub fn from_record(record: OrderRecord) -> ApiResult<Self> {
        let terms = serde_json::from_str(&record.terms_json).map_err(ApiError::internal)?;
        let state = serde_json::from_str(&record.state_json).map_err(ApiError::internal)?;
        let escrow = serde_json::from_str(&record.escrow_json).map_err(ApiError::internal)?;
        Ok(Self {
            record,
            terms,
            state,
            escrow,
        })
    }

    pub fn id(&self) -> Uuid {
        self.record.id
    }

    /// Whether the order is a metered session (paid through claims).
    pub fn is_metered(&self) -> bool {
        matches!(self.terms.listing().pricing, agora_domain::order::PricingSnapshot::Metered { .. })
    }

    /// The role `user_id` plays in this order, if any.
    pub fn actor_of(&self, user_id: Uuid) -> Option<Actor> {
        if user_id == self.record.buyer_id {
            Some(Actor::Buyer)
        } else if user_id == self.record.provider_id {
            Some(Actor::Provider)
        } else if self.record.arbitrator_id == Some(user_id) {
            Some(Actor::Arbitrator)
        } else {
            None
        }
    }

    /// The chain height events are judged at: the watcher's tip, or what
    /// this escrow last saw if that is higher.
    fn chain_height(&self, tips: &crate::watcher::ChainTips) -> u64 {
        match &self.escrow {
            EscrowRecord::Bitcoin(b) => b.funding_height.max(tips.bitcoin()),
            EscrowRecord::Xrpl(x) => u64::from(x.ledger_index).max(tips.xrpl()),
        }
    }
}

/// Who causes an event.
#[derive(Debug, Clone, Copy)]
pub enum Caller {
    User(Uuid),
    System,
    Chain,
}

pub async fn load<C: ConnectionTrait>(db: &C, id: Uuid) -> ApiResult<Order> {
    let record = orders::find_order(db, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such order".into()))?;
    Order::from_record(record)
}

/// Loads an order the user takes part in; others get NOT_FOUND, so order ids
/// reveal nothing.
pub async fn load_for<C: ConnectionTrait>(db: &C, id: Uuid, user_id: Uuid) -> ApiResult<(Order, Actor)> {
    let order = load(db, id).await?;
    let actor = order
        .actor_of(user_id)
        .ok_or_else(|| ApiError::NotFound("no such order".into()))?;
    Ok((order, actor))
}

pub fn escrow_error(e: EscrowError) -> ApiError {
    let reason = match &e {
        EscrowError::WrongActor { .. } => "WRONG_ROLE",
        EscrowError::WrongState { .. } => "WRONG_STATE",
        EscrowError::DeadlinePassed { .. } => "DEADLINE_PASSED",
        EscrowError::DeadlineNotReached { .. } => "DEADLINE_NOT_REACHED",
        EscrowError::AlreadySettled => "ALREADY_SETTLED",
        EscrowError::ClaimAboveLimit { .. } => "CLAIM_ABOVE_LIMIT",
        EscrowError::ClaimOutstanding { .. } => "CLAIM_OUTSTANDING",
        EscrowError::AssetMismatch { .. } => return ApiError::internal(e),
    };
    match e.kind() {
        ErrorKind::Forbidden => ApiError::forbidden(reason, e.to_string()),
        ErrorKind::BadUserInput => ApiError::bad_input("input", reason, e.to_string()),
        ErrorKind::Conflict => ApiError::conflict(reason, e.to_string()),
        ErrorKind::Internal => ApiError::internal(e),
    }
}

fn actor_name(actor: Actor) -> &'static str {
    match actor {
        Actor::Buyer => "buyer",
        Actor::Provider => "provider",
        Actor::Arbitrator => "arbitrator",
        Actor::System => "system",
        Actor::Chain => "chain",
    }
}

pub(crate) fn rule_name(rule: SigningRule) -> String {
    match rule {
        SigningRule::UnsignedRelease => "unsigned_release".into(),
        SigningRule::StrayRefund { amount } => format!("stray_refund:{amount}"),
        SigningRule::ArbitrationLapsed => "arbitration_lapsed".into(),
        SigningRule::MutualCancel => "mutual_cancel".into(),
        SigningRule::ReviewWindowPassed => "review_window_passed".into(),
        SigningRule::DeliveryDeadlinePassed => "delivery_deadline_passed".into(),
        SigningRule::ArbitrationDecision { provider_bps } => {
            format!("arbitration_decision:{}", provider_bps.get())
        }
        SigningRule::LatestClaim { claimed } => format!("latest_claim:{claimed}"),
        SigningRule::ChannelOpen { amount } => format!("channel_open:{amount}"),
    }
}

pub fn outcome_name(outcome: Outcome) -> String {
    match outcome {
        Outcome::Release => "release".into(),
        Outcome::Refund => "refund".into(),
        Outcome::Split { provider_bps } => format!("split:{}", provider_bps.get()),
    }
}

/// Applies `event` to order `id` on behalf of `caller`, in one transaction.
pub async fn act(app: &AppState, id: Uuid, caller: Caller, event: EscrowEvent) -> ApiResult<Order> {
    let now = app.clock.now();
    let txn = app.db.begin().await?;
    let order = load(&txn, id).await?;
    let actor = match caller {
        Caller::User(user) => order
            .actor_of(user)
            .ok_or_else(|| ApiError::NotFound("no such order".into()))?,
        Caller::System => Actor::System,
        Caller::Chain => Actor::Chain,
    };
    // A metered deposit pays the provider only what the buyer's claims cover;
    // releasing it whole would pay for usage nobody signed for.
    if order.is_metered() && matches!(event, EscrowEvent::ReleaseFunds | EscrowEvent::ReviewWindowElapsed) {
        return Err(ApiError::conflict(
            "METERED_SESSION",
            "a metered order is settled with the buyer's latest claim (closeSession), not released whole",
        ));
    }
    let order = transition(app, &txn, order, actor, &event, now).await?;
    txn.commit().await?;
    Ok(order)
}

/// The heart of every change: apply, carry out effects, store. Runs inside
/// `txn`; the caller commits.
pub async fn transition(
    app: &AppState,
    txn: &DatabaseTransaction,
    mut order: Order,
    actor: Actor,
    event: &EscrowEvent,
    now: DateTime<Utc>,
) -> ApiResult<Order> {
    let ctx = Context {
        now,
        actor,
        chain_height: order.chain_height(&app.tips),
        terms: order.terms.escrow_terms(),
        latest_claim: latest_claim(txn, &order).await?,
    };
    let from = order.state.name();
    let result = apply(&order.state, event, &ctx).map_err(escrow_error)?;
    let mut notes: Vec<String> = Vec::new();
    // The new state is what the signing gate judges: it is the one stored below.
    order.state = result.state.clone();
    // Payouts are built before anyone is allowed to sign them.
    for effect in &result.effects {
        if let Effect::PreparePayout { plan } = effect {
            match &mut order.escrow {
                EscrowRecord::Bitcoin(btc) => {
                    let rate = btc.payout_fee_rate(&app.bitcoin.fees);
                    btc.prepare_payout(plan, rate)?
                }
                EscrowRecord::Xrpl(x) => {
                    let validated = u32::try_from(app.tips.xrpl()).unwrap_or(u32::MAX);
                    x.prepare_payout(plan, &app.xrpl, validated)?
                }
            }
            notes.push(format!("payout prepared: {}", outcome_name(plan.outcome())));
        }
    }
    for effect in &result.effects {
        match effect {
            Effect::PreparePayout { .. } => {}
            Effect::ArbitratorMaySign { outcome, rule } => {
                let checked = Box::pin(signing::SigningGate::sign_payout(app, txn, &mut order, *outcome, &ctx)).await?;
                if checked != *rule {
                    return Err(ApiError::internal("signing rule mismatch"));
                }
                notes.push(format!("marketplace co-signed under {}", rule_name(checked)));
            }
            Effect::Broadcast { txid } => notes.push(format!("re-broadcast needed: {txid}")),
            Effect::Notify { to, notice } => notes.push(format!("notify {to:?}: {notice:?}")),
            Effect::Alert(alert) => {
                tracing::warn!(order.id = %order.id(), alert = ?alert, "escrow alert");
                notes.push(format!("alert: {alert:?}"));
            }
        }
    }
    if Box::pin(propose_channel(app, txn, &mut order, now)).await? {
        notes.push("payment channel to the provider proposed and signed by the marketplace".into());
    }
    // The fee rate of every later payout of this escrow is fixed when its
    // funding is accepted.
    if let EscrowRecord::Bitcoin(btc) = &mut order.escrow {
        if order.state.funding().is_some() && btc.fee_rate_sat_vb.is_none() {
            btc.fee_rate_sat_vb = Some(app.bitcoin.fees.current());
        }
    }
    save_and_hint(app, txn, &mut order, now).await?;
    crate::notifications::on_effects(app, txn, &order, &result.effects, now).await?;
    crate::reputation::on_order_changed(app, txn, &order, now).await?;
    orders::insert_order_event(
        txn,
        &OrderEventRecord {
            order_id: order.id(),
            event: event.name().to_owned(),
            actor: actor_name(actor).to_owned(),
            from_status: from.to_owned(),
            to_status: order.state.name().to_owned(),
            detail: notes.join("; "),
            at: now,
        },
    )
    .await?;
    tracing::info!(order.id = %order.id(), event = event.name(), from, to = order.state.name(), "order transition");
    Ok(order)
}

/// What the service's own signatures are judged with, outside a transition:
/// the system acting at `now` on `order` as it is stored.
pub fn system_context(order: &Order, chain_height: u64, now: DateTime<Utc>) -> Context {
    Context {
        now,
        actor: Actor::System,
        chain_height,
        terms: order.terms.escrow_terms(),
        latest_claim: None,
    }
}

/// A funded metered XRPL order opens its payment channel: the create is
/// built at the escrow's next free Sequence and the marketplace signs it.
async fn propose_channel(app: &AppState, txn: &DatabaseTransaction, order: &mut Order, now: DateTime<Utc>) -> ApiResult<bool> {
    let deposit = order.terms.amount_due().minor();
    let funded = matches!(order.state, EscrowState::Funded { .. }) && order.is_metered();
    let EscrowRecord::Xrpl(x) = &mut order.escrow else { return Ok(false) };
    if !funded || x.channel.is_some() {
        return Ok(false);
    }
    let sequence = x.allocate_sequences(0, 0, 1)[0];
    x.propose_channel(&app.xrpl, deposit, sequence)?;
    signing::SigningGate::sign_channel_open(app, txn, order, now).await?;
    Ok(true)
}

/// The buyer's latest valid claim on a metered order (what every automatic
/// outcome must pay the provider), if there is one.
async fn latest_claim<C: ConnectionTrait>(db: &C, order: &Order) -> ApiResult<Option<Amount>> {
    if !order.is_metered() {
        return Ok(None);
    }
    let claimed = crate::metered::latest_claimed(db, order.id()).await?;
    match claimed {
        Some(minor) if minor > 0 => Ok(Some(Amount::new(order.terms.asset(), minor).map_err(ApiError::internal)?)),
        _ => Ok(None),
    }
}

/// Stores state and escrow; CONFLICT when someone else changed the order first.
pub async fn save<C: ConnectionTrait>(db: &C, order: &mut Order, now: DateTime<Utc>) -> ApiResult<()> {
    save_inner(db, order, now).await
}

/// Stores and tells subscribers (a hint: they re-read after the commit).
pub async fn save_and_hint<C: ConnectionTrait>(app: &AppState, db: &C, order: &mut Order, now: DateTime<Utc>) -> ApiResult<()> {
    save_inner(db, order, now).await?;
    let _ = app.order_updates.send(order.id());
    Ok(())
}

async fn save_inner<C: ConnectionTrait>(db: &C, order: &mut Order, now: DateTime<Utc>) -> ApiResult<()> {
    let state_json = serde_json::to_string(&order.state).map_err(ApiError::internal)?;
    let escrow_json = serde_json::to_string(&order.escrow).map_err(ApiError::internal)?;
    match orders::update_order(
        db,
        order.id(),
        order.record.version,
        order.state.name(),
        &state_json,
        &escrow_json,
        now,
    )
    .await
    {
        Err(StoreError::VersionConflict) => {
            return Err(ApiError::conflict(
                "CONCURRENT_UPDATE",
                "the order was changed at the same moment; reload and retry",
            ))
        }
        other => other?,
    }
    order.record.version += 1;
    order.record.status = order.state.name().to_owned();
    order.record.state_json = state_json;
    order.record.escrow_json = escrow_json;
    order.record.updated_at = now;
    Ok(())
}

/// The buyer or the provider signs the payment channel's transactions that
/// wait for a signature (the create, or the escrow's closing transactions).
pub async fn sign_channel(app: &AppState, id: Uuid, user_id: Uuid, blobs: &[String]) -> ApiResult<Order> {
    let now = app.clock.now();
    let txn = app.db.begin().await?;
    let (mut order, actor) = load_for(&txn, id, user_id).await?;
    let party = agora_domain::escrow::Party::from_actor(actor)
        .ok_or_else(|| ApiError::forbidden("WRONG_ROLE", "only the buyer and the provider sign the escrow's transactions"))?;
    let before = order.state.name();
    let EscrowRecord::Xrpl(x) = &mut order.escrow else {
        return Err(ApiError::conflict("NO_CHANNEL", "payment channels are for metered XRPL orders"));
    };
    let signer = match party {
        agora_domain::escrow::Party::Buyer => x.buyer.address.clone(),
        agora_domain::escrow::Party::Provider => x.provider.address.clone(),
    };
    x.import_channel_signatures(&signer, blobs)?;
    let complete = x.channel.as_ref().is_some_and(|c| c.awaiting().is_empty());
    save_and_hint(app, &txn, &mut order, now).await?;
    orders::insert_order_event(
        &txn,
        &OrderEventRecord {
            order_id: order.id(),
            event: "ChannelSignatureSubmitted".into(),
            actor: actor_name(actor).into(),
            from_status: before.into(),
            to_status: order.state.name().into(),
            detail: if complete { "channel transactions fully signed and verified".into() } else { String::new() },
            at: now,
        },
    )
    .await?;
    txn.commit().await?;
    Ok(order)
}

/// What a party signed: a PSBT (Bitcoin) or one signer blob per Payment (XRPL).
pub enum PayoutSignatures {
    Psbt(String),
    XrplBlobs(Vec<String>),
}

/// Imports a party's payout signatures.
pub async fn submit_payout_signature(
    app: &AppState,
    id: Uuid,
    user_id: Uuid,
    signed: PayoutSignatures,
) -> ApiResult<Order> {
    let now = app.clock.now();
    let txn = app.db.begin().await?;
    let (mut order, actor) = load_for(&txn, id, user_id).await?;
    if !matches!(actor, Actor::Buyer | Actor::Provider) {
        return Err(ApiError::forbidden("WRONG_ROLE", "only the buyer and the provider sign payouts"));
    }
    if !matches!(order.state, EscrowState::PayingOut { .. }) {
        return Err(ApiError::conflict(
            "WRONG_STATE",
            format!("no payout is waiting for signatures (the order is {})", order.state.name()),
        ));
    }
    let before = order.state.name();
    match (&mut order.escrow, &signed) {
        (EscrowRecord::Bitcoin(btc), PayoutSignatures::Psbt(psbt)) => btc.import_signatures(psbt)?,
        (EscrowRecord::Xrpl(x), PayoutSignatures::XrplBlobs(blobs)) => {
            let party = agora_domain::escrow::Party::from_actor(actor).ok_or_else(|| ApiError::internal("a party was checked above"))?;
            x.import_signatures_of(party, blobs)?
        }
        (EscrowRecord::Bitcoin(_), _) => {
            return Err(ApiError::bad_input("input.psbt", "EMPTY", "input.psbt: a Bitcoin payout is signed as a PSBT"))
        }
        (EscrowRecord::Xrpl(_), _) => {
            return Err(ApiError::bad_input(
                "input.signedTransactions",
                "EMPTY",
                "input.signedTransactions: an XRPL payout is signed as one signer blob per transaction",
            ))
        }
    }
    save_and_hint(app, &txn, &mut order, now).await?;
    let complete = order.escrow.payout_complete();
    orders::insert_order_event(
        &txn,
        &OrderEventRecord {
            order_id: order.id(),
            event: "PayoutSignatureSubmitted".into(),
            actor: actor_name(actor).into(),
            from_status: before.into(),
            to_status: order.state.name().into(),
            detail: if complete { "payout fully signed and verified".into() } else { String::new() },
            at: now,
        },
    )
    .await?;
    txn.commit().await?;
    Ok(order)
}
