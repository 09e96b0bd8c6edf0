//! Placing an order: choosing the escrow keys, deriving the marketplace key for
//! this escrow, compiling the Bitcoin descriptor, and freezing the terms.

use agora_domain::escrow::deadlines::timelock_blocks_for;
use agora_domain::escrow::{ChainTimelock, FeeSchedule};
use agora_domain::listing::ListingStatus;
use agora_domain::money::{Amount, Asset, BasisPoints};
use agora_domain::order::{
    place_order, ArbitratorKey, EscrowKeys as DomainKeys, ListingSnapshot, OrderTiming, PlaceOrderError,
    PlaceOrderInput, PricingSnapshot, TimelockTiming,
};
use agora_escrow::btc::{EscrowDescriptor, EscrowKeys};
use agora_escrow::keys::{bitcoin_public_key, derive_from_xpub};
use agora_persistence::accounts::{self, EscrowKeyRecord};
use agora_persistence::listings::{self, StoredPricing};
use agora_persistence::orders::{self, OrderEventRecord, OrderRecord};
use agora_persistence::StoreError;
use chrono::Duration;
use sea_orm::TransactionTrait;
use uuid::Uuid;

use super::bitcoin::{p2wpkh, parse_address, BtcEscrow, BtcPayoutAddresses};
use super::xrpl::{SetupStatus, XrplEscrow, XrplSetup};
use agora_escrow::xrpl::{PayoutDestination, PayoutParties, XrplAccount, XrplAddress, XrplPublicKey};
use super::{EscrowRecord, Order};
use crate::graphql::context::AppState;
use crate::graphql::errors::{ApiError, ApiResult};

/// Blocks come at the chain's average interval but faster at times; the
/// timelock is sized as if they came 20 % faster (8 minutes on mainnet), so it
/// never opens before the deadlines.
const CONSERVATIVE_PACE_PERCENT: u32 = 80;

/// The largest relative timelock a Bitcoin escrow can have (BIP 68: 16 bits of blocks).
const MAX_TIMELOCK_BLOCKS: u32 = 0xFFFF;

/// The marketplace's timing rules for an order of `listing` (no timelock yet).
fn order_timing(app: &AppState, delivery_window_hours: u32) -> OrderTiming {
    let o = &app.order_settings;
    let secs = |s: u64| Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX));
    OrderTiming {
        funding_window: secs(o.funding_window_secs),
        delivery_window: Duration::hours(i64::from(delivery_window_hours)),
        review_period: secs(o.review_period_secs),
        dispute_response: secs(o.dispute_response_secs),
        decision_period: secs(o.decision_period_secs),
        appeal_window: secs(o.appeal_window_secs),
        appeal_decision_period: secs(o.appeal_decision_period_secs),
        release_signing_grace: secs(o.release_signing_grace_secs),
        timelock: None,
    }
}

/// The block interval the timelock is sized with: the chain's, made faster.
fn conservative_block_interval(app: &AppState) -> Duration {
    let secs = app.bitcoin.block_interval.as_secs().max(1);
    let conservative = (secs * u64::from(CONSERVATIVE_PACE_PERCENT)).div_ceil(100).max(1);
    Duration::seconds(i64::try_from(conservative).unwrap_or(i64::MAX))
}

pub struct PlaceOrderRequest {
    pub buyer_id: Uuid,
    pub listing_id: Uuid,
    /// The buyer's registered key for the 2-of-3 path (a compressed key or an xpub).
    pub buyer_key_id: Uuid,
    /// The buyer's key for the time-locked refund path; from the same xpub when omitted.
    pub buyer_refund_key_id: Option<Uuid>,
    /// Where refunds go; P2WPKH of the buyer's key when omitted.
    pub refund_address: Option<String>,
    /// XRPL: the destination tag of the refund address (exchanges need one).
    pub refund_destination_tag: Option<u32>,
    /// Metered listings: the deposit, in minor units.
    pub deposit: Option<u64>,
    /// Metered listings: the order whose session this order tops up.
    pub top_up_of: Option<Uuid>,
}

fn required_confirmations(table: &[(u64, u32)], amount: u64) -> u32 {
    table
        .iter()
        .find(|(max, _)| amount <= *max)
        .or(table.last())
        .map_or(1, |(_, c)| (*c).max(1))
}

