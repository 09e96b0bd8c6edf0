//! When the marketplace's (arbitrator's) key may co-sign a payout (DESIGN §3).
//!
//! The key is the third key of a 2-of-3 escrow: with either party's signature
//! it moves the funds, so it signs only outcomes the rules already decided:
//! - a mutual cancel both parties agreed to → refund;
//! - the review window passed after a delivery, without a dispute → release;
//! - the delivery deadline passed without a delivery → refund (this also
//!   covers funds that reached an expired order: nothing was delivered);
//! - a recorded arbitration decision → exactly that split;
//! - no decision in time even after escalation → refund (the state machine
//!   checked the deadline when it prepared the payout);
//! - a provider's settlement that pays at most the buyer's latest valid claim,
//!   when the provider asked the marketplace to complete it.
//!
//! - stray funds (outside the accepted funding) → back to the buyer, whole
//!   but for the network fee ([`may_sign_stray_refund`]);
//! - a release the buyer asked for, once the buyer left it unsigned through
//!   the release signing grace (the provider signs the other half).
//!
//! Everything else is refused with a reason. In particular a buyer's release
//! is signed by buyer and provider while the grace lasts.
//! The signer calls [`may_arbitrator_sign`] again on the stored state right
//! before signing, and checks that the transaction pays what the plan says.

use serde::{Deserialize, Serialize};

use super::deadlines::passed;
use super::machine::Context;
use super::state::{EscrowState, Outcome, PayoutBasis};
use crate::money::BasisPoints;

/// The rule under which the arbitrator key may sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigningRule {
    /// The buyer released the funds and stayed silent through the grace period.
    UnsignedRelease,
    MutualCancel,
    ReviewWindowPassed,
    DeliveryDeadlinePassed,
    ArbitrationDecision { provider_bps: BasisPoints },
    /// The provider's settlement of a metered session, paying `claimed`
    /// (gross) — at most the buyer's latest valid claim.
    LatestClaim { claimed: u64 },
    /// Funds that reached the escrow outside its accepted funding, returned
    /// to the buyer (`amount` after the network fee).
    StrayRefund { amount: u64 },
    /// No decision came in time, even after escalation: a refund.
    ArbitrationLapsed,
    /// A funded metered XRPL order's payment channel to the provider, whose
    /// claims only the buyer's key signs (`amount` drops).
    ChannelOpen { amount: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("no payout is prepared (the escrow is {state})")]
    NoPayoutPrepared { state: &'static str },
    #[error("the escrow is already settled")]
    AlreadySettled,
    #[error("the prepared payout is {prepared:?}, not {requested:?}")]
    OutcomeMismatch {
        prepared: Outcome,
        requested: Outcome,
    },
    #[error("the buyer released the funds: buyer and provider sign until {until}")]
    PartiesSign {
        until: chrono::DateTime<chrono::Utc>,
    },
    #[error("not before {deadline}")]
    TooEarly {
        deadline: chrono::DateTime<chrono::Utc>,
    },
    #[error("a cancel needs both parties")]
    NotMutual,
    #[error("the provider completes this settlement with its own key")]
    ProviderSigns,
    #[error("the settlement pays {claimed}, more than the buyer's latest claim ({latest})")]
    AboveLatestClaim { claimed: u64, latest: u64 },
    #[error("a stray-funds refund spends only stray outputs and pays them to the buyer, less the fee")]
    NotAStrayRefund,
    #[error("a payment channel opens only from a funded metered escrow, to the provider, with the buyer's claim key, within the deposit and with at least the minimum settle delay ({0})")]
    NotAChannelOpen(&'static str),
}

/// Whether the arbitrator key may co-sign a payout of `outcome` for an escrow
/// in `state`, and under which rule. Only `ctx.now` and `ctx.terms` are used.
pub fn may_arbitrator_sign(
    state: &EscrowState,
    outcome: Outcome,
    ctx: &Context,
) -> Result<SigningRule, PolicyError> {
    let payout = match state {
        EscrowState::PayingOut { payout, .. } => payout,
        EscrowState::Settled { .. } => return Err(PolicyError::AlreadySettled),
        other => {
            return Err(PolicyError::NoPayoutPrepared {
                state: other.name(),
            })
        }
    };
    let prepared = payout.outcome();
    // The plan's outcome is derived from the basis when it is built; a stored
    // state where they differ is corrupt and signs nothing.
    for candidate in [prepared, payout.plan.outcome()] {
        if candidate != outcome {
            return Err(PolicyError::OutcomeMismatch {
                prepared: candidate,
                requested: outcome,
            });
        }
    }
    let deadlines = &ctx.terms.deadlines;
    match payout.basis {
        PayoutBasis::BuyerReleased { at } => {
            let ends = deadlines.release_signing_ends(at);
            if passed(ctx.now, ends) {
                Ok(SigningRule::UnsignedRelease)
            } else {
                Err(PolicyError::PartiesSign { until: ends })
            }
        }
        PayoutBasis::ReviewWindowPassed { delivered_at } => {
            let review_ends = deadlines.review_ends(delivered_at);
            if passed(ctx.now, review_ends) {
                Ok(SigningRule::ReviewWindowPassed)
            } else {
                Err(PolicyError::TooEarly {
                    deadline: review_ends,
                })
            }
        }
        PayoutBasis::DeliveryDeadlinePassed | PayoutBasis::LateFunds => {
            if passed(ctx.now, deadlines.delivery_by) {
                Ok(SigningRule::DeliveryDeadlinePassed)
            } else {
                Err(PolicyError::TooEarly {
                    deadline: deadlines.delivery_by,
                })
            }
        }
        PayoutBasis::MutualCancel {
            proposed_by,
            accepted_by,
        } => {
            if proposed_by == accepted_by {
                Err(PolicyError::NotMutual)
            } else {
                Ok(SigningRule::MutualCancel)
            }
        }
        PayoutBasis::ArbitrationDecision { provider_bps, .. } => {
            Ok(SigningRule::ArbitrationDecision { provider_bps })
        }
        PayoutBasis::ArbitrationLapsed { .. } => Ok(SigningRule::ArbitrationLapsed),
        PayoutBasis::ClaimSettled {
            claimed,
            latest_claim,
            service_cosigns,
            ..
        } => {
            if !service_cosigns {
                return Err(PolicyError::ProviderSigns);
            }
            // The plan must pay exactly the settled amount, and that amount
            // at most the latest claim and the deposit.
            let paid = payout.plan.claimed().unwrap_or(u64::MAX);
            let latest = latest_claim.minor().min(ctx.terms.amount_due.minor());
            if paid != claimed.minor() || paid > latest {
                return Err(PolicyError::AboveLatestClaim {
                    claimed: paid,
                    latest,
                });
            }
            Ok(SigningRule::LatestClaim { claimed: paid })
        }
    }
}

/// A refund of deposits that reached the escrow outside its accepted funding
/// (after the funding was frozen, or after the escrow settled), as built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StrayRefund {
    /// What the spent stray outputs hold together.
    pub total: u64,
    /// What the refund pays to the buyer's refund address.
    pub to_buyer: u64,
    /// Whether any input is part of the accepted funding (never allowed).
    pub spends_accepted_funding: bool,
    /// Whether any output pays someone other than the buyer.
    pays_others: bool,
}

