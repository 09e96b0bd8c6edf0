//! An order's deadlines and the chain timelock behind its escrow.
//!
//! One convention everywhere: an action that must happen *by* a deadline is
//! allowed while `now <= deadline`, and the deadline has *passed* once
//! `now > deadline`. The two sets never overlap, so at no instant can both
//! "deliver" and "refund for non-delivery" (or "dispute" and "auto-release")
//! be allowed.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::state::{EscrowState, Outcome};

/// The deadlines frozen into an order when it is placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadlines {
    /// The escrow must hold the amount due, with the required confirmations, by then.
    pub funding_by: DateTime<Utc>,
    /// The provider must mark the order delivered by then.
    pub delivery_by: DateTime<Utc>,
    /// How long the buyer has after delivery to dispute before funds auto-release.
    pub review_period: Duration,
    /// How long the other party has to answer a dispute.
    pub dispute_response: Duration,
    /// The chain's time-locked refund path; `None` on chains without one (XRPL).
    pub timelock: Option<ChainTimelock>,
}

/// The buyer's unilateral refund path: spendable `blocks` after the funding
/// confirmed. Agora must settle every escrow before that, so it alerts
/// `margin_blocks` earlier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainTimelock {
    pub blocks: u32,
    pub margin_blocks: u32,
}

/// When the timelock margin of a funded escrow is (or will be) reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelockWatch {
    /// Height of the block holding the earliest funding.
    pub funding_height: u64,
    /// First height at which the alert fires: `unlock_height − margin`.
    pub alert_height: u64,
    /// First height at which the buyer can spend the refund path.
    pub unlock_height: u64,
}

impl Deadlines {
    /// The end of the review window of a delivery made at `delivered_at`.
    pub fn review_ends(&self, delivered_at: DateTime<Utc>) -> DateTime<Utc> {
        add(delivered_at, self.review_period)
    }

    /// The last moment to answer a dispute opened at `opened_at`.
    pub fn dispute_response_by(&self, opened_at: DateTime<Utc>) -> DateTime<Utc> {
        add(opened_at, self.dispute_response)
    }
}

/// Whether `deadline` has passed at `now` (strictly after it; see the module doc).
pub fn passed(now: DateTime<Utc>, deadline: DateTime<Utc>) -> bool {
    now > deadline
}

/// `at + duration`, saturating at the end of representable time instead of
/// panicking as chrono's `+` does. A negative duration counts as zero, so a
/// corrupted period can only make a window longer, never end it early.
pub fn add(at: DateTime<Utc>, duration: Duration) -> DateTime<Utc> {
    let duration = duration.max(Duration::zero());
    at.checked_add_signed(duration)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The timelock heights of `state`, if it is an escrow Agora must still settle
/// before the buyer's refund path opens: funded, and either without an outcome
/// or with a payout that pays the provider something and is not settled yet
/// (a release still unconfirmed at unlock could be pre-empted by the buyer).
/// A pending refund is not watched: the buyer taking the timelock path gets
/// the same result.
pub fn timelock_watch(
    state: &EscrowState,
    timelock: Option<ChainTimelock>,
) -> Option<TimelockWatch> {
    let timelock = timelock?;
    let funding = match state {
        EscrowState::Funded { funding }
        | EscrowState::Delivered { funding, .. }
        | EscrowState::Cancelling { funding, .. }
        | EscrowState::Disputed { funding, .. } => funding,
        EscrowState::PayingOut { funding, payout } if payout.outcome() != Outcome::Refund => {
            funding
        }
        _ => return None,
    };
    let unlock_height = funding.height.saturating_add(u64::from(timelock.blocks));
    Some(TimelockWatch {
        funding_height: funding.height,
        alert_height: unlock_height.saturating_sub(u64::from(timelock.margin_blocks)),
        unlock_height,
    })
}

/// The timelock alert for `state` at `chain_height`, if the margin is reached:
/// `chain_height ≥ funding_height + T − margin`. Pure, so the watcher can
/// sweep all open escrows on every block and the state machine can attach the
/// same alert to its transitions.
pub fn timelock_margin_reached(
    state: &EscrowState,
    timelock: Option<ChainTimelock>,
    chain_height: u64,
) -> Option<TimelockWatch> {
    timelock_watch(state, timelock).filter(|watch| chain_height >= watch.alert_height)
}