/// A registered key of `user_id` on Bitcoin, resolved for escrow `index`:
/// compressed keys as they are, xpubs at `branch/index`.
fn resolve_key(keys: &[EscrowKeyRecord], key_id: Uuid, field: &str, branch: u32, index: u32) -> ApiResult<bitcoin::PublicKey> {
    let key = keys.iter().find(|k| k.id == key_id && k.chain == "bitcoin").ok_or_else(|| {
        ApiError::bad_input(field, "UNKNOWN_KEY", format!("{field}: you have no Bitcoin escrow key with this id"))
    })?;
    resolve(key, branch, index)
}

fn resolve(key: &EscrowKeyRecord, branch: u32, index: u32) -> ApiResult<bitcoin::PublicKey> {
    if key.kind == "extended_public_key" {
        derive_from_xpub(&key.public_key, branch, index).map_err(ApiError::internal)
    } else {
        bitcoin_public_key(&key.public_key).map_err(ApiError::internal)
    }
}

fn place_error(e: PlaceOrderError) -> ApiError {
    use agora_domain::escrow::ErrorKind;
    let reason = match &e {
        PlaceOrderError::ListingNotActive => "LISTING_NOT_ACTIVE",
        PlaceOrderError::BuyerIsProvider => "OWN_LISTING",
        PlaceOrderError::DepositRequired => "DEPOSIT_REQUIRED",
        PlaceOrderError::DepositNotAllowed => "DEPOSIT_NOT_ALLOWED",
        PlaceOrderError::DepositBelowMinimum { .. } => "DEPOSIT_BELOW_MINIMUM",
        PlaceOrderError::DuplicateKey { .. } => "DUPLICATE_KEY",
        PlaceOrderError::MissingKey { .. } => "MISSING_KEY",
        PlaceOrderError::TimelockTooShort { .. } => "DELIVERY_WINDOW_TOO_LONG",
        _ => "INVALID",
    };
    match e.kind() {
        ErrorKind::Conflict => ApiError::conflict(reason, e.to_string()),
        ErrorKind::BadUserInput | ErrorKind::Forbidden => ApiError::bad_input("input", reason, e.to_string()),
        ErrorKind::Internal if matches!(e, PlaceOrderError::TimelockTooShort { .. }) => {
            ApiError::conflict(reason, "the listing's delivery window is too long for a Bitcoin escrow")
        }
        ErrorKind::Internal => ApiError::internal(e),
    }
}

pub async fn place(app: &AppState, req: PlaceOrderRequest) -> ApiResult<Order> {
    // Two placements may pick the same key index; the unique index rejects one.
    for _ in 0..3 {
        match try_place(app, &req).await {
            Err(ApiError::Rejected { reason: "KEY_INDEX_TAKEN", .. }) => continue,
            other => return other,
        }
    }
    Err(ApiError::conflict("CONCURRENT_UPDATE", "too many orders at once; retry"))
}

/// The chain-specific outcome of choosing keys for an order.
struct ChainSetup {
    chain: &'static str,
    keys: DomainKeys,
    escrow: EscrowRecord,
    address: String,
    timelock: Option<TimelockTiming>,
    fees: FeeSchedule,
}