impl StrayRefund {
    pub const fn new(total: u64, to_buyer: u64, spends_accepted_funding: bool, pays_others: bool) -> Self {
        Self {
            total,
            to_buyer,
            spends_accepted_funding,
            pays_others,
        }
    }
}

/// Whether the marketplace key may co-sign `refund`: stray funds go back to
/// the buyer whole, less only the network fee (`max_fee` at most), and a
/// stray refund never touches the accepted funding.
pub fn may_sign_stray_refund(refund: &StrayRefund, max_fee: u64) -> Result<SigningRule, PolicyError> {
    if refund.spends_accepted_funding || refund.pays_others {
        return Err(PolicyError::NotAStrayRefund);
    }
    let fee = refund.total.saturating_sub(refund.to_buyer);
    if refund.to_buyer == 0 || refund.to_buyer > refund.total || fee > max_fee {
        return Err(PolicyError::NotAStrayRefund);
    }
    Ok(SigningRule::StrayRefund {
        amount: refund.to_buyer,
    })
}

/// What the marketplace key is asked to sign when a metered escrow opens its
/// payment channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelOpen {
    /// The order is funded and not yet paying out.
    pub funded: bool,
    pub metered: bool,
    /// The channel's destination is the provider's payout destination.
    pub to_provider: bool,
    /// The channel's claim key is the buyer's escrow key.
    pub buyer_claim_key: bool,
    /// No `CancelAfter` and no `Expiration`: claims never expire.
    pub never_expires: bool,
    pub amount: u64,
    /// What the escrow holds for the order (its deposit).
    pub deposit: u64,
    pub settle_delay_secs: u32,
    pub min_settle_delay_secs: u32,
}

/// Whether the marketplace key may co-sign `open`: only a funded metered
/// escrow's channel to its provider, claimed by the buyer's key alone, within
/// the deposit, never expiring, and with a settle delay that leaves the
/// provider time to redeem its latest claim before the escrow can close it.
pub fn may_sign_channel_open(open: &ChannelOpen) -> Result<SigningRule, PolicyError> {
    let refuse = PolicyError::NotAChannelOpen;
    if !open.funded || !open.metered {
        return Err(refuse("the order is not a funded metered order"));
    }
    if !open.to_provider {
        return Err(refuse("the destination is not the provider's"));
    }
    if !open.buyer_claim_key {
        return Err(refuse("the claim key is not the buyer's"));
    }
    if !open.never_expires {
        return Err(refuse("the channel would expire"));
    }
    if open.amount == 0 || open.amount > open.deposit {
        return Err(refuse("the amount is not within the deposit"));
    }
    if open.settle_delay_secs < open.min_settle_delay_secs {
        return Err(refuse("the settle delay is too short"));
    }
    Ok(SigningRule::ChannelOpen { amount: open.amount })
}

#[cfg(test)]
mod channel_open_tests {
    use super::*;

    fn open() -> ChannelOpen {
        ChannelOpen {
            funded: true,
            metered: true,
            to_provider: true,
            buyer_claim_key: true,
            never_expires: true,
            amount: 9_000,
            deposit: 10_000,
            settle_delay_secs: 3_600,
            min_settle_delay_secs: 600,
        }
    }

    #[test]
    fn the_marketplace_signs_only_a_funded_metered_channel_to_the_provider_claimed_by_the_buyer() {
        assert_eq!(may_sign_channel_open(&open()), Ok(SigningRule::ChannelOpen { amount: 9_000 }));
        let refusals: [fn(&mut ChannelOpen); 8] = [
            |o| o.funded = false,
            |o| o.metered = false,
            |o| o.to_provider = false,
            |o| o.buyer_claim_key = false,
            |o| o.never_expires = false,
            |o| o.amount = 10_001,
            |o| o.amount = 0,
            |o| o.settle_delay_secs = 599,
        ];
        for (i, change) in refusals.iter().enumerate() {
            let mut o = open();
            change(&mut o);
            assert!(matches!(may_sign_channel_open(&o), Err(PolicyError::NotAChannelOpen(_))), "case {i}");
        }
    }
}
