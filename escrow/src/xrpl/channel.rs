//! Native XRPL payment channels from an escrow account.
//!
//! A metered session on XRPL streams value through a PayChannel the escrow
//! account (still 2-of-3 multisig, master key disabled) owns: its `Destination`
//! is the provider's payout account and its claim key (`PublicKey`) the buyer's
//! escrow key. A claim is then one signature by the buyer over
//! `CLM\0 || channel id || cumulative drops (u64, big-endian)`, which never
//! expires and which the ledger only lets grow; the provider redeems it alone
//! with its own `PaymentChannelClaim`.
//!
//! This module builds the escrow's multisigned channel transactions
//! ([`ChannelTx`]: PaymentChannelCreate, PaymentChannelFund, and the owner's
//! PaymentChannelClaim), computes the channel id (rippled's keylet: SHA-512-half
//! of the `x` space key `0x0078`, the owner's and the destination's AccountIDs
//! and the create transaction's Sequence), signs and verifies claims
//! (secp256k1 and Ed25519, as XRPL keys allow), and signs a destination's own
//! PaymentChannelClaim (what a provider's wallet does).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::account::{KeyError, SigningKey, XrplAddress, XrplPublicKey};
use super::codec::{
    fields, multisig_signing_data, sha512_half, tx_type, Field, StObject,
};
use super::multisig::{sealed, MultisignTx};
use super::payout::{multisig_fee_drops, PayoutDestination};
use super::setup::{check_fee, encode_checked, sign_single, SignedTx, TxBuildError};

/// `tfRenew` (PaymentChannelClaim): the source clears the channel's `Expiration`.
pub const TF_RENEW: u32 = 0x0001_0000;
/// `tfClose` (PaymentChannelClaim): close the channel (at once for the
/// destination or a dry channel; after `SettleDelay` for the source).
pub const TF_CLOSE: u32 = 0x0002_0000;
/// The ledger space of PayChannel keys (`'x'`).
const PAYCHAN_SPACE: [u8; 2] = [0x00, 0x78];
/// Prefix of the message a claim signs (`CLM\0`).
const PREFIX_CLAIM: [u8; 4] = *b"CLM\0";

/// A PayChannel's ledger id (its keylet), 32 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ChannelId([u8; 32]);

impl ChannelId {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// 64 hex digits, either case.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let bytes = hex::decode(text.trim())
            .map_err(|_| KeyError::InvalidAddress(format!("channel id {text:?} is not hex")))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| KeyError::InvalidAddress(format!("channel id {text:?} is not 32 bytes")))?;
        Ok(Self(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode_upper(self.0)
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelId({})", self.to_hex())
    }
}

impl TryFrom<String> for ChannelId {
    type Error = KeyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<ChannelId> for String {
    fn from(value: ChannelId) -> Self {
        value.to_hex()
    }
}

/// The id of the channel `owner` creates to `destination` with the
/// PaymentChannelCreate of Sequence `sequence` (rippled's `keylet::payChan`).
pub fn channel_id(owner: &XrplAddress, destination: &XrplAddress, sequence: u32) -> ChannelId {
    let mut data = Vec::with_capacity(2 + 20 + 20 + 4);
    data.extend_from_slice(&PAYCHAN_SPACE);
    data.extend_from_slice(owner.account_id());
    data.extend_from_slice(destination.account_id());
    data.extend_from_slice(&sequence.to_be_bytes());
    ChannelId(sha512_half(&data))
}

/// The bytes a claim of `drops` (cumulative) on `channel` signs:
/// `CLM\0 || channel || drops` (u64 big-endian).
pub fn claim_message(channel: &ChannelId, drops: u64) -> Vec<u8> {
    let mut data = Vec::with_capacity(4 + 32 + 8);
    data.extend_from_slice(&PREFIX_CLAIM);
    data.extend_from_slice(channel.as_bytes());
    data.extend_from_slice(&drops.to_be_bytes());
    data
}

/// Signs a claim as the channel's claim key (ECDSA over SHA-512-half, DER, low S;
/// or Ed25519 over the message). Returns the signature bytes.
pub fn sign_claim(key: &SigningKey, channel: &ChannelId, drops: u64) -> Result<Vec<u8>, KeyError> {
    key.sign(&claim_message(channel, drops))
}

/// Whether `signature` is `public_key`'s claim of `drops` on `channel`, as
/// rippled checks it (strict DER with low S for secp256k1).
pub fn verify_claim(public_key: &XrplPublicKey, channel: &ChannelId, drops: u64, signature: &[u8]) -> bool {
    if signature.is_empty() || signature.len() > 72 {
        return false;
    }
    public_key.verifies(&claim_message(channel, drops), signature)
}

/// What an escrow channel transaction does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelTxKind {
    /// Opens a channel of `amount_drops` to `destination` whose claims
    /// `public_key` signs; the source may close it `settle_delay` seconds after
    /// asking to. No `CancelAfter`: claims never expire.
    Create {
        destination: PayoutDestination,
        amount_drops: u64,
        settle_delay: u32,
        public_key: XrplPublicKey,
    },
    /// Adds `amount_drops` to the channel.
    Fund { channel: ChannelId, amount_drops: u64 },
    /// The owner's claim: delivers up to `balance_drops` (cumulative) to the
    /// destination without a claim signature (the source's privilege) and, with
    /// `close`, asks to close the channel. Without either it is the
    /// transaction that closes an expired channel.
    Claim {
        channel: ChannelId,
        balance_drops: Option<u64>,
        close: bool,
    },
}

