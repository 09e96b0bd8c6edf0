//! The arbitrator signing policy: each allowed rule, and the refusals.

use super::*;
use crate::escrow::policy::{may_arbitrator_sign, PolicyError, SigningRule};
use crate::escrow::state::{Outcome, Payout, PayoutBasis};

fn paying_out(basis: PayoutBasis) -> EscrowState {
    let t = terms();
    EscrowState::PayingOut {
        funding: funding(),
        payout: Payout {
            basis,
            plan: crate::escrow::plan::PayoutPlan::new(
                basis.outcome(),
                sats(DUE),
                t.amount_due,
                t.fees.commission_bps,
                0,
            ),
            prepared_at: hours(100),
            txid: None,
        },
    }
}

fn check(
    state: &EscrowState,
    outcome: Outcome,
    now_hours: i64,
) -> Result<SigningRule, PolicyError> {
    may_arbitrator_sign(state, outcome, &ctx(Actor::System, hours(now_hours)))
}

#[test]
fn a_mutual_cancel_may_be_refunded() {
    let state = paying_out(PayoutBasis::MutualCancel {
        proposed_by: Party::Buyer,
        accepted_by: Party::Provider,
    });
    assert_eq!(
        check(&state, Outcome::Refund, 60),
        Ok(SigningRule::MutualCancel)
    );
}

#[test]
fn a_cancel_agreed_by_one_party_alone_is_refused() {
    let state = paying_out(PayoutBasis::MutualCancel {
        proposed_by: Party::Buyer,
        accepted_by: Party::Buyer,
    });
    assert_eq!(
        check(&state, Outcome::Refund, 60),
        Err(PolicyError::NotMutual)
    );
}

#[test]
fn a_passed_review_window_may_be_released_but_not_early() {
    let state = paying_out(PayoutBasis::ReviewWindowPassed {
        delivered_at: hours(48),
    });
    assert_eq!(
        check(&state, Outcome::Release, 121),
        Ok(SigningRule::ReviewWindowPassed)
    );
    assert_eq!(
        check(&state, Outcome::Release, 120),
        Err(PolicyError::TooEarly {
            deadline: hours(120)
        })
    );
}

#[test]
fn a_passed_delivery_deadline_may_be_refunded_but_not_early() {
    let state = paying_out(PayoutBasis::DeliveryDeadlinePassed);
    assert_eq!(
        check(&state, Outcome::Refund, 193),
        Ok(SigningRule::DeliveryDeadlinePassed)
    );
    assert_eq!(
        check(&state, Outcome::Refund, 192),
        Err(PolicyError::TooEarly {
            deadline: hours(192)
        })
    );
}

#[test]
fn late_funds_are_refunded_under_the_delivery_deadline_rule() {
    let state = paying_out(PayoutBasis::LateFunds);
    assert_eq!(
        check(&state, Outcome::Refund, 193),
        Ok(SigningRule::DeliveryDeadlinePassed)
    );
    assert!(matches!(
        check(&state, Outcome::Refund, 30),
        Err(PolicyError::TooEarly { .. })
    ));
}

#[test]
fn an_arbitration_decision_may_be_paid_exactly_as_decided() {
    let split = Outcome::Split {
        provider_bps: bps(7_000),
    };
    let state = paying_out(PayoutBasis::ArbitrationDecision {
        provider_bps: bps(7_000),
        decided_at: hours(100),
    });
    assert_eq!(
        check(&state, split, 100),
        Ok(SigningRule::ArbitrationDecision {
            provider_bps: bps(7_000)
        })
    );
    for other in [
        Outcome::Release,
        Outcome::Refund,
        Outcome::Split {
            provider_bps: bps(7_001),
        },
    ] {
        assert_eq!(
            check(&state, other, 100),
            Err(PolicyError::OutcomeMismatch {
                prepared: split,
                requested: other
            })
        );
    }
}

#[test]
fn a_buyer_release_is_signed_by_the_parties_while_the_grace_lasts() {
    let state = paying_out(PayoutBasis::BuyerReleased { at: hours(30) });
    // The grace is one day: until hour 54 the buyer is expected to sign.
    assert_eq!(
        check(&state, Outcome::Release, 54),
        Err(PolicyError::PartiesSign { until: hours(54) })
    );
    assert_eq!(
        check(&state, Outcome::Release, 30),
        Err(PolicyError::PartiesSign { until: hours(54) })
    );
}

#[test]
fn a_release_the_buyer_left_unsigned_is_co_signed_after_the_grace() {
    let state = paying_out(PayoutBasis::BuyerReleased { at: hours(30) });
    assert_eq!(
        check(&state, Outcome::Release, 55),
        Ok(SigningRule::UnsignedRelease)
    );
    // Never for another outcome than the release the buyer asked for.
    assert!(matches!(
        check(&state, Outcome::Refund, 55),
        Err(PolicyError::OutcomeMismatch { .. })
    ));
}

