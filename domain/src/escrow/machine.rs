//! The escrow state machine: `apply(state, event, ctx) -> (state, effects)`.
//!
//! Pure and chain-agnostic: the caller loads the state, applies one event,
//! stores the new state and executes the effects (notify, prepare a payout,
//! ask the arbitrator key to sign, broadcast, alert) in the same transaction
//! as it stores the state. Every event is checked in this order:
//! 1. the actor (a static set per event, [`EscrowEvent::allowed_actors`]);
//! 2. settled escrows accept nothing ([`EscrowError::AlreadySettled`]);
//! 3. the state, then the deadlines.
//!
//! Chain events describe what the watcher saw; they never fail because of a
//! deadline, because the chain does not wait for Agora. Repeated chain events
//! (the same funding seen again, the same txid broadcast again) are no-ops.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::deadlines::{passed, timelock_margin_reached, Deadlines, TimelockWatch};
use super::plan::{FeeSchedule, PayoutPlan};
use super::policy::{may_arbitrator_sign, SigningRule};
use super::state::{
    Actor, EscrowState, Funding, Outcome, Party, Payout, PayoutBasis, PendingFunding, Settled,
    SettledBy,
};
use crate::money::{Amount, Asset, BasisPoints};

/// What the state machine needs from the order's frozen terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscrowTerms {
    /// The price (or metered deposit); its asset is the escrow's asset.
    pub amount_due: Amount,
    /// Confirmations a funding needs before it counts (1 on XRPL: validated).
    pub required_confirmations: u32,
    pub fees: FeeSchedule,
    pub deadlines: Deadlines,
}

/// Everything an event is judged against besides the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    pub now: DateTime<Utc>,
    pub actor: Actor,
    /// The last chain height the watcher processed, for the timelock margin.
    pub chain_height: u64,
    pub terms: EscrowTerms,
    /// Metered orders: the cumulative amount of the buyer's latest valid
    /// claim, if the buyer signed one. Every automatic outcome of such an
    /// order pays it (see [`EscrowError::ClaimOutstanding`]).
    pub latest_claim: Option<Amount>,
}

/// Something that happened to an escrow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EscrowEvent {
    // Parties.
    /// The provider says the service was delivered; starts the review window.
    MarkDelivered,
    /// The buyer releases the funds to the provider.
    ReleaseFunds,
    /// The buyer asks for a refund after the delivery deadline passed undelivered.
    RequestRefund,
    ProposeCancel,
    /// The other party accepts a proposed cancel: the escrow is refunded.
    AcceptCancel,
    /// Either party ends a pending cancel proposal (the proposer withdraws it
    /// or the other party declines); the escrow returns to where it was.
    DeclineCancel,
    OpenDispute,
    /// The provider settles a metered session with the buyer's latest valid
    /// claim (`latest_claim`, validated by the caller): `claimed` (gross) goes
    /// to the provider, which may not exceed the latest claim nor the deposit.
    /// If the provider disappears after delivering, the scheduler (System)
    /// settles exactly the latest claim once the review window has passed, with
    /// the marketplace co-signing, so the buyer gets the rest back.
    SettleClaim {
        claimed: Amount,
        latest_claim: Amount,
        service_cosigns: bool,
    },
    /// The arbitrator's decision on an open dispute.
    Decide {
        provider_bps: BasisPoints,
    },
    // Time (Agora's scheduler).
    FundingDeadlinePassed,
    DeliveryDeadlinePassed,
    ReviewWindowElapsed,
    /// The buyer released the funds but has not signed the release within
    /// the grace period: the marketplace co-signs it with the provider.
    ReleaseSigningOverdue,
    /// A dispute's decision deadline and its escalation both passed without
    /// a decision: the escrow is refunded.
    ArbitrationLapsed,
    // Chain (the watcher).
    /// The escrow holds `amount` in total; the least-confirmed funding has
    /// `confirmations`; the earliest funding is in block `funding_height`.
    FundingSeen {
        amount: Amount,
        confirmations: u32,
        funding_height: u64,
    },
    FundingReorged,
    PayoutBroadcast {
        txid: String,
    },
    /// Emitted once the payout is final (the watcher's required depth); a
    /// shallower reorg arrives as [`EscrowEvent::PayoutReorged`] before that.
    PayoutConfirmed {
        txid: String,
    },
    PayoutReorged,
    /// The buyer spent the escrow through the time-locked refund path.
    TimeoutSpendSeen {
        txid: String,
    },
    /// The accepted funding was spent, with two of the three keys, by a
    /// transaction Agora did not prepare; `outcome` is what it paid, as the
    /// chain shows it. Final once it is as deep as a payout must be.
    OtherSpendSeen {
        txid: String,
        outcome: Settled,
    },
}