/// The fields that fix one escrow channel transaction; what gets stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelTxSpec {
    pub escrow: XrplAddress,
    pub kind: ChannelTxKind,
    pub fee_drops: u64,
    pub sequence: u32,
    /// `None` only for a transaction meant to wait (the close of an expired
    /// channel, submitted once its `Expiration` passed).
    pub last_ledger_sequence: Option<u32>,
}

/// One unsigned channel transaction from the escrow account, prepared for
/// multisigning (`SigningPubKey` empty).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ChannelTxSpec", into = "ChannelTxSpec")]
pub struct ChannelTx {
    spec: ChannelTxSpec,
    unsigned: StObject,
    unsigned_bytes: Vec<u8>,
    json: serde_json::Value,
}

impl ChannelTx {
    /// A transaction paying the multisig fee for `base_fee_drops`.
    pub fn new(
        escrow: &XrplAddress,
        kind: ChannelTxKind,
        base_fee_drops: u64,
        sequence: u32,
        last_ledger_sequence: Option<u32>,
    ) -> Result<Self, TxBuildError> {
        Self::from_spec(ChannelTxSpec {
            escrow: escrow.clone(),
            kind,
            fee_drops: multisig_fee_drops(base_fee_drops)?,
            sequence,
            last_ledger_sequence,
        })
    }

    pub fn from_spec(spec: ChannelTxSpec) -> Result<Self, TxBuildError> {
        check_fee("multisigned channel transaction", spec.fee_drops)?;
        let max = agora_domain::money::Asset::Xrp.max_supply();
        let escrow = &spec.escrow;
        let mut json = json!({
            "Account": escrow.as_str(),
            "Fee": spec.fee_drops.to_string(),
            "Sequence": spec.sequence,
            "SigningPubKey": "",
        });
        let mut out = vec![
            Field::account(fields::ACCOUNT, escrow.account_id()),
            Field::xrp(fields::FEE, spec.fee_drops),
            Field::u32(fields::SEQUENCE, spec.sequence),
            Field::blob(fields::SIGNING_PUB_KEY, &[]),
        ];
        let mut flags = 0u32;
        match &spec.kind {
            ChannelTxKind::Create {
                destination,
                amount_drops,
                settle_delay,
                public_key,
            } => {
                if *amount_drops == 0 {
                    return Err(TxBuildError::ZeroAmount);
                }
                if *amount_drops > max {
                    return Err(TxBuildError::Overflow);
                }
                if destination.address == *escrow {
                    return Err(TxBuildError::EscrowAccountReused(escrow.to_string()));
                }
                json["TransactionType"] = "PaymentChannelCreate".into();
                json["Destination"] = destination.address.as_str().into();
                json["Amount"] = amount_drops.to_string().into();
                json["SettleDelay"] = (*settle_delay).into();
                json["PublicKey"] = public_key.to_hex().into();
                out.push(Field::u16(fields::TRANSACTION_TYPE, tx_type::PAYMENT_CHANNEL_CREATE));
                out.push(Field::account(fields::DESTINATION, destination.address.account_id()));
                out.push(Field::xrp(fields::AMOUNT, *amount_drops));
                out.push(Field::u32(fields::SETTLE_DELAY, *settle_delay));
                out.push(Field::blob(fields::PUBLIC_KEY, public_key.as_bytes()));
                if let Some(tag) = destination.tag {
                    json["DestinationTag"] = tag.into();
                    out.push(Field::u32(fields::DESTINATION_TAG, tag));
                }
            }
            ChannelTxKind::Fund { channel, amount_drops } => {
                if *amount_drops == 0 {
                    return Err(TxBuildError::ZeroAmount);
                }
                if *amount_drops > max {
                    return Err(TxBuildError::Overflow);
                }
                json["TransactionType"] = "PaymentChannelFund".into();
                json["Channel"] = channel.to_hex().into();
                json["Amount"] = amount_drops.to_string().into();
                out.push(Field::u16(fields::TRANSACTION_TYPE, tx_type::PAYMENT_CHANNEL_FUND));
                out.push(Field::leaf_bytes(fields::CHANNEL, channel.as_bytes()));
                out.push(Field::xrp(fields::AMOUNT, *amount_drops));
            }
            ChannelTxKind::Claim {
                channel,
                balance_drops,
                close,
            } => {
                json["TransactionType"] = "PaymentChannelClaim".into();
                json["Channel"] = channel.to_hex().into();
                out.push(Field::u16(fields::TRANSACTION_TYPE, tx_type::PAYMENT_CHANNEL_CLAIM));
                out.push(Field::leaf_bytes(fields::CHANNEL, channel.as_bytes()));
                if let Some(balance) = balance_drops {
                    if *balance == 0 {
                        return Err(TxBuildError::ZeroAmount);
                    }
                    if *balance > max {
                        return Err(TxBuildError::Overflow);
                    }
                    json["Balance"] = balance.to_string().into();
                    out.push(Field::xrp(fields::BALANCE, *balance));
                }
                if *close {
                    flags |= TF_CLOSE;
                }
            }
        }
        json["Flags"] = flags.into();
        out.push(Field::u32(fields::FLAGS, flags));
        if let Some(lls) = spec.last_ledger_sequence {
            json["LastLedgerSequence"] = lls.into();
            out.push(Field::u32(fields::LAST_LEDGER_SEQUENCE, lls));
        }
        let unsigned = StObject::new(out);
        let unsigned_bytes = encode_checked(&json, &unsigned)?;
        Ok(Self {
            spec,
            unsigned,
            unsigned_bytes,
            json,
        })
    }

