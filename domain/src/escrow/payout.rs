//! How an escrow's funds are divided when it pays out, independent of the chain.
//!
//! Order of deductions, from the funded total `T`:
//! 1. the chain's network fee `F` (the chain adapter computes it from the
//!    transaction's size and the fee rate);
//! 2. the arbitration fee (disputed orders only), capped at what is left so it
//!    never exceeds what is in escrow;
//! 3. the rest, the *pool*, is split: the provider's gross share is
//!    `floor(pool × provider_bps / 10 000)`, the buyer gets `pool − provider gross`
//!    (so the rounding remainder of at most one unit favours the buyer, who paid);
//! 4. the marketplace commission is `floor(provider gross × commission_bps / 10 000)`,
//!    taken from the provider's share only (the buyer's refund is never charged).
//!
//! The marketplace output carries commission + arbitration fee.
//! `provider + buyer + marketplace + network fee == T` always holds.

use serde::{Deserialize, Serialize};

use crate::money::BasisPoints;

/// What the outcome of an escrow pays, as fractions and fees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutTerms {
    /// Share of the pool that goes to the provider: 10 000 for a release,
    /// 0 for a refund, anything in between for a split.
    pub provider_bps: BasisPoints,
    /// Marketplace commission on the provider's gross share.
    pub commission_bps: BasisPoints,
    /// Arbitration fee in minor units (0 when there was no dispute); capped.
    pub arbitration_fee: u64,
}

/// The exact amounts a payout pays, in minor units of the escrow's asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutBreakdown {
    pub provider: u64,
    pub buyer: u64,
    pub commission: u64,
    /// The arbitration fee actually charged (after the cap).
    pub arbitration_fee: u64,
    pub network_fee: u64,
}

impl PayoutBreakdown {
    /// What the marketplace output receives: commission plus arbitration fee.
    pub fn marketplace(&self) -> u64 {
        self.commission + self.arbitration_fee
    }

