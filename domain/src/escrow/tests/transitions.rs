//! One test per transition: accepted, and refused for the wrong actor, the
//! wrong state, too early and too late.

use chrono::Duration;

use super::*;
use crate::escrow::deadlines::timelock_margin_reached;
use crate::escrow::machine::{Alert, Audience, Effect, ErrorKind, Notice};
use crate::escrow::plan::PayoutPlan;
use crate::escrow::policy::SigningRule;
use crate::escrow::state::{Outcome, PayoutBasis, PendingFunding, Settled, SettledBy};

fn plan_of(t: &Transition) -> Option<PayoutPlan> {
    t.effects.iter().find_map(|e| match e {
        Effect::PreparePayout { plan } => Some(*plan),
        _ => None,
    })
}

fn rule_of(t: &Transition) -> Option<SigningRule> {
    t.effects.iter().find_map(|e| match e {
        Effect::ArbitratorMaySign { rule, .. } => Some(*rule),
        _ => None,
    })
}

fn basis_of(state: &EscrowState) -> PayoutBasis {
    match state {
        EscrowState::PayingOut { payout, .. } => payout.basis,
        other => panic!("expected a prepared payout, got {}", other.name()),
    }
}

fn paying(basis: PayoutBasis) -> EscrowState {
    // Build it through the machine so the plan is the real one.
    let t = match basis {
        PayoutBasis::BuyerReleased { .. } => ok(
            &funded(),
            EscrowEvent::ReleaseFunds,
            Actor::Buyer,
            hours(30),
        ),
        PayoutBasis::ReviewWindowPassed { .. } => ok(
            &delivered(),
            EscrowEvent::ReviewWindowElapsed,
            Actor::System,
            hours(121),
        ),
        PayoutBasis::DeliveryDeadlinePassed => ok(
            &funded(),
            EscrowEvent::DeliveryDeadlinePassed,
            Actor::System,
            hours(193),
        ),
        PayoutBasis::MutualCancel { proposed_by, .. } => ok(
            &cancelling(proposed_by, None),
            EscrowEvent::AcceptCancel,
            proposed_by.other().actor(),
            hours(51),
        ),
        PayoutBasis::ArbitrationDecision { provider_bps, .. } => ok(
            &disputed(),
            EscrowEvent::Decide { provider_bps },
            Actor::Arbitrator,
            hours(100),
        ),
        PayoutBasis::ArbitrationLapsed { .. } => ok(
            &disputed(),
            EscrowEvent::ArbitrationLapsed,
            Actor::System,
            hours(10_000),
        ),
        PayoutBasis::ClaimSettled {
            claimed,
            latest_claim,
            service_cosigns,
            ..
        } => ok(
            &delivered(),
            EscrowEvent::SettleClaim {
                claimed,
                latest_claim,
                service_cosigns,
            },
            Actor::Provider,
            hours(60),
        ),
        PayoutBasis::LateFunds => ok(
            &EscrowState::Expired { at: hours(25) },
            funding_seen(DUE, CONFIRMATIONS),
            Actor::Chain,
            hours(30),
        ),
    };
    t.state
}

fn settled() -> EscrowState {
    let state = paying(PayoutBasis::BuyerReleased { at: hours(30) });
    ok(
        &state,
        EscrowEvent::PayoutConfirmed { txid: "tx".into() },
        Actor::Chain,
        hours(31),
    )
    .state
}

// ---------------------------------------------------------------- funding

#[test]
fn a_new_escrow_awaits_funding() {
    assert_eq!(
        EscrowState::new(),
        EscrowState::AwaitingFunding { seen: None }
    );
}

#[test]
fn confirmed_funding_of_the_amount_due_funds_the_escrow() {
    let t = ok(
        &EscrowState::new(),
        funding_seen(DUE, CONFIRMATIONS),
        Actor::Chain,
        hours(2),
    );
    assert_eq!(
        t.state,
        EscrowState::Funded {
            funding: Funding {
                amount: sats(DUE),
                height: FUNDING_HEIGHT,
                confirmed_at: hours(2)
            }
        }
    );
    assert!(t.effects.contains(&Effect::Notify {
        to: Audience::Parties,
        notice: Notice::Funded {
            amount: sats(DUE),
            excess: 0
        }
    }));
}

#[test]
fn funding_with_too_few_confirmations_waits_and_tells_the_buyer_once() {
    let t = ok(
        &EscrowState::new(),
        funding_seen(DUE, CONFIRMATIONS - 1),
        Actor::Chain,
        hours(1),
    );
    assert!(matches!(
        t.state,
        EscrowState::AwaitingFunding { seen: Some(_) }
    ));
    assert_eq!(t.effects.len(), 1);
    let again = ok(
        &t.state,
        funding_seen(DUE, CONFIRMATIONS - 1),
        Actor::Chain,
        hours(2),
    );
    assert!(again.effects.is_empty());
    // First sighting is kept, for the record.
    let EscrowState::AwaitingFunding {
        seen: Some(PendingFunding { first_seen_at, .. }),
    } = again.state
    else {
        panic!("still awaiting funding")
    };
    assert_eq!(first_seen_at, hours(1));
}

#[test]
fn underfunding_stays_awaiting_funding_and_tells_the_buyer() {
    let t = ok(
        &EscrowState::new(),
        funding_seen(DUE - 1, CONFIRMATIONS),
        Actor::Chain,
        hours(2),
    );
    assert!(matches!(
        t.state,
        EscrowState::AwaitingFunding { seen: Some(_) }
    ));
    assert_eq!(
        t.effects,
        vec![Effect::Notify {
            to: Audience::Buyer,
            notice: Notice::Underfunded {
                received: sats(DUE - 1),
                due: sats(DUE)
            }
        }]
    );
    // A top-up completes it.
    let t = ok(
        &t.state,
        funding_seen(DUE, CONFIRMATIONS),
        Actor::Chain,
        hours(3),
    );
    assert!(matches!(t.state, EscrowState::Funded { .. }));
}