async fn try_place(app: &AppState, req: &PlaceOrderRequest) -> ApiResult<Order> {
    let now = app.clock.now();
    let listing = listings::find_listing(&app.db, req.listing_id)
        .await?
        .filter(|l| l.status == ListingStatus::Active || l.provider_id == req.buyer_id)
        .ok_or_else(|| ApiError::NotFound("no such listing".into()))?;
    // Checked first: with the provider's own keys the escrow keys would clash
    // and the error would hide the real reason.
    if listing.provider_id == req.buyer_id {
        return Err(ApiError::bad_input("input.listingId", "OWN_LISTING", "you cannot buy your own listing"));
    }
    let txn = app.db.begin().await?;
    let chain = match listing.asset {
        Asset::Btc => "bitcoin",
        Asset::Xrp => "xrpl",
    };
    let index = orders::next_key_index(&txn, chain).await?;
    let buyer_keys = accounts::escrow_keys_of(&txn, &[req.buyer_id]).await?;
    let provider_keys = accounts::escrow_keys_of(&txn, &[listing.provider_id]).await?;
    let setup = match listing.asset {
        Asset::Btc => bitcoin_setup(app, req, &listing, &buyer_keys, &provider_keys, index)?,
        Asset::Xrp => xrpl_setup(app, req, &buyer_keys, &provider_keys, index)?,
    };

    let (pricing, deposit) = match &listing.pricing {
        StoredPricing::Fixed { amount } => (PricingSnapshot::Fixed { price: *amount }, req.deposit),
        StoredPricing::Metered { unit, price_per_unit, min_deposit } => (
            PricingSnapshot::Metered {
                unit: unit.clone(),
                price_per_unit: *price_per_unit,
                min_deposit: *min_deposit,
            },
            req.deposit,
        ),
    };
    let required_confirmations = match listing.asset {
        Asset::Btc => required_confirmations(&app.bitcoin_settings.confirmations, deposit.unwrap_or(listing.headline_price())),
        // A validated ledger is final.
        Asset::Xrp => 1,
    };
    let order_id = Uuid::now_v7();
    let terms = place_order(
        PlaceOrderInput {
            order_id,
            buyer_id: req.buyer_id,
            listing: ListingSnapshot {
                listing_id: listing.id,
                title: listing.title.clone(),
                category: listing.category.code().to_owned(),
                asset: listing.asset,
                pricing,
            },
            provider_id: listing.provider_id,
            listing_active: listing.status == ListingStatus::Active,
            deposit,
            keys: setup.keys,
            fees: setup.fees,
            timing: OrderTiming {
                timelock: setup.timelock,
                ..order_timing(app, listing.delivery_window_hours)
            },
            required_confirmations,
        },
        now,
    )
    .map_err(place_error)?;

    let state = agora_domain::escrow::EscrowState::new();
    let record = OrderRecord {
        id: order_id,
        buyer_id: req.buyer_id,
        provider_id: listing.provider_id,
        listing_id: listing.id,
        arbitrator_id: None,
        chain: setup.chain.into(),
        asset: listing.asset.code().into(),
        amount_due: terms.amount_due().minor(),
        status: state.name().into(),
        terms_json: serde_json::to_string(&terms).map_err(ApiError::internal)?,
        state_json: serde_json::to_string(&state).map_err(ApiError::internal)?,
        escrow_json: serde_json::to_string(&setup.escrow).map_err(ApiError::internal)?,
        key_index: index,
        escrow_address: Some(setup.address.clone()),
        version: 0,
        created_at: now,
        updated_at: now,
    };
    match orders::insert_order(&txn, &record).await {
        Err(StoreError::Duplicate) => return Err(ApiError::conflict("KEY_INDEX_TAKEN", "retry")),
        other => other?,
    }
    orders::insert_order_event(
        &txn,
        &OrderEventRecord {
            order_id,
            event: "OrderPlaced".into(),
            actor: "buyer".into(),
            from_status: String::new(),
            to_status: state.name().into(),
            detail: format!("escrow {}", setup.address),
            at: now,
        },
    )
    .await?;
    let order = Order::from_record(record)?;
    crate::notifications::order_placed(&txn, &order, now).await?;
    crate::metered::on_order_placed(&txn, &order, req.top_up_of, now).await?;
    txn.commit().await?;
    tracing::info!(order.id = %order_id, escrow.address = %setup.address, escrow.key_index = index, "order placed");
    Ok(order)
}

fn bps(v: u16) -> ApiResult<BasisPoints> {
    BasisPoints::new(i64::from(v)).map_err(ApiError::internal)
}

