//! Property tests: random sequences of events, by random (mostly plausible)
//! actors, at random increasing times and chain heights. After every step
//! the invariants below are checked against a model kept by the test, using
//! tables written here rather than the machine's own.

use chrono::Duration;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::*;
use crate::escrow::machine::Effect;
use crate::escrow::policy::may_arbitrator_sign;
use crate::escrow::state::{Outcome, PayoutBasis, SettledBy};

const ALL_ACTORS: [Actor; 5] = [
    Actor::Buyer,
    Actor::Provider,
    Actor::Arbitrator,
    Actor::System,
    Actor::Chain,
];

/// Who may cause each event: the rules of DESIGN §2, restated independently.
fn permitted(event: &EscrowEvent) -> &'static [Actor] {
    use EscrowEvent as E;
    match event {
        E::MarkDelivered => &[Actor::Provider],
        E::SettleClaim { .. } => &[Actor::Provider, Actor::System],
        E::ReleaseFunds | E::RequestRefund => &[Actor::Buyer],
        E::ProposeCancel | E::AcceptCancel | E::DeclineCancel | E::OpenDispute => {
            &[Actor::Buyer, Actor::Provider]
        }
        E::Decide { .. } => &[Actor::Arbitrator],
        E::FundingDeadlinePassed
        | E::DeliveryDeadlinePassed
        | E::ReviewWindowElapsed
        | E::ReleaseSigningOverdue
        | E::ArbitrationLapsed => &[Actor::System],
        E::FundingSeen { .. }
        | E::FundingReorged
        | E::PayoutBroadcast { .. }
        | E::PayoutConfirmed { .. }
        | E::PayoutReorged
        | E::TimeoutSpendSeen { .. }
        | E::OtherSpendSeen { .. } => &[Actor::Chain],
    }
}

#[derive(Debug, Clone)]
struct Step {
    event: EscrowEvent,
    /// Pick an actor allowed for the event (most steps), or any actor.
    plausible_actor: bool,
    actor_index: usize,
    advance_minutes: i64,
    advance_blocks: u64,
}

fn txid() -> impl Strategy<Value = String> {
    prop_oneof![Just("tx-a".to_owned()), Just("tx-b".to_owned())]
}