#[test]
fn overfunding_is_accepted_and_the_excess_goes_back_to_the_buyer() {
    let t = ok(
        &EscrowState::new(),
        funding_seen(DUE + 20_000, CONFIRMATIONS),
        Actor::Chain,
        hours(2),
    );
    assert!(t.effects.iter().any(|e| matches!(
        e,
        Effect::Notify {
            notice: Notice::Funded { excess: 20_000, .. },
            ..
        }
    )));
    let t = ok(&t.state, EscrowEvent::ReleaseFunds, Actor::Buyer, hours(3));
    let plan = plan_of(&t).unwrap();
    assert_eq!(plan.funded(), sats(DUE + 20_000));
    assert_eq!(plan.excess_to_buyer(), 20_000);
    let b = plan.breakdown(1_000).unwrap();
    assert_eq!(b.buyer, 20_000);
    assert_eq!(b.total(), DUE + 20_000);
}

#[test]
fn funding_in_another_asset_is_refused() {
    let event = EscrowEvent::FundingSeen {
        amount: Amount::new(Asset::Xrp, DUE).unwrap(),
        confirmations: CONFIRMATIONS,
        funding_height: FUNDING_HEIGHT,
    };
    let e = refused(&EscrowState::new(), event, Actor::Chain, hours(2));
    assert_eq!(
        e,
        EscrowError::AssetMismatch {
            expected: Asset::Btc,
            got: Asset::Xrp
        }
    );
    assert_eq!(e.kind(), ErrorKind::Internal);
}

#[test]
fn only_the_chain_reports_funding() {
    for actor in [
        Actor::Buyer,
        Actor::Provider,
        Actor::Arbitrator,
        Actor::System,
    ] {
        let e = refused(
            &EscrowState::new(),
            funding_seen(DUE, CONFIRMATIONS),
            actor,
            hours(2),
        );
        assert!(matches!(e, EscrowError::WrongActor { got, .. } if got == actor));
        assert_eq!(e.kind(), ErrorKind::Forbidden);
    }
}

#[test]
fn funding_confirmed_after_the_funding_deadline_is_refunded_not_accepted() {
    let t = ok(
        &EscrowState::new(),
        funding_seen(DUE, CONFIRMATIONS),
        Actor::Chain,
        hours(25),
    );
    assert_eq!(basis_of(&t.state), PayoutBasis::LateFunds);
    let plan = plan_of(&t).unwrap();
    assert_eq!(plan.outcome(), Outcome::Refund);
    assert_eq!(plan.breakdown(500).unwrap().buyer, DUE - 500);
    // Before the delivery deadline the arbitrator cannot co-sign it yet.
    assert_eq!(rule_of(&t), None);
}

#[test]
fn funding_deadline_expires_an_unfunded_escrow() {
    let t = ok(
        &EscrowState::new(),
        EscrowEvent::FundingDeadlinePassed,
        Actor::System,
        hours(25),
    );
    assert_eq!(t.state, EscrowState::Expired { at: hours(25) });
    assert!(t.effects.contains(&Effect::Notify {
        to: Audience::Buyer,
        notice: Notice::Expired
    }));
}

#[test]
fn funding_deadline_is_not_passed_at_the_deadline_itself() {
    let e = refused(
        &EscrowState::new(),
        EscrowEvent::FundingDeadlinePassed,
        Actor::System,
        hours(24),
    );
    assert_eq!(
        e,
        EscrowError::DeadlineNotReached {
            deadline: hours(24)
        }
    );
}

#[test]
fn funding_deadline_refunds_confirmed_underfunding() {
    let t = ok(
        &EscrowState::new(),
        funding_seen(DUE / 2, CONFIRMATIONS),
        Actor::Chain,
        hours(2),
    );
    let t = ok(
        &t.state,
        EscrowEvent::FundingDeadlinePassed,
        Actor::System,
        hours(25),
    );
    assert_eq!(basis_of(&t.state), PayoutBasis::LateFunds);
    assert_eq!(plan_of(&t).unwrap().funded(), sats(DUE / 2));
}

#[test]
fn funding_deadline_does_not_apply_to_a_funded_escrow() {
    let e = refused(
        &funded(),
        EscrowEvent::FundingDeadlinePassed,
        Actor::System,
        hours(25),
    );
    assert!(matches!(
        e,
        EscrowError::WrongState {
            state: "Funded",
            event: "FundingDeadlinePassed"
        }
    ));
}

#[test]
fn late_funds_into_an_expired_escrow_are_refunded_never_accepted() {
    let expired = EscrowState::Expired { at: hours(25) };
    // Even within the original funding window (clock skew), never funded.
    for now in [hours(10), hours(30), hours(300)] {
        let t = ok(
            &expired,
            funding_seen(DUE * 2, CONFIRMATIONS),
            Actor::Chain,
            now,
        );
        assert_eq!(basis_of(&t.state), PayoutBasis::LateFunds);
        let plan = plan_of(&t).unwrap();
        assert_eq!(plan.breakdown(0).unwrap().buyer, DUE * 2);
    }
}

#[test]
fn unconfirmed_late_funds_leave_an_expired_escrow_alone() {
    let expired = EscrowState::Expired { at: hours(25) };
    let t = ok(&expired, funding_seen(DUE, 0), Actor::Chain, hours(30));
    assert_eq!(t.state, expired);
    assert!(t.effects.is_empty());
}

#[test]
fn users_cannot_act_on_an_expired_escrow() {
    let expired = EscrowState::Expired { at: hours(25) };
    let e = refused(&expired, EscrowEvent::ReleaseFunds, Actor::Buyer, hours(30));
    assert!(matches!(
        e,
        EscrowError::WrongState {
            state: "Expired",
            ..
        }
    ));
}

#[test]
fn a_funding_reorg_returns_a_funded_escrow_to_awaiting_funding() {
    let t = ok(
        &funded(),
        EscrowEvent::FundingReorged,
        Actor::Chain,
        hours(3),
    );
    assert_eq!(t.state, EscrowState::AwaitingFunding { seen: None });
    assert!(t
        .effects
        .iter()
        .any(|e| matches!(e, Effect::Alert(Alert::FundingReorged { .. }))));
}

#[test]
fn a_funding_reorg_after_delivery_only_alerts() {
    let t = ok(
        &delivered(),
        EscrowEvent::FundingReorged,
        Actor::Chain,
        hours(50),
    );
    assert_eq!(t.state, delivered());
    assert_eq!(
        t.effects,
        vec![Effect::Alert(Alert::FundingReorged {
            state: "Delivered".into()
        })]
    );
}

