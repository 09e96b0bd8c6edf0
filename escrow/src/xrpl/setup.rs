//! Setting up an escrow account before the buyer funds it: the marketplace's
//! operating account creates it with a Payment covering its reserve and set-up fees,
//! then the account's own master key installs a 2-of-3 signer list (buyer, provider,
//! arbitrator) and disables itself, so that afterwards no single party, the
//! marketplace included, can move the funds.
//!
//! The funding Payment and the configuration are signed in two steps because a new
//! account's first Sequence is the index of the ledger that creates it, known only
//! once the funding Payment is validated. The SignerListSet and the AccountSet use
//! consecutive Sequences so the ledger applies them in that order: disabling the
//! master key needs the signer list to be in place already.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::account::{KeyError, SigningKey, XrplAddress, XrplKeyring, XrplPublicKey};
use super::codec::{
    decode_hex_blob, fields, transaction_id, tx_type, xrpl_rust_encode, Field, StObject,
    PREFIX_SINGLE_SIGN,
};

/// Signatures a payout needs: 2 of buyer, provider and arbitrator.
pub const ESCROW_QUORUM: u32 = 2;
/// Each signer's weight in the escrow's signer list.
pub const SIGNER_WEIGHT: u16 = 1;
/// `AccountSet` flag that disables the master key.
pub const ASF_DISABLE_MASTER: u32 = 4;
/// Upper bound on any single transaction fee Agora signs: 1 XRP. Far above normal
/// fees even under load; it stops a unit mistake (XRP for drops) from burning funds.
pub const MAX_FEE_DROPS: u64 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxBuildError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("the three escrow signers must be different accounts")]
    SignersNotDistinct,
    #[error("{0} cannot be both the escrow account and a signer or recipient of it")]
    EscrowAccountReused(String),
    #[error("{what} fee of {fee} drops is outside 1..={max}")]
    FeeOutOfRange {
        what: &'static str,
        fee: u64,
        max: u64,
    },
    #[error("funding of {amount} drops does not cover the reserve and set-up fees ({required})")]
    FundingBelowRequired { amount: u64, required: u64 },
    #[error("amount arithmetic overflowed")]
    Overflow,
    #[error("a payment amount must be positive")]
    ZeroAmount,
    #[error(transparent)]
    Split(#[from] agora_domain::escrow::payout::PayoutError),
    #[error("xrpl-rust failed to encode the transaction: {0}")]
    Encode(String),
    /// Our own serialization and xrpl-rust's disagree: never sign in that case.
    #[error("xrpl-rust and Agora serialize the transaction differently")]
    CodecDisagreement,
    #[error("the freshly signed transaction failed its own verification: {0}")]
    SelfCheck(String),
}

pub(crate) fn check_fee(what: &'static str, fee: u64) -> Result<(), TxBuildError> {
    if fee == 0 || fee > MAX_FEE_DROPS {
        return Err(TxBuildError::FeeOutOfRange {
            what,
            fee,
            max: MAX_FEE_DROPS,
        });
    }
    Ok(())
}

/// Serializes `json` with xrpl-rust, checks it equals our serialization of
/// `expected`, and returns the bytes.
pub(crate) fn encode_checked(
    json: &serde_json::Value,
    expected: &StObject,
) -> Result<Vec<u8>, TxBuildError> {
    let bytes = xrpl_rust_encode(json).map_err(TxBuildError::Encode)?;
    if bytes != expected.to_bytes() {
        return Err(TxBuildError::CodecDisagreement);
    }
    Ok(bytes)
}

/// The buyer, provider and arbitrator accounts of one escrow's signer list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "EscrowSignersRaw")]
pub struct EscrowSigners {
    buyer: XrplAddress,
    provider: XrplAddress,
    arbitrator: XrplAddress,
}

#[derive(Deserialize)]
struct EscrowSignersRaw {
    buyer: XrplAddress,
    provider: XrplAddress,
    arbitrator: XrplAddress,
}

impl TryFrom<EscrowSignersRaw> for EscrowSigners {
    type Error = TxBuildError;
    fn try_from(raw: EscrowSignersRaw) -> Result<Self, Self::Error> {
        Self::new(raw.buyer, raw.provider, raw.arbitrator)
    }
}

impl EscrowSigners {
    pub fn new(
        buyer: XrplAddress,
        provider: XrplAddress,
        arbitrator: XrplAddress,
    ) -> Result<Self, TxBuildError> {
        if buyer == provider || buyer == arbitrator || provider == arbitrator {
            return Err(TxBuildError::SignersNotDistinct);
        }
        Ok(Self {
            buyer,
            provider,
            arbitrator,
        })
    }

