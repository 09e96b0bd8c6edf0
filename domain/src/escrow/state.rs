//! The states an escrow can be in, and the facts each state records.
//!
//! A state carries everything later rules need to check (when the funding
//! confirmed, when delivery happened, who proposed a cancel, what the
//! arbitrator decided), so the state machine and the signing policy never
//! need a second source of truth.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::plan::PayoutPlan;
use crate::money::{Amount, BasisPoints};

/// Who (or what) causes an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Actor {
    Buyer,
    Provider,
    /// The arbitrator assigned to the order's dispute.
    Arbitrator,
    /// Agora's scheduler, reporting that a deadline has passed.
    System,
    /// The chain watcher, reporting what it saw on chain.
    Chain,
}

/// One of the two parties to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Party {
    Buyer,
    Provider,
}

impl Party {
    pub const fn other(self) -> Party {
        match self {
            Party::Buyer => Party::Provider,
            Party::Provider => Party::Buyer,
        }
    }

    pub const fn actor(self) -> Actor {
        match self {
            Party::Buyer => Actor::Buyer,
            Party::Provider => Actor::Provider,
        }
    }

    pub const fn from_actor(actor: Actor) -> Option<Party> {
        match actor {
            Actor::Buyer => Some(Party::Buyer),
            Actor::Provider => Some(Party::Provider),
            _ => None,
        }
    }
}

/// How a payout divides the escrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome {
    /// Everything (after fees) to the provider.
    Release,
    /// Everything (after the network fee) back to the buyer.
    Refund,
    /// An arbitrator's split: `provider_bps` of the pool to the provider.
    Split { provider_bps: BasisPoints },
}

impl Outcome {
    pub const fn provider_bps(self) -> BasisPoints {
        match self {
            Outcome::Release => BasisPoints::FULL,
            Outcome::Refund => BasisPoints::ZERO,
            Outcome::Split { provider_bps } => provider_bps,
        }
    }
}

/// How a settled escrow ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Settled {
    Released,
    Refunded,
    Split { provider_bps: BasisPoints },
}

impl From<Outcome> for Settled {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Release => Settled::Released,
            Outcome::Refund => Settled::Refunded,
            Outcome::Split { provider_bps } => Settled::Split { provider_bps },
        }
    }
}

/// The transaction that settled an escrow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SettledBy {
    /// A payout Agora prepared, confirmed on chain.
    Payout { txid: String },
    /// The buyer's time-locked refund path.
    Timelock { txid: String },
    /// A transaction Agora did not prepare, signed by two of the three keys
    /// (a fee-bumped replacement, a claim the provider completed in its own
    /// wallet): the order settles as the chain shows it.
    Other { txid: String },
}

impl SettledBy {
    pub fn txid(&self) -> &str {
        match self {
            SettledBy::Payout { txid } | SettledBy::Timelock { txid } | SettledBy::Other { txid } => txid,
        }
    }
}

/// Funding observed on chain but not (yet) accepted: too few confirmations,
/// or less than the amount due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingFunding {
    pub amount: Amount,
    pub confirmations: u32,
    /// Height of the block holding the earliest funding (0 while unconfirmed).
    pub height: u64,
    pub first_seen_at: DateTime<Utc>,
}

/// Accepted funding: the escrow holds at least the amount due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Funding {
    /// Everything the escrow holds; may exceed the amount due (the excess goes
    /// back to the buyer in every payout).
    pub amount: Amount,
    /// Height of the block holding the earliest funding: the timelock counts from it.
    pub height: u64,
    pub confirmed_at: DateTime<Utc>,
}

/// Why a payout was prepared: the recorded facts the signing policy checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayoutBasis {
    /// The buyer released the funds; buyer and provider sign.
    BuyerReleased { at: DateTime<Utc> },
    /// The buyer stayed silent through the review window of this delivery.
    ReviewWindowPassed { delivered_at: DateTime<Utc> },
    /// The delivery deadline passed without a delivery.
    DeliveryDeadlinePassed,
    /// One party proposed a cancel and the other accepted it.
    MutualCancel {
        proposed_by: Party,
        accepted_by: Party,
    },
    /// The arbitrator decided the dispute.
    ArbitrationDecision {
        provider_bps: BasisPoints,
        decided_at: DateTime<Utc>,
    },
    /// Funds arrived after the order expired; they go back to the buyer.
    LateFunds,
    /// No arbitrator decided the dispute in time, even after escalation: the
    /// escrow returns to the buyer, as its timelock would, without an
    /// arbitration fee.
    ArbitrationLapsed { at: DateTime<Utc> },
    /// The provider settles a metered session with the buyer's latest valid
    /// claim: `claimed` (gross) to the provider, the rest back to the buyer.
    /// `latest_claim` is the cumulative amount of the buyer's latest claim the
    /// service validated; `service_cosigns` when the provider asked the
    /// marketplace key to complete it instead of signing itself.
    ClaimSettled {
        claimed: Amount,
        latest_claim: Amount,
        service_cosigns: bool,
        at: DateTime<Utc>,
    },
}