const PARTIES: &[Actor] = &[Actor::Buyer, Actor::Provider];
const BUYER: &[Actor] = &[Actor::Buyer];
const PROVIDER: &[Actor] = &[Actor::Provider];
const ARBITRATOR: &[Actor] = &[Actor::Arbitrator];
const SYSTEM: &[Actor] = &[Actor::System];
const PROVIDER_OR_SYSTEM: &[Actor] = &[Actor::Provider, Actor::System];
const CHAIN: &[Actor] = &[Actor::Chain];

impl EscrowEvent {
    /// Who may cause this event, in any state. `AcceptCancel` is further
    /// restricted to the party that did not propose.
    pub const fn allowed_actors(&self) -> &'static [Actor] {
        match self {
            EscrowEvent::MarkDelivered => PROVIDER,
            EscrowEvent::SettleClaim { .. } => PROVIDER_OR_SYSTEM,
            EscrowEvent::ReleaseFunds | EscrowEvent::RequestRefund => BUYER,
            EscrowEvent::ProposeCancel
            | EscrowEvent::AcceptCancel
            | EscrowEvent::DeclineCancel
            | EscrowEvent::OpenDispute => PARTIES,
            EscrowEvent::Decide { .. } => ARBITRATOR,
            EscrowEvent::FundingDeadlinePassed
            | EscrowEvent::DeliveryDeadlinePassed
            | EscrowEvent::ReviewWindowElapsed
            | EscrowEvent::ReleaseSigningOverdue
            | EscrowEvent::ArbitrationLapsed => SYSTEM,
            EscrowEvent::FundingSeen { .. }
            | EscrowEvent::FundingReorged
            | EscrowEvent::PayoutBroadcast { .. }
            | EscrowEvent::PayoutConfirmed { .. }
            | EscrowEvent::PayoutReorged
            | EscrowEvent::TimeoutSpendSeen { .. }
            | EscrowEvent::OtherSpendSeen { .. } => CHAIN,
        }
    }

    /// Stable name, for errors and logs.
    pub const fn name(&self) -> &'static str {
        match self {
            EscrowEvent::MarkDelivered => "MarkDelivered",
            EscrowEvent::ReleaseFunds => "ReleaseFunds",
            EscrowEvent::RequestRefund => "RequestRefund",
            EscrowEvent::ProposeCancel => "ProposeCancel",
            EscrowEvent::AcceptCancel => "AcceptCancel",
            EscrowEvent::DeclineCancel => "DeclineCancel",
            EscrowEvent::OpenDispute => "OpenDispute",
            EscrowEvent::Decide { .. } => "Decide",
            EscrowEvent::SettleClaim { .. } => "SettleClaim",
            EscrowEvent::FundingDeadlinePassed => "FundingDeadlinePassed",
            EscrowEvent::DeliveryDeadlinePassed => "DeliveryDeadlinePassed",
            EscrowEvent::ReviewWindowElapsed => "ReviewWindowElapsed",
            EscrowEvent::ReleaseSigningOverdue => "ReleaseSigningOverdue",
            EscrowEvent::ArbitrationLapsed => "ArbitrationLapsed",
            EscrowEvent::FundingSeen { .. } => "FundingSeen",
            EscrowEvent::FundingReorged => "FundingReorged",
            EscrowEvent::PayoutBroadcast { .. } => "PayoutBroadcast",
            EscrowEvent::PayoutConfirmed { .. } => "PayoutConfirmed",
            EscrowEvent::PayoutReorged => "PayoutReorged",
            EscrowEvent::TimeoutSpendSeen { .. } => "TimeoutSpendSeen",
            EscrowEvent::OtherSpendSeen { .. } => "OtherSpendSeen",
        }
    }
}

/// The new state and what the caller must do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub state: EscrowState,
    pub effects: Vec<Effect>,
}

/// Work for the caller, returned as data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    Notify {
        to: Audience,
        notice: Notice,
    },
    /// Build the payout transaction for `plan` and collect signatures. Buyer
    /// and provider can always sign it; the arbitrator key only after an
    /// [`Effect::ArbitratorMaySign`] (and the signer re-checks the policy).
    PreparePayout {
        plan: PayoutPlan,
    },
    /// The signing policy allows the marketplace key to co-sign this outcome.
    ArbitratorMaySign {
        outcome: Outcome,
        rule: SigningRule,
    },
    /// Broadcast again the signed payout that a reorg dropped.
    Broadcast {
        txid: String,
    },
    Alert(Alert),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Audience {
    Buyer,
    Provider,
    Parties,
    Arbitrators,
}

