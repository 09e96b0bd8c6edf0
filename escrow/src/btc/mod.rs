//! Bitcoin 2-of-3 escrow: descriptor, arbitrator keys, payout PSBTs.
//!
//! - [`descriptor`]: the escrow's keys and its P2WSH miniscript descriptor;
//! - [`keys`]: the marketplace's arbitrator keys, one hardened BIP32 child per escrow;
//! - [`payout`]: the expected payout transaction and its unsigned PSBT;
//! - [`psbt_import`]: checking, merging and finalizing the PSBTs the parties sign;
//! - [`refund`]: the buyer's time-locked refund path;
//! - [`signing`] and [`verify`]: signing one escrow input, and checking finished
//!   transactions with Bitcoin Core's script interpreter (`bitcoinconsensus`).

pub mod descriptor;
pub mod keys;
pub mod payout;
pub mod psbt_import;
pub mod refund;
pub mod signing;
pub mod verify;

#[cfg(test)]
pub(crate) mod test_keys;

pub use descriptor::{DescriptorError, EscrowDescriptor, EscrowKeys, EscrowKeysError, EscrowParty};
pub use keys::{generate_master, KeyStoreError, MarketplaceKeyStore};
pub use payout::{
    build_payout, build_payout_with, ExpectedInput, ExpectedPayout, FundingUtxo, PayoutAddresses, PayoutBuildError,
    PayoutPlan, PayoutRole,
};
pub use psbt_import::{finalize_payout, import_signed_psbt, ImportOutcome, PsbtImportError};
pub use refund::{build_refund, finalize_refund, refund_sequence, RefundError, RefundPlan};
pub use signing::{sign_escrow_input, SignError};
pub use verify::{verify_spends, ConsensusError};