#[test]
fn a_changed_balance_after_funding_alerts_and_keeps_the_accepted_amount() {
    let t = ok(
        &funded(),
        funding_seen(DUE + 5, CONFIRMATIONS),
        Actor::Chain,
        hours(3),
    );
    assert_eq!(t.state, funded());
    assert_eq!(
        t.effects,
        vec![Effect::Alert(Alert::FundingChanged {
            recorded: sats(DUE),
            seen: sats(DUE + 5)
        })]
    );
}

#[test]
fn seeing_the_same_funding_again_is_a_no_op() {
    let t = ok(
        &delivered(),
        funding_seen(DUE, CONFIRMATIONS + 5),
        Actor::Chain,
        hours(50),
    );
    assert_eq!(t.state, delivered());
    assert!(t.effects.is_empty());
}

// --------------------------------------------------------------- delivery

#[test]
fn provider_marks_a_funded_order_delivered() {
    let t = ok(
        &funded(),
        EscrowEvent::MarkDelivered,
        Actor::Provider,
        hours(48),
    );
    assert_eq!(t.state, delivered());
    assert_eq!(
        t.effects,
        vec![Effect::Notify {
            to: Audience::Buyer,
            notice: Notice::Delivered {
                review_ends: hours(120)
            }
        }]
    );
}

#[test]
fn provider_may_deliver_at_the_delivery_deadline_itself() {
    ok(
        &funded(),
        EscrowEvent::MarkDelivered,
        Actor::Provider,
        hours(192),
    );
}

#[test]
fn provider_cannot_deliver_after_the_delivery_deadline() {
    let e = refused(
        &funded(),
        EscrowEvent::MarkDelivered,
        Actor::Provider,
        hours(192) + Duration::seconds(1),
    );
    assert_eq!(
        e,
        EscrowError::DeadlinePassed {
            deadline: hours(192)
        }
    );
    assert_eq!(e.kind(), ErrorKind::Conflict);
}

#[test]
fn buyer_cannot_mark_an_order_delivered() {
    let e = refused(
        &funded(),
        EscrowEvent::MarkDelivered,
        Actor::Buyer,
        hours(48),
    );
    assert_eq!(
        e,
        EscrowError::WrongActor {
            expected: &[Actor::Provider],
            got: Actor::Buyer
        }
    );
}

#[test]
fn provider_cannot_deliver_an_unfunded_order() {
    let e = refused(
        &EscrowState::new(),
        EscrowEvent::MarkDelivered,
        Actor::Provider,
        hours(2),
    );
    assert!(matches!(
        e,
        EscrowError::WrongState {
            state: "AwaitingFunding",
            event: "MarkDelivered"
        }
    ));
}

#[test]
fn provider_cannot_deliver_twice() {
    let e = refused(
        &delivered(),
        EscrowEvent::MarkDelivered,
        Actor::Provider,
        hours(50),
    );
    assert!(matches!(
        e,
        EscrowError::WrongState {
            state: "Delivered",
            ..
        }
    ));
}

// ---------------------------------------------------------------- release

#[test]
fn buyer_releases_a_delivered_escrow_without_the_arbitrator_key() {
    let t = ok(
        &delivered(),
        EscrowEvent::ReleaseFunds,
        Actor::Buyer,
        hours(50),
    );
    assert_eq!(
        basis_of(&t.state),
        PayoutBasis::BuyerReleased { at: hours(50) }
    );
    assert_eq!(t.state.name(), "Releasing");
    let plan = plan_of(&t).unwrap();
    assert_eq!(plan.outcome(), Outcome::Release);
    assert_eq!(plan.terms().arbitration_fee, 0);
    assert_eq!(rule_of(&t), None, "buyer and provider sign a release");
}

#[test]
fn buyer_may_release_before_delivery_and_during_a_cancel_proposal() {
    ok(
        &funded(),
        EscrowEvent::ReleaseFunds,
        Actor::Buyer,
        hours(30),
    );
    ok(
        &cancelling(Party::Provider, None),
        EscrowEvent::ReleaseFunds,
        Actor::Buyer,
        hours(51),
    );
}

#[test]
fn provider_cannot_release_funds() {
    let e = refused(
        &delivered(),
        EscrowEvent::ReleaseFunds,
        Actor::Provider,
        hours(50),
    );
    assert!(matches!(
        e,
        EscrowError::WrongActor {
            got: Actor::Provider,
            ..
        }
    ));
}

#[test]
fn buyer_cannot_release_an_unfunded_escrow() {
    let e = refused(
        &EscrowState::new(),
        EscrowEvent::ReleaseFunds,
        Actor::Buyer,
        hours(2),
    );
    assert!(matches!(
        e,
        EscrowError::WrongState {
            state: "AwaitingFunding",
            ..
        }
    ));
}

#[test]
fn buyer_cannot_release_a_disputed_escrow() {
    let e = refused(
        &disputed(),
        EscrowEvent::ReleaseFunds,
        Actor::Buyer,
        hours(70),
    );
    assert!(matches!(
        e,
        EscrowError::WrongState {
            state: "Disputed",
            ..
        }
    ));
}

#[test]
fn buyer_cannot_release_twice() {
    let state = paying(PayoutBasis::BuyerReleased { at: hours(30) });
    let e = refused(&state, EscrowEvent::ReleaseFunds, Actor::Buyer, hours(31));
    assert!(matches!(
        e,
        EscrowError::WrongState {
            state: "Releasing",
            ..
        }
    ));
}

// ----------------------------------------------------------------- refund

#[test]
fn buyer_cannot_request_a_refund_before_the_delivery_deadline() {
    for now in [hours(30), hours(192)] {
        let e = refused(&funded(), EscrowEvent::RequestRefund, Actor::Buyer, now);
        assert_eq!(
            e,
            EscrowError::DeadlineNotReached {
                deadline: hours(192)
            }
        );
    }
}

#[test]
fn buyer_gets_a_refund_after_the_delivery_deadline_without_delivery() {
    let t = ok(
        &funded(),
        EscrowEvent::RequestRefund,
        Actor::Buyer,
        hours(193),
    );
    assert_eq!(basis_of(&t.state), PayoutBasis::DeliveryDeadlinePassed);
    assert_eq!(t.state.name(), "Refunding");
    assert_eq!(plan_of(&t).unwrap().outcome(), Outcome::Refund);
    assert_eq!(rule_of(&t), Some(SigningRule::DeliveryDeadlinePassed));
}