    pub fn spec(&self) -> &ChannelTxSpec {
        &self.spec
    }
    pub fn kind(&self) -> &ChannelTxKind {
        &self.spec.kind
    }
    pub fn fee_drops(&self) -> u64 {
        self.spec.fee_drops
    }
    pub fn sequence(&self) -> u32 {
        self.spec.sequence
    }

    /// The id of the channel this transaction creates or acts on.
    pub fn channel(&self) -> ChannelId {
        match &self.spec.kind {
            ChannelTxKind::Create { destination, .. } => {
                channel_id(&self.spec.escrow, &destination.address, self.spec.sequence)
            }
            ChannelTxKind::Fund { channel, .. } | ChannelTxKind::Claim { channel, .. } => *channel,
        }
    }

    /// The transaction as XRPL JSON, for the signers' wallets.
    pub fn to_json(&self) -> &serde_json::Value {
        &self.json
    }

    /// The unsigned transaction, serialized, uppercase hex.
    pub fn unsigned_blob(&self) -> String {
        hex::encode_upper(&self.unsigned_bytes)
    }

    /// The exact bytes `signer` signs: `SMT\0`, the signing fields, the signer's AccountID.
    pub fn signing_data(&self, signer: &XrplAddress) -> Vec<u8> {
        multisig_signing_data(&self.unsigned_bytes, signer)
    }
}

impl sealed::Sealed for ChannelTx {
    fn unsigned_bytes(&self) -> Vec<u8> {
        self.unsigned.to_bytes()
    }
    fn unsigned_json(&self) -> &serde_json::Value {
        &self.json
    }
    fn multisigning_data(&self, signer: &XrplAddress) -> Vec<u8> {
        self.signing_data(signer)
    }
}
impl MultisignTx for ChannelTx {}

impl TryFrom<ChannelTxSpec> for ChannelTx {
    type Error = TxBuildError;
    fn try_from(spec: ChannelTxSpec) -> Result<Self, Self::Error> {
        Self::from_spec(spec)
    }
}

impl From<ChannelTx> for ChannelTxSpec {
    fn from(tx: ChannelTx) -> Self {
        tx.spec
    }
}