#[test]
fn stray_funds_are_refunded_whole_to_the_buyer_less_the_fee() {
    use crate::escrow::policy::{may_sign_stray_refund, StrayRefund};
    assert_eq!(
        may_sign_stray_refund(&StrayRefund::new(700, 500, false, false), 300),
        Ok(SigningRule::StrayRefund { amount: 500 })
    );
    // A fee above the bound, accepted funding among the inputs, another
    // recipient, or nothing for the buyer: refused.
    for refused in [
        StrayRefund::new(700, 300, false, false),
        StrayRefund::new(700, 500, true, false),
        StrayRefund::new(700, 500, false, true),
        StrayRefund::new(700, 0, false, false),
        StrayRefund::new(700, 800, false, false),
    ] {
        assert_eq!(
            may_sign_stray_refund(&refused, 300),
            Err(PolicyError::NotAStrayRefund),
            "{refused:?}"
        );
    }
}

#[test]
fn an_outcome_other_than_the_prepared_one_is_refused() {
    let state = paying_out(PayoutBasis::DeliveryDeadlinePassed);
    assert!(matches!(
        check(&state, Outcome::Release, 300),
        Err(PolicyError::OutcomeMismatch { .. })
    ));
}

#[test]
fn nothing_is_signed_without_a_prepared_payout() {
    for state in [
        EscrowState::new(),
        funded(),
        delivered(),
        disputed(),
        cancelling(Party::Buyer, None),
    ] {
        for outcome in [Outcome::Release, Outcome::Refund] {
            assert_eq!(
                check(&state, outcome, 1_000),
                Err(PolicyError::NoPayoutPrepared {
                    state: state.name()
                })
            );
        }
    }
}

#[test]
fn nothing_is_signed_after_settlement() {
    let state = EscrowState::Settled {
        outcome: crate::escrow::state::Settled::Released,
        by: crate::escrow::state::SettledBy::Payout { txid: "tx".into() },
        at: hours(200),
    };
    assert_eq!(
        check(&state, Outcome::Release, 300),
        Err(PolicyError::AlreadySettled)
    );
}

#[test]
fn a_corrupt_plan_that_disagrees_with_its_basis_is_refused() {
    let mut state = paying_out(PayoutBasis::DeliveryDeadlinePassed);
    if let EscrowState::PayingOut { payout, .. } = &mut state {
        payout.plan =
            crate::escrow::plan::PayoutPlan::new(Outcome::Release, sats(DUE), sats(DUE), bps(0), 0);
    }
    assert!(matches!(
        check(&state, Outcome::Refund, 300),
        Err(PolicyError::OutcomeMismatch { .. })
    ));
}

#[test]
fn a_provider_settlement_of_at_most_the_latest_claim_may_be_cosigned() {
    let settle = |claimed: u64, latest: u64, service_cosigns: bool| {
        let t = terms();
        EscrowState::PayingOut {
            funding: funding(),
            payout: Payout {
                basis: PayoutBasis::ClaimSettled {
                    claimed: sats(claimed),
                    latest_claim: sats(latest),
                    service_cosigns,
                    at: hours(50),
                },
                plan: crate::escrow::plan::PayoutPlan::claim(
                    Outcome::Release,
                    sats(DUE),
                    sats(claimed),
                    t.fees.commission_bps,
                ),
                prepared_at: hours(50),
                txid: None,
            },
        }
    };
    assert_eq!(
        check(&settle(1_000, 2_000, true), Outcome::Release, 50),
        Ok(SigningRule::LatestClaim { claimed: 1_000 })
    );
    assert_eq!(
        check(&settle(2_000, 2_000, true), Outcome::Release, 50),
        Ok(SigningRule::LatestClaim { claimed: 2_000 })
    );
    assert_eq!(
        check(&settle(2_001, 2_000, true), Outcome::Release, 50),
        Err(PolicyError::AboveLatestClaim { claimed: 2_001, latest: 2_000 })
    );
    assert_eq!(
        check(&settle(1_000, 2_000, false), Outcome::Release, 50),
        Err(PolicyError::ProviderSigns)
    );
    assert!(check(&settle(1_000, 2_000, true), Outcome::Refund, 50).is_err());
}

#[test]
fn a_claim_plan_that_pays_more_than_the_basis_says_is_refused() {
    let t = terms();
    let state = EscrowState::PayingOut {
        funding: funding(),
        payout: Payout {
            basis: PayoutBasis::ClaimSettled {
                claimed: sats(1_000),
                latest_claim: sats(1_000),
                service_cosigns: true,
                at: hours(50),
            },
            plan: crate::escrow::plan::PayoutPlan::claim(Outcome::Release, sats(DUE), sats(5_000), t.fees.commission_bps),
            prepared_at: hours(50),
            txid: None,
        },
    };
    assert!(matches!(check(&state, Outcome::Release, 50), Err(PolicyError::AboveLatestClaim { .. })));
}