#[test]
fn buyer_cannot_request_a_refund_after_delivery() {
    let e = refused(
        &delivered(),
        EscrowEvent::RequestRefund,
        Actor::Buyer,
        hours(200),
    );
    assert!(matches!(
        e,
        EscrowError::WrongState {
            state: "Delivered",
            ..
        }
    ));
    let e = refused(
        &cancelling(Party::Buyer, Some(hours(48))),
        EscrowEvent::RequestRefund,
        Actor::Buyer,
        hours(200),
    );
    assert!(matches!(
        e,
        EscrowError::WrongState {
            state: "Cancelling",
            ..
        }
    ));
}

#[test]
fn provider_cannot_request_a_refund() {
    let e = refused(
        &funded(),
        EscrowEvent::RequestRefund,
        Actor::Provider,
        hours(193),
    );
    assert!(matches!(e, EscrowError::WrongActor { .. }));
}

#[test]
fn the_delivery_deadline_refunds_an_undelivered_escrow() {
    let t = ok(
        &funded(),
        EscrowEvent::DeliveryDeadlinePassed,
        Actor::System,
        hours(193),
    );
    assert_eq!(basis_of(&t.state), PayoutBasis::DeliveryDeadlinePassed);
    assert_eq!(rule_of(&t), Some(SigningRule::DeliveryDeadlinePassed));
}

#[test]
fn the_delivery_deadline_is_refused_before_it_passes_and_after_delivery() {
    let e = refused(
        &funded(),
        EscrowEvent::DeliveryDeadlinePassed,
        Actor::System,
        hours(192),
    );
    assert_eq!(
        e,
        EscrowError::DeadlineNotReached {
            deadline: hours(192)
        }
    );
    let e = refused(
        &delivered(),
        EscrowEvent::DeliveryDeadlinePassed,
        Actor::System,
        hours(193),
    );
    assert!(matches!(e, EscrowError::WrongState { .. }));
    let e = refused(
        &funded(),
        EscrowEvent::DeliveryDeadlinePassed,
        Actor::Buyer,
        hours(193),
    );
    assert!(matches!(e, EscrowError::WrongActor { .. }));
}

#[test]
fn late_funds_become_co_signable_once_the_delivery_deadline_passes() {
    let state = paying(PayoutBasis::LateFunds);
    let e = refused(
        &state,
        EscrowEvent::DeliveryDeadlinePassed,
        Actor::System,
        hours(100),
    );
    assert_eq!(
        e,
        EscrowError::DeadlineNotReached {
            deadline: hours(192)
        }
    );
    let t = ok(
        &state,
        EscrowEvent::DeliveryDeadlinePassed,
        Actor::System,
        hours(193),
    );
    assert_eq!(t.state, state);
    assert_eq!(
        t.effects,
        vec![Effect::ArbitratorMaySign {
            outcome: Outcome::Refund,
            rule: SigningRule::DeliveryDeadlinePassed
        }]
    );
}

// ----------------------------------------------------------------- review

#[test]
fn review_window_elapsed_releases_and_lets_the_arbitrator_co_sign() {
    let t = ok(
        &delivered(),
        EscrowEvent::ReviewWindowElapsed,
        Actor::System,
        hours(121),
    );
    assert_eq!(
        basis_of(&t.state),
        PayoutBasis::ReviewWindowPassed {
            delivered_at: hours(48)
        }
    );
    assert_eq!(plan_of(&t).unwrap().outcome(), Outcome::Release);
    assert_eq!(rule_of(&t), Some(SigningRule::ReviewWindowPassed));
}

#[test]
fn review_window_has_not_elapsed_at_its_end() {
    for now in [hours(50), hours(120)] {
        let e = refused(
            &delivered(),
            EscrowEvent::ReviewWindowElapsed,
            Actor::System,
            now,
        );
        assert_eq!(
            e,
            EscrowError::DeadlineNotReached {
                deadline: hours(120)
            }
        );
    }
}

#[test]
fn review_window_does_not_release_a_disputed_or_undelivered_escrow() {
    let e = refused(
        &disputed(),
        EscrowEvent::ReviewWindowElapsed,
        Actor::System,
        hours(200),
    );
    assert!(matches!(
        e,
        EscrowError::WrongState {
            state: "Disputed",
            ..
        }
    ));
    let e = refused(
        &funded(),
        EscrowEvent::ReviewWindowElapsed,
        Actor::System,
        hours(200),
    );
    assert!(matches!(
        e,
        EscrowError::WrongState {
            state: "Funded",
            ..
        }
    ));
}

#[test]
fn only_the_scheduler_reports_an_elapsed_review_window() {
    let e = refused(
        &delivered(),
        EscrowEvent::ReviewWindowElapsed,
        Actor::Provider,
        hours(121),
    );
    assert_eq!(
        e,
        EscrowError::WrongActor {
            expected: &[Actor::System],
            got: Actor::Provider
        }
    );
}

// ----------------------------------------------------------------- cancel

#[test]
fn a_cancel_proposed_by_one_party_and_accepted_by_the_other_refunds() {
    for proposer in [Party::Buyer, Party::Provider] {
        let t = ok(
            &funded(),
            EscrowEvent::ProposeCancel,
            proposer.actor(),
            hours(30),
        );
        assert_eq!(
            t.state,
            EscrowState::Cancelling {
                funding: funding(),
                proposed_by: proposer,
                proposed_at: hours(30),
                delivered_at: None,
            }
        );
        assert_eq!(
            t.effects,
            vec![Effect::Notify {
                to: proposer.other().into(),
                notice: Notice::CancelProposed { by: proposer }
            }]
        );
        let t = ok(
            &t.state,
            EscrowEvent::AcceptCancel,
            proposer.other().actor(),
            hours(31),
        );
        assert_eq!(
            basis_of(&t.state),
            PayoutBasis::MutualCancel {
                proposed_by: proposer,
                accepted_by: proposer.other()
            }
        );
        assert_eq!(plan_of(&t).unwrap().outcome(), Outcome::Refund);
        assert_eq!(rule_of(&t), Some(SigningRule::MutualCancel));
    }
}

