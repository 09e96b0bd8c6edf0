//! XRP Ledger 2-of-3 escrow accounts and multisigned payouts.
//!
//! - [`account`]: addresses, keys, and the marketplace keyring that derives each
//!   escrow account's key and the arbitrator's key from one secret;
//! - [`setup`]: the funding Payment, the SignerListSet and the AccountSet that
//!   disables the master key, and what the buyer should verify before funding;
//! - [`payout`]: the split into one Payment per recipient, ready for multisigning;
//! - [`multisig`]: signing, checking the signers' blobs, combining and verifying;
//! - [`channel`]: payment channels from the escrow account to the provider, and
//!   the buyer's claims on them;
//! - [`inspect`]: any signed blob from outside decoded to rippled's JSON, its
//!   signatures verified (what a node checks before it looks at the ledger);
//! - [`transfer`]: a plain single-signed XRP Payment (operating account, faucet);
//! - `codec`: the strict binary reader every blob from outside goes through.

pub mod account;
mod blob_fields;
pub mod channel;
mod codec;
pub mod inspect;
pub mod multisig;
pub mod payout;
pub mod setup;
pub mod transfer;
pub mod wallet;

pub use account::{
    KeyAlgorithm, KeyError, SigningKey, XrplAccount, XrplAddress, XrplKeyring, XrplPublicKey,
};
pub use inspect::{
    combine_signer_blobs, DecodedTx, SignatureError, TxAuthorization, TxDecodeError, TxSigner,
};
pub use blob_fields::{last_ledger_sequence_of, sequence_of};
pub use channel::{
    channel_id, claim_message, sign_claim, sign_destination_claim, verify_claim, ChannelId, ChannelTx,
    ChannelTxKind, ChannelTxSpec, DestinationClaim, TF_CLOSE, TF_RENEW,
};
pub use multisig::{
    sign_payout, verify_multisigned, FinalPayout, MultisigError, MultisignTx, SignatureCollector,
};
pub use payout::{
    multisig_fee_drops, plan_payout, plan_payout_with, PayoutDestination, PayoutParams, PayoutParties, PayoutPlan,
    PayoutTx, PayoutTxSpec, Recipient, PAYOUT_SIGNERS,
};
pub use setup::{
    sign_escrow_configuration, sign_funding_payment, sign_master_disable, BuyerCheck, BuyerCheckSigner,
    ConfigurationParams, EscrowConfiguration, EscrowSigners, FundingParams, Reserves, SignedTx,
    TxBuildError, ASF_DISABLE_MASTER, ESCROW_QUORUM, MAX_FEE_DROPS, SIGNER_WEIGHT,
};
pub use transfer::{sign_unlocked_refund, sign_xrp_payment, XrpPayment};
