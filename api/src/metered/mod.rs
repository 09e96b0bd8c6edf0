//! Metered sessions: peak windows of listings, usage recorded by the
//! provider, buyer-signed claims (Bitcoin PSBTs) and the provider's settlement.
//!
//! A session is created with its metered order (the listing's peak windows are
//! frozen then). The provider records usage; each record freezes its price.
//! The buyer signs claims: payouts of the escrow paying the provider the
//! cumulative amount (minus commission) and the rest back to the buyer (minus
//! the network fee), exactly as [`agora_domain::escrow::payout::claim_split`]
//! divides it. The latest valid claim is kept; the provider completes it with
//! its own key (or asks the marketplace key to, under the signing policy).
//!
//! On XRPL a claim is one signature by the buyer's escrow key over the
//! order's payment channel and the provider's share of the cumulative amount
//! (see [`crate::orders::channel`]): it never expires, the ledger only lets
//! it grow, and the provider can redeem it alone at any time. It is stored as
//! JSON in the claim's `psbt` column.
//!
//! A Bitcoin claim must be exactly the transaction this module builds for its amount
//! from the escrow's recorded funding, addresses and the configured fee rate;
//! if the fee rate or the funding changes between a claim and the settlement,
//! the service refuses to settle it (`PAYOUT_CHANGED`) — the provider can still
//! complete and broadcast the buyer's claim itself.

use std::cell::Cell;

use agora_domain::escrow::payout::{claim_split, PayoutBreakdown};
use agora_domain::escrow::{Actor, EscrowEvent, EscrowState};
use agora_domain::metering::{
    ClaimError, PeakSchedule, PeakWindowInput, Session, UsageCharge, UsageError, DEFAULT_ALERT_THRESHOLDS_BPS,
};
use agora_domain::money::Amount;
use agora_domain::order::PricingSnapshot;
use agora_escrow::btc::{build_payout_with, import_signed_psbt, EscrowParty, PayoutPlan, PayoutRole};
use agora_persistence::metering::{self as store, ClaimRecord, SessionRecord, UsageRecord};
use agora_persistence::StoreError;
use bitcoin::base64::engine::general_purpose::STANDARD as BASE64;
use bitcoin::base64::Engine;
use bitcoin::psbt::Psbt;
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseTransaction, TransactionTrait};
use uuid::Uuid;

use crate::graphql::context::AppState;
use crate::graphql::errors::{ApiError, ApiResult};
use crate::notifications::compose::{self, OrderFacts, Recipient};
use crate::notifications::{self, NewNotification};
use crate::orders::bitcoin::BtcEscrow;
use crate::orders::channel::{channel_capacity, ChannelStatus, ProviderClose, XrplChannel};
use crate::orders::xrpl::XrplEscrow;
use agora_escrow::xrpl::{multisig_fee_drops, verify_claim, ChannelId, DecodedTx, TxAuthorization, TF_CLOSE};
use serde::{Deserialize, Serialize};
use crate::orders::{self, EscrowRecord, Order};

/// A session as the services work with it.
#[derive(Debug, Clone)]
pub struct MeteredSession {
    pub record: SessionRecord,
    pub session: Session,
    pub windows: PeakSchedule,
}

impl MeteredSession {
    fn from_record(record: SessionRecord) -> ApiResult<Self> {
        Ok(Self {
            session: serde_json::from_str(&record.session_json).map_err(ApiError::internal)?,
            windows: serde_json::from_str(&record.windows_json).map_err(ApiError::internal)?,
            record,
        })
    }
}

/// Called inside the placement transaction: a metered order gets its session,
/// with the listing's peak windows frozen. A top-up (`top_up_of`) continues
/// that order's session: same buyer and listing, the same frozen windows, and
/// the link is recorded on both sessions in this transaction.
pub async fn on_order_placed<C: ConnectionTrait>(
    db: &C,
    order: &Order,
    top_up_of: Option<Uuid>,
    now: DateTime<Utc>,
) -> ApiResult<()> {
    if !matches!(order.terms.listing().pricing, PricingSnapshot::Metered { .. }) {
        return match top_up_of {
            Some(_) => Err(ApiError::internal("top-up of a non-metered order")),
            None => Ok(()),
        };
    }
    let mut session = Session::default();
    let windows = match top_up_of {
        Some(previous) => {
            let mut old = load_session(db, previous).await?;
            check_top_up(&old)?;
            old.session.continued_by = Some(order.id());
            old.record.session_json = serde_json::to_string(&old.session).map_err(ApiError::internal)?;
            match store::update_session(db, &old.record, now).await {
                Err(StoreError::VersionConflict) => {
                    return Err(ApiError::conflict("CONCURRENT_UPDATE", "the session changed at the same moment; retry"))
                }
                other => other?,
            }
            session.continues = Some(previous);
            old.record.windows_json
        }
        None => store::peak_windows(db, order.terms.listing().listing_id)
            .await?
            .unwrap_or_else(|| "{\"windows\":[]}".to_owned()),
    };
    let session = serde_json::to_string(&session).map_err(ApiError::internal)?;
    store::insert_session(
        db,
        &SessionRecord {
            order_id: order.id(),
            session_json: session,
            windows_json: windows,
            latest_claim_psbt: None,
            latest_claim_txid: None,
            version: 0,
            updated_at: now,
        },
        now,
    )
    .await?;
    Ok(())
}

/// A session can be topped up once, while it is neither closed nor capped.
fn check_top_up(s: &MeteredSession) -> ApiResult<()> {
    if s.session.closed || s.session.capped {
        return Err(ApiError::conflict("SESSION_CLOSED", "the session is closed or capped; place a new order instead"));
    }
    if s.session.continued_by.is_some() {
        return Err(ApiError::conflict("ALREADY_TOPPED_UP", "this session was already topped up; use the new order"));
    }
    Ok(())
}

