//! The escrow behind an order: its state machine and how its funds pay out.
//!
//! - [`state`]: the states and the facts they record;
//! - [`machine`]: `apply(state, event, ctx)`, the only way a state changes;
//! - [`policy`]: when the marketplace key may co-sign a payout;
//! - [`deadlines`]: deadlines, the timelock margin;
//! - [`plan`] and [`payout`]: what a payout pays.

pub mod deadlines;
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