impl PayoutBasis {
    /// The outcome this basis allows; a payout's outcome is always derived from
    /// its basis, so the two cannot disagree.
    pub const fn outcome(self) -> Outcome {
        match self {
            // A metered settlement pays what was consumed; the unused deposit
            // returns to the buyer in the same transaction (see the plan).
            PayoutBasis::BuyerReleased { .. }
            | PayoutBasis::ReviewWindowPassed { .. }
            | PayoutBasis::ClaimSettled { .. } => Outcome::Release,
            PayoutBasis::DeliveryDeadlinePassed
            | PayoutBasis::MutualCancel { .. }
            | PayoutBasis::LateFunds
            | PayoutBasis::ArbitrationLapsed { .. } => Outcome::Refund,
            PayoutBasis::ArbitrationDecision { provider_bps, .. } => {
                Outcome::Split { provider_bps }
            }
        }
    }
}

/// A prepared payout, waiting for signatures, broadcast and confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payout {
    pub basis: PayoutBasis,
    pub plan: PayoutPlan,
    pub prepared_at: DateTime<Utc>,
    /// The transaction last broadcast for it, if any.
    pub txid: Option<String>,
}

impl Payout {
    pub const fn outcome(&self) -> Outcome {
        self.basis.outcome()
    }
}

/// The state of one escrow. `AwaitingFunding { seen: None }` is the initial
/// state (DESIGN's `Created` is folded into it: the escrow exists as soon as
/// the order is placed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EscrowState {
    AwaitingFunding {
        /// Funds seen on chain that are not yet enough or not yet confirmed.
        seen: Option<PendingFunding>,
    },
    /// Not funded in time. Funds arriving later are refunded (`PayingOut` with
    /// basis `LateFunds`).
    Expired {
        at: DateTime<Utc>,
    },
    Funded {
        funding: Funding,
    },
    Delivered {
        funding: Funding,
        delivered_at: DateTime<Utc>,
    },
    /// One party proposed a mutual cancel; the other has not answered. Clocks
    /// keep running, so a proposal cannot be used to stall past a deadline.
    Cancelling {
        funding: Funding,
        proposed_by: Party,
        proposed_at: DateTime<Utc>,
        delivered_at: Option<DateTime<Utc>>,
    },
    Disputed {
        funding: Funding,
        opened_by: Party,
        opened_at: DateTime<Utc>,
        respond_by: DateTime<Utc>,
        delivered_at: Option<DateTime<Utc>>,
    },
    /// A payout is prepared: DESIGN's Releasing / Refunding / Settling, and
    /// `Resolved{provider_bps}` once the arbitrator decided (basis
    /// `ArbitrationDecision`).
    PayingOut {
        funding: Funding,
        payout: Payout,
    },
    Settled {
        outcome: Settled,
        by: SettledBy,
        at: DateTime<Utc>,
    },
}

impl EscrowState {
    /// A new escrow, waiting for the buyer's funds.
    pub const fn new() -> Self {
        EscrowState::AwaitingFunding { seen: None }
    }

    /// Stable name, for errors, logs and the API's status field.
    pub const fn name(&self) -> &'static str {
        match self {
            EscrowState::AwaitingFunding { .. } => "AwaitingFunding",
            EscrowState::Expired { .. } => "Expired",
            EscrowState::Funded { .. } => "Funded",
            EscrowState::Delivered { .. } => "Delivered",
            EscrowState::Cancelling { .. } => "Cancelling",
            EscrowState::Disputed { .. } => "Disputed",
            EscrowState::PayingOut { payout, .. } => match payout.outcome() {
                Outcome::Release => "Releasing",
                Outcome::Refund => "Refunding",
                Outcome::Split { .. } => "Settling",
            },
            EscrowState::Settled { .. } => "Settled",
        }
    }

    /// The accepted funding, in every state that has one.
    pub const fn funding(&self) -> Option<&Funding> {
        match self {
            EscrowState::Funded { funding }
            | EscrowState::Delivered { funding, .. }
            | EscrowState::Cancelling { funding, .. }
            | EscrowState::Disputed { funding, .. }
            | EscrowState::PayingOut { funding, .. } => Some(funding),
            EscrowState::AwaitingFunding { .. }
            | EscrowState::Expired { .. }
            | EscrowState::Settled { .. } => None,
        }
    }

    pub const fn is_settled(&self) -> bool {
        matches!(self, EscrowState::Settled { .. })
    }
}

impl Default for EscrowState {
    fn default() -> Self {
        Self::new()
    }
}
