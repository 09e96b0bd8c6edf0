//! Tests of the escrow state machine and signing policy: one unit test per
//! transition (accepted and refused), and property tests over random event
//! sequences.

mod adversarial;
mod policy;
mod properties;
mod transitions;

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::deadlines::{ChainTimelock, Deadlines};
use super::machine::{apply, Context, EscrowError, EscrowEvent, EscrowTerms, Transition};
use super::plan::FeeSchedule;
use super::state::{Actor, EscrowState, Funding, Party};
use crate::money::{Amount, Asset, BasisPoints};

pub(super) const DUE: u64 = 100_000;
pub(super) const CONFIRMATIONS: u32 = 3;
pub(super) const FUNDING_HEIGHT: u64 = 1_000;
pub(super) const TIMELOCK: ChainTimelock = ChainTimelock {
    blocks: 4_320,
    margin_blocks: 432,
};

pub(super) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
}

pub(super) fn hours(h: i64) -> DateTime<Utc> {
    t0() + Duration::hours(h)
}

pub(super) fn sats(v: u64) -> Amount {
    Amount::new(Asset::Btc, v).unwrap()
}

pub(super) fn bps(v: i64) -> BasisPoints {
    BasisPoints::new(v).unwrap()
}

/// Funding by hour 24, delivery by hour 192 (day 8), 3-day review, 2 days
/// to answer a dispute, 2.5 % commission, arbitration 1 000 sats + 1 %.
pub(super) fn terms() -> EscrowTerms {
    EscrowTerms {
        amount_due: sats(DUE),
        required_confirmations: CONFIRMATIONS,
        fees: FeeSchedule {
            commission_bps: bps(250),
            arbitration_fee_fixed: sats(1_000),
            arbitration_fee_bps: bps(100),
        },
        deadlines: Deadlines {
            funding_by: hours(24),
            delivery_by: hours(192),
            review_period: Duration::days(3),
            dispute_response: Duration::days(2),
            decision_period: Duration::days(3),
            appeal_window: Duration::days(3),
            appeal_decision_period: Duration::days(3),
            release_signing_grace: Duration::days(1),
            timelock: Some(TIMELOCK),
        },
    }
}

pub(super) fn ctx(actor: Actor, now: DateTime<Utc>) -> Context {
    Context {
        now,
        actor,
        chain_height: FUNDING_HEIGHT + 10,
        terms: terms(),
        latest_claim: None,
    }
}

pub(super) fn funding() -> Funding {
    funding_of(DUE)
}

pub(super) fn funding_of(amount: u64) -> Funding {
    Funding {
        amount: sats(amount),
        height: FUNDING_HEIGHT,
        confirmed_at: hours(2),
    }
}

pub(super) fn funded() -> EscrowState {
    EscrowState::Funded { funding: funding() }
}

/// Delivered at hour 48: the review window ends at hour 120.
pub(super) fn delivered() -> EscrowState {
    EscrowState::Delivered {
        funding: funding(),
        delivered_at: hours(48),
    }
}

pub(super) fn cancelling(proposed_by: Party, delivered_at: Option<DateTime<Utc>>) -> EscrowState {
    EscrowState::Cancelling {
        funding: funding(),
        proposed_by,
        proposed_at: hours(50),
        delivered_at,
    }
}

pub(super) fn disputed() -> EscrowState {
    EscrowState::Disputed {
        funding: funding(),
        opened_by: Party::Buyer,
        opened_at: hours(60),
        respond_by: hours(108),
        delivered_at: Some(hours(48)),
    }
}

pub(super) fn funding_seen(amount: u64, confirmations: u32) -> EscrowEvent {
    EscrowEvent::FundingSeen {
        amount: sats(amount),
        confirmations,
        funding_height: FUNDING_HEIGHT,
    }
}

/// Applies `event` by `actor` at `now`, expecting success.
pub(super) fn ok(
    state: &EscrowState,
    event: EscrowEvent,
    actor: Actor,
    now: DateTime<Utc>,
) -> Transition {
    match apply(state, &event, &ctx(actor, now)) {
        Ok(t) => t,
        Err(e) => panic!(
            "{} by {actor:?} in {} failed: {e}",
            event.name(),
            state.name()
        ),
    }
}

/// Applies `event` by `actor` at `now`, expecting a refusal.
pub(super) fn refused(
    state: &EscrowState,
    event: EscrowEvent,
    actor: Actor,
    now: DateTime<Utc>,
) -> EscrowError {
    match apply(state, &event, &ctx(actor, now)) {
        Ok(t) => panic!(
            "{} by {actor:?} in {} was accepted: now {}",
            event.name(),
            state.name(),
            t.state.name()
        ),
        Err(e) => e,
    }
}
