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
    /// How long the arbitrator has to decide once the response deadline passed.
    /// A case still undecided then is escalated to another arbitrator, who has
    /// the same time again (see [`Deadlines::longest_path`]).
    #[serde(default = "default_arbitration_period")]
    pub decision_period: Duration,
    /// How long either party may appeal a first decision.
    #[serde(default = "default_arbitration_period")]
    pub appeal_window: Duration,
    /// How long the second arbitrator has to decide an appeal; after it the
    /// first decision stands.
    #[serde(default = "default_arbitration_period")]
    pub appeal_decision_period: Duration,
    /// How long a buyer who released the funds has to sign the release before
    /// the marketplace key co-signs it with the provider instead.
    #[serde(default = "default_release_signing_grace")]
    pub release_signing_grace: Duration,
    /// The chain's time-locked refund path; `None` on chains without one (XRPL).
    pub timelock: Option<ChainTimelock>,
}

/// Orders stored before these periods existed get the defaults they were
/// placed under.
fn default_arbitration_period() -> Duration {
    Duration::hours(72)
}

fn default_release_signing_grace() -> Duration {
    Duration::hours(24)
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

    /// The last moment for a first decision on a dispute opened at `opened_at`
    /// (before escalation gives a second arbitrator the same time again).
    pub fn decide_by(&self, opened_at: DateTime<Utc>) -> DateTime<Utc> {
        add(self.dispute_response_by(opened_at), self.decision_period)
    }

    /// When the marketplace may co-sign a release the buyer asked for at
    /// `released_at` and has not signed.
    pub fn release_signing_ends(&self, released_at: DateTime<Utc>) -> DateTime<Utc> {
        add(released_at, self.release_signing_grace)
    }

    /// The longest a funded escrow can stay open under these rules, counted
    /// from its funding (which is never before the order was placed, so the
    /// delivery deadline is at most `delivery_by − placed_at` away):
    /// delivery, a dispute opened at the last moment of the review window,
    /// its response time, a first decision (and, if the arbitrator is silent,
    /// an escalated one), the appeal window and the appeal's decision. The
    /// chain timelock must be longer than this plus the settlement margin.
    pub fn longest_path(&self, placed_at: DateTime<Utc>) -> Duration {
        let until_delivery = (self.delivery_by - placed_at).max(Duration::zero());
        longest(
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

/// Delivery, then the review window, then the longer of the two tails: a
/// dispute opened at the window's last moment (`dispute_tail`, summed), or a
/// release the buyer asked for at that moment and left unsigned through the
/// grace.
pub(crate) fn longest(
    until_delivery: Duration,
    review: Duration,
    dispute_tail: &[Duration],
    release_grace: Duration,
) -> Duration {
    let sum = |parts: &[Duration]| {
        parts
            .iter()
            .map(|d| (*d).max(Duration::zero()))
            .fold(Duration::zero(), |total, d| total.checked_add(&d).unwrap_or(Duration::MAX))
    };
    let tail = sum(dispute_tail).max(release_grace.max(Duration::zero()));
    sum(&[until_delivery, review, tail])
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

/// The timelock (in blocks) an escrow needs so that `longest_path` plus
/// `margin_blocks` fits before the buyer's refund path opens, when blocks
/// come at least every `block_interval` (give a conservative, shorter
/// interval than the chain's average). `None` when it exceeds `max_blocks`
/// or the inputs make no sense.
pub fn timelock_blocks_for(
    longest_path: Duration,
    block_interval: Duration,
    margin_blocks: u32,
    max_blocks: u32,
) -> Option<u32> {
    let interval = block_interval.num_seconds();
    let path = longest_path.num_seconds();
    if interval <= 0 || path < 0 {
        return None;
    }
    let path_blocks = u64::try_from(path).ok()?.div_ceil(u64::try_from(interval).ok()?);
    let blocks = path_blocks.checked_add(u64::from(margin_blocks))?.checked_add(1)?;
    u32::try_from(blocks).ok().filter(|b| *b <= max_blocks)
}

#[cfg(test)]
mod sizing_tests {
    use super::*;

    #[test]
    fn the_timelock_covers_the_longest_path_plus_the_margin() {
        // 10 days of 8-minute blocks: 1,800 blocks, + 6 margin + 1.
        let blocks = timelock_blocks_for(Duration::days(10), Duration::minutes(8), 6, 65_535);
        assert_eq!(blocks, Some(1_807));
        // A local chain with a block every 10 s needs far more blocks for the
        // same time: the count follows the chain's pace.
        let fast = timelock_blocks_for(Duration::hours(5), Duration::seconds(8), 6, 65_535);
        assert_eq!(fast, Some(2_257));
    }

    #[test]
    fn a_path_that_cannot_fit_the_chains_limit_is_refused() {
        assert_eq!(timelock_blocks_for(Duration::days(400), Duration::minutes(8), 6, 65_535), None);
        assert_eq!(timelock_blocks_for(Duration::days(1), Duration::zero(), 6, 65_535), None);
    }
}