    /// Everything this payout spends, fee included.
    pub fn total(&self) -> u64 {
        self.provider + self.buyer + self.marketplace() + self.network_fee
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayoutError {
    #[error("the network fee ({fee}) is not below the funded amount ({funded})")]
    FeeExceedsFunds { funded: u64, fee: u64 },
    #[error("a claim of {claimed} plus the network fee ({fee}) exceeds the funded amount ({funded})")]
    ClaimExceedsFunds { funded: u64, claimed: u64, fee: u64 },
}

/// Divides `funded` for a metered claim of `claimed` (the provider's gross,
/// the cumulative usage the buyer signed for). Order of deductions:
/// 1. the provider's gross is exactly `claimed`;
/// 2. the marketplace commission `floor(claimed × commission_bps / 10 000)` is
///    taken from it (rounding favours the provider by less than one unit);
/// 3. the network fee is paid from the buyer's remainder: the buyer gets
///    `funded − claimed − network_fee` (so over-funding also returns to the buyer).
///
/// `claimed + network_fee ≤ funded` is required; `total() == funded` always holds.
pub fn claim_split(
    funded: u64,
    claimed: u64,
    network_fee: u64,
    commission_bps: BasisPoints,
) -> Result<PayoutBreakdown, PayoutError> {
    let spent = claimed
        .checked_add(network_fee)
        .filter(|spent| *spent <= funded)
        .ok_or(PayoutError::ClaimExceedsFunds {
            funded,
            claimed,
            fee: network_fee,
        })?;
    let commission = mul_bps_floor(claimed, commission_bps);
    Ok(PayoutBreakdown {
        provider: claimed - commission,
        buyer: funded - spent,
        commission,
        arbitration_fee: 0,
        network_fee,
    })
}

/// Divides `funded` minor units according to `terms`, after `network_fee`.
pub fn split(
    funded: u64,
    network_fee: u64,
    terms: &PayoutTerms,
) -> Result<PayoutBreakdown, PayoutError> {
    if network_fee >= funded {
        return Err(PayoutError::FeeExceedsFunds {
            funded,
            fee: network_fee,
        });
    }
    let after_fee = funded - network_fee;
    let arbitration_fee = terms.arbitration_fee.min(after_fee);
    let pool = after_fee - arbitration_fee;
    let provider_gross = mul_bps_floor(pool, terms.provider_bps);
    let buyer = pool - provider_gross;
    let commission = mul_bps_floor(provider_gross, terms.commission_bps);
    Ok(PayoutBreakdown {
        provider: provider_gross - commission,
        buyer,
        commission,
        arbitration_fee,
        network_fee,
    })
}

fn mul_bps_floor(value: u64, bps: BasisPoints) -> u64 {
    // bps ≤ 10 000, so the result is ≤ value and fits in u64.
    (u128::from(value) * u128::from(bps.get()) / 10_000) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bps(v: i64) -> BasisPoints {
        BasisPoints::new(v).unwrap()
    }

    #[test]
    fn release_pays_provider_minus_commission() {
        let terms = PayoutTerms {
            provider_bps: BasisPoints::FULL,
            commission_bps: bps(250),
            arbitration_fee: 0,
        };
        let b = split(100_000, 1_000, &terms).unwrap();
        assert_eq!(b.commission, 2_475);
        assert_eq!(b.provider, 96_525);
        assert_eq!(b.buyer, 0);
        assert_eq!(b.total(), 100_000);
    }

    #[test]
    fn refund_charges_no_commission() {
        let terms = PayoutTerms {
            provider_bps: BasisPoints::ZERO,
            commission_bps: bps(250),
            arbitration_fee: 0,
        };
        let b = split(100_000, 1_000, &terms).unwrap();
        assert_eq!((b.provider, b.buyer, b.commission), (0, 99_000, 0));
    }

    #[test]
    fn split_rounding_remainder_goes_to_the_buyer() {
        let terms = PayoutTerms {
            provider_bps: bps(3_333),
            commission_bps: BasisPoints::ZERO,
            arbitration_fee: 0,
        };
        let b = split(1_001, 0, &terms).unwrap();
        assert_eq!(b.provider, 333); // floor(1001 × 0.3333) = 333.6…
        assert_eq!(b.buyer, 668);
    }

    #[test]
    fn arbitration_fee_is_capped_at_what_is_left() {
        let terms = PayoutTerms {
            provider_bps: bps(5_000),
            commission_bps: bps(250),
            arbitration_fee: 1_000_000,
        };
        let b = split(10_000, 500, &terms).unwrap();
        assert_eq!(b.arbitration_fee, 9_500);
        assert_eq!((b.provider, b.buyer, b.commission), (0, 0, 0));
        assert_eq!(b.total(), 10_000);
    }

    #[test]
    fn a_fee_as_large_as_the_funds_is_an_error() {
        let terms = PayoutTerms {
            provider_bps: BasisPoints::FULL,
            commission_bps: BasisPoints::ZERO,
            arbitration_fee: 0,
        };
        assert_eq!(
            split(500, 500, &terms),
            Err(PayoutError::FeeExceedsFunds { funded: 500, fee: 500 })
        );
    }

    #[test]
    fn a_claim_pays_the_provider_net_of_commission_and_the_buyer_pays_the_fee() {
        let b = claim_split(100_000, 40_000, 1_000, bps(250)).unwrap();
        assert_eq!((b.provider, b.commission, b.buyer, b.network_fee), (39_000, 1_000, 59_000, 1_000));
        assert_eq!(b.total(), 100_000);
        assert_eq!(
            claim_split(100_000, 99_500, 1_000, bps(250)),
            Err(PayoutError::ClaimExceedsFunds { funded: 100_000, claimed: 99_500, fee: 1_000 })
        );
    }

    proptest! {
        #[test]
        fn a_claim_spends_exactly_what_was_funded_and_pays_at_most_the_claim(
            funded in 1u64..=2_100_000_000_000_000,
            claimed in 0u64..=2_100_000_000_000_000,
            fee in 0u64..100_000,
            commission_bps in 0i64..=10_000,
        ) {
            match claim_split(funded, claimed, fee, bps(commission_bps)) {
                Ok(b) => {
                    prop_assert_eq!(b.total(), funded);
                    prop_assert_eq!(b.provider + b.commission, claimed);
                    prop_assert!(claimed + fee <= funded);
                }
                Err(_) => prop_assert!(claimed + fee > funded),
            }
        }

        #[test]
        fn a_payout_spends_exactly_what_was_funded(
            funded in 1u64..=2_100_000_000_000_000,
            fee_part in 0u64..10_000,
            provider_bps in 0i64..=10_000,
            commission_bps in 0i64..=10_000,
            arbitration_fee in 0u64..=2_100_000_000_000_000,
        ) {
            let fee = funded.saturating_sub(1).min(fee_part);
            let terms = PayoutTerms {
                provider_bps: bps(provider_bps),
                commission_bps: bps(commission_bps),
                arbitration_fee,
            };
            let b = split(funded, fee, &terms).unwrap();
            prop_assert_eq!(b.total(), funded);
            prop_assert!(b.arbitration_fee <= arbitration_fee);
        }
    }
}
