//! Placing an order: validating a buyer's purchase and freezing its terms.
//!
//! Deadlines are absolute from placement: `funding_by = now + funding_window`,
//! `delivery_by = funding_by + delivery_window` (the provider gets the full
//! delivery window even if the buyer funds at the last moment). On chains with
//! a timelock, the longest path through the service's deadlines (delivery,
//! review, dispute response, decision, escalation, appeal window, appeal
//! decision: [`Deadlines::longest_path`]) must end before the refund path can
//! open, counting from a funding that confirms right now, minus the margin.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::terms::{EscrowKeys, ListingSnapshot, OrderTerms, PricingSnapshot};
use crate::escrow::deadlines::add;
use crate::escrow::{ChainTimelock, Deadlines, ErrorKind, FeeSchedule};
use crate::money::{Amount, AmountError, Asset};

/// Everything needed to place an order, as plain data the caller gathered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaceOrderInput {
    pub order_id: Uuid,
    pub buyer_id: Uuid,
    pub listing: ListingSnapshot,
    pub provider_id: Uuid,
    /// Whether the listing is active right now; only active listings sell.
    pub listing_active: bool,
    /// Metered listings: the deposit the buyer locks, in minor units.
    /// Fixed-price listings: must be `None`.
    pub deposit: Option<u64>,
    pub keys: EscrowKeys,
    pub fees: FeeSchedule,
    pub timing: OrderTiming,
    /// Confirmations the funding needs; the caller scales it with the amount.
    pub required_confirmations: u32,
}

/// The marketplace's timing rules for this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderTiming {
    pub funding_window: Duration,
    pub delivery_window: Duration,
    pub review_period: Duration,
    pub dispute_response: Duration,
    pub decision_period: Duration,
    pub appeal_window: Duration,
    pub appeal_decision_period: Duration,
    pub release_signing_grace: Duration,
    /// The chain's refund timelock, if it has one, with the expected time
    /// between blocks to compare it with the deadlines.
    pub timelock: Option<TimelockTiming>,
}