impl From<Party> for Audience {
    fn from(party: Party) -> Self {
        match party {
            Party::Buyer => Audience::Buyer,
            Party::Provider => Audience::Provider,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Notice {
    FundingDetected {
        amount: Amount,
        confirmations: u32,
    },
    Underfunded {
        received: Amount,
        due: Amount,
    },
    /// `excess` above the amount due will be returned to the buyer in the payout.
    Funded {
        amount: Amount,
        excess: u64,
    },
    FundingReorged,
    Expired,
    Delivered {
        review_ends: DateTime<Utc>,
    },
    CancelProposed {
        by: Party,
    },
    CancelDeclined {
        by: Party,
    },
    DisputeOpened {
        by: Party,
        respond_by: DateTime<Utc>,
    },
    PayoutPrepared {
        outcome: Outcome,
        basis: PayoutBasis,
    },
    PayoutBroadcast {
        txid: String,
    },
    Settled {
        outcome: Settled,
    },
}

/// Conditions an operator must look at; none of them changes who gets paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Alert {
    /// The buyer's timelock path opens soon and the escrow is not settled.
    TimelockMarginReached(TimelockWatch),
    /// Accepted funding left the chain after the escrow moved on.
    FundingReorged { state: String },
    /// The escrow's balance differs from the accepted funding. Payouts keep
    /// using the accepted amount; the difference needs a human.
    FundingChanged { recorded: Amount, seen: Amount },
    /// The buyer took the timelock path while the escrow was still open.
    TimelockSpent { state: String },
    /// The escrow was spent by a transaction Agora did not prepare.
    SettledElsewhere { state: String, txid: String },
}

/// Why an event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EscrowError {
    #[error("{got:?} may not do this (allowed: {expected:?})")]
    WrongActor {
        expected: &'static [Actor],
        got: Actor,
    },
    #[error("{event} is not allowed while the escrow is {state}")]
    WrongState {
        state: &'static str,
        event: &'static str,
    },
    #[error("the deadline ({deadline}) has passed")]
    DeadlinePassed { deadline: DateTime<Utc> },
    #[error("not allowed before {deadline}")]
    DeadlineNotReached { deadline: DateTime<Utc> },
    #[error("the escrow is already settled")]
    AlreadySettled,
    #[error("funding in {got} for an escrow in {expected}")]
    AssetMismatch { expected: Asset, got: Asset },
    #[error("a settlement of {claimed} exceeds {limit} (the latest claim or the deposit)")]
    ClaimAboveLimit { claimed: Amount, limit: Amount },
    /// A metered order with a signed claim is never refunded whole: the
    /// provider is paid the latest claim (`SettleClaim`), the buyer the rest.
    #[error("the buyer signed a claim of {latest_claim}: settle it instead of refunding the deposit")]
    ClaimOutstanding { latest_claim: Amount },
}

/// How the API should classify an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// `FORBIDDEN`
    Forbidden,
    /// `CONFLICT`: the request does not fit the escrow's state or the clock.
    Conflict,
    /// `BAD_USER_INPUT`
    BadUserInput,
    /// `INTERNAL`: not the user's fault (a chain event that cannot belong to
    /// this escrow, a misconfiguration).
    Internal,
}

impl EscrowError {
    pub const fn kind(&self) -> ErrorKind {
        match self {
            EscrowError::WrongActor { .. } => ErrorKind::Forbidden,
            EscrowError::WrongState { .. }
            | EscrowError::DeadlinePassed { .. }
            | EscrowError::DeadlineNotReached { .. }
            | EscrowError::AlreadySettled
            | EscrowError::ClaimAboveLimit { .. }
            | EscrowError::ClaimOutstanding { .. } => ErrorKind::Conflict,
            EscrowError::AssetMismatch { .. } => ErrorKind::Internal,
        }
    }
}

/// Applies `event` to `state`. See the module doc for the order of checks.
pub fn apply(
    state: &EscrowState,
    event: &EscrowEvent,
    ctx: &Context,
) -> Result<Transition, EscrowError> {
    let allowed = event.allowed_actors();
    if !allowed.contains(&ctx.actor) {
        return Err(EscrowError::WrongActor {
            expected: allowed,
            got: ctx.actor,
        });
    }
    if state.is_settled() {
        return Err(EscrowError::AlreadySettled);
    }
    let mut transition = step(state, event, ctx)?;
    if let Some(watch) = timelock_margin_reached(
        &transition.state,
        ctx.terms.deadlines.timelock,
        ctx.chain_height,
    ) {
        transition
            .effects
            .push(Effect::Alert(Alert::TimelockMarginReached(watch)));
    }
    Ok(transition)
}

