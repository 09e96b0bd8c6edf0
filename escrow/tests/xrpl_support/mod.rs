//! Shared fixtures for the XRPL integration tests: the xrpl-py golden vectors and
//! the same deterministic parties the vector generator uses.

#![allow(dead_code)] // each test binary uses a different part
#![allow(clippy::unwrap_used, clippy::expect_used)] // test fixtures

use agora_domain::escrow::payout::PayoutTerms;
use agora_domain::money::BasisPoints;
use agora_escrow::xrpl::{
    EscrowSigners, MultisigError, PayoutDestination, PayoutParams, PayoutParties, Reserves,
    SigningKey, XrplAddress, XrplKeyring,
};
use serde_json::Value;

pub const SECRET: [u8; 32] = [0x11; 32];
pub const ESCROW_INDEX: u32 = 1;

pub fn vectors() -> Value {
    serde_json::from_str(include_str!("../vectors/xrpl/xrpl_py_vectors.json")).unwrap()
}

pub fn keyring() -> XrplKeyring {
    XrplKeyring::from_secret(&SECRET).unwrap()
}

fn seed(byte: u8, algorithm: xrpl::constants::CryptoAlgorithm) -> String {
    xrpl::core::addresscodec::encode_seed([byte; 16], algorithm).unwrap()
}

/// Same seeds as gen_xrpl_vectors.py.
pub fn buyer() -> SigningKey {
    SigningKey::from_seed(&seed(0xB1, xrpl::constants::CryptoAlgorithm::SECP256K1)).unwrap()
}
pub fn provider() -> SigningKey {
    SigningKey::from_seed(&seed(0xC2, xrpl::constants::CryptoAlgorithm::ED25519)).unwrap()
}
pub fn outsider() -> SigningKey {
    SigningKey::from_seed(&seed(0xD3, xrpl::constants::CryptoAlgorithm::SECP256K1)).unwrap()
}
pub fn operating() -> SigningKey {
    SigningKey::from_seed(&seed(0xE4, xrpl::constants::CryptoAlgorithm::SECP256K1)).unwrap()
}

pub fn escrow_address() -> XrplAddress {
    keyring().escrow_account(ESCROW_INDEX).unwrap().address
}

pub fn signers() -> EscrowSigners {
    EscrowSigners::new(
        buyer().address().clone(),
        provider().address().clone(),
        keyring().arbitrator_account().unwrap().address,
    )
    .unwrap()
}

pub fn reserves() -> Reserves {
    Reserves {
        base_drops: 1_000_000,
        owner_drops: 200_000,
    }
}

pub fn address(v: &Value) -> XrplAddress {
    XrplAddress::parse(v.as_str().unwrap()).unwrap()
}

pub fn destination(v: &Value) -> PayoutDestination {
    PayoutDestination {
        address: address(&v["address"]),
        tag: v["tag"].as_u64().map(|t| t as u32),
    }
}

pub fn parties(v: &Value) -> PayoutParties {
    PayoutParties {
        provider: destination(&v["provider"]),
        buyer: destination(&v["buyer"]),
        marketplace: destination(&v["marketplace"]),
    }
}

pub fn payout_params(v: &Value) -> PayoutParams {
    let bps = |x: &Value| BasisPoints::new(x.as_i64().unwrap()).unwrap();
    PayoutParams {
        funded_drops: v["funded_drops"].as_u64().unwrap(),
        terms: PayoutTerms {
            provider_bps: bps(&v["terms"]["provider_bps"]),
            commission_bps: bps(&v["terms"]["commission_bps"]),
            arbitration_fee: v["terms"]["arbitration_fee"].as_u64().unwrap(),
        },
        base_fee_drops: v["base_fee_drops"].as_u64().unwrap(),
        first_sequence: v["first_sequence"].as_u64().unwrap() as u32,
        last_ledger_sequence: v["last_ledger_sequence"].as_u64().unwrap() as u32,
    }
}

/// The variant's name, to compare with the vectors' expected errors.
pub fn error_name(e: &MultisigError) -> &'static str {
    match e {
        MultisigError::MalformedBlob(_) => "MalformedBlob",
        MultisigError::TransactionMismatch { .. } => "TransactionMismatch",
        MultisigError::NotMultisigned => "NotMultisigned",
        MultisigError::SignerNotInList { .. } => "SignerNotInList",
        MultisigError::KeyDoesNotMatchAccount { .. } => "KeyDoesNotMatchAccount",
        MultisigError::InvalidSignature { .. } => "InvalidSignature",
        MultisigError::DuplicateSigner { .. } => "DuplicateSigner",
        MultisigError::UnsortedSigners => "UnsortedSigners",
        MultisigError::QuorumNotMet { .. } => "QuorumNotMet",
        MultisigError::TooManySigners { .. } => "TooManySigners",
        MultisigError::Signing(_) => "Signing",
    }
}
