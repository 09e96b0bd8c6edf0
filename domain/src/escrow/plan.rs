//! What a prepared payout will pay, before the chain adapter knows the network fee.
//!
//! Over-funding: the escrow may hold more than the amount due (a buyer who
//! sent too much). The excess is the buyer's own money, so every plan returns
//! it to the buyer on top of the buyer's share, and only the amount due is
//! split by [`super::payout::split`] (fees, commission, arbitration fee).
//! The network fee is deducted from the amount due before the split, so both
//! parties bear it in proportion to their share, as `split` documents.

use serde::{Deserialize, Serialize};

use super::payout::{claim_split, split, PayoutBreakdown, PayoutError, PayoutTerms};
use super::state::Outcome;
use crate::money::{Amount, BasisPoints};

/// The fees frozen into an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeSchedule {
    /// Marketplace commission on the provider's gross share.
    pub commission_bps: BasisPoints,
    /// Fixed part of the arbitration fee, charged only when a dispute is decided.
    pub arbitration_fee_fixed: Amount,
    /// Proportional part of the arbitration fee, on the amount due.
    pub arbitration_fee_bps: BasisPoints,
}

impl FeeSchedule {
    /// The arbitration fee on an order of `amount_due`: fixed + bps, rounded
    /// down. [`split`] caps it at what the escrow holds.
    pub fn arbitration_fee(&self, amount_due: Amount) -> u64 {
        self.arbitration_fee_fixed
            .minor()
            .saturating_add(amount_due.mul_bps_floor(self.arbitration_fee_bps).minor())
    }
}

/// A payout to be built by the chain adapter: the escrow's funds, the share
/// returned to the buyer first, and the terms for the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutPlan {
    outcome: Outcome,
    funded: Amount,
    excess_to_buyer: u64,
    terms: PayoutTerms,
    /// A metered settlement: the provider's gross is exactly this claim
    /// (see [`claim_split`]) instead of a share of the pool.
    #[serde(default)]
    claim: Option<u64>,
}

impl PayoutPlan {
    /// A plan paying `outcome` from `funded`, of which `amount_due` is the
    /// order's price; anything above it is returned to the buyer.
    pub(crate) fn new(
        outcome: Outcome,
        funded: Amount,
        amount_due: Amount,
        commission_bps: BasisPoints,
        arbitration_fee: u64,
    ) -> Self {
        Self {
            outcome,
            funded,
            excess_to_buyer: funded.minor().saturating_sub(amount_due.minor()),
            terms: PayoutTerms {
                provider_bps: outcome.provider_bps(),
                commission_bps,
                arbitration_fee,
            },
            claim: None,
        }
    }

    /// A plan paying the provider exactly `claimed` (gross, before commission)
    /// from `funded`, the rest to the buyer after the network fee.
    pub(crate) fn claim(outcome: Outcome, funded: Amount, claimed: Amount, commission_bps: BasisPoints) -> Self {
        Self {
            outcome,
            funded,
            excess_to_buyer: 0,
            terms: PayoutTerms {
                provider_bps: outcome.provider_bps(),
                commission_bps,
                arbitration_fee: 0,
            },
            claim: Some(claimed.minor()),
        }
    }

    /// The provider's gross of a metered settlement, if this is one.
    pub const fn claimed(&self) -> Option<u64> {
        self.claim
    }

    pub const fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// Everything the escrow holds, which is everything this payout spends.
    pub const fn funded(&self) -> Amount {
        self.funded
    }

    /// The over-funding returned to the buyer before the split.
    pub const fn excess_to_buyer(&self) -> u64 {
        self.excess_to_buyer
    }

    pub const fn terms(&self) -> &PayoutTerms {
        &self.terms
    }

    /// The exact amounts, once the chain adapter knows the network fee.
    /// `total() == funded` always holds.
    pub fn breakdown(&self, network_fee: u64) -> Result<PayoutBreakdown, PayoutError> {
        if let Some(claimed) = self.claim {
            return claim_split(self.funded.minor(), claimed, network_fee, self.terms.commission_bps);
        }
        // `min` keeps the invariant even for a plan deserialized from bad data.
        let excess = self.excess_to_buyer.min(self.funded.minor());
        let mut breakdown = split(self.funded.minor() - excess, network_fee, &self.terms)?;
        breakdown.buyer += excess;
        Ok(breakdown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Asset;

    fn sats(v: u64) -> Amount {
        Amount::new(Asset::Btc, v).unwrap()
    }

    #[test]
    fn over_funding_goes_back_to_the_buyer_on_release() {
        let plan = PayoutPlan::new(
            Outcome::Release,
            sats(120_000),
            sats(100_000),
            BasisPoints::new(250).unwrap(),
            0,
        );
        let b = plan.breakdown(1_000).unwrap();
        assert_eq!(b.buyer, 20_000);
        assert_eq!(b.commission, 2_475);
        assert_eq!(b.provider, 96_525);
        assert_eq!(b.total(), 120_000);
    }

    #[test]
    fn a_refund_returns_everything_but_the_network_fee() {
        let plan = PayoutPlan::new(
            Outcome::Refund,
            sats(120_000),
            sats(100_000),
            BasisPoints::new(250).unwrap(),
            0,
        );
        let b = plan.breakdown(1_000).unwrap();
        assert_eq!((b.buyer, b.provider, b.marketplace()), (119_000, 0, 0));
    }

    #[test]
    fn arbitration_fee_is_fixed_plus_bps_of_the_amount_due() {
        let fees = FeeSchedule {
            commission_bps: BasisPoints::ZERO,
            arbitration_fee_fixed: sats(1_000),
            arbitration_fee_bps: BasisPoints::new(100).unwrap(),
        };
        assert_eq!(fees.arbitration_fee(sats(50_000)), 1_500);
    }
}