/// A destination's own PaymentChannelClaim, redeeming the claim `signature`
/// of `balance_drops` by `public_key` (and closing the channel with `close`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestinationClaim {
    pub channel: ChannelId,
    pub balance_drops: u64,
    pub public_key: XrplPublicKey,
    pub signature: Vec<u8>,
    pub close: bool,
    pub fee_drops: u64,
    pub sequence: u32,
    pub last_ledger_sequence: Option<u32>,
}

/// Signs `claim` as the channel's destination account (`key`), single-signed:
/// what a provider's wallet submits to redeem a claim alone.
pub fn sign_destination_claim(key: &SigningKey, claim: &DestinationClaim) -> Result<SignedTx, TxBuildError> {
    check_fee("channel claim", claim.fee_drops)?;
    if claim.balance_drops == 0 {
        return Err(TxBuildError::ZeroAmount);
    }
    let flags = if claim.close { TF_CLOSE } else { 0 };
    let mut json = json!({
        "TransactionType": "PaymentChannelClaim",
        "Account": key.address().as_str(),
        "Channel": claim.channel.to_hex(),
        "Balance": claim.balance_drops.to_string(),
        "Amount": claim.balance_drops.to_string(),
        "PublicKey": claim.public_key.to_hex(),
        "Signature": hex::encode_upper(&claim.signature),
        "Fee": claim.fee_drops.to_string(),
        "Flags": flags,
        "Sequence": claim.sequence,
    });
    let mut out = vec![
        Field::u16(fields::TRANSACTION_TYPE, tx_type::PAYMENT_CHANNEL_CLAIM),
        Field::account(fields::ACCOUNT, key.address().account_id()),
        Field::leaf_bytes(fields::CHANNEL, claim.channel.as_bytes()),
        Field::xrp(fields::BALANCE, claim.balance_drops),
        Field::xrp(fields::AMOUNT, claim.balance_drops),
        Field::blob(fields::PUBLIC_KEY, claim.public_key.as_bytes()),
        Field::blob(fields::SIGNATURE, &claim.signature),
        Field::xrp(fields::FEE, claim.fee_drops),
        Field::u32(fields::FLAGS, flags),
        Field::u32(fields::SEQUENCE, claim.sequence),
    ];
    if let Some(lls) = claim.last_ledger_sequence {
        json["LastLedgerSequence"] = lls.into();
        out.push(Field::u32(fields::LAST_LEDGER_SEQUENCE, lls));
    }
    sign_single(key, json, StObject::new(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xrpl::multisig::{sign_payout, SignatureCollector};
    use crate::xrpl::setup::EscrowSigners;

    fn key(seed: &str) -> SigningKey {
        SigningKey::from_seed(seed).unwrap()
    }

    const BUYER: &str = "sp5fV4UGhZhfCvcDRuY3dyyh5PjHf";
    const PROVIDER: &str = "sp5vYGGekvDhXJSn6f7oPdcjheQXW";
    const ARBITRATOR: &str = "spjjbwMsTH4r4gEAxKR79HGMooipq";
    const ESCROW: &str = "snoPBrXtMeMyMHUVTgbuqAfg1SUTb";

    fn create(buyer: &SigningKey, provider: &SigningKey, escrow: &SigningKey) -> ChannelTx {
        ChannelTx::new(
            escrow.address(),
            ChannelTxKind::Create {
                destination: PayoutDestination {
                    address: provider.address().clone(),
                    tag: None,
                },
                amount_drops: 9_000_000,
                settle_delay: 3_600,
                public_key: buyer.public_key().clone(),
            },
            10,
            5,
            Some(100),
        )
        .unwrap()
    }

    #[test]
    fn the_channel_id_is_the_keylet_of_owner_destination_and_sequence() {
        let (buyer, provider, escrow) = (key(BUYER), key(PROVIDER), key(ESCROW));
        let tx = create(&buyer, &provider, &escrow);
        let id = tx.channel();
        assert_eq!(id, channel_id(escrow.address(), provider.address(), 5));
        assert_ne!(id, channel_id(escrow.address(), provider.address(), 6));
        assert_ne!(id, channel_id(provider.address(), escrow.address(), 5));
    }

    #[test]
    fn a_claim_verifies_only_for_its_channel_amount_and_key() {
        let (buyer, provider, escrow) = (key(BUYER), key(PROVIDER), key(ESCROW));
        let channel = channel_id(escrow.address(), provider.address(), 5);
        let other = channel_id(escrow.address(), provider.address(), 6);
        let sig = sign_claim(&buyer, &channel, 1_000_000).unwrap();
        assert!(verify_claim(buyer.public_key(), &channel, 1_000_000, &sig));
        assert!(!verify_claim(buyer.public_key(), &channel, 1_000_001, &sig));
        assert!(!verify_claim(buyer.public_key(), &other, 1_000_000, &sig));
        assert!(!verify_claim(provider.public_key(), &channel, 1_000_000, &sig));
        assert!(!verify_claim(buyer.public_key(), &channel, 1_000_000, &[]));
        let msg = claim_message(&channel, 0x0102_0304_0506_0708);
        assert_eq!(&msg[..4], b"CLM\0");
        assert_eq!(&msg[4..36], channel.as_bytes());
        assert_eq!(&msg[36..], &[1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn channel_transactions_are_multisigned_like_payouts() {
        let (buyer, provider, arbitrator, escrow) = (key(BUYER), key(PROVIDER), key(ARBITRATOR), key(ESCROW));
        let signers = EscrowSigners::new(
            buyer.address().clone(),
            provider.address().clone(),
            arbitrator.address().clone(),
        )
        .unwrap();
        let tx = create(&buyer, &provider, &escrow);
        assert_eq!(tx.to_json()["TransactionType"], "PaymentChannelCreate");
        assert_eq!(tx.fee_drops(), 30);
        let mut collector = SignatureCollector::new(tx.clone(), signers.clone());
        collector.add_signer_blob(&sign_payout(&tx, &arbitrator).unwrap()).unwrap();
        assert!(!collector.has_quorum());
        collector.add_signer_blob(&sign_payout(&tx, &provider).unwrap()).unwrap();
        let fin = collector.finalize().unwrap();
        let decoded = crate::xrpl::DecodedTx::from_hex(&fin.blob).unwrap();
        assert_eq!(decoded.json()["SettleDelay"], 3_600);
        assert_eq!(decoded.json()["PublicKey"], buyer.public_key().to_hex());
        assert!(decoded.verify_signatures().is_ok());
        // A blob signed for another transaction is refused.
        let fund = ChannelTx::new(
            escrow.address(),
            ChannelTxKind::Fund { channel: tx.channel(), amount_drops: 1 },
            10,
            6,
            Some(100),
        )
        .unwrap();
        let mut other = SignatureCollector::new(tx, signers);
        assert!(other.add_signer_blob(&sign_payout(&fund, &buyer).unwrap()).is_err());
    }

    #[test]
    fn the_owner_claim_and_close_encode_with_their_flags() {
        let (provider, escrow) = (key(PROVIDER), key(ESCROW));
        let channel = channel_id(escrow.address(), provider.address(), 5);
        let close = ChannelTx::new(
            escrow.address(),
            ChannelTxKind::Claim { channel, balance_drops: Some(700), close: true },
            10,
            7,
            Some(50),
        )
        .unwrap();
        assert_eq!(close.to_json()["Flags"], TF_CLOSE);
        assert_eq!(close.to_json()["Balance"], "700");
        let finish = ChannelTx::new(
            escrow.address(),
            ChannelTxKind::Claim { channel, balance_drops: None, close: false },
            10,
            8,
            None,
        )
        .unwrap();
        assert!(finish.to_json().get("LastLedgerSequence").is_none());
        assert!(finish.to_json().get("Balance").is_none());
        assert!(ChannelTx::new(
            escrow.address(),
            ChannelTxKind::Claim { channel, balance_drops: Some(0), close: false },
            10,
            8,
            None
        )
        .is_err());
    }

    #[test]
    fn a_destination_claim_is_single_signed_and_decodes() {
        let (buyer, provider, escrow) = (key(BUYER), key(PROVIDER), key(ESCROW));
        let channel = channel_id(escrow.address(), provider.address(), 5);
        let signature = sign_claim(&buyer, &channel, 1_234).unwrap();
        let signed = sign_destination_claim(
            &provider,
            &DestinationClaim {
                channel,
                balance_drops: 1_234,
                public_key: buyer.public_key().clone(),
                signature: signature.clone(),
                close: true,
                fee_drops: 12,
                sequence: 3,
                last_ledger_sequence: Some(99),
            },
        )
        .unwrap();
        let decoded = crate::xrpl::DecodedTx::from_hex(&signed.blob).unwrap();
        assert_eq!(decoded.transaction_type(), "PaymentChannelClaim");
        assert_eq!(decoded.json()["Signature"], hex::encode_upper(&signature));
        assert_eq!(decoded.json()["Channel"], channel.to_hex());
        assert_eq!(decoded.hash(), signed.hash);
        assert!(decoded.verify_signatures().is_ok());
    }
}