fn step(
    state: &EscrowState,
    event: &EscrowEvent,
    ctx: &Context,
) -> Result<Transition, EscrowError> {
    use EscrowState as S;
    let now = ctx.now;
    let deadlines = &ctx.terms.deadlines;
    let wrong_state = || EscrowError::WrongState {
        state: state.name(),
        event: event.name(),
    };
    // The actor check in `apply` guarantees a party for party events.
    let party = Party::from_actor(ctx.actor);

    match event {
        EscrowEvent::MarkDelivered => match state {
            S::Funded { funding } => {
                if passed(now, deadlines.delivery_by) {
                    return Err(EscrowError::DeadlinePassed {
                        deadline: deadlines.delivery_by,
                    });
                }
                Ok(Transition {
                    state: S::Delivered {
                        funding: *funding,
                        delivered_at: now,
                    },
                    effects: vec![notify(
                        Audience::Buyer,
                        Notice::Delivered {
                            review_ends: deadlines.review_ends(now),
                        },
                    )],
                })
            }
            _ => Err(wrong_state()),
        },

        EscrowEvent::ReleaseFunds => match state {
            S::Funded { funding }
            | S::Delivered { funding, .. }
            | S::Cancelling { funding, .. } => Ok(pay_out(
                funding,
                PayoutBasis::BuyerReleased { at: now },
                ctx,
            )),
            _ => Err(wrong_state()),
        },

        EscrowEvent::RequestRefund => match state {
            S::Funded { funding }
            | S::Cancelling {
                funding,
                delivered_at: None,
                ..
            } => {
                if !passed(now, deadlines.delivery_by) {
                    return Err(EscrowError::DeadlineNotReached {
                        deadline: deadlines.delivery_by,
                    });
                }
                refuse_if_claimed(ctx)?;
                Ok(pay_out(funding, PayoutBasis::DeliveryDeadlinePassed, ctx))
            }
            _ => Err(wrong_state()),
        },

        EscrowEvent::ProposeCancel => {
            let (funding, delivered_at) = match state {
                S::Funded { funding } => (funding, None),
                S::Delivered {
                    funding,
                    delivered_at,
                } => (funding, Some(*delivered_at)),
                _ => return Err(wrong_state()),
            };
            let by = party_or_forbidden(party, ctx.actor, event)?;
            Ok(Transition {
                state: S::Cancelling {
                    funding: *funding,
                    proposed_by: by,
                    proposed_at: now,
                    delivered_at,
                },
                effects: vec![notify(by.other().into(), Notice::CancelProposed { by })],
            })
        }

        EscrowEvent::AcceptCancel => match state {
            S::Cancelling {
                funding,
                proposed_by,
                ..
            } => {
                let by = party_or_forbidden(party, ctx.actor, event)?;
                if by == *proposed_by {
                    return Err(EscrowError::WrongActor {
                        expected: match proposed_by.other() {
                            Party::Buyer => BUYER,
                            Party::Provider => PROVIDER,
                        },
                        got: ctx.actor,
                    });
                }
                let basis = PayoutBasis::MutualCancel {
                    proposed_by: *proposed_by,
                    accepted_by: by,
                };
                Ok(pay_out(funding, basis, ctx))
            }
            _ => Err(wrong_state()),
        },

        EscrowEvent::DeclineCancel => match state {
            S::Cancelling {
                funding,
                delivered_at,
                ..
            } => {
                let by = party_or_forbidden(party, ctx.actor, event)?;
                Ok(Transition {
                    state: before_cancel(*funding, *delivered_at),
                    effects: vec![notify(by.other().into(), Notice::CancelDeclined { by })],
                })
            }
            _ => Err(wrong_state()),
        },

        EscrowEvent::OpenDispute => {
            let (funding, delivered_at) = match state {
                S::Funded { funding } => (funding, None),
                S::Delivered {
                    funding,
                    delivered_at,
                } => (funding, Some(*delivered_at)),
                S::Cancelling {
                    funding,
                    delivered_at,
                    ..
                } => (funding, *delivered_at),
                _ => return Err(wrong_state()),
            };
            // After a delivery, silence through the review window is consent.
            if let Some(delivered_at) = delivered_at {
                let review_ends = deadlines.review_ends(delivered_at);
                if passed(now, review_ends) {
                    return Err(EscrowError::DeadlinePassed {
                        deadline: review_ends,
                    });
                }
            }
            let by = party_or_forbidden(party, ctx.actor, event)?;
            let respond_by = deadlines.dispute_response_by(now);
            let notice = Notice::DisputeOpened { by, respond_by };
            Ok(Transition {
                state: S::Disputed {
                    funding: *funding,
                    opened_by: by,
                    opened_at: now,
                    respond_by,
                    delivered_at,
                },
                effects: vec![
                    notify(by.other().into(), notice.clone()),
                    notify(Audience::Arbitrators, notice),
                ],
            })
        }

        EscrowEvent::SettleClaim {
            claimed,
            latest_claim,
            service_cosigns,
        } => match state {
            S::Funded { funding }
            | S::Delivered { funding, .. }
            | S::Cancelling { funding, .. } => {
                if ctx.actor == Actor::System {
                    // Only the latest claim, only once the service's automatic
                    // outcome is due (the review window of a delivery passed,
                    // or the delivery deadline passed without one), and only
                    // with the marketplace co-signing.
                    let due_at = match state {
                        S::Delivered { delivered_at, .. }
                        | S::Cancelling {
                            delivered_at: Some(delivered_at),
                            ..
                        } => deadlines.review_ends(*delivered_at),
                        _ => deadlines.delivery_by,
                    };
                    if !passed(now, due_at) {
                        return Err(EscrowError::DeadlineNotReached { deadline: due_at });
                    }
                    if !*service_cosigns || claimed != latest_claim {
                        return Err(wrong_state());
                    }
                } else if matches!(state, S::Cancelling { .. }) {
                    return Err(wrong_state());
                }
                let due = ctx.terms.amount_due;
                for other in [latest_claim, &due, &funding.amount] {
                    if other.asset() != claimed.asset() {
                        return Err(EscrowError::AssetMismatch {
                            expected: other.asset(),
                            got: claimed.asset(),
                        });
                    }
                }
                // The deposit (amount due) bounds every claim; the network fee
                // is checked when the payout is built (`claim_split`).
                let limit = if latest_claim.minor() <= due.minor() { *latest_claim } else { due };
                if claimed.minor() > limit.minor() || claimed.minor() == 0 {
                    return Err(EscrowError::ClaimAboveLimit {
                        claimed: *claimed,
                        limit,
                    });
                }
                Ok(pay_out(
                    funding,
                    PayoutBasis::ClaimSettled {
                        claimed: *claimed,
                        latest_claim: *latest_claim,
                        service_cosigns: *service_cosigns,
                        at: now,
                    },
                    ctx,
                ))
            }
            _ => Err(wrong_state()),
        },

        EscrowEvent::Decide { provider_bps } => match state {
            S::Disputed { funding, .. } => {
                let basis = PayoutBasis::ArbitrationDecision {
                    provider_bps: *provider_bps,
                    decided_at: now,
                };
                Ok(pay_out(funding, basis, ctx))
            }
            _ => Err(wrong_state()),
        },

        EscrowEvent::FundingDeadlinePassed => match state {
            S::AwaitingFunding { seen } => {
                if !passed(now, deadlines.funding_by) {
                    return Err(EscrowError::DeadlineNotReached {
                        deadline: deadlines.funding_by,
                    });
                }
                Ok(expire(seen.as_ref(), ctx))
            }
            _ => Err(wrong_state()),
        },

        EscrowEvent::DeliveryDeadlinePassed => match state {
            S::Funded { funding }
            | S::Cancelling {
                funding,
                delivered_at: None,
                ..
            } => {
                if !passed(now, deadlines.delivery_by) {
                    return Err(EscrowError::DeadlineNotReached {
                        deadline: deadlines.delivery_by,
                    });
                }
                refuse_if_claimed(ctx)?;
                Ok(pay_out(funding, PayoutBasis::DeliveryDeadlinePassed, ctx))
            }
            // Late funds of an expired order: the refund was prepared before
            // the arbitrator could co-sign it; now it can.
            S::PayingOut { payout, .. } if payout.basis == PayoutBasis::LateFunds => {
                if !passed(now, deadlines.delivery_by) {
                    return Err(EscrowError::DeadlineNotReached {
                        deadline: deadlines.delivery_by,
                    });
                }
                Ok(Transition {
                    state: state.clone(),
                    effects: arbitrator_may_sign(state, payout.outcome(), ctx)
                        .into_iter()
                        .collect(),
                })
            }
            _ => Err(wrong_state()),
        },

        EscrowEvent::ReviewWindowElapsed => match state {
            S::Delivered {
                funding,
                delivered_at,
            }
            | S::Cancelling {
                funding,
                delivered_at: Some(delivered_at),
                ..
            } => {
                let review_ends = deadlines.review_ends(*delivered_at);
                if !passed(now, review_ends) {
                    return Err(EscrowError::DeadlineNotReached {
                        deadline: review_ends,
                    });
                }
                let basis = PayoutBasis::ReviewWindowPassed {
                    delivered_at: *delivered_at,
                };
                Ok(pay_out(funding, basis, ctx))
            }
            _ => Err(wrong_state()),
        },

        EscrowEvent::ArbitrationLapsed => match state {
            S::Disputed {
                funding, opened_at, ..
            } => {
                let lapses = super::deadlines::add(deadlines.decide_by(*opened_at), deadlines.decision_period);
                if !passed(now, lapses) {
                    return Err(EscrowError::DeadlineNotReached { deadline: lapses });
                }
                Ok(pay_out(funding, PayoutBasis::ArbitrationLapsed { at: now }, ctx))
            }
            _ => Err(wrong_state()),
        },

        EscrowEvent::ReleaseSigningOverdue => match state {
            S::PayingOut { payout, .. } => {
                let PayoutBasis::BuyerReleased { at } = payout.basis else {
                    return Err(wrong_state());
                };
                let ends = deadlines.release_signing_ends(at);
                if !passed(now, ends) {
                    return Err(EscrowError::DeadlineNotReached { deadline: ends });
                }
                Ok(Transition {
                    state: state.clone(),
                    effects: arbitrator_may_sign(state, payout.outcome(), ctx)
                        .into_iter()
                        .collect(),
                })
            }
            _ => Err(wrong_state()),
        },

        EscrowEvent::FundingSeen {
            amount,
            confirmations,
            funding_height,
        } => {
            let due = ctx.terms.amount_due;
            if amount.asset() != due.asset() {
                return Err(EscrowError::AssetMismatch {
                    expected: due.asset(),
                    got: amount.asset(),
                });
            }
            // Unconfirmed funds never count, whatever the terms say.
            let confirmed = *confirmations >= ctx.terms.required_confirmations.max(1);
            match state {
                S::AwaitingFunding { seen } => {
                    if amount.minor() == 0 {
                        return Ok(unchanged(S::AwaitingFunding { seen: None }));
                    }
                    let pending = PendingFunding {
                        amount: *amount,
                        confirmations: *confirmations,
                        height: *funding_height,
                        first_seen_at: seen.map_or(now, |s| s.first_seen_at),
                    };
                    if passed(now, deadlines.funding_by) {
                        // Too late to fund the order: expire it, refunding
                        // whatever is confirmed.
                        return Ok(expire(Some(&pending), ctx));
                    }
                    if !confirmed {
                        let news = seen.map(|s| s.amount) != Some(*amount);
                        return Ok(Transition {
                            state: S::AwaitingFunding {
                                seen: Some(pending),
                            },
                            effects: if news {
                                vec![notify(
                                    Audience::Buyer,
                                    Notice::FundingDetected {
                                        amount: *amount,
                                        confirmations: *confirmations,
                                    },
                                )]
                            } else {
                                Vec::new()
                            },
                        });
                    }
                    if amount.minor() < due.minor() {
                        return Ok(Transition {
                            state: S::AwaitingFunding {
                                seen: Some(pending),
                            },
                            effects: vec![notify(
                                Audience::Buyer,
                                Notice::Underfunded {
                                    received: *amount,
                                    due,
                                },
                            )],
                        });
                    }
                    let excess = amount.minor() - due.minor();
                    Ok(Transition {
                        state: S::Funded {
                            funding: Funding {
                                amount: *amount,
                                height: *funding_height,
                                confirmed_at: now,
                            },
                        },
                        effects: vec![notify(
                            Audience::Parties,
                            Notice::Funded {
                                amount: *amount,
                                excess,
                            },
                        )],
                    })
                }
                // Funds after expiry are never accepted as funding, only refunded.
                S::Expired { .. } => {
                    if confirmed && amount.minor() > 0 {
                        let funding = Funding {
                            amount: *amount,
                            height: *funding_height,
                            confirmed_at: now,
                        };
                        Ok(pay_out(&funding, PayoutBasis::LateFunds, ctx))
                    } else {
                        Ok(unchanged(state.clone()))
                    }
                }
                S::Funded { funding }
                | S::Delivered { funding, .. }
                | S::Cancelling { funding, .. }
                | S::Disputed { funding, .. }
                | S::PayingOut { funding, .. } => {
                    if *amount == funding.amount {
                        Ok(unchanged(state.clone()))
                    } else {
                        Ok(Transition {
                            state: state.clone(),
                            effects: vec![Effect::Alert(Alert::FundingChanged {
                                recorded: funding.amount,
                                seen: *amount,
                            })],
                        })
                    }
                }
                S::Settled { .. } => Err(EscrowError::AlreadySettled),
            }
        }

        EscrowEvent::FundingReorged => match state {
            S::AwaitingFunding { .. } => Ok(unchanged(S::AwaitingFunding { seen: None })),
            S::Expired { .. } => Ok(unchanged(state.clone())),
            // Nothing was delivered yet: stop the provider before it starts.
            S::Funded { .. } => Ok(Transition {
                state: S::AwaitingFunding { seen: None },
                effects: vec![
                    notify(Audience::Parties, Notice::FundingReorged),
                    Effect::Alert(Alert::FundingReorged {
                        state: state.name().to_owned(),
                    }),
                ],
            }),
            // Delivery or a decision already happened on the strength of the
            // funding; undoing that is for a human. The funding transaction
            // usually confirms again.
            S::Delivered { .. }
            | S::Cancelling { .. }
            | S::Disputed { .. }
            | S::PayingOut { .. } => Ok(Transition {
                state: state.clone(),
                effects: vec![Effect::Alert(Alert::FundingReorged {
                    state: state.name().to_owned(),
                })],
            }),
            S::Settled { .. } => Err(EscrowError::AlreadySettled),
        },

        EscrowEvent::PayoutBroadcast { txid } => match state {
            S::PayingOut { funding, payout } => {
                if payout.txid.as_deref() == Some(txid.as_str()) {
                    return Ok(unchanged(state.clone()));
                }
                Ok(Transition {
                    state: S::PayingOut {
                        funding: *funding,
                        payout: Payout {
                            txid: Some(txid.clone()),
                            ..payout.clone()
                        },
                    },
                    effects: vec![notify(
                        Audience::Parties,
                        Notice::PayoutBroadcast { txid: txid.clone() },
                    )],
                })
            }
            _ => Err(wrong_state()),
        },

        EscrowEvent::PayoutConfirmed { txid } => match state {
            S::PayingOut { payout, .. } => {
                let outcome = Settled::from(payout.outcome());
                Ok(Transition {
                    state: S::Settled {
                        outcome,
                        by: SettledBy::Payout { txid: txid.clone() },
                        at: now,
                    },
                    effects: vec![notify(Audience::Parties, Notice::Settled { outcome })],
                })
            }
            _ => Err(wrong_state()),
        },

        EscrowEvent::PayoutReorged => match state {
            S::PayingOut { funding, payout } => match &payout.txid {
                Some(txid) => Ok(Transition {
                    state: S::PayingOut {
                        funding: *funding,
                        payout: Payout {
                            txid: None,
                            ..payout.clone()
                        },
                    },
                    effects: vec![Effect::Broadcast { txid: txid.clone() }],
                }),
                None => Ok(unchanged(state.clone())),
            },
            _ => Err(wrong_state()),
        },

        EscrowEvent::OtherSpendSeen { txid, outcome } => match state {
            S::Funded { .. }
            | S::Delivered { .. }
            | S::Cancelling { .. }
            | S::Disputed { .. }
            | S::PayingOut { .. } => {
                let mut effects = vec![notify(
                    Audience::Parties,
                    Notice::Settled { outcome: *outcome },
                )];
                // Two keys agreeing on something else than the prepared
                // payout is legitimate but worth a look.
                effects.push(Effect::Alert(Alert::SettledElsewhere {
                    state: state.name().to_owned(),
                    txid: txid.clone(),
                }));
                Ok(Transition {
                    state: S::Settled {
                        outcome: *outcome,
                        by: SettledBy::Other { txid: txid.clone() },
                        at: now,
                    },
                    effects,
                })
            }
            _ => Err(wrong_state()),
        },

        EscrowEvent::TimeoutSpendSeen { txid } => match state {
            S::Funded { .. }
            | S::Delivered { .. }
            | S::Cancelling { .. }
            | S::Disputed { .. }
            | S::PayingOut { .. } => {
                let mut effects = vec![notify(
                    Audience::Parties,
                    Notice::Settled {
                        outcome: Settled::Refunded,
                    },
                )];
                let was_refunding = matches!(
                    state,
                    S::PayingOut { payout, .. } if payout.outcome() == Outcome::Refund
                );
                if !was_refunding {
                    effects.push(Effect::Alert(Alert::TimelockSpent {
                        state: state.name().to_owned(),
                    }));
                }
                Ok(Transition {
                    state: S::Settled {
                        outcome: Settled::Refunded,
                        by: SettledBy::Timelock { txid: txid.clone() },
                        at: now,
                    },
                    effects,
                })
            }
            _ => Err(wrong_state()),
        },
    }
}

