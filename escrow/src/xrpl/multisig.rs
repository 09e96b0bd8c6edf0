//! Multisigning payout Payments: signing as one signer, checking the signed blobs
//! the signers hand back, combining them, and verifying the final transaction.
//!
//! A signer's blob is the payout transaction with a `Signers` array holding that
//! signer's entry, as `xrpl.js`/`xrpl-py` produce with `sign(..., multisign=true)`.
//! It is accepted only if, apart from `Signers`, it is *byte for byte* the expected
//! unsigned transaction, and every entry is a member of the escrow's signer list
//! whose master key derives to it and whose signature verifies over that member's
//! multisigning data. xrpl-rust's `multisign` is not used: it keeps one signer per
//! input copy, checks nothing and accepts duplicates.
//!
//! Signatures are gathered one blob at a time, across requests: store each accepted
//! blob and replay them into a new [`SignatureCollector`] to resume.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::account::{SigningKey, XrplAddress, XrplKeyring, XrplPublicKey};
use super::codec::{decode_hex_blob, field_name, fields, transaction_id, Field, StObject, Value};
use super::payout::{PayoutTx, PAYOUT_SIGNERS};
use super::setup::{encode_checked, EscrowSigners, ESCROW_QUORUM};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultisigError {
    #[error("malformed transaction blob: {0}")]
    MalformedBlob(String),
    #[error("the signed transaction differs from the expected payout in {field}")]
    TransactionMismatch { field: String },
    #[error("the transaction carries no multisignature")]
    NotMultisigned,
    #[error("{account} is not in the escrow's signer list")]
    SignerNotInList { account: String },
    #[error("the signing key given for {account} is not that account's key")]
    KeyDoesNotMatchAccount { account: String },
    #[error("the signature of {account} does not verify")]
    InvalidSignature { account: String },
    #[error("{account} signed more than once")]
    DuplicateSigner { account: String },
    #[error("the Signers are not in AccountID order")]
    UnsortedSigners,
    #[error("{have} valid signatures, {need} needed")]
    QuorumNotMet { have: usize, need: usize },
    #[error("{have} signatures, but the fee pays for {max}")]
    TooManySigners { have: usize, max: usize },
    #[error("signing failed: {0}")]
    Signing(String),
}

/// A transaction the escrow account multisigns: a payout [`PayoutTx`] or a
/// payment-channel transaction ([`super::channel::ChannelTx`]). Sealed: only
/// this crate's transaction types, each built and checked by both encoders.
pub trait MultisignTx: sealed::Sealed + Clone {}

pub(crate) mod sealed {
    use super::XrplAddress;

    pub trait Sealed {
        /// The unsigned transaction, serialized (`SigningPubKey` empty).
        fn unsigned_bytes(&self) -> Vec<u8>;
        /// The unsigned transaction as XRPL JSON.
        fn unsigned_json(&self) -> &serde_json::Value;
        /// `SMT\0`, the signing fields, the signer's AccountID.
        fn multisigning_data(&self, signer: &XrplAddress) -> Vec<u8>;
    }
}

impl sealed::Sealed for PayoutTx {
    fn unsigned_bytes(&self) -> Vec<u8> {
        PayoutTx::unsigned_fields(self).to_bytes()
    }
    fn unsigned_json(&self) -> &serde_json::Value {
        self.to_json()
    }
    fn multisigning_data(&self, signer: &XrplAddress) -> Vec<u8> {
        self.signing_data(signer)
    }
}
impl MultisignTx for PayoutTx {}



/// The unsigned fields of `tx`, read back from its own serialization.
fn unsigned_fields<T: MultisignTx>(tx: &T) -> Result<StObject, MultisigError> {
    StObject::parse(&tx.unsigned_bytes()).map_err(|e| MultisigError::Signing(e.0))
}

/// One signer's entry as it appears in a blob, not yet verified.
struct RawSigner {
    account: XrplAddress,
    public_key: Vec<u8>,
    signature: Vec<u8>,
}

/// One signer's verified signature over a payout.
#[derive(Clone, Debug, PartialEq, Eq)]
struct VerifiedSigner {
    account: XrplAddress,
    public_key: XrplPublicKey,
    signature: Vec<u8>,
}

impl VerifiedSigner {
    fn to_field(&self) -> Field {
        Field::object(
            fields::SIGNER,
            vec![
                Field::account(fields::ACCOUNT, self.account.account_id()),
                Field::blob(fields::SIGNING_PUB_KEY, self.public_key.as_bytes()),
                Field::blob(fields::TXN_SIGNATURE, &self.signature),
            ],
        )
    }

    fn to_json(&self) -> serde_json::Value {
        json!({"Signer": {
            "Account": self.account.as_str(),
            "SigningPubKey": self.public_key.to_hex(),
            "TxnSignature": hex::encode_upper(&self.signature),
        }})
    }
}