    pub fn buyer(&self) -> &XrplAddress {
        &self.buyer
    }
    pub fn provider(&self) -> &XrplAddress {
        &self.provider
    }
    pub fn arbitrator(&self) -> &XrplAddress {
        &self.arbitrator
    }

    /// The three accounts in AccountID order.
    pub fn sorted(&self) -> [XrplAddress; 3] {
        let mut all = [
            self.buyer.clone(),
            self.provider.clone(),
            self.arbitrator.clone(),
        ];
        all.sort();
        all
    }

    pub fn contains(&self, account: &XrplAddress) -> bool {
        [&self.buyer, &self.provider, &self.arbitrator].contains(&account)
    }
}

/// The ledger's reserve requirements, in drops (currently 1 XRP base and 0.2 XRP per
/// owned object on mainnet; read them from `server_info` rather than hard-coding).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reserves {
    pub base_drops: u64,
    pub owner_drops: u64,
}

impl Reserves {
    /// What the escrow account must keep: the base reserve plus one owner reserve for
    /// its signer list (since the MultiSignReserve amendment a signer list counts as
    /// one object, whatever its size).
    pub fn escrow_reserve_drops(&self) -> Result<u64, TxBuildError> {
        self.base_drops
            .checked_add(self.owner_drops)
            .ok_or(TxBuildError::Overflow)
    }

    /// What the funding Payment must send: the reserve plus the fees of the
    /// SignerListSet and the AccountSet.
    pub fn funding_amount_drops(&self, configuration_fee_drops: u64) -> Result<u64, TxBuildError> {
        configuration_fee_drops
            .checked_mul(2)
            .and_then(|fees| fees.checked_add(self.escrow_reserve_drops().ok()?))
            .ok_or(TxBuildError::Overflow)
    }
}

/// A signed transaction ready for submission.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTx {
    /// The serialized transaction, uppercase hex, for `submit`.
    pub blob: String,
    /// Its transaction id, uppercase hex, to look it up once submitted.
    pub hash: String,
}

/// Parameters of the funding Payment from the operating account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FundingParams {
    /// Drops sent; at least `reserves.funding_amount_drops(configuration_fee_drops)`.
    pub amount_drops: u64,
    pub reserves: Reserves,
    /// The fee the SignerListSet and AccountSet will each pay.
    pub configuration_fee_drops: u64,
    /// This Payment's own fee.
    pub fee_drops: u64,
    /// The operating account's next Sequence.
    pub sequence: u32,
    pub last_ledger_sequence: u32,
}

/// Signs the Payment that creates and funds escrow account `escrow`.
pub fn sign_funding_payment(
    operating: &SigningKey,
    escrow: &XrplAddress,
    params: &FundingParams,
) -> Result<SignedTx, TxBuildError> {
    check_fee("funding", params.fee_drops)?;
    check_fee("configuration", params.configuration_fee_drops)?;
    if operating.address() == escrow {
        return Err(TxBuildError::EscrowAccountReused(escrow.to_string()));
    }
    let required = params
        .reserves
        .funding_amount_drops(params.configuration_fee_drops)?;
    if params.amount_drops < required {
        return Err(TxBuildError::FundingBelowRequired {
            amount: params.amount_drops,
            required,
        });
    }
    let json = json!({
        "TransactionType": "Payment",
        "Account": operating.address().as_str(),
        "Destination": escrow.as_str(),
        "Amount": params.amount_drops.to_string(),
        "Fee": params.fee_drops.to_string(),
        "Flags": 0,
        "Sequence": params.sequence,
        "LastLedgerSequence": params.last_ledger_sequence,
    });
    let fields = StObject::new(vec![
        Field::u16(fields::TRANSACTION_TYPE, tx_type::PAYMENT),
        Field::account(fields::ACCOUNT, operating.address().account_id()),
        Field::account(fields::DESTINATION, escrow.account_id()),
        Field::xrp(fields::AMOUNT, params.amount_drops),
        Field::xrp(fields::FEE, params.fee_drops),
        Field::u32(fields::FLAGS, 0),
        Field::u32(fields::SEQUENCE, params.sequence),
        Field::u32(fields::LAST_LEDGER_SEQUENCE, params.last_ledger_sequence),
    ]);
    sign_single(operating, json, fields)
}

/// Parameters of the escrow account's own configuration transactions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigurationParams {
    /// The escrow account's Sequence once created: the ledger index in which the
    /// funding Payment was validated (`account_info` shows it). The AccountSet
    /// uses the next one.
    pub first_sequence: u32,
    /// Fee of each of the two transactions.
    pub fee_drops: u64,
    pub last_ledger_sequence: u32,
    pub reserves: Reserves,
}