#[test]
fn the_proposer_cannot_accept_its_own_cancel() {
    let e = refused(
        &cancelling(Party::Buyer, None),
        EscrowEvent::AcceptCancel,
        Actor::Buyer,
        hours(51),
    );
    assert_eq!(
        e,
        EscrowError::WrongActor {
            expected: &[Actor::Provider],
            got: Actor::Buyer
        }
    );
}

#[test]
fn only_parties_propose_or_accept_a_cancel() {
    for actor in [Actor::Arbitrator, Actor::System, Actor::Chain] {
        assert!(matches!(
            refused(&funded(), EscrowEvent::ProposeCancel, actor, hours(30)),
            EscrowError::WrongActor { .. }
        ));
        assert!(matches!(
            refused(
                &cancelling(Party::Buyer, None),
                EscrowEvent::AcceptCancel,
                actor,
                hours(51)
            ),
            EscrowError::WrongActor { .. }
        ));
    }
}

#[test]
fn a_cancel_cannot_be_proposed_twice_or_accepted_without_a_proposal() {
    let e = refused(
        &cancelling(Party::Buyer, None),
        EscrowEvent::ProposeCancel,
        Actor::Provider,
        hours(51),
    );
    assert!(matches!(
        e,
        EscrowError::WrongState {
            state: "Cancelling",
            ..
        }
    ));
    let e = refused(
        &funded(),
        EscrowEvent::AcceptCancel,
        Actor::Provider,
        hours(51),
    );
    assert!(matches!(
        e,
        EscrowError::WrongState {
            state: "Funded",
            ..
        }
    ));
    let e = refused(
        &EscrowState::new(),
        EscrowEvent::ProposeCancel,
        Actor::Buyer,
        hours(1),
    );
    assert!(matches!(
        e,
        EscrowError::WrongState {
            state: "AwaitingFunding",
            ..
        }
    ));
}

#[test]
fn declining_a_cancel_restores_the_previous_state() {
    let t = ok(
        &cancelling(Party::Buyer, Some(hours(48))),
        EscrowEvent::DeclineCancel,
        Actor::Provider,
        hours(52),
    );
    assert_eq!(t.state, delivered());
    let t = ok(
        &cancelling(Party::Buyer, None),
        EscrowEvent::DeclineCancel,
        Actor::Buyer,
        hours(52),
    );
    assert_eq!(t.state, funded());
}

#[test]
fn a_pending_cancel_does_not_stop_the_clocks() {
    let t = ok(
        &cancelling(Party::Buyer, Some(hours(48))),
        EscrowEvent::ReviewWindowElapsed,
        Actor::System,
        hours(121),
    );
    assert_eq!(
        basis_of(&t.state),
        PayoutBasis::ReviewWindowPassed {
            delivered_at: hours(48)
        }
    );
    let t = ok(
        &cancelling(Party::Provider, None),
        EscrowEvent::DeliveryDeadlinePassed,
        Actor::System,
        hours(193),
    );
    assert_eq!(basis_of(&t.state), PayoutBasis::DeliveryDeadlinePassed);
}

// ---------------------------------------------------------------- dispute

#[test]
fn buyer_opens_a_dispute_within_the_review_window() {
    let t = ok(
        &delivered(),
        EscrowEvent::OpenDispute,
        Actor::Buyer,
        hours(120),
    );
    assert_eq!(
        t.state,
        EscrowState::Disputed {
            funding: funding(),
            opened_by: Party::Buyer,
            opened_at: hours(120),
            respond_by: hours(168),
            delivered_at: Some(hours(48)),
        }
    );
    let notice = Notice::DisputeOpened {
        by: Party::Buyer,
        respond_by: hours(168),
    };
    assert_eq!(
        t.effects,
        vec![
            Effect::Notify {
                to: Audience::Provider,
                notice: notice.clone()
            },
            Effect::Notify {
                to: Audience::Arbitrators,
                notice
            },
        ]
    );
}

#[test]
fn a_dispute_cannot_be_opened_after_the_review_window() {
    let e = refused(
        &delivered(),
        EscrowEvent::OpenDispute,
        Actor::Buyer,
        hours(120) + Duration::seconds(1),
    );
    assert_eq!(
        e,
        EscrowError::DeadlinePassed {
            deadline: hours(120)
        }
    );
}

#[test]
fn either_party_can_dispute_before_delivery() {
    ok(
        &funded(),
        EscrowEvent::OpenDispute,
        Actor::Provider,
        hours(30),
    );
    ok(
        &funded(),
        EscrowEvent::OpenDispute,
        Actor::Buyer,
        hours(300),
    );
    ok(
        &cancelling(Party::Buyer, None),
        EscrowEvent::OpenDispute,
        Actor::Provider,
        hours(52),
    );
}

#[test]
fn a_dispute_needs_a_funded_open_escrow() {
    let e = refused(
        &EscrowState::new(),
        EscrowEvent::OpenDispute,
        Actor::Buyer,
        hours(2),
    );
    assert!(matches!(e, EscrowError::WrongState { .. }));
    let e = refused(
        &disputed(),
        EscrowEvent::OpenDispute,
        Actor::Provider,
        hours(70),
    );
    assert!(matches!(
        e,
        EscrowError::WrongState {
            state: "Disputed",
            ..
        }
    ));
    let e = refused(
        &delivered(),
        EscrowEvent::OpenDispute,
        Actor::Arbitrator,
        hours(70),
    );
    assert!(matches!(e, EscrowError::WrongActor { .. }));
}

#[test]
fn the_arbitrator_decides_a_split_with_the_arbitration_fee() {
    let t = ok(
        &disputed(),
        EscrowEvent::Decide {
            provider_bps: bps(6_000),
        },
        Actor::Arbitrator,
        hours(100),
    );
    assert_eq!(t.state.name(), "Settling");
    let plan = plan_of(&t).unwrap();
    assert_eq!(
        plan.outcome(),
        Outcome::Split {
            provider_bps: bps(6_000)
        }
    );
    assert_eq!(plan.terms().arbitration_fee, 2_000); // 1 000 + 1 % of 100 000
    let b = plan.breakdown(1_000).unwrap();
    // pool 97 000: provider gross 58 200 (commission 1 455), buyer 38 800.
    assert_eq!(
        (b.provider, b.buyer, b.commission, b.arbitration_fee),
        (56_745, 38_800, 1_455, 2_000)
    );
    assert_eq!(
        rule_of(&t),
        Some(SigningRule::ArbitrationDecision {
            provider_bps: bps(6_000)
        })
    );
}