/// Refunds for non-delivery ignore nothing the buyer signed: with a claim
/// outstanding, the service settles it instead (`SettleClaim` by System).
fn refuse_if_claimed(ctx: &Context) -> Result<(), EscrowError> {
    match ctx.latest_claim {
        Some(latest_claim) if latest_claim.minor() > 0 => {
            Err(EscrowError::ClaimOutstanding { latest_claim })
        }
        _ => Ok(()),
    }
}

fn notify(to: Audience, notice: Notice) -> Effect {
    Effect::Notify { to, notice }
}

fn unchanged(state: EscrowState) -> Transition {
    Transition {
        state,
        effects: Vec::new(),
    }
}

/// The party behind a party event. `apply` already refused other actors, so
/// the error arm only guards against a caller bypassing it.
fn party_or_forbidden(
    party: Option<Party>,
    actor: Actor,
    event: &EscrowEvent,
) -> Result<Party, EscrowError> {
    party.ok_or(EscrowError::WrongActor {
        expected: event.allowed_actors(),
        got: actor,
    })
}

fn before_cancel(funding: Funding, delivered_at: Option<DateTime<Utc>>) -> EscrowState {
    match delivered_at {
        Some(delivered_at) => EscrowState::Delivered {
            funding,
            delivered_at,
        },
        None => EscrowState::Funded { funding },
    }
}

