//! The escrow behind an order: its state machine and how its funds pay out.

pub mod payout;