/// `tx` with `signers` (already in AccountID order) as its `Signers`, serialized
/// identically by xrpl-rust and by us.
fn encode_with_signers<T: MultisignTx>(
    tx: &T,
    signers: &[VerifiedSigner],
) -> Result<Vec<u8>, MultisigError> {
    let mut json = tx.unsigned_json().clone();
    json["Signers"] = signers.iter().map(VerifiedSigner::to_json).collect();
    let expected = unsigned_fields(tx)?.with(Field::array(
        fields::SIGNERS,
        signers.iter().map(VerifiedSigner::to_field).collect(),
    ));
    encode_checked(&json, &expected).map_err(|e| MultisigError::Signing(e.to_string()))
}

/// Signs `tx` as one multisigner and returns the signer's blob (uppercase hex),
/// the form the other signers' wallets also return.
pub fn sign_payout<T: MultisignTx>(tx: &T, key: &SigningKey) -> Result<String, MultisigError> {
    let signature = key
        .sign(&tx.multisigning_data(key.address()))
        .map_err(|e| MultisigError::Signing(e.to_string()))?;
    let signer = VerifiedSigner {
        account: key.address().clone(),
        public_key: key.public_key().clone(),
        signature,
    };
    let blob = hex::encode_upper(encode_with_signers(tx, &[signer])?);
    // Read back with the same checks a blob from outside gets.
    for raw in decode_against(&blob, tx)? {
        verify_signature(tx, &raw)?;
    }
    Ok(blob)
}

impl XrplKeyring {
    /// Signs `tx` with the arbitrator's key. The caller enforces the arbitrator's
    /// signing policy and writes the audit record; this only signs.
    pub fn sign_payout_as_arbitrator<T: MultisignTx>(&self, tx: &T) -> Result<String, MultisigError> {
        let key = self
            .arbitrator_key()
            .map_err(|e| MultisigError::Signing(e.to_string()))?;
        sign_payout(tx, &key)
    }
}

/// Parses `blob` and checks everything but its `Signers` equals `tx`; returns the
/// `Signers` entries in blob order.
fn decode_against<T: MultisignTx>(blob: &str, tx: &T) -> Result<Vec<RawSigner>, MultisigError> {
    let malformed = |e: super::codec::DecodeError| MultisigError::MalformedBlob(e.0);
    let bytes = decode_hex_blob(blob).map_err(malformed)?;
    let parsed = StObject::parse(&bytes).map_err(malformed)?;
    let rest = parsed.without(&[fields::SIGNERS]);
    let unsigned = unsigned_fields(tx)?;
    if let Some(field) = unsigned.first_difference(&rest) {
        return Err(MultisigError::TransactionMismatch {
            field: field_name(field).into_owned(),
        });
    }
    if rest.to_bytes() != unsigned.to_bytes() {
        return Err(MultisigError::TransactionMismatch {
            field: "serialization".into(),
        });
    }
    let Some(signers) = parsed.get(fields::SIGNERS) else {
        return Err(MultisigError::NotMultisigned);
    };
    let Value::Array(elements) = &signers.value else {
        return Err(MultisigError::MalformedBlob(
            "Signers is not an array".into(),
        ));
    };
    if elements.is_empty() {
        return Err(MultisigError::NotMultisigned);
    }
    elements.iter().map(raw_signer).collect()
}

fn raw_signer(element: &Field) -> Result<RawSigner, MultisigError> {
    let malformed = |what: &str| MultisigError::MalformedBlob(format!("Signers entry: {what}"));
    let Value::Object(inner) = &element.value else {
        return Err(malformed("not an object"));
    };
    if element.id != fields::SIGNER {
        return Err(malformed("not a Signer"));
    }
    let ids: Vec<_> = inner.iter().map(|f| f.id).collect();
    if ids
        != [
            fields::SIGNING_PUB_KEY,
            fields::TXN_SIGNATURE,
            fields::ACCOUNT,
        ]
    {
        return Err(malformed(
            "needs exactly Account, SigningPubKey and TxnSignature",
        ));
    }
    let leaf = |i: usize| inner[i].as_leaf().ok_or_else(|| malformed("bad field"));
    let account: [u8; 20] = leaf(2)?.try_into().map_err(|_| malformed("bad Account"))?;
    Ok(RawSigner {
        account: XrplAddress::from_account_id(account),
        public_key: leaf(0)?.to_vec(),
        signature: leaf(1)?.to_vec(),
    })
}

/// Checks the entry's key is the account's master key and its signature verifies.
fn verify_signature<T: MultisignTx>(tx: &T, raw: &RawSigner) -> Result<VerifiedSigner, MultisigError> {
    let account = raw.account.to_string();
    let public_key = XrplPublicKey::from_bytes(&raw.public_key).map_err(|_| {
        MultisigError::KeyDoesNotMatchAccount {
            account: account.clone(),
        }
    })?;
    if public_key.address() != raw.account {
        return Err(MultisigError::KeyDoesNotMatchAccount { account });
    }
    if !public_key.verifies(&tx.multisigning_data(&raw.account), &raw.signature) {
        return Err(MultisigError::InvalidSignature { account });
    }
    Ok(VerifiedSigner {
        account: raw.account.clone(),
        public_key,
        signature: raw.signature.clone(),
    })
}

