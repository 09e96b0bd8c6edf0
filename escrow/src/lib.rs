//! Escrow on the chains: Bitcoin 2-of-3 P2WSH scripts and PSBT payouts, XRP Ledger
//! multisigned escrow accounts, and validation of the keys users register.

pub mod btc;
pub mod keys;
pub mod source;
pub mod xrpl;