/// The buyer tops up a session nearly out of deposit: a follow-up order for
/// the same listing with its own escrow and `deposit`, linked to the session.
/// Usage is recorded against the new order once it is funded; the old escrow
/// is settled with its latest claim (`closeSession`), as any session.
pub async fn top_up_session(
    app: &AppState,
    user_id: Uuid,
    order_id: Uuid,
    deposit: u64,
    buyer_key_id: Uuid,
    buyer_refund_key_id: Option<Uuid>,
) -> ApiResult<Order> {
    let (order, actor, s) = load_for(&app.db, order_id, user_id).await?;
    require(actor, Actor::Buyer, "buyer")?;
    require_open(&order)?;
    check_top_up(&s)?;
    orders::place::place(
        app,
        orders::place::PlaceOrderRequest {
            buyer_id: user_id,
            listing_id: order.terms.listing().listing_id,
            buyer_key_id,
            buyer_refund_key_id,
            refund_address: None,
            refund_destination_tag: None,
            deposit: Some(deposit),
            top_up_of: Some(order_id),
        },
    )
    .await
}

/// The provider of a metered listing sets its peak windows (replacing any);
/// orders placed afterwards use them.
pub async fn set_peak_windows(
    app: &AppState,
    user_id: Uuid,
    listing_id: Uuid,
    inputs: &[PeakWindowInput],
) -> ApiResult<PeakSchedule> {
    let listing = agora_persistence::listings::find_listing(&app.db, listing_id)
        .await?
        .filter(|l| l.provider_id == user_id)
        .ok_or_else(|| ApiError::NotFound("no such listing".into()))?;
    if !matches!(listing.pricing, agora_persistence::listings::StoredPricing::Metered { .. }) {
        return Err(ApiError::bad_input(
            "input.listingId",
            "NOT_METERED",
            "input.listingId: peak windows apply to metered listings only",
        ));
    }
    let schedule = PeakSchedule::parse(inputs).map_err(|e| ApiError::invalid("input", e))?;
    let json = serde_json::to_string(&schedule).map_err(ApiError::internal)?;
    store::set_peak_windows(&app.db, listing_id, &json, app.clock.now()).await?;
    Ok(schedule)
}

pub async fn peak_windows(app: &AppState, listing_id: Uuid) -> ApiResult<PeakSchedule> {
    match store::peak_windows(&app.db, listing_id).await? {
        Some(json) => serde_json::from_str(&json).map_err(ApiError::internal),
        None => Ok(PeakSchedule::default()),
    }
}

pub async fn load_session<C: ConnectionTrait>(db: &C, order_id: Uuid) -> ApiResult<MeteredSession> {
    let record = store::find_session(db, order_id)
        .await?
        .ok_or_else(|| ApiError::bad_input("input.orderId", "NOT_METERED", "the order is not a metered order"))?;
    MeteredSession::from_record(record)
}

/// The cumulative amount of the buyer's latest valid claim on `order_id`, if
/// the order is a metered session with a claim.
pub async fn latest_claimed<C: ConnectionTrait>(db: &C, order_id: Uuid) -> ApiResult<Option<u64>> {
    let Some(record) = store::find_session(db, order_id).await? else { return Ok(None) };
    if record.latest_claim_psbt.is_none() {
        return Ok(None);
    }
    let session = MeteredSession::from_record(record)?;
    Ok(Some(session.session.latest_claim))
}

/// Loads an order the user takes part in and its session.
pub async fn load_for<C: ConnectionTrait>(
    db: &C,
    order_id: Uuid,
    user_id: Uuid,
) -> ApiResult<(Order, Actor, MeteredSession)> {
    let (order, actor) = orders::load_for(db, order_id, user_id).await?;
    let session = load_session(db, order_id).await?;
    Ok((order, actor, session))
}

async fn save_session(
    app: &AppState,
    txn: &DatabaseTransaction,
    s: &mut MeteredSession,
    now: DateTime<Utc>,
) -> ApiResult<()> {
    s.record.session_json = serde_json::to_string(&s.session).map_err(ApiError::internal)?;
    match store::update_session(txn, &s.record, now).await {
        Err(StoreError::VersionConflict) => {
            return Err(ApiError::conflict(
                "CONCURRENT_UPDATE",
                "the session was changed at the same moment; reload and retry",
            ))
        }
        other => other?,
    }
    s.record.version += 1;
    s.record.updated_at = now;
    let _ = app.order_updates.send(s.record.order_id);
    Ok(())
}

fn require(actor: Actor, wanted: Actor, what: &str) -> ApiResult<()> {
    if actor != wanted {
        return Err(ApiError::forbidden("WRONG_ROLE", format!("only the {what} may do this")));
    }
    Ok(())
}

fn require_open(order: &Order) -> ApiResult<()> {
    if !matches!(order.state, EscrowState::Funded { .. } | EscrowState::Delivered { .. }) {
        return Err(ApiError::conflict(
            "WRONG_STATE",
            format!("the session is not open (the order is {})", order.state.name()),
        ));
    }
    Ok(())
}

fn btc(order: &Order) -> ApiResult<&BtcEscrow> {
    match &order.escrow {
        EscrowRecord::Bitcoin(b) => Ok(b),
        EscrowRecord::Xrpl(_) => Err(ApiError::conflict(
            "UNSUPPORTED_CHAIN",
            "claims are supported on Bitcoin only for now",
        )),
    }
}

/// The most the provider can be paid from the deposit: the deposit minus the
/// network fee of a full three-output payout (Bitcoin), or what the payment
/// channel holds (XRPL).
pub fn claim_limit(app: &AppState, order: &Order) -> ApiResult<u64> {
    let deposit = order.terms.amount_due().minor();
    let b = match &order.escrow {
        EscrowRecord::Bitcoin(b) => b,
        // What the channel can stream (its commission is paid from what it
        // leaves in the escrow, so a claim's gross fits in it too).
        EscrowRecord::Xrpl(_) => return channel_capacity(&app.xrpl, deposit),
    };
    let max_fee = Cell::new(0u64);
    // Only the fees the builder asks about matter; the largest is the first,
    // with every output present.
    let _ = build_payout_with(
        &b.descriptor()?,
        &b.funding_utxos(),
        &b.payout_addresses()?,
        b.payout_fee_rate(&app.bitcoin.fees),
        |funded, fee| {
            max_fee.set(max_fee.get().max(fee));
            claim_split(funded, 0, fee.min(funded), order.terms.fees().commission_bps)
        },
    );
    Ok(deposit.saturating_sub(max_fee.get()))
}