/// Expires an unfunded escrow; confirmed funds already in it are refunded.
fn expire(seen: Option<&PendingFunding>, ctx: &Context) -> Transition {
    let expired = notify(Audience::Buyer, Notice::Expired);
    let confirmed = seen.filter(|s| {
        s.amount.minor() > 0 && s.confirmations >= ctx.terms.required_confirmations.max(1)
    });
    match confirmed {
        Some(s) => {
            let funding = Funding {
                amount: s.amount,
                height: s.height,
                confirmed_at: ctx.now,
            };
            let mut transition = pay_out(&funding, PayoutBasis::LateFunds, ctx);
            transition.effects.insert(0, expired);
            transition
        }
        None => Transition {
            state: EscrowState::Expired { at: ctx.now },
            effects: vec![expired],
        },
    }
}

/// Prepares the payout `basis` allows, and lets the arbitrator co-sign it
/// when the signing policy says so.
fn pay_out(funding: &Funding, basis: PayoutBasis, ctx: &Context) -> Transition {
    let terms = &ctx.terms;
    let outcome = basis.outcome();
    let arbitration_fee = match basis {
        PayoutBasis::ArbitrationDecision { .. } => terms.fees.arbitration_fee(terms.amount_due),
        _ => 0,
    };
    // Late funds were never the price of anything: all of it is the buyer's.
    let amount_due = match basis {
        PayoutBasis::LateFunds => funding.amount,
        _ => terms.amount_due,
    };
    let plan = match basis {
        PayoutBasis::ClaimSettled { claimed, .. } => {
            PayoutPlan::claim(outcome, funding.amount, claimed, terms.fees.commission_bps)
        }
        _ => PayoutPlan::new(
            outcome,
            funding.amount,
            amount_due,
            terms.fees.commission_bps,
            arbitration_fee,
        ),
    };
    let state = EscrowState::PayingOut {
        funding: *funding,
        payout: Payout {
            basis,
            plan,
            prepared_at: ctx.now,
            txid: None,
        },
    };
    let mut effects = vec![Effect::PreparePayout { plan }];
    effects.extend(arbitrator_may_sign(&state, outcome, ctx));
    effects.push(notify(
        Audience::Parties,
        Notice::PayoutPrepared { outcome, basis },
    ));
    Transition { state, effects }
}

