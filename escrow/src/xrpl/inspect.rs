//! Any signed transaction blob from outside, read strictly: decoded into rippled's
//! JSON form, identified by its hash, and its signatures checked.
//!
//! This is what a node does before it looks at the ledger: the devnet runs every
//! submitted blob through [`DecodedTx::from_hex`] and [`DecodedTx::verify_signatures`],
//! then applies the ledger-dependent rules (is the key the account's master or
//! regular key, is each multisigner in the signer list, is the quorum met) itself.
//!
//! The decoder knows the fields of XRP Payments, AccountSet, SetRegularKey,
//! SignerListSet, AccountDelete and the PaymentChannel transactions and nothing more: an unknown field, an issued
//! currency or MPT amount, or anything non-canonical is an error rather than
//! something silently skipped, so no blob is accepted on a partial reading.

use serde_json::{Map, Value as Json};

use super::account::{XrplAddress, XrplPublicKey};
use super::codec::{
    decode_hex_blob, field_name, fields, transaction_id, Field, FieldId, StObject, Value,
    PREFIX_SINGLE_SIGN,
};
use super::multisig::MultisigError;

/// Most signers a multisigned transaction may carry (rippled, ExpandedSignerList).
pub const MAX_MULTISIGNERS: usize = 32;

/// Transaction type codes and names this reader knows.
const TRANSACTION_TYPES: &[(u16, &str)] = &[
    (0, "Payment"),
    (3, "AccountSet"),
    (5, "SetRegularKey"),
    (12, "SignerListSet"),
    (13, "PaymentChannelCreate"),
    (14, "PaymentChannelFund"),
    (15, "PaymentChannelClaim"),
    (21, "AccountDelete"),
];

const fn id(type_code: u8, nth: u8) -> FieldId {
    FieldId { type_code, nth }
}

const MEMO: FieldId = id(14, 10);
const MEMOS: FieldId = id(15, 9);

/// Fields allowed at the top level of a transaction.
const TOP_LEVEL: &[(FieldId, &str)] = &[
    (fields::TRANSACTION_TYPE, "TransactionType"),
    (id(2, 1), "NetworkID"),
    (fields::FLAGS, "Flags"),
    (id(2, 3), "SourceTag"),
    (fields::SEQUENCE, "Sequence"),
    (fields::EXPIRATION, "Expiration"),
    (fields::DESTINATION_TAG, "DestinationTag"),
    (fields::LAST_LEDGER_SEQUENCE, "LastLedgerSequence"),
    (fields::SET_FLAG, "SetFlag"),
    (id(2, 34), "ClearFlag"),
    (fields::SIGNER_QUORUM, "SignerQuorum"),
    (fields::CANCEL_AFTER, "CancelAfter"),
    (fields::SETTLE_DELAY, "SettleDelay"),
    (id(2, 41), "TicketSequence"),
    (id(5, 17), "InvoiceID"),
    (fields::CHANNEL, "Channel"),
    (fields::AMOUNT, "Amount"),
    (fields::BALANCE, "Balance"),
    (fields::FEE, "Fee"),
    (id(6, 9), "SendMax"),
    (id(6, 10), "DeliverMin"),
    (fields::PUBLIC_KEY, "PublicKey"),
    (fields::SIGNING_PUB_KEY, "SigningPubKey"),
    (fields::TXN_SIGNATURE, "TxnSignature"),
    (fields::SIGNATURE, "Signature"),
    (fields::ACCOUNT, "Account"),
    (fields::DESTINATION, "Destination"),
    (id(8, 8), "RegularKey"),
    (fields::SIGNERS, "Signers"),
    (fields::SIGNER_ENTRIES, "SignerEntries"),
    (MEMOS, "Memos"),
];

const MEMO_FIELDS: &[(FieldId, &str)] = &[
    (id(7, 12), "MemoType"),
    (id(7, 13), "MemoData"),
    (id(7, 14), "MemoFormat"),
];
const SIGNER_FIELDS: &[(FieldId, &str)] = &[
    (fields::SIGNING_PUB_KEY, "SigningPubKey"),
    (fields::TXN_SIGNATURE, "TxnSignature"),
    (fields::ACCOUNT, "Account"),
];
const SIGNER_ENTRY_FIELDS: &[(FieldId, &str)] = &[
    (fields::SIGNER_WEIGHT, "SignerWeight"),
    (fields::ACCOUNT, "Account"),
];