/// Builds the claim paying `cumulative`: the exact transaction a buyer signs.
pub fn build_claim(app: &AppState, order: &Order, cumulative: u64) -> ApiResult<PayoutPlan> {
    let b = btc(order)?;
    let commission = order.terms.fees().commission_bps;
    let built = build_payout_with(
        &b.descriptor()?,
        &b.funding_utxos(),
        &b.payout_addresses()?,
        b.payout_fee_rate(&app.bitcoin.fees),
        |funded, fee| claim_split(funded, cumulative, fee, commission),
    )
    .map_err(|e| ApiError::conflict("CLAIM_UNBUILDABLE", format!("the claim cannot be built: {e}")))?;
    let provider_paid = built.paid.iter().find(|(r, _)| *r == PayoutRole::Provider).map(|(_, a)| a.to_sat());
    if provider_paid != Some(built.breakdown.provider) {
        return Err(ApiError::conflict(
            "CLAIM_TOO_SMALL",
            "the provider's share of this claim is below the dust limit; record more usage first",
        ));
    }
    Ok(built)
}

pub struct ClaimToSign {
    pub cumulative: u64,
    pub breakdown: PayoutBreakdown,
    /// Bitcoin: the claim PSBT.
    pub psbt: Option<String>,
    /// Bitcoin: the txid; XRPL: the claim's identifier (SHA-256 of its message).
    pub txid: String,
    /// XRPL: the channel claim to sign.
    pub channel: Option<ChannelClaimToSign>,
}

/// An XRPL channel claim for the buyer's wallet: sign `message` (rippled's
/// `CLM\0 || channel || drops`) with the escrow key.
pub struct ChannelClaimToSign {
    pub channel: ChannelId,
    /// What the claim lets the provider redeem: its share of `cumulative`.
    pub drops: u64,
    pub message: String,
}

fn claim_to_sign(cumulative: u64, built: &PayoutPlan) -> ClaimToSign {
    ClaimToSign {
        cumulative,
        breakdown: built.breakdown,
        psbt: Some(BASE64.encode(built.psbt.serialize())),
        txid: built.expected.unsigned_tx().compute_txid().to_string(),
        channel: None,
    }
}

/// An accepted XRPL channel claim as stored (in the claim's `psbt` column).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelClaim {
    pub channel: ChannelId,
    pub drops: u64,
    /// Hex, upper case.
    pub signature: String,
}

impl ChannelClaim {
    /// The claim's identifier: the SHA-256 of the message it signs (64 hex
    /// digits, as a txid).
    fn id(&self) -> String {
        use sha2::{Digest, Sha256};
        hex::encode_upper(Sha256::digest(agora_escrow::xrpl::claim_message(&self.channel, self.drops)))
    }
}

/// The buyer's latest channel claim on an XRPL order, if any.
pub fn latest_channel_claim(s: &MeteredSession) -> Option<ChannelClaim> {
    serde_json::from_str(s.record.latest_claim_psbt.as_deref()?).ok()
}

fn open_channel(x: &XrplEscrow) -> ApiResult<&XrplChannel> {
    match &x.channel {
        Some(ch) if ch.status == ChannelStatus::Open => Ok(ch),
        _ => Err(ApiError::conflict(
            "CHANNEL_NOT_OPEN",
            "the order's payment channel is not open on the ledger (see order.xrplChannel)",
        )),
    }
}

/// The split of an XRPL claim of `cumulative`: the channel pays the
/// provider's share; the commission and the buyer's rest come from what it
/// leaves (the network fee shown is the usual one: the create, the escrow's
/// two closes and two Payments).
fn xrpl_breakdown(app: &AppState, order: &Order, cumulative: u64) -> ApiResult<PayoutBreakdown> {
    let fee = multisig_fee_drops(app.xrpl.base_fee_drops).map_err(ApiError::internal)?.saturating_mul(5);
    claim_split(order.terms.amount_due().minor(), cumulative, fee, order.terms.fees().commission_bps)
        .map_err(|e| ApiError::conflict("CLAIM_UNBUILDABLE", format!("the claim cannot be built: {e}")))
}

/// Records usage by the provider; returns the charge and the thresholds that fired.
pub async fn record_usage(
    app: &AppState,
    user_id: Uuid,
    order_id: Uuid,
    quantity: u64,
    at: Option<DateTime<Utc>>,
) -> ApiResult<(MeteredSession, UsageCharge, Vec<u16>)> {
    let now = app.clock.now();
    let at = at.unwrap_or(now);
    if at > now {
        return Err(ApiError::bad_input("input.at", "IN_THE_FUTURE", "input.at: usage cannot be recorded ahead of time"));
    }
    let txn = app.db.begin().await?;
    let (order, actor, mut s) = load_for(&txn, order_id, user_id).await?;
    require(actor, Actor::Provider, "provider")?;
    require_open(&order)?;
    if at < order.terms.placed_at() {
        return Err(ApiError::bad_input("input.at", "OUT_OF_RANGE", "input.at: before the order was placed"));
    }
    let PricingSnapshot::Metered { price_per_unit, .. } = order.terms.listing().pricing else {
        return Err(ApiError::internal("session without metered pricing"));
    };
    let charge = UsageCharge::price(quantity, price_per_unit, s.windows.multiplier_at(at))
        .ok_or_else(|| ApiError::bad_input("input.quantity", "OVERFLOW", "input.quantity: too large"))?;
    let limit = claim_limit(app, &order)?;
    s.session.record(&charge, limit).map_err(usage_error)?;
    let thresholds = alert_thresholds(&txn, order.record.buyer_id).await?;
    let fired = s.session.crossed_alerts(order.terms.amount_due().minor(), &thresholds);
    save_session(app, &txn, &mut s, now).await?;
    announce_alerts(&txn, &order, &s, &fired, thresholds.iter().max().copied(), now).await?;
    store::insert_usage(
        &txn,
        &UsageRecord {
            id: Uuid::now_v7(),
            order_id,
            quantity,
            price_per_unit: charge.price_per_unit,
            multiplier_bps: charge.multiplier_bps,
            amount: charge.amount,
            at,
            recorded_at: now,
        },
    )
    .await?;
    txn.commit().await?;
    if !fired.is_empty() {
        app.notifications.hint(order.record.buyer_id);
        app.notifications.hint(order.record.provider_id);
    }
    for t in &fired {
        tracing::info!(order.id = %order_id, alert.threshold_bps = t, "usage alert fired");
    }
    Ok((s, charge, fired))
}