/// What the buyer should check on the ledger before funding an escrow account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuyerCheck {
    pub escrow_address: XrplAddress,
    /// The SignerList object's entries, exactly these (in AccountID order).
    pub signer_entries: Vec<BuyerCheckSigner>,
    /// The SignerList's `SignerQuorum`.
    pub quorum: u32,
    /// The AccountRoot has `lsfDisableMaster` set.
    pub master_disabled: bool,
    /// The AccountRoot has no `RegularKey` (always `None`): a regular key would let
    /// its holder spend alone.
    pub regular_key: Option<XrplAddress>,
    /// Balance the account holds before the buyer's deposit, which no payout spends.
    pub expected_reserve_drops: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuyerCheckSigner {
    pub account: XrplAddress,
    pub weight: u16,
}

impl BuyerCheck {
    pub fn new(
        escrow_address: XrplAddress,
        signers: &EscrowSigners,
        reserves: &Reserves,
    ) -> Result<Self, TxBuildError> {
        Ok(Self {
            escrow_address,
            signer_entries: signers
                .sorted()
                .into_iter()
                .map(|account| BuyerCheckSigner {
                    account,
                    weight: SIGNER_WEIGHT,
                })
                .collect(),
            quorum: ESCROW_QUORUM,
            master_disabled: true,
            regular_key: None,
            expected_reserve_drops: reserves.escrow_reserve_drops()?,
        })
    }
}

/// The escrow account's signed configuration, to submit in this order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscrowConfiguration {
    pub signer_list_set: SignedTx,
    pub disable_master: SignedTx,
    pub buyer_check: BuyerCheck,
}

/// Signs, with escrow account `escrow_index`'s master key, the SignerListSet that
/// installs the 2-of-3 list and the AccountSet that then disables that master key.
pub fn sign_escrow_configuration(
    keyring: &XrplKeyring,
    escrow_index: u32,
    signers: &EscrowSigners,
    params: &ConfigurationParams,
) -> Result<EscrowConfiguration, TxBuildError> {
    check_fee("configuration", params.fee_drops)?;
    let key = keyring.escrow_key(escrow_index)?;
    let escrow = key.address().clone();
    if signers.contains(&escrow) {
        return Err(TxBuildError::EscrowAccountReused(escrow.to_string()));
    }
    let second_sequence = params
        .first_sequence
        .checked_add(1)
        .ok_or(TxBuildError::Overflow)?;
    let sorted = signers.sorted();

    let entries_json: Vec<_> = sorted
        .iter()
        .map(|a| json!({"SignerEntry": {"Account": a.as_str(), "SignerWeight": SIGNER_WEIGHT}}))
        .collect();
    let signer_list_json = json!({
        "TransactionType": "SignerListSet",
        "Account": escrow.as_str(),
        "Fee": params.fee_drops.to_string(),
        "Flags": 0,
        "Sequence": params.first_sequence,
        "LastLedgerSequence": params.last_ledger_sequence,
        "SignerQuorum": ESCROW_QUORUM,
        "SignerEntries": entries_json,
    });
    let entries = sorted
        .iter()
        .map(|a| {
            Field::object(
                fields::SIGNER_ENTRY,
                vec![
                    Field::account(fields::ACCOUNT, a.account_id()),
                    Field::u16(fields::SIGNER_WEIGHT, SIGNER_WEIGHT),
                ],
            )
        })
        .collect();
    let signer_list_fields = StObject::new(vec![
        Field::u16(fields::TRANSACTION_TYPE, tx_type::SIGNER_LIST_SET),
        Field::account(fields::ACCOUNT, escrow.account_id()),
        Field::xrp(fields::FEE, params.fee_drops),
        Field::u32(fields::FLAGS, 0),
        Field::u32(fields::SEQUENCE, params.first_sequence),
        Field::u32(fields::LAST_LEDGER_SEQUENCE, params.last_ledger_sequence),
        Field::u32(fields::SIGNER_QUORUM, ESCROW_QUORUM),
        Field::array(fields::SIGNER_ENTRIES, entries),
    ]);
    let signer_list_set = sign_single(&key, signer_list_json, signer_list_fields)?;

    let disable_master = sign_master_disable(
        keyring,
        escrow_index,
        second_sequence,
        params.fee_drops,
        params.last_ledger_sequence,
    )?;

    Ok(EscrowConfiguration {
        signer_list_set,
        disable_master,
        buyer_check: BuyerCheck::new(escrow, signers, &params.reserves)?,
    })
}