fn event() -> impl Strategy<Value = EscrowEvent> {
    use EscrowEvent as E;
    let amount = prop_oneof![
        Just(0),
        Just(DUE / 2),
        Just(DUE - 1),
        Just(DUE),
        Just(DUE + 1),
        Just(DUE * 3 / 2),
        1..=DUE * 2,
    ];
    let confirmations = prop_oneof![3 => CONFIRMATIONS..=CONFIRMATIONS + 2, 1 => 0..CONFIRMATIONS];
    let funding = (
        amount,
        confirmations,
        FUNDING_HEIGHT - 10..=FUNDING_HEIGHT + 10,
    )
        .prop_map(|(amount, confirmations, funding_height)| E::FundingSeen {
            amount: sats(amount),
            confirmations,
            funding_height,
        });
    prop_oneof![
        3 => Just(E::MarkDelivered),
        3 => Just(E::ReleaseFunds),
        3 => Just(E::RequestRefund),
        3 => Just(E::ProposeCancel),
        3 => Just(E::AcceptCancel),
        2 => Just(E::DeclineCancel),
        3 => Just(E::OpenDispute),
        3 => (0i64..=10_000).prop_map(|b| E::Decide { provider_bps: bps(b) }),
        3 => (0..=DUE + 10, 0..=DUE * 2, any::<bool>()).prop_map(|(c, l, service_cosigns)| E::SettleClaim {
            claimed: sats(c),
            latest_claim: sats(l),
            service_cosigns,
        }),
        2 => Just(E::FundingDeadlinePassed),
        3 => Just(E::DeliveryDeadlinePassed),
        3 => Just(E::ReviewWindowElapsed),
        4 => funding,
        1 => Just(E::FundingReorged),
        2 => txid().prop_map(|txid| E::PayoutBroadcast { txid }),
        2 => txid().prop_map(|txid| E::PayoutConfirmed { txid }),
        1 => Just(E::PayoutReorged),
        1 => txid().prop_map(|txid| E::TimeoutSpendSeen { txid }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    (
        event(),
        prop::bool::weighted(0.8),
        0usize..10,
        // Mostly minutes to hours apart, sometimes days, so runs cross every deadline.
        prop_oneof![5 => 0i64..=120, 2 => 0i64..=72 * 60],
        0u64..=300,
    )
        .prop_map(
            |(event, plausible_actor, actor_index, advance_minutes, advance_blocks)| Step {
                event,
                plausible_actor,
                actor_index,
                advance_minutes,
                advance_blocks,
            },
        )
}

/// What the test remembers across steps.
#[derive(Debug, Default)]
struct Model {
    /// The funding amount the machine accepted (from the event that caused it).
    accepted: Option<Amount>,
    payouts_since_acceptance: usize,
    expired: bool,
}

fn delivered_at(state: &EscrowState) -> Option<chrono::DateTime<chrono::Utc>> {
    match state {
        EscrowState::Delivered { delivered_at, .. } => Some(*delivered_at),
        EscrowState::Cancelling { delivered_at, .. }
        | EscrowState::Disputed { delivered_at, .. } => *delivered_at,
        _ => None,
    }
}

/// Checks one accepted step.
fn check_transition(
    before: &EscrowState,
    event: &EscrowEvent,
    ctx: &Context,
    after: &Transition,
    model: &mut Model,
) -> Result<(), TestCaseError> {
    let deadlines = ctx.terms.deadlines;
    let now = ctx.now;

    // (b) A settled escrow never changes.
    prop_assert!(
        !before.is_settled(),
        "{} accepted on a settled escrow",
        event.name()
    );

    // (c) Only the allowed actor causes a transition.
    prop_assert!(
        permitted(event).contains(&ctx.actor),
        "{:?} caused {}",
        ctx.actor,
        event.name()
    );
    if let (EscrowEvent::AcceptCancel, EscrowState::Cancelling { proposed_by, .. }) =
        (event, before)
    {
        prop_assert_ne!(
            Some(*proposed_by),
            Party::from_actor(ctx.actor),
            "the proposer accepted"
        );
    }

    // Funding bookkeeping: acceptance is recorded from the event itself.
    if before.funding().is_none() && after.state.funding().is_some() {
        let amount = match (event, before) {
            (EscrowEvent::FundingSeen { amount, .. }, _) => *amount,
            // Expiry turns confirmed underfunding seen earlier into late funds.
            (
                EscrowEvent::FundingDeadlinePassed,
                EscrowState::AwaitingFunding { seen: Some(seen) },
            ) => seen.amount,
            _ => {
                return Err(TestCaseError::fail(format!(
                    "{} brought funding",
                    event.name()
                )))
            }
        };
        model.accepted = Some(amount);
        model.payouts_since_acceptance = 0;
    }
    if let Some(funding) = after.state.funding() {
        prop_assert_eq!(
            Some(funding.amount),
            model.accepted,
            "the accepted amount changed"
        );
    } else if !after.state.is_settled() {
        model.accepted = None;
    }

    // (d) Deadlines.
    match event {
        EscrowEvent::MarkDelivered => prop_assert!(now <= deadlines.delivery_by),
        EscrowEvent::RequestRefund => prop_assert!(now > deadlines.delivery_by),
        EscrowEvent::ReviewWindowElapsed => {
            let Some(delivered_at) = delivered_at(before) else {
                return Err(TestCaseError::fail("auto-release without a delivery"));
            };
            prop_assert!(now > delivered_at + deadlines.review_period);
            prop_assert!(
                !matches!(before, EscrowState::Disputed { .. }),
                "auto-release of a dispute"
            );
        }
        EscrowEvent::OpenDispute => {
            if let Some(delivered_at) = delivered_at(before) {
                prop_assert!(now <= delivered_at + deadlines.review_period);
            }
        }
        _ => {}
    }
    if matches!(after.state, EscrowState::Funded { .. })
        && !matches!(before, EscrowState::Funded { .. })
    {
        // Entering Funded from AwaitingFunding (a cancel declined restores it too).
        if matches!(before, EscrowState::AwaitingFunding { .. }) {
            prop_assert!(
                now <= deadlines.funding_by,
                "funded after the funding deadline"
            );
        }
    }
    let late_refund = matches!(
        &after.state,
        EscrowState::PayingOut { payout, .. } if payout.basis == PayoutBasis::LateFunds
    );
    if matches!(after.state, EscrowState::Expired { .. }) || late_refund {
        model.expired = true;
    }
    if model.expired {
        // No funding is ever accepted into an expired order, only refunded.
        prop_assert!(
            matches!(
                after.state,
                EscrowState::Expired { .. } | EscrowState::Settled { .. }
            ) || late_refund,
            "an expired order became {}",
            after.state.name()
        );
        if let EscrowState::Settled { outcome, .. } = after.state {
            prop_assert_eq!(outcome, crate::escrow::state::Settled::Refunded);
        }
    }
    if let EscrowState::Settled {
        by: SettledBy::Payout { .. },
        ..
    } = after.state
    {
        prop_assert!(
            matches!(before, EscrowState::PayingOut { .. }),
            "settled without a payout"
        );
    }
    check_effects(before, event, ctx, after, model)
}

fn check_effects(
    before: &EscrowState,
    event: &EscrowEvent,
    ctx: &Context,
    after: &Transition,
    model: &mut Model,
) -> Result<(), TestCaseError> {
    for effect in &after.effects {
        match effect {
            Effect::PreparePayout { plan } => {
                // (a) No payout spends more than was funded.
                let Some(accepted) = model.accepted else {
                    return Err(TestCaseError::fail("a payout without accepted funding"));
                };
                prop_assert_eq!(plan.funded(), accepted);
                model.payouts_since_acceptance += 1;
                prop_assert!(
                    model.payouts_since_acceptance <= 1,
                    "two payouts for one funding"
                );
                let funded = accepted.minor();
                for fee in [0, 1, 999, funded / 3, funded.saturating_sub(1), funded] {
                    if let Ok(b) = plan.breakdown(fee) {
                        prop_assert!(b.total() <= funded);
                        prop_assert_eq!(b.total(), funded);
                        prop_assert!(b.buyer >= plan.excess_to_buyer());
                        prop_assert!(b.provider + b.commission <= DUE);
                        // A metered settlement never pays the provider more than
                        // the buyer's latest claim, nor more than it claimed.
                        if let EscrowEvent::SettleClaim { claimed, latest_claim, .. } = event {
                            prop_assert_eq!(plan.claimed(), Some(claimed.minor()));
                            prop_assert_eq!(b.provider + b.commission, claimed.minor());
                            prop_assert!(claimed.minor() <= latest_claim.minor());
                            prop_assert!(b.provider + b.commission + b.network_fee <= funded);
                        } else {
                            prop_assert_eq!(plan.claimed(), None);
                        }
                        if plan.outcome() == Outcome::Refund {
                            prop_assert_eq!(b.provider + b.marketplace(), 0);
                        }
                    }
                }
                // Who can cause which outcome.
                let by = (event, ctx.actor);
                match plan.outcome() {
                    Outcome::Release => prop_assert!(
                        matches!(
                            by,
                            (EscrowEvent::ReleaseFunds, Actor::Buyer)
                                | (EscrowEvent::ReviewWindowElapsed, Actor::System)
                                | (EscrowEvent::SettleClaim { .. }, Actor::Provider)
                                | (EscrowEvent::SettleClaim { .. }, Actor::System)
                        ),
                        "release caused by {:?}",
                        by
                    ),
                    Outcome::Refund => prop_assert!(
                        matches!(
                            by,
                            (EscrowEvent::RequestRefund, Actor::Buyer)
                                | (EscrowEvent::DeliveryDeadlinePassed, Actor::System)
                                | (EscrowEvent::FundingDeadlinePassed, Actor::System)
                                | (EscrowEvent::AcceptCancel, Actor::Buyer | Actor::Provider)
                                | (EscrowEvent::FundingSeen { .. }, Actor::Chain)
                        ),
                        "refund caused by {:?}",
                        by
                    ),
                    Outcome::Split { .. } => {
                        prop_assert!(
                            matches!(by, (EscrowEvent::Decide { .. }, Actor::Arbitrator)),
                            "split caused by {:?}",
                            by
                        );
                        prop_assert!(
                            matches!(before, EscrowState::Disputed { .. }),
                            "split outside a dispute"
                        );
                    }
                }
                if let EscrowState::PayingOut { payout, .. } = &after.state {
                    if let PayoutBasis::ReviewWindowPassed { delivered_at } = payout.basis {
                        prop_assert!(ctx.now > delivered_at + ctx.terms.deadlines.review_period);
                    }
                } else {
                    return Err(TestCaseError::fail("a payout prepared outside PayingOut"));
                }
            }
            Effect::ArbitratorMaySign { outcome, rule } => {
                prop_assert_eq!(may_arbitrator_sign(&after.state, *outcome, ctx), Ok(*rule));
            }
            Effect::Notify { .. } | Effect::Broadcast { .. } | Effect::Alert(_) => {}
        }
    }
    Ok(())
}

/// Applies `steps` to a new escrow; with `funded_first`, the buyer funds it
/// exactly in the first hour, so most of the run explores the funded states.
fn run(steps: &[Step], funded_first: bool) -> Result<(), TestCaseError> {
    let mut state = EscrowState::new();
    let mut model = Model::default();
    let mut now = t0();
    let mut height = FUNDING_HEIGHT - 5;
    let funding = Step {
        event: funding_seen(DUE, CONFIRMATIONS),
        plausible_actor: true,
        actor_index: 0,
        advance_minutes: 60,
        advance_blocks: 8,
    };
    let first = funded_first.then_some(&funding);
    for step in first.into_iter().chain(steps) {
        now += Duration::minutes(step.advance_minutes);
        height += step.advance_blocks;
        let candidates = if step.plausible_actor {
            permitted(&step.event)
        } else {
            &ALL_ACTORS[..]
        };
        let actor = candidates[step.actor_index % candidates.len()];
        let ctx = Context {
            now,
            actor,
            chain_height: height,
            terms: terms(),
            latest_claim: None,
        };
        match apply(&state, &step.event, &ctx) {
            Ok(transition) => {
                check_transition(&state, &step.event, &ctx, &transition, &mut model)?;
                state = transition.state;
            }
            Err(EscrowError::AlreadySettled) => prop_assert!(state.is_settled()),
            Err(error) => {
                if state.is_settled() {
                    prop_assert!(
                        matches!(error, EscrowError::WrongActor { .. }),
                        "settled escrow: {}",
                        error
                    );
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn random_event_sequences_keep_every_invariant(steps in prop::collection::vec(step(), 1..60)) {
        run(&steps, false)?;
    }

    #[test]
    fn random_event_sequences_after_funding_keep_every_invariant(
        steps in prop::collection::vec(step(), 1..60),
    ) {
        run(&steps, true)?;
    }

    /// (b) once more, directly: every event, by every actor, at any time, on
    /// any settled escrow is refused.
    #[test]
    fn a_settled_escrow_refuses_everything(
        event in event(),
        actor_index in 0usize..5,
        hours_later in 0i64..10_000,
        timelock in any::<bool>(),
    ) {
        let state = EscrowState::Settled {
            outcome: crate::escrow::state::Settled::Released,
            by: if timelock {
                SettledBy::Timelock { txid: "t".into() }
            } else {
                SettledBy::Payout { txid: "p".into() }
            },
            at: t0(),
        };
        let result = apply(&state, &event, &ctx(ALL_ACTORS[actor_index], hours(hours_later)));
        prop_assert!(result.is_err());
    }
}
