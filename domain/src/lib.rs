//! Agora's business rules. This crate does no IO: no database, no network, no
//! async runtime. Outer crates implement the ports it defines and call its pure
//! functions.

pub mod account;
pub mod clock;
pub mod escrow;
pub mod listing;
pub mod metering;
pub mod money;
pub mod order;
pub mod reputation;
pub mod text;