fn bitcoin_setup(
    app: &AppState,
    req: &PlaceOrderRequest,
    listing: &agora_persistence::listings::ListingRecord,
    buyer_keys: &[EscrowKeyRecord],
    provider_keys: &[EscrowKeyRecord],
    index: u32,
) -> ApiResult<ChainSetup> {
    let cfg = &app.bitcoin_settings;
    let network = app.bitcoin.network;
    let buyer = resolve_key(buyer_keys, req.buyer_key_id, "input.buyerKeyId", 0, index)?;
    let buyer_refund = match req.buyer_refund_key_id {
        Some(id) => resolve_key(buyer_keys, id, "input.buyerRefundKeyId", 1, index)?,
        None => {
            let key = buyer_keys.iter().find(|k| k.id == req.buyer_key_id).ok_or_else(|| {
                ApiError::bad_input("input.buyerKeyId", "UNKNOWN_KEY", "input.buyerKeyId: unknown key")
            })?;
            if key.kind != "extended_public_key" {
                return Err(ApiError::bad_input(
                    "input.buyerRefundKeyId",
                    "MISSING_KEY",
                    "input.buyerRefundKeyId: give a second key for the refund path (or register an xpub)",
                ));
            }
            resolve(key, 1, index)?
        }
    };
    let provider_key = provider_keys
        .iter()
        .rev()
        .find(|k| k.chain == "bitcoin")
        .ok_or_else(|| ApiError::conflict("PROVIDER_HAS_NO_KEY", "the provider has not registered a Bitcoin escrow key yet"))?;
    let provider = resolve(provider_key, 0, index)?;
    let arbitrator = app.bitcoin.gate.arbitrator_pubkey(index).map_err(ApiError::internal)?;

    // The buyer's refund path may open only after the longest path through
    // the service's deadlines (arbitration and appeal included) plus the
    // margin, at the chain's own pace; terms that cannot fit are refused.
    let longest = order_timing(app, listing.delivery_window_hours).longest_path();
    let block_interval = conservative_block_interval(app);
    let timelock_blocks = timelock_blocks_for(longest, block_interval, cfg.timelock_margin_blocks, MAX_TIMELOCK_BLOCKS)
        .and_then(|b| u16::try_from(b).ok())
        .ok_or_else(|| {
            ApiError::conflict(
                "DELIVERY_WINDOW_TOO_LONG",
                format!(
                    "the order's deadlines ({} hours from funding to the last appeal) cannot fit in a Bitcoin timelock of at most {MAX_TIMELOCK_BLOCKS} blocks",
                    longest.num_hours()
                ),
            )
        })?;
    let keys = EscrowKeys::new(buyer, buyer_refund, provider, arbitrator, timelock_blocks).map_err(|e| {
        ApiError::bad_input("input", "DUPLICATE_KEY", format!("the escrow keys must all differ: {e}"))
    })?;
    let escrow = EscrowDescriptor::new(keys).map_err(ApiError::internal)?;
    let address = escrow.address(network);
    let refund_to = match &req.refund_address {
        Some(a) => parse_address("input.refundAddress", a, network)?,
        None => p2wpkh(&buyer, network)?,
    };
    let btc = BtcEscrow {
        network,
        descriptor: escrow.to_string(),
        address: address.to_string(),
        buyer_key: buyer.to_string(),
        buyer_refund_key: buyer_refund.to_string(),
        provider_key: provider.to_string(),
        arbitrator_key: arbitrator.to_string(),
        key_index: index,
        timelock_blocks,
        payout_to: BtcPayoutAddresses {
            provider: p2wpkh(&provider, network)?.to_string(),
            buyer: refund_to.to_string(),
            marketplace: app.bitcoin.marketplace_address.to_string(),
        },
        funding: Vec::new(),
        strays: Vec::new(),
        fee_rate_sat_vb: None,
        other_spend: None,
        fee_bumps: Vec::new(),
        confirmations: 0,
        funding_height: 0,
        payout: None,
        timelock_alerted: false,
    };
    Ok(ChainSetup {
        chain: "bitcoin",
        keys: DomainKeys {
            buyer: buyer.to_string(),
            buyer_refund: buyer_refund.to_string(),
            provider: provider.to_string(),
            arbitrator: ArbitratorKey {
                index,
                public_key: arbitrator.to_string(),
            },
        },
        escrow: EscrowRecord::Bitcoin(btc),
        address: address.to_string(),
        timelock: Some(TimelockTiming {
            timelock: ChainTimelock {
                blocks: u32::from(timelock_blocks),
                margin_blocks: cfg.timelock_margin_blocks,
            },
            block_interval,
        }),
        fees: FeeSchedule {
            commission_bps: bps(cfg.commission_bps)?,
            arbitration_fee_fixed: Amount::new(Asset::Btc, cfg.arbitration_fee_fixed_sats).map_err(ApiError::internal)?,
            arbitration_fee_bps: bps(cfg.arbitration_fee_bps)?,
        },
    })
}

fn xrpl_account(key: &EscrowKeyRecord) -> ApiResult<XrplAccount> {
    let address = key
        .address
        .as_deref()
        .ok_or_else(|| ApiError::internal("XRPL key without address"))?;
    Ok(XrplAccount {
        address: XrplAddress::parse(address).map_err(ApiError::internal)?,
        public_key: XrplPublicKey::parse_hex(&key.public_key).map_err(ApiError::internal)?,
    })
}