/// Total XRP in existence, in drops: no XRP amount can be larger.
const MAX_DROPS: u64 = 100_000_000_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxDecodeError {
    #[error("malformed transaction: {0}")]
    Malformed(String),
    #[error("unsupported transaction content: {0}")]
    Unsupported(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the transaction is not signed")]
    NotSigned,
    #[error("a multisigned transaction must have an empty SigningPubKey and no TxnSignature")]
    MixedSigning,
    #[error("{0} multisigners; 1 to {MAX_MULTISIGNERS} are allowed")]
    SignerCount(usize),
    #[error("the Signers are not in strictly increasing AccountID order")]
    UnsortedSigners,
    #[error("the account {0} cannot sign its own transaction as a multisigner")]
    SignerIsAccount(String),
    #[error("not a valid public key: {0}")]
    BadPublicKey(String),
    #[error("the signature of {0} does not verify")]
    InvalidSignature(String),
}

/// Who signed a transaction, with every signature verified cryptographically.
/// Whether those keys may sign for the account is for the ledger to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxAuthorization {
    Single {
        public_key: XrplPublicKey,
    },
    /// In strictly increasing AccountID order.
    Multi {
        signers: Vec<TxSigner>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxSigner {
    pub account: XrplAddress,
    pub public_key: XrplPublicKey,
}

/// A strictly decoded transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedTx {
    object: StObject,
    bytes: Vec<u8>,
    json: Json,
    hash: String,
    account: XrplAddress,
}

impl DecodedTx {
    /// Decodes an uppercase or lowercase hex blob.
    pub fn from_hex(blob: &str) -> Result<Self, TxDecodeError> {
        let bytes = decode_hex_blob(blob).map_err(|e| TxDecodeError::Malformed(e.0))?;
        Self::from_bytes(&bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TxDecodeError> {
        let object = StObject::parse(bytes).map_err(|e| TxDecodeError::Malformed(e.0))?;
        // Insist the fields re-encode to the very bytes given, so the hash names
        // exactly what was read.
        if object.to_bytes() != bytes {
            return Err(TxDecodeError::Malformed("not canonically encoded".into()));
        }
        let json = fields_json(&object.to_fields(), TOP_LEVEL)?;
        for required in [
            "TransactionType",
            "Account",
            "Fee",
            "Sequence",
            "SigningPubKey",
        ] {
            if json.get(required).is_none() {
                return Err(TxDecodeError::Malformed(format!("{required} is missing")));
            }
        }
        let account = object
            .get(fields::ACCOUNT)
            .and_then(Field::as_leaf)
            .and_then(|b| <[u8; 20]>::try_from(b).ok())
            .map(XrplAddress::from_account_id)
            .ok_or_else(|| TxDecodeError::Malformed("bad Account".into()))?;
        Ok(Self {
            hash: transaction_id(bytes),
            bytes: bytes.to_vec(),
            json,
            object,
            account,
        })
    }

    /// The transaction in rippled's JSON form (without `hash`).
    pub fn json(&self) -> &Json {
        &self.json
    }

    /// The transaction id, uppercase hex.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    pub fn blob_hex(&self) -> String {
        hex::encode_upper(&self.bytes)
    }

    pub fn transaction_type(&self) -> &str {
        self.json["TransactionType"].as_str().unwrap_or_default()
    }

    pub fn account(&self) -> &XrplAddress {
        &self.account
    }

    /// The fields every signature covers: all but `TxnSignature`, `Signers`
    /// and a channel claim's `Signature` (rippled marks it not-signing).
    fn signing_fields(&self) -> Vec<u8> {
        self.object
            .without(&[fields::TXN_SIGNATURE, fields::SIGNERS, fields::SIGNATURE])
            .to_bytes()
    }

    /// The bytes a single signer signs.
    pub fn single_signing_data(&self) -> Vec<u8> {
        let mut data = PREFIX_SINGLE_SIGN.to_vec();
        data.extend_from_slice(&self.signing_fields());
        data
    }

    /// The bytes multisigner `signer` signs.
    pub fn multi_signing_data(&self, signer: &XrplAddress) -> Vec<u8> {
        super::codec::multisig_signing_data(&self.signing_fields(), signer)
    }

    /// Checks the signatures as rippled's local checks do: a single signature over
    /// the single-signing data, or 1 to 32 multisigners, strictly sorted by
    /// AccountID (so unique), none of them the account itself, each signature
    /// valid over that signer's multisigning data.
    pub fn verify_signatures(&self) -> Result<TxAuthorization, SignatureError> {
        let key = self
            .object
            .get(fields::SIGNING_PUB_KEY)
            .and_then(Field::as_leaf)
            .unwrap_or_default();
        let signature = self
            .object
            .get(fields::TXN_SIGNATURE)
            .and_then(Field::as_leaf);
        let Some(signers) = self.object.get(fields::SIGNERS) else {
            let Some(signature) = signature else {
                return Err(SignatureError::NotSigned);
            };
            if key.is_empty() {
                return Err(SignatureError::NotSigned);
            }
            let public_key = XrplPublicKey::from_bytes(key)
                .map_err(|e| SignatureError::BadPublicKey(e.to_string()))?;
            if !public_key.verifies(&self.single_signing_data(), signature) {
                return Err(SignatureError::InvalidSignature(self.account.to_string()));
            }
            return Ok(TxAuthorization::Single { public_key });
        };
        if !key.is_empty() || signature.is_some() {
            return Err(SignatureError::MixedSigning);
        }
        let entries = signer_entries(signers).map_err(|_| SignatureError::NotSigned)?;
        if entries.is_empty() || entries.len() > MAX_MULTISIGNERS {
            return Err(SignatureError::SignerCount(entries.len()));
        }
        let mut verified: Vec<TxSigner> = Vec::with_capacity(entries.len());
        for (account, key, signature) in entries {
            if verified.last().is_some_and(|prev| prev.account >= account) {
                return Err(SignatureError::UnsortedSigners);
            }
            if account == self.account {
                return Err(SignatureError::SignerIsAccount(account.to_string()));
            }
            let public_key = XrplPublicKey::from_bytes(&key)
                .map_err(|e| SignatureError::BadPublicKey(e.to_string()))?;
            if !public_key.verifies(&self.multi_signing_data(&account), &signature) {
                return Err(SignatureError::InvalidSignature(account.to_string()));
            }
            verified.push(TxSigner {
                account,
                public_key,
            });
        }
        Ok(TxAuthorization::Multi { signers: verified })
    }
}

type RawEntry = (XrplAddress, Vec<u8>, Vec<u8>);

/// (Account, SigningPubKey, TxnSignature) of each `Signer`, in blob order.
fn signer_entries(signers: &Field) -> Result<Vec<RawEntry>, TxDecodeError> {
    let malformed = || TxDecodeError::Malformed("bad Signers".into());
    let Value::Array(elements) = &signers.value else {
        return Err(malformed());
    };
    elements
        .iter()
        .map(|element| {
            let Value::Object(inner) = &element.value else {
                return Err(malformed());
            };
            let leaf = |id: FieldId| {
                inner
                    .iter()
                    .find(|f| f.id == id)
                    .and_then(Field::as_leaf)
                    .ok_or_else(malformed)
            };
            let account: [u8; 20] = leaf(fields::ACCOUNT)?.try_into().map_err(|_| malformed())?;
            Ok((
                XrplAddress::from_account_id(account),
                leaf(fields::SIGNING_PUB_KEY)?.to_vec(),
                leaf(fields::TXN_SIGNATURE)?.to_vec(),
            ))
        })
        .collect()
}

fn name_of(
    id: FieldId,
    allowed: &[(FieldId, &'static str)],
) -> Result<&'static str, TxDecodeError> {
    allowed
        .iter()
        .find(|(f, _)| *f == id)
        .map(|(_, name)| *name)
        .ok_or_else(|| TxDecodeError::Unsupported(format!("field {}", field_name(id))))
}

fn fields_json(
    fields: &[Field],
    allowed: &[(FieldId, &'static str)],
) -> Result<Json, TxDecodeError> {
    let mut out = Map::new();
    for field in fields {
        let name = name_of(field.id, allowed)?;
        out.insert(name.to_owned(), field_json(field)?);
    }
    Ok(Json::Object(out))
}

fn field_json(field: &Field) -> Result<Json, TxDecodeError> {
    let malformed =
        |what: &str| TxDecodeError::Malformed(format!("{}: {what}", field_name(field.id)));
    match &field.value {
        Value::Leaf(bytes) => Ok(match field.id.type_code {
            1 => {
                let raw: [u8; 2] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| malformed("length"))?;
                let v = u16::from_be_bytes(raw);
                if field.id == fields::TRANSACTION_TYPE {
                    let name = TRANSACTION_TYPES
                        .iter()
                        .find(|(code, _)| *code == v)
                        .map(|(_, name)| *name)
                        .ok_or_else(|| {
                            TxDecodeError::Unsupported(format!("transaction type {v}"))
                        })?;
                    Json::from(name)
                } else {
                    Json::from(v)
                }
            }
            2 => {
                let raw: [u8; 4] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| malformed("length"))?;
                Json::from(u32::from_be_bytes(raw))
            }
            4 | 5 | 7 => Json::from(hex::encode_upper(bytes)),
            6 => Json::from(xrp_amount(bytes).map_err(|e| match e {
                AmountError::NotXrp => TxDecodeError::Unsupported(format!(
                    "{} is not an XRP amount",
                    field_name(field.id)
                )),
                AmountError::Malformed(m) => malformed(m),
            })?),
            8 => {
                let id: [u8; 20] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| malformed("length"))?;
                Json::from(XrplAddress::from_account_id(id).as_str())
            }
            _ => {
                return Err(TxDecodeError::Unsupported(format!(
                    "field {}",
                    field_name(field.id)
                )))
            }
        }),
        Value::Object(_) => Err(TxDecodeError::Unsupported(format!(
            "object field {} at the top level",
            field_name(field.id)
        ))),
        Value::Array(elements) => {
            let (element_id, element_name, inner_allowed): (
                FieldId,
                &str,
                &[(FieldId, &'static str)],
            ) = match field.id {
                f if f == fields::SIGNERS => (fields::SIGNER, "Signer", SIGNER_FIELDS),
                f if f == fields::SIGNER_ENTRIES => {
                    (fields::SIGNER_ENTRY, "SignerEntry", SIGNER_ENTRY_FIELDS)
                }
                f if f == MEMOS => (MEMO, "Memo", MEMO_FIELDS),
                _ => return Err(malformed("unexpected array")),
            };
            let mut out = Vec::with_capacity(elements.len());
            for element in elements {
                if element.id != element_id {
                    return Err(malformed("wrong element type"));
                }
                let Value::Object(inner) = &element.value else {
                    return Err(malformed("element is not an object"));
                };
                let body = fields_json(inner, inner_allowed)?;
                // Every listed inner field is required, except in a Memo, which
                // needs at least one.
                let present = body.as_object().map_or(0, Map::len);
                if element_id == MEMO {
                    if present == 0 {
                        return Err(malformed("empty Memo"));
                    }
                } else if present != inner_allowed.len() {
                    return Err(malformed("incomplete element"));
                }
                let mut wrapper = Map::new();
                wrapper.insert(element_name.to_owned(), body);
                out.push(Json::Object(wrapper));
            }
            Ok(Json::Array(out))
        }
    }
}

enum AmountError {
    NotXrp,
    Malformed(&'static str),
}

/// An XRP amount as rippled writes it: drops as a decimal string, negative with a
/// leading `-` (a ledger refuses those, but they are well-formed).
fn xrp_amount(bytes: &[u8]) -> Result<String, AmountError> {
    let raw: [u8; 8] = bytes.try_into().map_err(|_| AmountError::NotXrp)?;
    let value = u64::from_be_bytes(raw);
    if value & 0x8000_0000_0000_0000 != 0 || value & 0x2000_0000_0000_0000 != 0 {
        return Err(AmountError::NotXrp);
    }
    let drops = value & 0x1FFF_FFFF_FFFF_FFFF;
    if drops > MAX_DROPS {
        return Err(AmountError::Malformed("more drops than exist"));
    }
    if value & 0x4000_0000_0000_0000 != 0 {
        Ok(drops.to_string())
    } else if drops == 0 {
        Err(AmountError::Malformed("negative zero"))
    } else {
        Ok(format!("-{drops}"))
    }
}

/// Merges the `Signers` of several multisigned copies of one transaction (each
/// signer's wallet returns its own copy) into one blob, in AccountID order, every
/// signature verified. It does not know the signer list: whether the signers may
/// sign for the account, and whether they reach its quorum, is the ledger's call.
/// For Agora's own payouts use [`super::SignatureCollector`], which does check.
pub fn combine_signer_blobs(blobs: &[&str]) -> Result<String, MultisigError> {
    let malformed = |e: TxDecodeError| MultisigError::MalformedBlob(e.to_string());
    let mut base: Option<StObject> = None;
    let mut signers: Vec<Field> = Vec::new();
    for blob in blobs {
        let tx = DecodedTx::from_hex(blob).map_err(malformed)?;
        let unsigned = tx.object.without(&[fields::SIGNERS]);
        match &base {
            None => base = Some(unsigned),
            Some(first) => {
                if let Some(field) = first.first_difference(&unsigned) {
                    return Err(MultisigError::TransactionMismatch {
                        field: field_name(field).into_owned(),
                    });
                }
            }
        }
        let verified = match tx.verify_signatures() {
            Ok(TxAuthorization::Multi { signers }) => signers,
            Ok(TxAuthorization::Single { .. }) => return Err(MultisigError::NotMultisigned),
            Err(SignatureError::InvalidSignature(account)) => {
                return Err(MultisigError::InvalidSignature { account })
            }
            Err(other) => return Err(MultisigError::MalformedBlob(other.to_string())),
        };
        let Some(Field {
            value: Value::Array(elements),
            ..
        }) = tx.object.get(fields::SIGNERS)
        else {
            return Err(MultisigError::NotMultisigned);
        };
        for (signer, element) in verified.iter().zip(elements) {
            let seen = signers
                .iter()
                .any(|f| element_account(f) == Some(signer.account.account_id().as_slice()));
            if seen {
                return Err(MultisigError::DuplicateSigner {
                    account: signer.account.to_string(),
                });
            }
            signers.push(element.clone());
        }
    }
    let Some(base) = base else {
        return Err(MultisigError::NotMultisigned);
    };
    signers.sort_by(|a, b| element_account(a).cmp(&element_account(b)));
    if signers.len() > MAX_MULTISIGNERS {
        return Err(MultisigError::TooManySigners {
            have: signers.len(),
            max: MAX_MULTISIGNERS,
        });
    }
    let combined = base.with(Field::array(fields::SIGNERS, signers));
    let blob = hex::encode_upper(combined.to_bytes());
    // Read back with the same checks any submitted blob gets.
    DecodedTx::from_hex(&blob)
        .map_err(malformed)?
        .verify_signatures()
        .map_err(|e| MultisigError::MalformedBlob(e.to_string()))?;
    Ok(blob)
}

fn element_account(element: &Field) -> Option<&[u8]> {
    let Value::Object(inner) = &element.value else {
        return None;
    };
    inner
        .iter()
        .find(|f| f.id == fields::ACCOUNT)
        .and_then(Field::as_leaf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xrpl::account::SigningKey;
    use crate::xrpl::payout::{PayoutDestination, PayoutTx, Recipient};
    use crate::xrpl::{sign_funding_payment, sign_payout, FundingParams, Reserves, XrplKeyring};

    fn keyring() -> XrplKeyring {
        XrplKeyring::from_secret(&[0x42; 32]).unwrap()
    }

    fn payout(escrow: &XrplAddress) -> PayoutTx {
        let destination = PayoutDestination {
            address: XrplAddress::from_account_id([9; 20]),
            tag: Some(5),
        };
        PayoutTx::new(
            escrow,
            Recipient::Buyer,
            &destination,
            1_000_000,
            10,
            12,
            500,
        )
        .unwrap()
    }

    fn signer(i: u8) -> SigningKey {
        SigningKey::from_secp256k1_entropy(&[i; 16]).unwrap()
    }

    fn funding() -> (SigningKey, XrplAddress, crate::xrpl::SignedTx) {
        let keyring = keyring();
        let operating = keyring.operating_key().unwrap();
        let escrow = keyring.escrow_account(1).unwrap().address;
        let signed = sign_funding_payment(
            &operating,
            &escrow,
            &FundingParams {
                amount_drops: 2_000_000,
                reserves: Reserves {
                    base_drops: 1_000_000,
                    owner_drops: 200_000,
                },
                configuration_fee_drops: 10,
                fee_drops: 12,
                sequence: 3,
                last_ledger_sequence: 99,
            },
        )
        .unwrap();
        (operating, escrow, signed)
    }

    #[test]
    fn a_single_signed_payment_decodes_to_rippled_json_and_verifies() {
        let (operating, escrow, signed) = funding();
        let tx = DecodedTx::from_hex(&signed.blob).unwrap();
        assert_eq!(tx.hash(), signed.hash);
        assert_eq!(tx.transaction_type(), "Payment");
        assert_eq!(tx.account(), operating.address());
        let json = tx.json();
        assert_eq!(json["Account"], operating.address().as_str());
        assert_eq!(json["Destination"], escrow.as_str());
        assert_eq!(json["Amount"], "2000000");
        assert_eq!(json["Fee"], "12");
        assert_eq!(json["Sequence"], 3);
        assert_eq!(json["LastLedgerSequence"], 99);
        assert_eq!(json["SigningPubKey"], operating.public_key().to_hex());
        // xrpl-rust encodes our JSON back to the same bytes.
        assert_eq!(
            crate::xrpl::codec::xrpl_rust_encode(json).unwrap(),
            hex::decode(&signed.blob).unwrap()
        );
        assert_eq!(
            tx.verify_signatures().unwrap(),
            TxAuthorization::Single {
                public_key: operating.public_key().clone()
            }
        );
    }

    #[test]
    fn a_tampered_single_signed_payment_fails_verification() {
        let (_, _, signed) = funding();
        let tx = DecodedTx::from_hex(&signed.blob).unwrap();
        let tampered = tx.object.with(Field::xrp(fields::AMOUNT, 2_000_001));
        let tx = DecodedTx::from_bytes(&tampered.to_bytes()).unwrap();
        assert!(matches!(
            tx.verify_signatures(),
            Err(SignatureError::InvalidSignature(_))
        ));
        let unsigned = tx.object.without(&[fields::TXN_SIGNATURE]);
        let tx = DecodedTx::from_bytes(&unsigned.to_bytes()).unwrap();
        assert_eq!(tx.verify_signatures(), Err(SignatureError::NotSigned));
    }

    #[test]
    fn multisigned_copies_combine_in_account_order_and_verify() {
        let escrow = XrplAddress::from_account_id([1; 20]);
        let tx = payout(&escrow);
        let (a, b) = (signer(3), signer(4));
        let blob_a = sign_payout(&tx, &a).unwrap();
        let blob_b = sign_payout(&tx, &b).unwrap();
        let combined = combine_signer_blobs(&[&blob_b, &blob_a]).unwrap();
        let decoded = DecodedTx::from_hex(&combined).unwrap();
        let TxAuthorization::Multi { signers } = decoded.verify_signatures().unwrap() else {
            panic!("not multisigned");
        };
        let mut expected = vec![a.address().clone(), b.address().clone()];
        expected.sort();
        assert_eq!(
            signers
                .iter()
                .map(|s| s.account.clone())
                .collect::<Vec<_>>(),
            expected
        );
        assert_eq!(decoded.json()["Signers"].as_array().unwrap().len(), 2);
        assert_eq!(decoded.json()["SigningPubKey"], "");
        assert_eq!(
            crate::xrpl::codec::xrpl_rust_encode(decoded.json()).unwrap(),
            hex::decode(&combined).unwrap()
        );
        assert!(matches!(
            combine_signer_blobs(&[&blob_a, &blob_a]),
            Err(MultisigError::DuplicateSigner { .. })
        ));
        let other = payout(&XrplAddress::from_account_id([2; 20]));
        assert!(matches!(
            combine_signer_blobs(&[&blob_a, &sign_payout(&other, &b).unwrap()]),
            Err(MultisigError::TransactionMismatch { .. })
        ));
    }

    #[test]
    fn unsorted_duplicate_or_self_signers_are_refused() {
        let escrow = XrplAddress::from_account_id([1; 20]);
        let tx = payout(&escrow);
        let (a, b) = (signer(3), signer(4));
        let combined = combine_signer_blobs(&[
            &sign_payout(&tx, &a).unwrap(),
            &sign_payout(&tx, &b).unwrap(),
        ])
        .unwrap();
        let decoded = DecodedTx::from_hex(&combined).unwrap();
        let Some(Field {
            value: Value::Array(elements),
            ..
        }) = decoded.object.get(fields::SIGNERS)
        else {
            panic!("no signers")
        };
        let reversed: Vec<Field> = elements.iter().rev().cloned().collect();
        let swapped = decoded.object.with(Field::array(fields::SIGNERS, reversed));
        let swapped = DecodedTx::from_bytes(&swapped.to_bytes()).unwrap();
        assert_eq!(
            swapped.verify_signatures(),
            Err(SignatureError::UnsortedSigners)
        );
        let duplicated = decoded.object.with(Field::array(
            fields::SIGNERS,
            vec![elements[0].clone(), elements[0].clone()],
        ));
        let duplicated = DecodedTx::from_bytes(&duplicated.to_bytes()).unwrap();
        assert_eq!(
            duplicated.verify_signatures(),
            Err(SignatureError::UnsortedSigners)
        );
        let empty = decoded.object.with(Field::array(fields::SIGNERS, vec![]));
        let empty = DecodedTx::from_bytes(&empty.to_bytes()).unwrap();
        assert_eq!(
            empty.verify_signatures(),
            Err(SignatureError::SignerCount(0))
        );

        // The account signing its own multisigned transaction.
        let own = payout(a.address());
        let blob = sign_payout(&own, &a).unwrap();
        assert!(matches!(
            DecodedTx::from_hex(&blob).unwrap().verify_signatures(),
            Err(SignatureError::SignerIsAccount(_))
        ));
    }

    #[test]
    fn unknown_fields_other_amounts_and_stray_bytes_are_refused() {
        let escrow = XrplAddress::from_account_id([1; 20]);
        let blob = sign_payout(&payout(&escrow), &signer(3)).unwrap();
        let tx = DecodedTx::from_hex(&blob).unwrap();
        // TransferRate is a real field this reader does not accept.
        let extra = tx.object.with(Field::u32(id(2, 11), 5));
        assert!(matches!(
            DecodedTx::from_bytes(&extra.to_bytes()),
            Err(TxDecodeError::Unsupported(_))
        ));
        // An issued-currency amount (48 bytes, the "not XRP" bit set).
        let mut iou = vec![0u8; 48];
        iou[0] = 0xD4;
        iou[1] = 0x83;
        let iou = tx.object.with(Field::blob(fields::AMOUNT, &iou));
        assert!(matches!(
            DecodedTx::from_bytes(&iou.to_bytes()),
            Err(TxDecodeError::Unsupported(_))
        ));
        let mut trailing = tx.object.to_bytes();
        trailing.push(0);
        assert!(DecodedTx::from_bytes(&trailing).is_err());
        let mut truncated = tx.object.to_bytes();
        truncated.truncate(truncated.len() - 3);
        assert!(DecodedTx::from_bytes(&truncated).is_err());
        assert!(DecodedTx::from_hex("zz").is_err());
        assert!(DecodedTx::from_hex("").is_err());
        let missing = tx.object.without(&[fields::FEE]);
        assert!(DecodedTx::from_bytes(&missing.to_bytes()).is_err());
    }

    #[test]
    fn xrp_amounts_read_as_rippled_reads_them() {
        assert_eq!(
            xrp_amount(&(0x4000_0000_0000_0005u64).to_be_bytes()).ok(),
            Some("5".into())
        );
        assert_eq!(xrp_amount(&5u64.to_be_bytes()).ok(), Some("-5".into()));
        assert!(xrp_amount(&0u64.to_be_bytes()).is_err());
        assert!(xrp_amount(&(0x4000_0000_0000_0000u64 | (MAX_DROPS + 1)).to_be_bytes()).is_err());
        assert!(xrp_amount(&(0xC000_0000_0000_0000u64).to_be_bytes()).is_err());
    }
}