/// Tells buyer and provider, in the usage's transaction, about each threshold
/// that fired (the session records what fired, so each crossing is told once).
/// The buyer's highest threshold is the "nearly exhausted" notice.
async fn announce_alerts(
    txn: &DatabaseTransaction,
    order: &Order,
    s: &MeteredSession,
    fired: &[u16],
    highest: Option<u16>,
    now: DateTime<Utc>,
) -> ApiResult<()> {
    let facts = OrderFacts::of(order);
    let used = Amount::new(order.terms.asset(), s.session.total_amount).map_err(ApiError::internal)?;
    for &t in fired {
        for (user_id, to) in [
            (order.record.buyer_id, Recipient::Buyer),
            (order.record.provider_id, Recipient::Provider),
        ] {
            let (kind, subject, body) = compose::usage_alert(&facts, to, t, &used, Some(t) == highest);
            let n = NewNotification {
                user_id,
                kind,
                subject,
                body,
                order_id: Some(order.id()),
                dispute_id: None,
            };
            notifications::enqueue(txn, n, now).await?;
        }
    }
    Ok(())
}

fn usage_error(e: UsageError) -> ApiError {
    match e {
        UsageError::NotPositive => ApiError::bad_input("input.quantity", "NOT_POSITIVE", format!("input.quantity: {e}")),
        UsageError::Overflow => ApiError::bad_input("input.quantity", "OVERFLOW", format!("input.quantity: {e}")),
        UsageError::Capped => ApiError::conflict("SESSION_CAPPED", e.to_string()),
        UsageError::Closed => ApiError::conflict("SESSION_CLOSED", e.to_string()),
        UsageError::DepositExhausted { .. } => ApiError::conflict("DEPOSIT_EXHAUSTED", e.to_string()),
    }
}

fn claim_error(e: ClaimError) -> ApiError {
    match e {
        ClaimError::NotIncreasing { .. } => ApiError::conflict("CLAIM_NOT_INCREASING", format!("psbt: {e}")),
        ClaimError::AboveDeposit { .. } => ApiError::bad_input("input.psbt", "CLAIM_ABOVE_DEPOSIT", format!("psbt: {e}")),
        ClaimError::AboveUsage { .. } => ApiError::bad_input("input.psbt", "CLAIM_ABOVE_USAGE", format!("psbt: {e}")),
        ClaimError::Closed => ApiError::conflict("SESSION_CLOSED", e.to_string()),
    }
}

/// A user's alert thresholds, or the defaults.
pub async fn alert_thresholds<C: ConnectionTrait>(db: &C, user_id: Uuid) -> ApiResult<Vec<u16>> {
    match store::alert_thresholds(db, user_id).await? {
        Some(json) => serde_json::from_str(&json).map_err(ApiError::internal),
        None => Ok(DEFAULT_ALERT_THRESHOLDS_BPS.to_vec()),
    }
}

pub async fn set_alert_thresholds(app: &AppState, user_id: Uuid, inputs: &[i64]) -> ApiResult<Vec<u16>> {
    let thresholds = agora_domain::metering::parse_thresholds(inputs).map_err(|e| ApiError::invalid("input", e))?;
    let json = serde_json::to_string(&thresholds).map_err(ApiError::internal)?;
    store::set_alert_thresholds(&app.db, user_id, &json, app.clock.now()).await?;
    Ok(thresholds)
}

/// The claim the buyer should sign next: everything recorded so far.
pub async fn next_claim(app: &AppState, user_id: Uuid, order_id: Uuid) -> ApiResult<ClaimToSign> {
    let (order, actor, s) = load_for(&app.db, order_id, user_id).await?;
    require(actor, Actor::Buyer, "buyer")?;
    require_open(&order)?;
    if let EscrowRecord::Xrpl(x) = &order.escrow {
        open_channel(x)?;
    }
    let cumulative = s.session.total_amount;
    s.session.check_claim(cumulative, claim_limit(app, &order)?).map_err(|e| match e {
        ClaimError::NotIncreasing { .. } => ApiError::conflict(
            "NOTHING_TO_CLAIM",
            "no usage was recorded since the latest claim",
        ),
        other => claim_error(other),
    })?;
    if let EscrowRecord::Xrpl(x) = &order.escrow {
        let ch = open_channel(x)?;
        let breakdown = xrpl_breakdown(app, &order, cumulative)?;
        let claim = ChannelClaim { channel: ch.id, drops: breakdown.provider, signature: String::new() };
        return Ok(ClaimToSign {
            cumulative,
            breakdown,
            psbt: None,
            txid: claim.id(),
            channel: Some(ChannelClaimToSign { channel: ch.id, drops: breakdown.provider, message: ch.claim_message(breakdown.provider) }),
        });
    }
    let built = build_claim(app, &order, cumulative)?;
    Ok(claim_to_sign(cumulative, &built))
}

fn decode_psbt(input: &str) -> ApiResult<Psbt> {
    let bytes = BASE64
        .decode(input.trim())
        .map_err(|_| ApiError::bad_input("input.psbt", "MALFORMED_BASE64", "psbt: not valid base64"))?;
    Psbt::deserialize(&bytes)
        .map_err(|e| ApiError::bad_input("input.psbt", "MALFORMED_PSBT", format!("psbt: not a valid PSBT ({e})")))
}

fn mismatch(detail: &str) -> ApiError {
    ApiError::bad_input("input.psbt", "PSBT_MISMATCH", format!("psbt: not the expected claim ({detail})"))
}