fn xrpl_setup(
    app: &AppState,
    req: &PlaceOrderRequest,
    buyer_keys: &[EscrowKeyRecord],
    provider_keys: &[EscrowKeyRecord],
    index: u32,
) -> ApiResult<ChainSetup> {
    let cfg = &app.xrpl_settings;
    if req.buyer_refund_key_id.is_some() {
        return Err(ApiError::bad_input(
            "input.buyerRefundKeyId",
            "NOT_ALLOWED",
            "input.buyerRefundKeyId: XRPL escrows have no time-locked refund key",
        ));
    }
    let buyer_key = buyer_keys
        .iter()
        .find(|k| k.id == req.buyer_key_id && k.chain == "xrpl")
        .ok_or_else(|| {
            ApiError::bad_input("input.buyerKeyId", "UNKNOWN_KEY", "input.buyerKeyId: you have no XRPL escrow key with this id")
        })?;
    let provider_key = provider_keys
        .iter()
        .rev()
        .find(|k| k.chain == "xrpl")
        .ok_or_else(|| ApiError::conflict("PROVIDER_HAS_NO_KEY", "the provider has not registered an XRPL escrow key yet"))?;
    let buyer = xrpl_account(buyer_key)?;
    let provider = xrpl_account(provider_key)?;
    let arbitrator = app.xrpl.keyring.arbitrator_account().map_err(ApiError::internal)?;
    let escrow = app.xrpl.keyring.escrow_account(index).map_err(ApiError::internal)?;
    if buyer.address == provider.address {
        return Err(ApiError::bad_input("input.buyerKeyId", "DUPLICATE_KEY", "buyer and provider use the same XRPL account"));
    }
    let refund_to = match &req.refund_address {
        Some(a) => XrplAddress::parse(a.trim()).map_err(|_| {
            ApiError::bad_input("input.refundAddress", "INVALID_ADDRESS", "input.refundAddress: not a classic XRPL address")
        })?,
        None => buyer.address.clone(),
    };
    let record = XrplEscrow {
        address: escrow.address.clone(),
        public_key: escrow.public_key.to_hex(),
        key_index: index,
        payout_to: PayoutParties {
            provider: PayoutDestination {
                address: provider.address.clone(),
                tag: None,
            },
            buyer: PayoutDestination {
                address: refund_to,
                tag: req.refund_destination_tag,
            },
            marketplace: app.xrpl.marketplace.clone(),
        },
            buyer: buyer.clone(),
        provider: provider.clone(),
        arbitrator: arbitrator.clone(),
        setup: XrplSetup {
            status: SetupStatus::AwaitingAccount,
            funding: None,
            signer_list_set: None,
            disable_master: None,
            buyer_check: None,
            refund: None,
            refunded: false,
        },
        next_sequence: None,
        ledger_index: 0,
        funded_drops: 0,
        payout: None,
        channel: None,
    };
    Ok(ChainSetup {
        chain: "xrpl",
        keys: DomainKeys {
            buyer: buyer.public_key.to_hex(),
            // No timelock path on XRPL; the escrow account's own key stands in,
            // keeping the four keys distinct as the terms require.
            buyer_refund: escrow.public_key.to_hex(),
            provider: provider.public_key.to_hex(),
            arbitrator: ArbitratorKey {
                index,
                public_key: arbitrator.public_key.to_hex(),
            },
        },
        address: escrow.address.to_string(),
        escrow: EscrowRecord::Xrpl(record),
        timelock: None,
        fees: FeeSchedule {
            commission_bps: bps(cfg.commission_bps)?,
            arbitration_fee_fixed: Amount::new(Asset::Xrp, cfg.arbitration_fee_fixed_drops).map_err(ApiError::internal)?,
            arbitration_fee_bps: bps(cfg.arbitration_fee_bps)?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmations_scale_with_the_amount() {
        let table = [(1_000_000, 1), (10_000_000, 3), (100_000_000, 6)];
        assert_eq!(required_confirmations(&table, 50_000), 1);
        assert_eq!(required_confirmations(&table, 1_000_000), 1);
        assert_eq!(required_confirmations(&table, 1_000_001), 3);
        assert_eq!(required_confirmations(&table, 5_000_000_000), 6);
        assert_eq!(required_confirmations(&[], 5), 1);
    }
}