fn check_member(signers: &EscrowSigners, raw: &RawSigner) -> Result<(), MultisigError> {
    if signers.contains(&raw.account) {
        Ok(())
    } else {
        Err(MultisigError::SignerNotInList {
            account: raw.account.to_string(),
        })
    }
}

/// A fully signed payout, verified, ready to submit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalPayout {
    /// Uppercase hex, for `submit`.
    pub blob: String,
    /// Transaction id, uppercase hex.
    pub hash: String,
    /// Who signed, in AccountID order.
    pub signers: Vec<XrplAddress>,
}

/// Verifies a complete multisigned payout before submission: the transaction is
/// exactly `tx`; the `Signers` are strictly in AccountID order, all in the signer
/// list, with matching keys and valid signatures; there are at least the quorum and
/// no more than the fee pays for.
pub fn verify_multisigned<T: MultisignTx>(
    blob: &str,
    tx: &T,
    signers: &EscrowSigners,
) -> Result<FinalPayout, MultisigError> {
    let raws = decode_against(blob, tx)?;
    let mut verified: Vec<VerifiedSigner> = Vec::with_capacity(raws.len());
    for raw in &raws {
        if verified.iter().any(|v| v.account == raw.account) {
            return Err(MultisigError::DuplicateSigner {
                account: raw.account.to_string(),
            });
        }
        if verified
            .last()
            .is_some_and(|prev| prev.account > raw.account)
        {
            return Err(MultisigError::UnsortedSigners);
        }
        check_member(signers, raw)?;
        verified.push(verify_signature(tx, raw)?);
    }
    let need = ESCROW_QUORUM as usize;
    if verified.len() < need {
        return Err(MultisigError::QuorumNotMet {
            have: verified.len(),
            need,
        });
    }
    if verified.len() > PAYOUT_SIGNERS {
        return Err(MultisigError::TooManySigners {
            have: verified.len(),
            max: PAYOUT_SIGNERS,
        });
    }
    // Report the canonical encoding of what was verified.
    let bytes = encode_with_signers(tx, &verified)?;
    if hex::encode_upper(&bytes) != blob.trim().to_uppercase() {
        return Err(MultisigError::MalformedBlob(
            "not canonically encoded".into(),
        ));
    }
    Ok(FinalPayout {
        hash: transaction_id(&bytes),
        blob: hex::encode_upper(&bytes),
        signers: verified.into_iter().map(|v| v.account).collect(),
    })
}

/// Gathers signatures on one payout transaction until the quorum is reached.
#[derive(Clone, Debug)]
pub struct SignatureCollector<T: MultisignTx = PayoutTx> {
    tx: T,
    signers: EscrowSigners,
    /// Keyed and so ordered by AccountID.
    collected: BTreeMap<XrplAddress, VerifiedSigner>,
}

impl<T: MultisignTx> SignatureCollector<T> {
    pub fn new(tx: T, signers: EscrowSigners) -> Self {
        Self {
            tx,
            signers,
            collected: BTreeMap::new(),
        }
    }

    pub fn tx(&self) -> &T {
        &self.tx
    }

    /// Checks a signer's blob and, if every entry in it is valid, keeps its
    /// signatures; returns the accounts added. All or nothing: one bad entry and
    /// none is kept. A signer who already signed is a `DuplicateSigner` error.
    pub fn add_signer_blob(&mut self, blob: &str) -> Result<Vec<XrplAddress>, MultisigError> {
        let raws = decode_against(blob, &self.tx)?;
        let mut accepted: Vec<VerifiedSigner> = Vec::with_capacity(raws.len());
        for raw in &raws {
            check_member(&self.signers, raw)?;
            if self.collected.contains_key(&raw.account)
                || accepted.iter().any(|a| a.account == raw.account)
            {
                return Err(MultisigError::DuplicateSigner {
                    account: raw.account.to_string(),
                });
            }
            accepted.push(verify_signature(&self.tx, raw)?);
        }
        let added = accepted.iter().map(|a| a.account.clone()).collect();
        for signer in accepted {
            self.collected.insert(signer.account.clone(), signer);
        }
        Ok(added)
    }

    /// Who has signed so far, in AccountID order.
    pub fn signed_by(&self) -> Vec<XrplAddress> {
        self.collected.keys().cloned().collect()
    }

    pub fn has_quorum(&self) -> bool {
        self.collected.len() >= ESCROW_QUORUM as usize
    }

    /// The final multisigned transaction, once the quorum is reached. With all three
    /// signatures, the two lowest AccountIDs are used (the fee pays for two). The
    /// result is decoded and every signature verified again before it is returned.
    pub fn finalize(&self) -> Result<FinalPayout, MultisigError> {
        if !self.has_quorum() {
            return Err(MultisigError::QuorumNotMet {
                have: self.collected.len(),
                need: ESCROW_QUORUM as usize,
            });
        }
        let chosen: Vec<VerifiedSigner> = self
            .collected
            .values()
            .take(PAYOUT_SIGNERS)
            .cloned()
            .collect();
        let blob = hex::encode_upper(encode_with_signers(&self.tx, &chosen)?);
        verify_multisigned(&blob, &self.tx, &self.signers)
    }
}