#[test]
fn only_the_arbitrator_decides_and_only_an_open_dispute() {
    for actor in [Actor::Buyer, Actor::Provider, Actor::System, Actor::Chain] {
        let e = refused(
            &disputed(),
            EscrowEvent::Decide {
                provider_bps: bps(0),
            },
            actor,
            hours(100),
        );
        assert!(matches!(e, EscrowError::WrongActor { .. }));
    }
    for state in [funded(), delivered(), cancelling(Party::Buyer, None)] {
        let e = refused(
            &state,
            EscrowEvent::Decide {
                provider_bps: bps(0),
            },
            Actor::Arbitrator,
            hours(100),
        );
        assert!(matches!(
            e,
            EscrowError::WrongState {
                event: "Decide",
                ..
            }
        ));
    }
}

// ----------------------------------------------------------------- payout

#[test]
fn a_broadcast_payout_records_its_txid_once() {
    let state = paying(PayoutBasis::BuyerReleased { at: hours(30) });
    let t = ok(
        &state,
        EscrowEvent::PayoutBroadcast { txid: "tx1".into() },
        Actor::Chain,
        hours(31),
    );
    let EscrowState::PayingOut { payout, .. } = &t.state else {
        panic!("still paying out")
    };
    assert_eq!(payout.txid.as_deref(), Some("tx1"));
    let again = ok(
        &t.state,
        EscrowEvent::PayoutBroadcast { txid: "tx1".into() },
        Actor::Chain,
        hours(32),
    );
    assert_eq!(again.state, t.state);
    assert!(again.effects.is_empty());
}

#[test]
fn a_confirmed_payout_settles_with_the_prepared_outcome() {
    let cases = [
        (
            PayoutBasis::BuyerReleased { at: hours(30) },
            Settled::Released,
        ),
        (
            PayoutBasis::MutualCancel {
                proposed_by: Party::Buyer,
                accepted_by: Party::Provider,
            },
            Settled::Refunded,
        ),
        (
            PayoutBasis::ArbitrationDecision {
                provider_bps: bps(2_500),
                decided_at: hours(100),
            },
            Settled::Split {
                provider_bps: bps(2_500),
            },
        ),
    ];
    for (basis, expected) in cases {
        let t = ok(
            &paying(basis),
            EscrowEvent::PayoutConfirmed { txid: "tx".into() },
            Actor::Chain,
            hours(200),
        );
        assert_eq!(
            t.state,
            EscrowState::Settled {
                outcome: expected,
                by: SettledBy::Payout { txid: "tx".into() },
                at: hours(200),
            }
        );
    }
}

#[test]
fn a_reorged_payout_is_broadcast_again() {
    let state = paying(PayoutBasis::BuyerReleased { at: hours(30) });
    let t = ok(
        &state,
        EscrowEvent::PayoutBroadcast { txid: "tx1".into() },
        Actor::Chain,
        hours(31),
    );
    let t = ok(
        &t.state,
        EscrowEvent::PayoutReorged,
        Actor::Chain,
        hours(32),
    );
    assert_eq!(t.state, state);
    assert_eq!(t.effects, vec![Effect::Broadcast { txid: "tx1".into() }]);
}

#[test]
fn payout_events_need_a_prepared_payout() {
    for event in [
        EscrowEvent::PayoutBroadcast { txid: "tx".into() },
        EscrowEvent::PayoutConfirmed { txid: "tx".into() },
        EscrowEvent::PayoutReorged,
    ] {
        let e = refused(&delivered(), event, Actor::Chain, hours(50));
        assert!(matches!(
            e,
            EscrowError::WrongState {
                state: "Delivered",
                ..
            }
        ));
    }
}

#[test]
fn users_cannot_act_while_a_payout_is_pending() {
    let state = paying(PayoutBasis::ReviewWindowPassed {
        delivered_at: hours(48),
    });
    let e = refused(&state, EscrowEvent::OpenDispute, Actor::Buyer, hours(122));
    assert!(matches!(
        e,
        EscrowError::WrongState {
            state: "Releasing",
            ..
        }
    ));
}

#[test]
fn a_timeout_spend_settles_any_funded_escrow_as_refunded() {
    let states = [
        funded(),
        delivered(),
        cancelling(Party::Buyer, None),
        disputed(),
        paying(PayoutBasis::BuyerReleased { at: hours(30) }),
        paying(PayoutBasis::DeliveryDeadlinePassed),
    ];
    for state in states {
        let t = ok(
            &state,
            EscrowEvent::TimeoutSpendSeen {
                txid: "refund".into(),
            },
            Actor::Chain,
            hours(900),
        );
        assert_eq!(
            t.state,
            EscrowState::Settled {
                outcome: Settled::Refunded,
                by: SettledBy::Timelock {
                    txid: "refund".into()
                },
                at: hours(900),
            }
        );
        let alerted = t
            .effects
            .iter()
            .any(|e| matches!(e, Effect::Alert(Alert::TimelockSpent { .. })));
        assert_eq!(alerted, state.name() != "Refunding", "{}", state.name());
    }
}

#[test]
fn a_timeout_spend_needs_a_funded_escrow() {
    let e = refused(
        &EscrowState::new(),
        EscrowEvent::TimeoutSpendSeen { txid: "x".into() },
        Actor::Chain,
        hours(900),
    );
    assert!(matches!(e, EscrowError::WrongState { .. }));
}

// ---------------------------------------------------------------- settled