fn arbitrator_may_sign(state: &EscrowState, outcome: Outcome, ctx: &Context) -> Option<Effect> {
    may_arbitrator_sign(state, outcome, ctx)
        .ok()
        .map(|rule| Effect::ArbitratorMaySign { outcome, rule })
}

#[cfg(test)]
mod lapse_tests {
    use super::*;
    use crate::escrow::tests::{funded, hours, ok};

    #[test]
    fn a_dispute_nobody_decides_is_refunded_without_an_arbitration_fee() {
        let opened = ok(&funded(), EscrowEvent::OpenDispute, Actor::Buyer, hours(10));
        // Response 2 days + decision 3 days + escalation 3 days after hour 10.
        let lapses = hours(10 + 48 + 72 + 72);
        let early = apply(&opened.state, &EscrowEvent::ArbitrationLapsed, &crate::escrow::tests::ctx(Actor::System, lapses));
        assert!(matches!(early, Err(EscrowError::DeadlineNotReached { .. })), "{early:?}");
        let t = ok(&opened.state, EscrowEvent::ArbitrationLapsed, Actor::System, lapses + chrono::Duration::seconds(1));
        let EscrowState::PayingOut { payout, .. } = &t.state else { panic!("{:?}", t.state) };
        assert_eq!(payout.outcome(), Outcome::Refund);
        let b = payout.plan.breakdown(300).unwrap();
        assert_eq!(b.arbitration_fee, 0);
        assert_eq!(b.provider, 0);
        assert!(t.effects.iter().any(|e| matches!(e, Effect::ArbitratorMaySign { rule: SigningRule::ArbitrationLapsed, .. })));
        let by_arbitrator = apply(&opened.state, &EscrowEvent::ArbitrationLapsed, &crate::escrow::tests::ctx(Actor::Arbitrator, lapses));
        assert!(matches!(by_arbitrator, Err(EscrowError::WrongActor { .. })));
    }
}