/// The cumulative amounts a claim PSBT may pay: every gross `c` whose net
/// after commission is the provider output's value (rounding makes up to two
/// neighbours share a net), smallest first.
fn claimed_amounts(order: &Order, psbt: &Psbt) -> ApiResult<Vec<u64>> {
    let b = btc(order)?;
    let provider_script = b.payout_addresses()?.provider.script_pubkey();
    let net = psbt
        .unsigned_tx
        .output
        .iter()
        .find(|o| o.script_pubkey == provider_script)
        .map(|o| o.value.to_sat())
        .ok_or_else(|| mismatch("it pays nothing to the provider's address"))?;
    gross_candidates(order, net)
}

/// Every cumulative amount whose provider share (after commission) is `net`.
fn gross_candidates(order: &Order, net: u64) -> ApiResult<Vec<u64>> {
    let bps = u128::from(order.terms.fees().commission_bps.get());
    if bps >= 10_000 {
        return Err(ApiError::internal("commission of 100 % leaves nothing to claim"));
    }
    let guess = u128::from(net) * 10_000 / (10_000 - bps);
    let net_of = |c: u128| c - c * bps / 10_000;
    let candidates: Vec<u64> = (guess.saturating_sub(3)..=guess + 3)
        .filter(|c| net_of(*c) == u128::from(net))
        .filter_map(|c| u64::try_from(c).ok())
        .collect();
    if candidates.is_empty() {
        return Err(mismatch("the provider's output matches no claim amount"));
    }
    Ok(candidates)
}

/// Accepts the buyer's signed claim if it is exactly the expected payout for
/// its amount, carries a valid signature of the buyer's key and only that,
/// and pays more than the latest claim and no more than the deposit allows.
pub async fn submit_claim(
    app: &AppState,
    user_id: Uuid,
    order_id: Uuid,
    claim: SignedClaim<'_>,
) -> ApiResult<(MeteredSession, u64)> {
    let now = app.clock.now();
    let txn = app.db.begin().await?;
    let (order, actor, mut s) = load_for(&txn, order_id, user_id).await?;
    require(actor, Actor::Buyer, "buyer")?;
    require_open(&order)?;
    let (cumulative, txid, stored) = match (claim, &order.escrow) {
        (SignedClaim::Psbt(psbt_b64), EscrowRecord::Bitcoin(_)) => btc_claim(app, &order, &s, psbt_b64)?,
        (SignedClaim::Channel { channel, drops, signature }, EscrowRecord::Xrpl(x)) => {
            xrpl_claim(app, &order, x, &s, channel, drops, signature)?
        }
        (SignedClaim::Psbt(_), EscrowRecord::Xrpl(_)) => {
            return Err(ApiError::bad_input(
                "input.psbt",
                "WRONG_CHAIN",
                "input.psbt: an XRPL claim is a channel claim (input.channelClaim)",
            ))
        }
        (SignedClaim::Channel { .. }, EscrowRecord::Bitcoin(_)) => {
            return Err(ApiError::bad_input("input.psbt", "WRONG_CHAIN", "input.psbt: a Bitcoin claim is a signed PSBT"))
        }
    };
    s.session.latest_claim = cumulative;
    s.record.latest_claim_psbt = Some(stored.clone());
    s.record.latest_claim_txid = Some(txid.clone());
    save_session(app, &txn, &mut s, now).await?;
    match store::insert_claim(
        &txn,
        &ClaimRecord {
            id: Uuid::now_v7(),
            order_id,
            cumulative,
            txid: txid.clone(),
            psbt: stored,
            submitted_at: now,
        },
    )
    .await
    {
        Err(StoreError::Duplicate) => {
            return Err(ApiError::conflict("CLAIM_NOT_INCREASING", "psbt: this amount was already claimed"))
        }
        other => other?,
    }
    txn.commit().await?;
    tracing::info!(order.id = %order_id, escrow.txid = %txid, claim.cumulative = cumulative, "claim accepted");
    Ok((s, cumulative))
}