#[test]
fn a_settled_escrow_refuses_every_event() {
    let state = settled();
    let events = [
        (EscrowEvent::MarkDelivered, Actor::Provider),
        (EscrowEvent::ReleaseFunds, Actor::Buyer),
        (EscrowEvent::RequestRefund, Actor::Buyer),
        (EscrowEvent::ProposeCancel, Actor::Buyer),
        (EscrowEvent::AcceptCancel, Actor::Provider),
        (EscrowEvent::DeclineCancel, Actor::Provider),
        (EscrowEvent::OpenDispute, Actor::Buyer),
        (
            EscrowEvent::Decide {
                provider_bps: bps(1),
            },
            Actor::Arbitrator,
        ),
        (EscrowEvent::FundingDeadlinePassed, Actor::System),
        (EscrowEvent::DeliveryDeadlinePassed, Actor::System),
        (EscrowEvent::ReviewWindowElapsed, Actor::System),
        (funding_seen(DUE, CONFIRMATIONS), Actor::Chain),
        (EscrowEvent::FundingReorged, Actor::Chain),
        (
            EscrowEvent::PayoutBroadcast { txid: "tx".into() },
            Actor::Chain,
        ),
        (
            EscrowEvent::PayoutConfirmed { txid: "tx".into() },
            Actor::Chain,
        ),
        (EscrowEvent::PayoutReorged, Actor::Chain),
        (
            EscrowEvent::TimeoutSpendSeen { txid: "tx".into() },
            Actor::Chain,
        ),
    ];
    for (event, actor) in events {
        assert_eq!(
            refused(&state, event, actor, hours(1_000)),
            EscrowError::AlreadySettled
        );
    }
}

// --------------------------------------------------------------- timelock

#[test]
fn the_timelock_alert_fires_at_the_margin_and_not_before() {
    let alert_height = FUNDING_HEIGHT + 4_320 - 432;
    let timelock = Some(TIMELOCK);
    assert_eq!(
        timelock_margin_reached(&funded(), timelock, alert_height - 1),
        None
    );
    let watch = timelock_margin_reached(&delivered(), timelock, alert_height).unwrap();
    assert_eq!(
        (watch.alert_height, watch.unlock_height),
        (alert_height, FUNDING_HEIGHT + 4_320)
    );
    assert!(timelock_margin_reached(&disputed(), timelock, alert_height + 10_000).is_some());
    // A pending release can still be pre-empted by the buyer; a refund cannot hurt.
    let releasing = paying(PayoutBasis::BuyerReleased { at: hours(30) });
    assert!(timelock_margin_reached(&releasing, timelock, alert_height).is_some());
    let refunding = paying(PayoutBasis::DeliveryDeadlinePassed);
    assert_eq!(
        timelock_margin_reached(&refunding, timelock, alert_height),
        None
    );
    // Nothing to watch without funding, after settlement, or without a timelock.
    assert_eq!(
        timelock_margin_reached(&EscrowState::new(), timelock, u64::MAX),
        None
    );
    assert_eq!(
        timelock_margin_reached(&settled(), timelock, u64::MAX),
        None
    );
    assert_eq!(timelock_margin_reached(&funded(), None, u64::MAX), None);
}

#[test]
fn transitions_carry_the_timelock_alert_once_the_margin_is_reached() {
    let mut context = ctx(Actor::Provider, hours(48));
    context.chain_height = FUNDING_HEIGHT + 4_320 - 432;
    let t = apply(&funded(), &EscrowEvent::MarkDelivered, &context).unwrap();
    assert!(t
        .effects
        .iter()
        .any(|e| matches!(e, Effect::Alert(Alert::TimelockMarginReached(_)))));
    context.chain_height -= 1;
    let t = apply(&funded(), &EscrowEvent::MarkDelivered, &context).unwrap();
    assert!(!t.effects.iter().any(|e| matches!(e, Effect::Alert(_))));
}

// ----------------------------------------------------------------- errors

#[test]
fn a_wrong_actor_is_reported_before_the_state() {
    // A non-arbitrator deciding a settled escrow learns nothing about it.
    let e = refused(
        &settled(),
        EscrowEvent::Decide {
            provider_bps: bps(0),
        },
        Actor::Buyer,
        hours(100),
    );
    assert!(matches!(e, EscrowError::WrongActor { .. }));
}

#[test]
fn errors_map_to_stable_kinds() {
    assert_eq!(EscrowError::AlreadySettled.kind(), ErrorKind::Conflict);
    assert_eq!(
        EscrowError::DeadlineNotReached { deadline: t0() }.kind(),
        ErrorKind::Conflict
    );
    assert_eq!(
        EscrowError::WrongState {
            state: "a",
            event: "b"
        }
        .kind(),
        ErrorKind::Conflict
    );
}

#[test]
fn deadline_arithmetic_saturates_instead_of_panicking() {
    let mut context = ctx(Actor::Buyer, hours(50));
    context.terms.deadlines.review_period = Duration::MAX;
    // The window never ends, so the buyer can still dispute and nothing auto-releases.
    apply(&delivered(), &EscrowEvent::OpenDispute, &context).unwrap();
    context.actor = Actor::System;
    context.now = hours(1_000_000);
    let e = apply(&delivered(), &EscrowEvent::ReviewWindowElapsed, &context).unwrap_err();
    assert!(matches!(e, EscrowError::DeadlineNotReached { .. }));
}

// ---------------------------------------------------------------- metered claims

fn settle(claimed: u64, latest: u64, service_cosigns: bool) -> EscrowEvent {
    EscrowEvent::SettleClaim {
        claimed: sats(claimed),
        latest_claim: sats(latest),
        service_cosigns,
    }
}

#[test]
fn the_provider_settles_the_latest_claim_and_the_rest_returns_to_the_buyer() {
    let t = ok(&funded(), settle(DUE / 4, DUE / 4, false), Actor::Provider, hours(30));
    let EscrowState::PayingOut { payout, .. } = &t.state else {
        panic!("expected a payout, got {}", t.state.name());
    };
    assert_eq!(payout.plan.claimed(), Some(DUE / 4));
    let b = payout.plan.breakdown(500).unwrap();
    assert_eq!(b.provider + b.commission, DUE / 4);
    assert_eq!(b.buyer, DUE - DUE / 4 - 500);
    // The provider signs itself: the marketplace key is not offered.
    assert!(!t.effects.iter().any(|e| matches!(e, Effect::ArbitratorMaySign { .. })));
}

