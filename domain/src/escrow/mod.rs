//! The escrow behind an order: its state machine and how its funds pay out.
//!
//! - [`state`]: the states and the facts they record;
//! - [`machine`]: `apply(state, event, ctx)`, the only way a state changes;
//! - [`policy`]: when the marketplace key may co-sign a payout;
//! - [`deadlines`]: deadlines, the timelock margin;
//! - [`plan`] and [`payout`]: what a payout pays;
//! - [`deposits`]: which outputs are the accepted funding, which are strays.
//!
//! # The invariants of every escrow
//!
//! **Liveness.** From every reachable state, whatever a single party does or
//! fails to do — including never signing again — the rules give a path to a
//! final payout that the marketplace key and the honest party can sign (or
//! the honest party alone), completed before the buyer's refund path opens:
//! - funded, nothing delivered: the delivery deadline refunds the buyer
//!   (marketplace + buyer), or settles the buyer's latest claim on a metered
//!   order ([`EscrowError::ClaimOutstanding`] refuses a refund that ignores it);
//! - delivered, buyer silent: the review window releases (marketplace + provider);
//! - the buyer released and never signs: after the release signing grace the
//!   marketplace co-signs with the provider ([`SigningRule::UnsignedRelease`]);
//! - a pending cancel stops no clock; a dispute has a response deadline, a
//!   decision deadline with escalation and a default, an appeal window and an
//!   appeal deadline after which the first decision stands;
//! - the timelock is sized from the longest of these paths at the chain's
//!   pace plus a margin ([`Deadlines::longest_path`],
//!   [`deadlines::timelock_blocks_for`]); terms that cannot fit are refused.
//!
//! **Conservation.** Whatever reaches an escrow address, at any time, from
//! anyone, is either part of the accepted funding (frozen when the funding is
//! accepted, [`deposits::classify`]) or returned to the buyer net of the
//! network fee ([`policy::may_sign_stray_refund`]); nothing that arrives
//! later changes what a payout spends. Every payout's plan divides exactly
//! the accepted funding.
//!
//! **Policy.** The marketplace key signs only what [`may_arbitrator_sign`] or
//! [`policy::may_sign_stray_refund`] allows, re-checked on the stored state by
//! the one signing gate of the application, which writes the audit row in the
//! same transaction.
//!
//! `tests/adversarial.rs` drives random interleavings of every party's
//! actions and silences, stray deposits, reorgs and deadlines and checks the
//! three after every step.

pub mod deadlines;
pub mod deposits;
pub mod machine;
pub mod payout;
pub mod plan;
pub mod policy;
pub mod state;

pub use deadlines::{timelock_margin_reached, ChainTimelock, Deadlines, TimelockWatch};
pub use machine::{
    apply, Alert, Audience, Context, Effect, ErrorKind, EscrowError, EscrowEvent, EscrowTerms,
    Notice, Transition,
};
pub use plan::{FeeSchedule, PayoutPlan};
pub use policy::{may_arbitrator_sign, PolicyError, SigningRule};
pub use state::{Actor, EscrowState, Outcome, Party, PayoutBasis, Settled};

#[cfg(test)]
mod tests;