/// A buyer's signed claim as submitted.
#[derive(Debug, Clone, Copy)]
pub enum SignedClaim<'a> {
    /// Bitcoin: the claim PSBT (base64) with the buyer's signature.
    Psbt(&'a str),
    /// XRPL: the buyer's claim on the order's channel: `drops` (what the
    /// provider may redeem, cumulative) and the signature (hex).
    Channel { channel: &'a str, drops: &'a str, signature: &'a str },
}

/// Checks an XRPL channel claim: it is on the order's open channel, for a
/// provider share that some cumulative amount the usage covers gives, above
/// the latest claim, within the channel, and signed by the buyer's escrow key
/// as rippled checks claims. Returns (cumulative, claim id, stored JSON).
fn xrpl_claim(
    app: &AppState,
    order: &Order,
    x: &XrplEscrow,
    s: &MeteredSession,
    channel: &str,
    drops: &str,
    signature: &str,
) -> ApiResult<(u64, String, String)> {
    let ch = open_channel(x)?;
    let given = ChannelId::parse(channel)
        .map_err(|_| ApiError::bad_input("input.channelClaim.channel", "MALFORMED_CHANNEL", "input.channelClaim.channel: 64 hex digits"))?;
    if given != ch.id {
        return Err(ApiError::bad_input(
            "input.channelClaim.channel",
            "CHANNEL_MISMATCH",
            format!("input.channelClaim.channel: this order's channel is {}", ch.id),
        ));
    }
    let net = drops.trim().parse::<u64>().ok().filter(|d| *d > 0).ok_or_else(|| {
        ApiError::bad_input("input.channelClaim.amount", "INVALID_FORMAT", "input.channelClaim.amount: a positive integer of drops")
    })?;
    let signature_bytes = hex::decode(signature.trim())
        .map_err(|_| ApiError::bad_input("input.channelClaim.signature", "MALFORMED_SIGNATURE", "input.channelClaim.signature: not hex"))?;
    if net > ch.amount_drops {
        return Err(ApiError::bad_input(
            "input.channelClaim.amount",
            "CLAIM_ABOVE_DEPOSIT",
            format!("input.channelClaim.amount: the channel holds {} drops", ch.amount_drops),
        ));
    }
    if !verify_claim(&x.buyer.public_key, &ch.id, net, &signature_bytes) {
        return Err(ApiError::bad_input(
            "input.channelClaim.signature",
            "INVALID_SIGNATURE",
            "input.channelClaim.signature: not the buyer's escrow key's signature of this claim",
        ));
    }
    let limit = claim_limit(app, order)?;
    let mut refusal: Option<ApiError> = None;
    let mut found = None;
    // Rounding of the commission lets two cumulative amounts share a provider
    // share: the claim covers the larger the usage allows (what nextClaim offered).
    for candidate in gross_candidates(order, net)?.into_iter().rev() {
        match s.session.check_claim(candidate, limit) {
            Ok(()) => {
                found = Some(candidate);
                break;
            }
            Err(e) => {
                refusal.get_or_insert(claim_error(e));
            }
        }
    }
    let cumulative = found.ok_or_else(|| refusal.unwrap_or_else(|| mismatch("no cumulative amount gives this provider share")))?;
    let claim = ChannelClaim { channel: ch.id, drops: net, signature: hex::encode_upper(&signature_bytes) };
    let stored = serde_json::to_string(&claim).map_err(ApiError::internal)?;
    Ok((cumulative, claim.id(), stored))
}

/// Checks a Bitcoin claim PSBT. Returns (cumulative, txid, stored PSBT).
fn btc_claim(app: &AppState, order: &Order, s: &MeteredSession, psbt_b64: &str) -> ApiResult<(u64, String, String)> {
    let submitted = decode_psbt(psbt_b64)?;
    let limit = claim_limit(app, order)?;
    // The amount is read from the transaction, then the whole transaction must
    // be exactly the claim this service builds for that amount.
    let mut refusal: Option<ApiError> = None;
    let mut found: Option<(u64, PayoutPlan)> = None;
    for candidate in claimed_amounts(order, &submitted)? {
        if let Err(e) = s.session.check_claim(candidate, limit) {
            refusal.get_or_insert(claim_error(e));
            continue;
        }
        let built = build_claim(app, order, candidate)?;
        if submitted.unsigned_tx == built.expected.unsigned_tx() {
            found = Some((candidate, built));
            break;
        }
    }
    let Some((cumulative, built)) = found else {
        return Err(refusal.unwrap_or_else(|| {
            mismatch("its inputs, outputs, fee or addresses differ from the claim for this amount")
        }));
    };
    let b = btc(order)?;
    let escrow = b.descriptor()?;
    let outcome = import_signed_psbt(&escrow, &built.expected, &built.psbt, psbt_b64).map_err(claim_import_error)?;
    let only_buyer = outcome
        .signers
        .iter()
        .all(|signers| signers.len() == 1 && signers.contains(&EscrowParty::Buyer));
    if !only_buyer || outcome.signers.is_empty() {
        return Err(ApiError::bad_input(
            "input.psbt",
            "UNEXPECTED_SIGNER",
            "psbt: a claim carries exactly the buyer's signature on every input, and no other",
        ));
    }
    let txid = built.expected.unsigned_tx().compute_txid().to_string();
    let stored = BASE64.encode(outcome.psbt.serialize());
    Ok((cumulative, txid, stored))
}

fn claim_import_error(e: agora_escrow::btc::PsbtImportError) -> ApiError {
    use agora_escrow::btc::PsbtImportError as E;
    let (reason, message) = match &e {
        E::MalformedBase64 => ("MALFORMED_BASE64", "psbt: not valid base64".to_owned()),
        E::MalformedPsbt(d) => ("MALFORMED_PSBT", format!("psbt: not a valid PSBT ({d})")),
        E::TransactionMismatch { .. } => ("PSBT_MISMATCH", format!("psbt: {e}")),
        E::UnexpectedSigner { .. } => ("UNEXPECTED_SIGNER", format!("psbt: {e}")),
        E::InvalidSignature { .. } => ("INVALID_SIGNATURE", format!("psbt: {e}")),
        E::UnsupportedSighash { .. } => ("UNSUPPORTED_SIGHASH", format!("psbt: {e}")),
        E::NoSignatures => ("NO_SIGNATURES", "psbt: the claim is not signed".to_owned()),
        E::AlreadyFinalized { .. } => ("ALREADY_FINALIZED", "psbt: submit the signed, unfinalized PSBT".to_owned()),
        _ => return ApiError::internal(e),
    };
    ApiError::bad_input("input.psbt", reason, message)
}

/// The buyer stops the session: no further usage is accepted.
pub async fn cap_session(app: &AppState, user_id: Uuid, order_id: Uuid) -> ApiResult<MeteredSession> {
    let now = app.clock.now();
    let txn = app.db.begin().await?;
    let (_, actor, mut s) = load_for(&txn, order_id, user_id).await?;
    require(actor, Actor::Buyer, "buyer")?;
    if !s.session.capped {
        s.session.capped = true;
        save_session(app, &txn, &mut s, now).await?;
    }
    txn.commit().await?;
    Ok(s)
}

/// The provider settles with the buyer's latest claim: completing it with
/// `provider_psbt` (its own signature), or, without one, asking the
/// marketplace key to co-sign under the policy rule "a provider's settlement
/// that pays at most the buyer's latest valid claim". The escrow moves to
/// PayingOut with the finalized, consensus-checked transaction; the watcher
/// broadcasts and confirms it.
pub async fn close_session(
    app: &AppState,
    user_id: Uuid,
    order_id: Uuid,
    provider_psbt: Option<&str>,
    provider_blobs: Option<&[String]>,
) -> ApiResult<(Order, MeteredSession)> {
    let now = app.clock.now();
    let txn = app.db.begin().await?;
    let (order, actor, mut s) = load_for(&txn, order_id, user_id).await?;
    require(actor, Actor::Provider, "provider")?;
    require_open(&order)?;
    // Each chain's signatures in its own field: a PSBT for an XRPL order (or
    // blobs for a Bitcoin one) is refused, never silently ignored.
    match (&order.escrow, provider_psbt, provider_blobs) {
        (EscrowRecord::Xrpl(_), Some(_), _) => {
            return Err(ApiError::bad_input(
                "input.psbt",
                "WRONG_CHAIN",
                "input.psbt: an XRPL session is closed with your PaymentChannelClaim (signedTransactions), or by the escrow without one",
            ))
        }
        (EscrowRecord::Bitcoin(_), _, Some(_)) => {
            return Err(ApiError::bad_input(
                "input.signedTransactions",
                "WRONG_CHAIN",
                "input.signedTransactions: a Bitcoin session is closed with a psbt",
            ))
        }
        _ => {}
    }
    let (Some(claim_psbt), Some(claim_txid)) = (s.record.latest_claim_psbt.clone(), s.record.latest_claim_txid.clone())
    else {
        return Err(ApiError::conflict("NO_CLAIM", "the buyer has not signed any claim yet"));
    };
    let order = settle_latest(app, &txn, order, &mut s, (&claim_psbt, &claim_txid), provider_psbt, provider_blobs, Actor::Provider, now).await?;
    txn.commit().await?;
    tracing::info!(order.id = %order_id, claim.id = %claim_txid, "metered session settled with the latest claim");
    Ok((order, s))
}

/// Settles the session with the buyer's latest claim, on behalf of `actor`:
/// the provider (with its own signatures, or asking the marketplace to
/// co-sign), or the scheduler once the review window of a delivery passed and
/// the provider did not close (the marketplace co-signs; the buyer's claim
/// signatures complete the payout).
#[allow(clippy::too_many_arguments)]
async fn settle_latest(
    app: &AppState,
    txn: &DatabaseTransaction,
    order: Order,
    s: &mut MeteredSession,
    (claim_psbt, claim_txid): (&str, &str),
    provider_psbt: Option<&str>,
    provider_blobs: Option<&[String]>,
    actor: Actor,
    now: DateTime<Utc>,
) -> ApiResult<Order> {
    let order_id = order.id();
    let claim_psbt = claim_psbt.to_owned();
    let claim_txid = claim_txid.to_owned();
    if matches!(order.escrow, EscrowRecord::Xrpl(_)) {
        let claim: ChannelClaim = serde_json::from_str(&claim_psbt).map_err(ApiError::internal)?;
        return Box::pin(close_xrpl(app, txn, order, s, &claim, provider_blobs, actor, now)).await;
    }
    if let Some(p) = provider_psbt {
        let txid = decode_psbt(p)?.unsigned_tx.compute_txid().to_string();
        if txid != claim_txid {
            let older = store::claims_of(txn, order_id).await?.into_iter().any(|c| c.txid == txid);
            return Err(if older {
                ApiError::conflict("CLAIM_NOT_LATEST", "psbt: this is an older claim; complete the buyer's latest claim")
            } else {
                mismatch("it is not the buyer's latest claim")
            });
        }
    }
    let claimed = Amount::new(order.terms.asset(), s.session.latest_claim).map_err(ApiError::internal)?;
    let event = EscrowEvent::SettleClaim {
        claimed,
        latest_claim: claimed,
        service_cosigns: provider_psbt.is_none(),
    };
    let mut order = orders::transition(app, txn, order, actor, &event, now).await?;
    let EscrowRecord::Bitcoin(b) = &mut order.escrow else {
        return Err(ApiError::internal("claim on a non-Bitcoin escrow"));
    };
    if b.payout.as_ref().map(|p| p.txid.to_string()) != Some(claim_txid.clone()) {
        return Err(ApiError::conflict(
            "PAYOUT_CHANGED",
            "the fee rate or the funding changed since the claim was signed; complete the claim yourself or ask the buyer for a new one",
        ));
    }
    b.import_signatures(&claim_psbt)?;
    if let Some(p) = provider_psbt {
        b.import_signatures(p)?;
    }
    if !order.escrow.payout_complete() {
        return Err(ApiError::bad_input(
            "input.psbt",
            "MISSING_SIGNATURE",
            "psbt: it does not carry your signature on every input",
        ));
    }
    orders::save_and_hint(app, txn, &mut order, now).await?;
    s.session.closed = true;
    save_session(app, txn, s, now).await?;
    Ok(order)
}

/// XRPL: settles the latest claim on the order's payment channel. With
/// `provider_blobs`, the provider's own `PaymentChannelClaim` redeeming the
/// latest claim with `tfClose` (it closes the channel at once; the watcher
/// submits it); without, the escrow closes the channel delivering the latest
/// claim (see [`crate::orders::channel`]). Either way the marketplace
/// co-signs what follows under the latest-claim rule, and the commission and
/// the buyer's rest are paid once the channel is closed.
#[allow(clippy::too_many_arguments)]
async fn close_xrpl(
    app: &AppState,
    txn: &DatabaseTransaction,
    mut order: Order,
    s: &mut MeteredSession,
    claim: &ChannelClaim,
    provider_blobs: Option<&[String]>,
    actor: Actor,
    now: DateTime<Utc>,
) -> ApiResult<Order> {
    let EscrowRecord::Xrpl(x) = &mut order.escrow else {
        return Err(ApiError::internal("claim on a non-XRPL escrow"));
    };
    let ch = open_channel(x)?;
    if ch.id != claim.channel {
        return Err(ApiError::internal("the latest claim is on another channel"));
    }
    if let Some(blobs) = provider_blobs {
        let close = provider_close(x, ch, claim, blobs)?;
        if let Some(ch) = x.channel.as_mut() {
            ch.provider_close = Some(close);
        }
    }
    let claimed = Amount::new(order.terms.asset(), s.session.latest_claim).map_err(ApiError::internal)?;
    let event = EscrowEvent::SettleClaim {
        claimed,
        latest_claim: claimed,
        service_cosigns: true,
    };
    let order = Box::pin(orders::transition(app, txn, order, actor, &event, now)).await?;
    s.session.closed = true;
    save_session(app, txn, s, now).await?;
    Ok(order)
}

/// Checks the provider's own claim closing the channel: a single-signed
/// `PaymentChannelClaim` from its payout account on this channel, redeeming
/// exactly the buyer's latest claim, with `tfClose`, validly signed by a key
/// of that account.
fn provider_close(x: &XrplEscrow, ch: &XrplChannel, claim: &ChannelClaim, blobs: &[String]) -> ApiResult<ProviderClose> {
    let field = "input.signedTransactions";
    let refuse = |reason: &'static str, detail: &str| ApiError::bad_input(field, reason, format!("{field}[0]: {detail}"));
    let [blob] = blobs else {
        return Err(ApiError::bad_input(
            field,
            "WRONG_COUNT",
            format!("{field}: send exactly one transaction, your PaymentChannelClaim that redeems the latest claim with tfClose"),
        ));
    };
    let tx = DecodedTx::from_hex(blob.trim()).map_err(|e| refuse("MALFORMED_BLOB", &format!("not a valid transaction ({e})")))?;
    let j = tx.json();
    let text = |k: &str| j[k].as_str().unwrap_or_default().to_owned();
    let provider = &x.payout_to.provider.address;
    if tx.transaction_type() != "PaymentChannelClaim" || tx.account() != provider {
        return Err(refuse("TRANSACTION_MISMATCH", "not a PaymentChannelClaim from your payout account"));
    }
    if !text("Channel").eq_ignore_ascii_case(&ch.id.to_hex()) {
        return Err(refuse("TRANSACTION_MISMATCH", "not on this order's channel"));
    }
    let drops = claim.drops.to_string();
    if text("Balance") != drops || (!j["Amount"].is_null() && text("Amount") != drops) {
        return Err(ApiError::conflict("CLAIM_NOT_LATEST", format!("{field}[0]: it does not redeem the buyer's latest claim ({drops} drops)")));
    }
    if !text("Signature").eq_ignore_ascii_case(&claim.signature) || !text("PublicKey").eq_ignore_ascii_case(&x.buyer.public_key.to_hex()) {
        return Err(refuse("TRANSACTION_MISMATCH", "it does not carry the buyer's latest claim signature and key"));
    }
    if j["Flags"].as_u64().unwrap_or(0) & u64::from(TF_CLOSE) == 0 {
        return Err(refuse("TRANSACTION_MISMATCH", "without tfClose it would leave the channel open"));
    }
    match tx.verify_signatures() {
        Ok(TxAuthorization::Single { public_key }) if public_key.address() == *provider => {}
        Ok(_) => return Err(refuse("UNEXPECTED_SIGNER", "sign it with your payout account's own key")),
        Err(e) => return Err(refuse("INVALID_SIGNATURE", &e.to_string())),
    }
    Ok(ProviderClose {
        blob: blob.trim().to_uppercase(),
        hash: tx.hash().to_uppercase(),
    })
}

/// The provider closed the channel on the ledger while the session was open
/// (its own claim with `tfClose`): the session is over, and the buyer's
/// latest claim is settled as if it had called `closeSession` — the channel
/// paid it what it redeemed, the rest of its share (if it redeemed an older
/// claim) comes with the remainder. Without a claim, only the session closes.
pub async fn settle_closed_channel(app: &AppState, txn: &DatabaseTransaction, mut order: Order, now: DateTime<Utc>) -> ApiResult<Order> {
    let mut s = load_session(txn, order.id()).await?;
    if s.record.latest_claim_psbt.is_none() || s.session.latest_claim == 0 {
        s.session.closed = true;
        save_session(app, txn, &mut s, now).await?;
        orders::save_and_hint(app, txn, &mut order, now).await?;
        return Ok(order);
    }
    let claimed = Amount::new(order.terms.asset(), s.session.latest_claim).map_err(ApiError::internal)?;
    let event = EscrowEvent::SettleClaim {
        claimed,
        latest_claim: claimed,
        service_cosigns: true,
    };
    let order = Box::pin(orders::transition(app, txn, order, Actor::Provider, &event, now)).await?;
    s.session.closed = true;
    save_session(app, txn, &mut s, now).await?;
    Ok(order)
}

/// The service's automatic outcome of a metered order with a signed claim:
/// the buyer's latest claim is settled with the marketplace co-signing (the
/// provider gets what the buyer signed for, the buyer the rest), whether the
/// provider vanished after delivering or never marked the order delivered.
/// Runs inside `txn`; the domain checks that the outcome is due.
pub async fn settle_latest_by_system(app: &AppState, txn: &DatabaseTransaction, order: Order, now: DateTime<Utc>) -> ApiResult<Order> {
    let mut s = load_session(txn, order.id()).await?;
    let (Some(claim_psbt), Some(claim_txid)) = (s.record.latest_claim_psbt.clone(), s.record.latest_claim_txid.clone()) else {
        return Err(ApiError::conflict("NO_CLAIM", "the buyer signed no claim for this session"));
    };
    settle_latest(app, txn, order, &mut s, (&claim_psbt, &claim_txid), None, None, Actor::System, now).await
}

/// Settles every delivered metered session whose review window passed with
/// the buyer's latest claim (the provider stopped acting), walking all of them
/// a page at a time; one that fails never blocks the others.
pub async fn settle_abandoned(app: &AppState, now: DateTime<Utc>) -> ApiResult<usize> {
    let mut settled = 0;
    let mut after = None;
    loop {
        let page = agora_persistence::orders::orders_in_status_after(&app.db, &["Delivered"], after, 200).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for record in page {
            let order = Order::from_record(record)?;
            if !order.is_metered() {
                continue;
            }
            let EscrowState::Delivered { delivered_at, .. } = &order.state else { continue };
            if now <= order.terms.deadlines().review_ends(*delivered_at) {
                continue;
            }
            if latest_claimed(&app.db, order.id()).await?.is_none() {
                continue;
            }
            let txn = app.db.begin().await?;
            let fresh = orders::load(&txn, order.id()).await?;
            match Box::pin(settle_latest_by_system(app, &txn, fresh, now)).await {
                Ok(_) => {
                    txn.commit().await?;
                    settled += 1;
                    tracing::info!(order.id = %order.id(), "abandoned metered session settled with the latest claim");
                }
                Err(e) => tracing::warn!(order.id = %order.id(), error = ?e, "abandoned session not settled; retrying later"),
            }
        }
    }
    Ok(settled)
}