#[test]
fn a_settlement_above_the_latest_claim_or_the_deposit_is_refused() {
    let refused = |event| apply(&funded(), &event, &ctx(Actor::Provider, hours(30)));
    assert!(matches!(refused(settle(DUE / 2 + 1, DUE / 2, false)), Err(EscrowError::ClaimAboveLimit { .. })));
    assert!(matches!(refused(settle(DUE + 1, DUE + 1, false)), Err(EscrowError::ClaimAboveLimit { .. })));
    assert!(matches!(refused(settle(0, 10, false)), Err(EscrowError::ClaimAboveLimit { .. })));
    let buyer = apply(&funded(), &settle(10, 10, false), &ctx(Actor::Buyer, hours(30)));
    assert!(matches!(buyer, Err(EscrowError::WrongActor { .. })));
}

#[test]
fn the_scheduler_settles_the_latest_claim_only_once_an_automatic_outcome_is_due() {
    let latest = DUE / 2;
    // Not before the review window of a delivery ends, not on an undelivered
    // order before its delivery deadline, not a lower amount, not without the
    // marketplace co-signing.
    let early = apply(&delivered(), &settle(latest, latest, true), &ctx(Actor::System, hours(2)));
    assert!(matches!(early, Err(EscrowError::DeadlineNotReached { .. })), "{early:?}");
    let before_delivery_deadline = apply(&funded(), &settle(latest, latest, true), &ctx(Actor::System, hours(2)));
    assert!(matches!(before_delivery_deadline, Err(EscrowError::DeadlineNotReached { .. })));
    let late = hours(1_000_000);
    let undelivered = ok(&funded(), settle(latest, latest, true), Actor::System, late);
    assert!(undelivered.effects.iter().any(|e| matches!(e, Effect::ArbitratorMaySign { .. })));
    let lower = apply(&delivered(), &settle(latest - 1, latest, true), &ctx(Actor::System, late));
    assert!(matches!(lower, Err(EscrowError::WrongState { .. })));
    let unsigned = apply(&delivered(), &settle(latest, latest, false), &ctx(Actor::System, late));
    assert!(matches!(unsigned, Err(EscrowError::WrongState { .. })));
    let t = ok(&delivered(), settle(latest, latest, true), Actor::System, late);
    let EscrowState::PayingOut { payout, .. } = &t.state else {
        panic!("expected a payout, got {}", t.state.name());
    };
    assert_eq!(payout.plan.claimed(), Some(latest));
    assert!(t.effects.iter().any(|e| matches!(e, Effect::ArbitratorMaySign { .. })));
}

#[test]
fn the_service_cosigns_a_settlement_when_the_provider_asks() {
    let t = ok(&delivered(), settle(DUE / 3, DUE / 2, true), Actor::Provider, hours(60));
    assert!(t.effects.iter().any(|e| matches!(
        e,
        Effect::ArbitratorMaySign {
            rule: SigningRule::LatestClaim { claimed },
            ..
        } if *claimed == DUE / 3
    )));
}

fn with_claim(actor: Actor, at: DateTime<Utc>, latest: u64) -> Context {
    Context {
        latest_claim: Some(sats(latest)),
        ..ctx(actor, at)
    }
}

#[test]
fn a_metered_order_with_a_signed_claim_is_never_refunded_whole() {
    let late = hours(1_000_000);
    for (event, actor) in [
        (EscrowEvent::DeliveryDeadlinePassed, Actor::System),
        (EscrowEvent::RequestRefund, Actor::Buyer),
    ] {
        let refused = apply(&funded(), &event, &with_claim(actor, late, DUE / 3));
        assert!(
            matches!(refused, Err(EscrowError::ClaimOutstanding { latest_claim }) if latest_claim == sats(DUE / 3)),
            "{event:?}: {refused:?}"
        );
        // Without a claim (or with a zero one) the refund goes ahead.
        let refund = apply(&funded(), &event, &with_claim(actor, late, 0));
        assert!(matches!(refund, Ok(Transition { state: EscrowState::PayingOut { .. }, .. })), "{event:?}");
    }
}

#[test]
fn a_release_the_buyer_never_signs_is_co_signed_once_the_grace_passed() {
    let released = ok(&delivered(), EscrowEvent::ReleaseFunds, Actor::Buyer, hours(30));
    assert!(!released.effects.iter().any(|e| matches!(e, Effect::ArbitratorMaySign { .. })));
    let early = apply(&released.state, &EscrowEvent::ReleaseSigningOverdue, &ctx(Actor::System, hours(54)));
    assert!(matches!(early, Err(EscrowError::DeadlineNotReached { .. })), "{early:?}");
    let t = ok(&released.state, EscrowEvent::ReleaseSigningOverdue, Actor::System, hours(55));
    assert_eq!(t.state, released.state, "the prepared release is unchanged");
    assert!(t.effects.iter().any(|e| matches!(
        e,
        Effect::ArbitratorMaySign { outcome: Outcome::Release, rule: SigningRule::UnsignedRelease }
    )));
    // Only a buyer's release: a refund prepared for non-delivery is not one.
    let refunding = ok(&funded(), EscrowEvent::DeliveryDeadlinePassed, Actor::System, hours(1_000_000));
    let other = apply(&refunding.state, &EscrowEvent::ReleaseSigningOverdue, &ctx(Actor::System, hours(1_000_001)));
    assert!(matches!(other, Err(EscrowError::WrongState { .. })));
}

#[test]
fn a_spend_agora_did_not_prepare_settles_the_order_as_the_chain_shows_it() {
    let outcome = Settled::Split { provider_bps: crate::money::BasisPoints::new(2_500).unwrap() };
    let event = EscrowEvent::OtherSpendSeen { txid: "tx-z".into(), outcome };
    let t = ok(&delivered(), event.clone(), Actor::Chain, hours(40));
    assert!(matches!(
        &t.state,
        EscrowState::Settled { outcome: o, by: SettledBy::Other { txid }, .. } if *o == outcome && txid == "tx-z"
    ));
    let not_funded = apply(&EscrowState::new(), &event, &ctx(Actor::Chain, hours(40)));
    assert!(matches!(not_funded, Err(EscrowError::WrongState { .. })));
    let wrong_actor = apply(&delivered(), &event, &ctx(Actor::Buyer, hours(40)));
    assert!(matches!(wrong_actor, Err(EscrowError::WrongActor { .. })));
}