impl OrderTiming {
    /// The longest an escrow placed under this timing can stay open after its
    /// funding: the same path as [`Deadlines::longest_path`] for an order
    /// placed now, so a timelock sized from it always fits.
    pub fn longest_path(&self) -> Duration {
        let until_delivery = self
            .funding_window
            .max(Duration::zero())
            .checked_add(&self.delivery_window.max(Duration::zero()))
            .unwrap_or(Duration::MAX);
        crate::escrow::deadlines::longest(
            until_delivery,
            self.review_period,
            &[
                self.dispute_response,
                self.decision_period,
                self.decision_period,
                self.appeal_window,
                self.appeal_decision_period,
            ],
            self.release_signing_grace,
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelockTiming {
    pub timelock: ChainTimelock,
    pub block_interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceOrderError {
    #[error("the listing is not active")]
    ListingNotActive,
    #[error("you cannot buy your own listing")]
    BuyerIsProvider,
    #[error("invalid {field}: {source}")]
    InvalidAmount {
        field: &'static str,
        source: AmountError,
    },
    #[error("a metered order needs a deposit")]
    DepositRequired,
    #[error("a fixed-price order takes no deposit")]
    DepositNotAllowed,
    #[error("the deposit ({deposit}) is below the listing's minimum ({minimum})")]
    DepositBelowMinimum { deposit: Amount, minimum: Amount },
    #[error("the {which} key is missing")]
    MissingKey { which: &'static str },
    #[error("the {first} and {second} keys must differ")]
    DuplicateKey {
        first: &'static str,
        second: &'static str,
    },
    #[error("the fees are in {got}, the listing in {expected}")]
    FeeAssetMismatch { expected: Asset, got: Asset },
    #[error("invalid timing: {reason}")]
    InvalidTiming { reason: &'static str },
    #[error("the deadlines end at {deadlines_end}, after the timelock margin ({margin_opens})")]
    TimelockTooShort {
        deadlines_end: DateTime<Utc>,
        margin_opens: DateTime<Utc>,
    },
}

impl PlaceOrderError {
    /// How the API should classify the error. Timing and fee problems come
    /// from the marketplace's configuration, not from the buyer.
    pub const fn kind(&self) -> ErrorKind {
        match self {
            PlaceOrderError::ListingNotActive => ErrorKind::Conflict,
            PlaceOrderError::BuyerIsProvider
            | PlaceOrderError::InvalidAmount { .. }
            | PlaceOrderError::DepositRequired
            | PlaceOrderError::DepositNotAllowed
            | PlaceOrderError::DepositBelowMinimum { .. }
            | PlaceOrderError::MissingKey { .. }
            | PlaceOrderError::DuplicateKey { .. } => ErrorKind::BadUserInput,
            PlaceOrderError::FeeAssetMismatch { .. }
            | PlaceOrderError::InvalidTiming { .. }
            | PlaceOrderError::TimelockTooShort { .. } => ErrorKind::Internal,
        }
    }
}

/// Validates `input` and freezes the order's terms as of `now`.
pub fn place_order(
    input: PlaceOrderInput,
    now: DateTime<Utc>,
) -> Result<OrderTerms, PlaceOrderError> {
    if !input.listing_active {
        return Err(PlaceOrderError::ListingNotActive);
    }
    if input.buyer_id == input.provider_id {
        return Err(PlaceOrderError::BuyerIsProvider);
    }
    let asset = input.listing.asset;
    let amount_due = amount_due(&input.listing.pricing, asset, input.deposit)?;
    let keys = validate_keys(input.keys)?;
    if input.fees.arbitration_fee_fixed.asset() != asset {
        return Err(PlaceOrderError::FeeAssetMismatch {
            expected: asset,
            got: input.fees.arbitration_fee_fixed.asset(),
        });
    }
    if input.required_confirmations == 0 {
        return Err(PlaceOrderError::InvalidTiming {
            reason: "at least one confirmation is required",
        });
    }
    let deadlines = deadlines(&input.timing, now)?;
    Ok(OrderTerms {
        order_id: input.order_id,
        placed_at: now,
        listing: input.listing,
        buyer_id: input.buyer_id,
        provider_id: input.provider_id,
        amount_due,
        keys,
        fees: input.fees,
        deadlines,
        required_confirmations: input.required_confirmations,
    })
}

fn amount_due(
    pricing: &PricingSnapshot,
    asset: Asset,
    deposit: Option<u64>,
) -> Result<Amount, PlaceOrderError> {
    let positive = |field: &'static str, minor: u64| {
        Amount::positive(asset, minor)
            .map_err(|source| PlaceOrderError::InvalidAmount { field, source })
    };
    match pricing {
        PricingSnapshot::Fixed { price } => {
            if deposit.is_some() {
                return Err(PlaceOrderError::DepositNotAllowed);
            }
            positive("price", *price)
        }
        PricingSnapshot::Metered {
            price_per_unit,
            min_deposit,
            ..
        } => {
            positive("price per unit", *price_per_unit)?;
            let minimum = positive("minimum deposit", *min_deposit)?;
            let deposit = positive("deposit", deposit.ok_or(PlaceOrderError::DepositRequired)?)?;
            if deposit.minor() < minimum.minor() {
                return Err(PlaceOrderError::DepositBelowMinimum { deposit, minimum });
            }
            Ok(deposit)
        }
    }
}

/// Keys are opaque here, but they must be present and pairwise distinct:
/// a repeated key would let one party hold two of the escrow's signatures
/// (and miniscript rejects duplicate keys outright).
fn validate_keys(keys: EscrowKeys) -> Result<EscrowKeys, PlaceOrderError> {
    let keys = EscrowKeys {
        buyer: keys.buyer.trim().to_owned(),
        buyer_refund: keys.buyer_refund.trim().to_owned(),
        provider: keys.provider.trim().to_owned(),
        arbitrator: super::terms::ArbitratorKey {
            index: keys.arbitrator.index,
            public_key: keys.arbitrator.public_key.trim().to_owned(),
        },
    };
    let named = [
        ("buyer", keys.buyer.as_str()),
        ("buyer refund", keys.buyer_refund.as_str()),
        ("provider", keys.provider.as_str()),
        ("arbitrator", keys.arbitrator.public_key.as_str()),
    ];
    for (which, key) in named {
        if key.is_empty() {
            return Err(PlaceOrderError::MissingKey { which });
        }
    }
    for (i, (first, a)) in named.iter().enumerate() {
        for (second, b) in &named[i + 1..] {
            if a.eq_ignore_ascii_case(b) {
                return Err(PlaceOrderError::DuplicateKey { first, second });
            }
        }
    }
    Ok(keys)
}

fn deadlines(timing: &OrderTiming, now: DateTime<Utc>) -> Result<Deadlines, PlaceOrderError> {
    let positive = |d: Duration, reason| {
        if d > Duration::zero() {
            Ok(d)
        } else {
            Err(PlaceOrderError::InvalidTiming { reason })
        }
    };
    positive(timing.funding_window, "the funding window must be positive")?;
    positive(
        timing.delivery_window,
        "the delivery window must be positive",
    )?;
    positive(timing.review_period, "the review period must be positive")?;
    positive(
        timing.dispute_response,
        "the dispute response time must be positive",
    )?;
    positive(timing.decision_period, "the decision period must be positive")?;
    positive(timing.appeal_window, "the appeal window must be positive")?;
    positive(
        timing.appeal_decision_period,
        "the appeal decision period must be positive",
    )?;
    positive(
        timing.release_signing_grace,
        "the release signing grace must be positive",
    )?;

    let too_far = PlaceOrderError::InvalidTiming {
        reason: "the deadlines are too far in the future",
    };
    let funding_by = now
        .checked_add_signed(timing.funding_window)
        .ok_or(too_far.clone())?;
    let delivery_by = funding_by
        .checked_add_signed(timing.delivery_window)
        .ok_or(too_far.clone())?;
    let mut deadlines = Deadlines {
        funding_by,
        delivery_by,
        review_period: timing.review_period,
        dispute_response: timing.dispute_response,
        decision_period: timing.decision_period,
        appeal_window: timing.appeal_window,
        appeal_decision_period: timing.appeal_decision_period,
        release_signing_grace: timing.release_signing_grace,
        timelock: None,
    };
    // The last moment an escrow funded right now can still be open.
    let deadlines_end = now
        .checked_add_signed(deadlines.longest_path(now))
        .ok_or(too_far)?;

    if let Some(TimelockTiming {
        timelock,
        block_interval,
    }) = timing.timelock
    {
        if timelock.margin_blocks == 0 || timelock.margin_blocks >= timelock.blocks {
            return Err(PlaceOrderError::InvalidTiming {
                reason: "the timelock margin must be positive and shorter than the timelock",
            });
        }
        positive(block_interval, "the block interval must be positive")?;
        let safe_blocks =
            i32::try_from(timelock.blocks - timelock.margin_blocks).unwrap_or(i32::MAX);
        let margin_opens = block_interval
            .checked_mul(safe_blocks)
            .map_or(DateTime::<Utc>::MAX_UTC, |d| add(now, d));
        if deadlines_end > margin_opens {
            return Err(PlaceOrderError::TimelockTooShort {
                deadlines_end,
                margin_opens,
            });
        }
        deadlines.timelock = Some(timelock);
    }
    Ok(deadlines)
}
#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::money::BasisPoints;
    use crate::order::terms::ArbitratorKey;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
    }

    fn listing(pricing: PricingSnapshot) -> ListingSnapshot {
        ListingSnapshot {
            listing_id: Uuid::from_u128(1),
            title: "One hour of Rust review".into(),
            category: "expert-session".into(),
            asset: Asset::Btc,
            pricing,
        }
    }

    fn input() -> PlaceOrderInput {
        PlaceOrderInput {
            order_id: Uuid::from_u128(10),
            buyer_id: Uuid::from_u128(20),
            listing: listing(PricingSnapshot::Fixed { price: 50_000 }),
            provider_id: Uuid::from_u128(30),
            listing_active: true,
            deposit: None,
            keys: EscrowKeys {
                buyer: " 02aa ".into(),
                buyer_refund: "02bb".into(),
                provider: "03cc".into(),
                arbitrator: ArbitratorKey {
                    index: 7,
                    public_key: "02dd".into(),
                },
            },
            fees: FeeSchedule {
                commission_bps: BasisPoints::new(250).unwrap(),
                arbitration_fee_fixed: Amount::new(Asset::Btc, 1_000).unwrap(),
                arbitration_fee_bps: BasisPoints::new(100).unwrap(),
            },
            timing: OrderTiming {
                funding_window: Duration::hours(24),
                delivery_window: Duration::days(7),
                review_period: Duration::days(3),
                dispute_response: Duration::days(2),
                decision_period: Duration::days(2),
                appeal_window: Duration::days(2),
                appeal_decision_period: Duration::days(2),
                release_signing_grace: Duration::days(1),
                // 30 days of 10-minute blocks, alert 3 days early.
                timelock: Some(TimelockTiming {
                    timelock: ChainTimelock {
                        blocks: 4_320,
                        margin_blocks: 432,
                    },
                    block_interval: Duration::minutes(10),
                }),
            },
            required_confirmations: 3,
        }
    }

    fn metered(min_deposit: u64, deposit: Option<u64>) -> PlaceOrderInput {
        PlaceOrderInput {
            listing: listing(PricingSnapshot::Metered {
                unit: "minute".into(),
                price_per_unit: 100,
                min_deposit,
            }),
            deposit,
            ..input()
        }
    }

    #[test]
    fn a_fixed_price_order_freezes_its_terms() {
        let terms = place_order(input(), now()).unwrap();
        assert_eq!(terms.amount_due(), Amount::new(Asset::Btc, 50_000).unwrap());
        assert_eq!(terms.asset(), Asset::Btc);
        assert_eq!(terms.placed_at(), now());
        assert_eq!(terms.keys().buyer, "02aa");
        let d = terms.deadlines();
        assert_eq!(d.funding_by, now() + Duration::hours(24));
        assert_eq!(
            d.delivery_by,
            now() + Duration::hours(24) + Duration::days(7)
        );
        let escrow = terms.escrow_terms();
        assert_eq!(escrow.amount_due, terms.amount_due());
        assert_eq!(escrow.required_confirmations, 3);
        assert_eq!(escrow.deadlines, *d);
    }

    #[test]
    fn a_metered_order_is_due_the_buyers_deposit() {
        let terms = place_order(metered(10_000, Some(25_000)), now()).unwrap();
        assert_eq!(terms.amount_due().minor(), 25_000);
    }

    #[test]
    fn a_metered_deposit_must_reach_the_minimum() {
        assert!(matches!(
            place_order(metered(10_000, Some(9_999)), now()),
            Err(PlaceOrderError::DepositBelowMinimum { .. })
        ));
        assert_eq!(
            place_order(metered(10_000, None), now()),
            Err(PlaceOrderError::DepositRequired)
        );
        assert!(matches!(
            place_order(metered(0, Some(5)), now()),
            Err(PlaceOrderError::InvalidAmount {
                field: "minimum deposit",
                ..
            })
        ));
    }

    #[test]
    fn a_fixed_price_order_takes_no_deposit() {
        let input = PlaceOrderInput {
            deposit: Some(1),
            ..input()
        };
        assert_eq!(
            place_order(input, now()),
            Err(PlaceOrderError::DepositNotAllowed)
        );
    }

    #[test]
    fn only_active_listings_sell() {
        let input = PlaceOrderInput {
            listing_active: false,
            ..input()
        };
        let e = place_order(input, now()).unwrap_err();
        assert_eq!(e, PlaceOrderError::ListingNotActive);
        assert_eq!(e.kind(), ErrorKind::Conflict);
    }

    #[test]
    fn a_provider_cannot_buy_its_own_listing() {
        let input = PlaceOrderInput {
            buyer_id: Uuid::from_u128(30),
            ..input()
        };
        assert_eq!(
            place_order(input, now()),
            Err(PlaceOrderError::BuyerIsProvider)
        );
    }

    #[test]
    fn prices_must_be_positive_and_within_supply() {
        for price in [0, Asset::Btc.max_supply() + 1] {
            let input = PlaceOrderInput {
                listing: listing(PricingSnapshot::Fixed { price }),
                ..input()
            };
            assert!(matches!(
                place_order(input, now()),
                Err(PlaceOrderError::InvalidAmount { field: "price", .. })
            ));
        }
    }

    #[test]
    fn every_key_must_be_present_and_distinct() {
        let mut missing = input();
        missing.keys.provider = "  ".into();
        assert_eq!(
            place_order(missing, now()),
            Err(PlaceOrderError::MissingKey { which: "provider" })
        );

        let mut same = input();
        same.keys.buyer_refund = "02AA".into();
        let e = place_order(same, now()).unwrap_err();
        assert_eq!(
            e,
            PlaceOrderError::DuplicateKey {
                first: "buyer",
                second: "buyer refund"
            }
        );
        assert_eq!(e.kind(), ErrorKind::BadUserInput);

        let mut arbitrator = input();
        arbitrator.keys.arbitrator.public_key = "03cc".into();
        assert!(matches!(
            place_order(arbitrator, now()),
            Err(PlaceOrderError::DuplicateKey { .. })
        ));
    }

    #[test]
    fn fees_must_be_in_the_listings_asset() {
        let mut input = input();
        input.fees.arbitration_fee_fixed = Amount::new(Asset::Xrp, 1).unwrap();
        assert!(matches!(
            place_order(input, now()),
            Err(PlaceOrderError::FeeAssetMismatch { .. })
        ));
    }

    #[test]
    fn windows_must_be_positive_and_confirmations_required() {
        let mut input_ = input();
        input_.timing.review_period = Duration::zero();
        assert!(matches!(
            place_order(input_, now()),
            Err(PlaceOrderError::InvalidTiming { .. })
        ));
        let input_ = PlaceOrderInput {
            required_confirmations: 0,
            ..input()
        };
        assert!(matches!(
            place_order(input_, now()),
            Err(PlaceOrderError::InvalidTiming { .. })
        ));
        let mut input_ = input();
        input_.timing.funding_window = Duration::MAX;
        assert!(matches!(
            place_order(input_, now()),
            Err(PlaceOrderError::InvalidTiming { .. })
        ));
    }

    #[test]
    fn every_deadline_must_end_before_the_timelock_margin() {
        // 1 + 7 + 3 + 2 = 13 days of deadlines against 14 days of timelock
        // minus a 3-day margin: too short.
        let mut input = input();
        input.timing.timelock = Some(TimelockTiming {
            timelock: ChainTimelock {
                blocks: 2_016,
                margin_blocks: 432,
            },
            block_interval: Duration::minutes(10),
        });
        assert!(matches!(
            place_order(input.clone(), now()),
            Err(PlaceOrderError::TimelockTooShort { .. })
        ));
        input.timing.timelock = Some(TimelockTiming {
            timelock: ChainTimelock {
                blocks: 432,
                margin_blocks: 432,
            },
            block_interval: Duration::minutes(10),
        });
        assert!(matches!(
            place_order(input, now()),
            Err(PlaceOrderError::InvalidTiming { .. })
        ));
    }

    #[test]
    fn the_timelock_must_cover_arbitration_and_appeal_not_only_the_response() {
        // 8 days to delivery + 3 review + 2 response + 2 × 2 decision + 2 appeal
        // + 2 appeal decision = 21 days; a 20-day timelock less a 3-day margin
        // leaves 17: enough for the response alone, not for arbitration.
        let mut input = input();
        input.timing.timelock = Some(TimelockTiming {
            timelock: ChainTimelock {
                blocks: 2_880,
                margin_blocks: 432,
            },
            block_interval: Duration::minutes(10),
        });
        assert!(matches!(
            place_order(input.clone(), now()),
            Err(PlaceOrderError::TimelockTooShort { .. })
        ));
        assert_eq!(input.timing.longest_path(), Duration::days(21));
        let terms = {
            let mut fits = input.clone();
            fits.timing.timelock = Some(TimelockTiming {
                timelock: ChainTimelock {
                    blocks: 3_456,
                    margin_blocks: 432,
                },
                block_interval: Duration::minutes(10),
            });
            place_order(fits, now()).unwrap()
        };
        assert_eq!(terms.deadlines().longest_path(now()), Duration::days(21));
    }

    #[test]
    fn a_release_grace_longer_than_the_dispute_tail_sizes_the_timelock() {
        let mut input = input();
        input.timing.release_signing_grace = Duration::days(30);
        assert_eq!(input.timing.longest_path(), Duration::days(8 + 3 + 30));
    }

    #[test]
    fn chains_without_a_timelock_need_no_margin() {
        let mut input = input();
        input.timing.timelock = None;
        input.listing.asset = Asset::Xrp;
        input.listing.pricing = PricingSnapshot::Fixed { price: 5_000_000 };
        input.fees.arbitration_fee_fixed = Amount::new(Asset::Xrp, 0).unwrap();
        let terms = place_order(input, now()).unwrap();
        assert_eq!(terms.deadlines().timelock, None);
        assert_eq!(terms.asset(), Asset::Xrp);
    }
}