/// Signs, with escrow account `escrow_index`'s master key, only the AccountSet
/// that disables that master key, at `sequence`: what is left to do when the
/// signer list is already on the ledger (its SignerListSet validated, the
/// AccountSet did not), so a set-up resumed halfway pays no fee twice.
pub fn sign_master_disable(
    keyring: &XrplKeyring,
    escrow_index: u32,
    sequence: u32,
    fee_drops: u64,
    last_ledger_sequence: u32,
) -> Result<SignedTx, TxBuildError> {
    check_fee("configuration", fee_drops)?;
    let key = keyring.escrow_key(escrow_index)?;
    let escrow = key.address().clone();
    let disable_json = json!({
        "TransactionType": "AccountSet",
        "Account": escrow.as_str(),
        "Fee": fee_drops.to_string(),
        "Flags": 0,
        "Sequence": sequence,
        "LastLedgerSequence": last_ledger_sequence,
        "SetFlag": ASF_DISABLE_MASTER,
    });
    let disable_fields = StObject::new(vec![
        Field::u16(fields::TRANSACTION_TYPE, tx_type::ACCOUNT_SET),
        Field::account(fields::ACCOUNT, escrow.account_id()),
        Field::xrp(fields::FEE, fee_drops),
        Field::u32(fields::FLAGS, 0),
        Field::u32(fields::SEQUENCE, sequence),
        Field::u32(fields::LAST_LEDGER_SEQUENCE, last_ledger_sequence),
        Field::u32(fields::SET_FLAG, ASF_DISABLE_MASTER),
    ]);
    sign_single(&key, disable_json, disable_fields)
}

/// Signs a single-signature transaction whose fields (except the signing key and
/// signature) are `fields`, serialized identically by xrpl-rust from `json`, then
/// decodes the blob again and verifies it before returning it.
pub(crate) fn sign_single(
    key: &SigningKey,
    mut json: serde_json::Value,
    fields: StObject,
) -> Result<SignedTx, TxBuildError> {
    let public_key = key.public_key();
    json["SigningPubKey"] = public_key.to_hex().into();
    let unsigned = fields.with(Field::blob(fields::SIGNING_PUB_KEY, public_key.as_bytes()));
    encode_checked(&json, &unsigned)?;

    // A channel claim's `Signature` is not a signing field.
    let mut message = PREFIX_SINGLE_SIGN.to_vec();
    message.extend_from_slice(&unsigned.without(&[fields::SIGNATURE]).to_bytes());
    let signature = key.sign(&message)?;

    json["TxnSignature"] = hex::encode_upper(&signature).into();
    let signed = unsigned.with(Field::blob(fields::TXN_SIGNATURE, &signature));
    let blob = hex::encode_upper(encode_checked(&json, &signed)?);
    verify_single_signed(&blob, &fields, key.address())
        .map_err(|e| TxBuildError::SelfCheck(e.to_string()))?;
    Ok(SignedTx {
        hash: transaction_id(&signed.to_bytes()),
        blob,
    })
}

/// Checks a single-signed blob: its fields are exactly `expected` plus
/// `SigningPubKey` and `TxnSignature`, the key is `account`'s master key, and the
/// signature verifies.
pub(crate) fn verify_single_signed(
    blob: &str,
    expected: &StObject,
    account: &XrplAddress,
) -> Result<(), String> {
    let bytes = decode_hex_blob(blob).map_err(|e| e.to_string())?;
    let parsed = StObject::parse(&bytes).map_err(|e| e.to_string())?;
    let key_bytes = parsed
        .get(fields::SIGNING_PUB_KEY)
        .and_then(Field::as_leaf)
        .ok_or("no SigningPubKey")?;
    let signature = parsed
        .get(fields::TXN_SIGNATURE)
        .and_then(Field::as_leaf)
        .ok_or("no TxnSignature")?;
    let public_key = XrplPublicKey::from_bytes(key_bytes).map_err(|e| e.to_string())?;
    if public_key.address() != *account {
        return Err("the signing key is not the account's master key".into());
    }
    let unsigned = parsed.without(&[fields::TXN_SIGNATURE]);
    let expected = expected.with(Field::blob(fields::SIGNING_PUB_KEY, key_bytes));
    if let Some(field) = unsigned.first_difference(&expected) {
        return Err(format!("field {} differs", super::codec::field_name(field)));
    }
    let mut message = PREFIX_SINGLE_SIGN.to_vec();
    message.extend_from_slice(&unsigned.without(&[fields::SIGNATURE]).to_bytes());
    if !public_key.verifies(&message, signature) {
        return Err("the signature does not verify".into());
    }
    Ok(())
}
