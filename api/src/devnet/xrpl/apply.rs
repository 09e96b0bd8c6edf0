//! The devnet's transaction engine: the checks rippled makes, in rippled's order,
//! with rippled's engine results, for XRP Payments, AccountSet (asfDisableMaster,
//! asfRequireDest), SetRegularKey and SignerListSet.
//!
//! 1. Local checks ([`CheckedTx::from_blob`]): strict decoding, the fields the
//!    transaction type allows, and every signature verified. A failure here is
//!    not an engine result: rippled answers `invalidTransaction`.
//! 2. Preflight (`tem…`): what can be judged from the transaction alone.
//! 3. Preclaim, against the open ledger: the account exists (`terNO_ACCOUNT`), the
//!    Sequence (`tefPAST_SEQ`, `terPRE_SEQ`), LastLedgerSequence (`tefMAX_LEDGER`),
//!    the fee (`telINSUF_FEE_P`, `terINSUF_FEE_B`), then who signed (master or
//!    regular key, or the signer list and its quorum: `tefMASTER_DISABLED`,
//!    `tefBAD_AUTH`, `tefNOT_MULTI_SIGNING`, `tefBAD_SIGNATURE`, `tefBAD_QUORUM`).
//! 4. Apply: the fee is taken and the Sequence used whatever the outcome; a
//!    `tec…` result leaves everything else unchanged.
//!
//! Anything rippled would accept but the devnet does not model (other AccountSet
//! flags, tickets, AccountDelete) is refused with `temDISABLED` or
//! `tefNO_TICKET` rather than half applied.

use std::collections::BTreeSet;

use agora_escrow::xrpl::{DecodedTx, SignatureError, TxAuthorization, XrplAddress};
use serde::Deserialize;
use serde_json::{json, Map, Value as Json};

use super::channel::{self, ChannelFields};
use super::ledger::{
    account_fields, account_keylet, channel_fields, signer_entries_json, signer_list_keylet, AccountId,
    AccountRoot, SignerList, State, LSF_DISABLE_MASTER, LSF_REQUIRE_DEST_TAG,
};
use super::{BASE_FEE_DROPS, BASE_RESERVE_DROPS, OWNER_RESERVE_DROPS};

const TF_FULLY_CANONICAL_SIG: u32 = 0x8000_0000;
const TF_NO_RIPPLE_DIRECT: u32 = 0x0001_0000;
const TF_PARTIAL_PAYMENT: u32 = 0x0002_0000;
const TF_LIMIT_QUALITY: u32 = 0x0004_0000;
const ASF_REQUIRE_DEST: u32 = 1;
const ASF_DISABLE_MASTER: u32 = 4;
/// AccountSet flags rippled knows (1..=16) that the devnet does not model.
const ASF_KNOWN_MAX: u32 = 16;
/// Largest signer list (rippled with ExpandedSignerList).
const MAX_SIGNER_ENTRIES: usize = 32;

/// An engine result and rippled's text for it.
pub(crate) struct Ter {
    pub name: &'static str,
    pub code: i32,
    pub message: &'static str,
}

const RESULTS: &[(&str, i32, &str)] = &[
    (
        "tesSUCCESS",
        0,
        "The transaction was applied. Only final in a validated ledger.",
    ),
    (
        "tecUNFUNDED_PAYMENT",
        104,
        "Insufficient XRP balance to send.",
    ),
    (
        "tecNO_DST_INSUF_XRP",
        125,
        "Destination does not exist. Too little XRP sent to create it.",
    ),
    (
        "tecNO_ALTERNATIVE_KEY",
        130,
        "The operation would remove the ability to sign transactions with the account.",
    ),
    (
        "tecINSUFFICIENT_RESERVE",
        141,
        "Insufficient reserve to complete requested operation.",
    ),
    (
        "tecNEED_MASTER_KEY",
        142,
        "The operation requires the use of the Master Key.",
    ),
    ("tecNO_DST", 124, "Destination does not exist. Send XRP to create it."),
    ("tecUNFUNDED", 129, "Not enough XRP to satisfy the reserve requirement."),
    ("tecNO_TARGET", 138, "Target account does not exist."),
    ("tecNO_PERMISSION", 139, "No permission to perform requested operation."),
    ("tecNO_ENTRY", 140, "No matching entry found."),
    ("tecDST_TAG_NEEDED", 143, "A destination tag is required."),
    ("tecEXPIRED", 148, "Expiration time is passed."),
    (
        "tefALREADY",
        -198,
        "The exact transaction was already in this ledger.",
    ),
    (
        "tefBAD_AUTH",
        -196,
        "Transaction's public key is not authorized.",
    ),
    (
        "tefPAST_SEQ",
        -190,
        "This sequence number has already passed.",
    ),
    ("tefMAX_LEDGER", -187, "Ledger sequence too high."),
    ("tefMASTER_DISABLED", -188, "Master key is disabled."),
    (
        "tefBAD_SIGNATURE",
        -186,
        "A signature is provided for a non-signer.",
    ),
    (
        "tefBAD_QUORUM",
        -185,
        "Signatures provided do not meet the quorum.",
    ),
    (
        "tefNOT_MULTI_SIGNING",
        -184,
        "Account has no appropriate list of multi-signers.",
    ),
    ("tefNO_TICKET", -180, "Ticket is not in ledger."),
    ("telINSUF_FEE_P", -394, "Fee insufficient."),
    (
        "telCAN_NOT_QUEUE_FULL",
        -387,
        "Can not queue at this time: the queue is full.",
    ),
    (
        "telNETWORK_ID_MAKES_TX_NON_CANONICAL",
        -384,
        "Transactions submitted to this network should not include a NetworkID field.",
    ),
    ("temMALFORMED", -299, "Malformed transaction."),
    ("temBAD_AMOUNT", -298, "Malformed: Bad amount."),
    ("temBAD_EXPIRATION", -296, "Malformed: Bad expiration."),
    ("temBAD_FEE", -295, "Invalid fee, negative or not XRP."),
    (
        "temBAD_REGKEY",
        -289,
        "Malformed: Regular key cannot be same as master key.",
    ),
    (
        "temBAD_SEND_XRP_LIMIT",
        -288,
        "Malformed: Limit quality is not allowed for XRP to XRP.",
    ),
    (
        "temBAD_SEND_XRP_MAX",
        -287,
        "Malformed: Send max is not allowed for XRP to XRP.",
    ),
    (
        "temBAD_SEND_XRP_NO_DIRECT",
        -286,
        "Malformed: No Ripple direct is not allowed for XRP to XRP.",
    ),
    (
        "temBAD_SEND_XRP_PARTIAL",
        -285,
        "Malformed: Partial payment is not allowed for XRP to XRP.",
    ),
    ("temBAD_SIGNATURE", -282, "Malformed: Bad signature."),
    ("temDST_IS_SRC", -279, "Destination may not be source."),
    ("temDST_NEEDED", -278, "Destination not specified."),
    (
        "temINVALID_FLAG",
        -276,
        "The transaction has an invalid flag.",
    ),
    ("temREDUNDANT", -275, "The transaction is redundant."),
    (
        "temDISABLED",
        -273,
        "The transaction requires logic that is currently disabled.",
    ),
    (
        "temBAD_SIGNER",
        -272,
        "Malformed: No signer may duplicate account or other signers.",
    ),
    ("temBAD_QUORUM", -271, "Malformed: Quorum is unreachable."),
    (
        "temBAD_WEIGHT",
        -270,
        "Malformed: Weight must be a positive value.",
    ),
    ("terINSUF_FEE_B", -97, "Account balance can't pay fee."),
    ("terNO_ACCOUNT", -96, "The source account does not exist."),
    ("terPRE_SEQ", -92, "Missing/inapplicable prior transaction."),
];

pub(crate) fn ter(name: &'static str) -> Ter {
    let (code, message) = RESULTS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map_or((0, ""), |(_, c, m)| (*c, *m));
    Ter {
        name,
        code,
        message,
    }
}

/// What became of a transaction offered to a ledger.
pub(crate) enum Verdict {
    /// `tes` or `tec`: in the ledger, fee taken, Sequence used.
    Applied { result: &'static str, meta: Json },
    /// `ter`: may apply later (a prior Sequence missing, the account not funded yet).
    Retry(&'static str),
    /// `tem`, `tef`, `tel`: dropped.
    Refused(&'static str),
}

/// Why a blob failed the local checks, with the closest engine result for
/// callers that want one (the devnet's in-process `submit`).
#[derive(Debug, Clone)]
pub(crate) struct LocalCheckError {
    pub result: &'static str,
    pub reason: String,
}

/// The typed fields the engine reads, from the decoder's JSON.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Fields {
    transaction_type: String,
    fee: String,
    sequence: u32,
    #[serde(default)]
    flags: u32,
    last_ledger_sequence: Option<u32>,
    ticket_sequence: Option<u32>,
    #[serde(rename = "NetworkID")]
    network_id: Option<u32>,
    destination: Option<XrplAddress>,
    destination_tag: Option<u32>,
    amount: Option<String>,
    send_max: Option<String>,
    deliver_min: Option<String>,
    set_flag: Option<u32>,
    clear_flag: Option<u32>,
    signer_quorum: Option<u32>,
    signer_entries: Option<Vec<SignerEntryWrapper>>,
    regular_key: Option<XrplAddress>,
    channel: Option<String>,
    balance: Option<String>,
    public_key: Option<String>,
    signature: Option<String>,
    settle_delay: Option<u32>,
    expiration: Option<u32>,
    cancel_after: Option<u32>,
}

impl Fields {
    fn channel_fields(&self) -> ChannelFields {
        ChannelFields {
            channel: self.channel.clone(),
            amount: self.amount.as_deref().and_then(positive_drops),
            balance: self.balance.as_deref().and_then(positive_drops),
            public_key: self.public_key.clone(),
            signature: self.signature.clone(),
            settle_delay: self.settle_delay,
            expiration: self.expiration,
            cancel_after: self.cancel_after,
        }
    }

    fn is_channel_tx(&self) -> bool {
        self.transaction_type.starts_with("PaymentChannel")
    }
}

#[derive(Debug, Clone, Deserialize)]
struct SignerEntryWrapper {
    #[serde(rename = "SignerEntry")]
    entry: SignerEntryFields,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SignerEntryFields {
    account: XrplAddress,
    signer_weight: u16,
}

/// Fields every transaction may carry.
const COMMON_FIELDS: &[&str] = &[
    "TransactionType",
    "Flags",
    "SourceTag",
    "Sequence",
    "LastLedgerSequence",
    "TicketSequence",
    "NetworkID",
    "Fee",
    "SigningPubKey",
    "TxnSignature",
    "Account",
    "Signers",
    "Memos",
];

/// The fields a type adds to the common ones, and those it requires.
fn type_fields(tx_type: &str) -> Option<(&'static [&'static str], &'static [&'static str])> {
    Some(match tx_type {
        "Payment" => (
            &[
                "Destination",
                "Amount",
                "DestinationTag",
                "InvoiceID",
                "SendMax",
                "DeliverMin",
            ],
            &["Destination", "Amount"],
        ),
        "AccountSet" => (&["SetFlag", "ClearFlag"], &[]),
        "SetRegularKey" => (&["RegularKey"], &[]),
        "SignerListSet" => (&["SignerQuorum", "SignerEntries"], &["SignerQuorum"]),
        "AccountDelete" => (&["Destination", "DestinationTag"], &["Destination"]),
        "PaymentChannelCreate" => (
            &["Destination", "Amount", "SettleDelay", "PublicKey", "CancelAfter", "DestinationTag"],
            &["Destination", "Amount", "SettleDelay", "PublicKey"],
        ),
        "PaymentChannelFund" => (&["Channel", "Amount", "Expiration"], &["Channel", "Amount"]),
        "PaymentChannelClaim" => (&["Channel", "Balance", "Amount", "Signature", "PublicKey"], &["Channel"]),
        _ => return None,
    })
}

/// A transaction that passed the local checks.
#[derive(Debug, Clone)]
pub(crate) struct CheckedTx {
    pub decoded: DecodedTx,
    pub auth: TxAuthorization,
    account: AccountId,
    fields: Fields,
}

impl CheckedTx {
    pub fn from_blob(blob: &str) -> Result<Self, LocalCheckError> {
        let malformed = |reason: String| LocalCheckError {
            result: "temMALFORMED",
            reason,
        };
        let decoded = DecodedTx::from_hex(blob).map_err(|e| malformed(e.to_string()))?;
        let json = decoded.json();
        let tx_type = decoded.transaction_type();
        let Some((extra, required)) = type_fields(tx_type) else {
            return Err(malformed(format!("unknown transaction type {tx_type}")));
        };
        if let Some(object) = json.as_object() {
            for name in object.keys() {
                if !COMMON_FIELDS.contains(&name.as_str()) && !extra.contains(&name.as_str()) {
                    return Err(malformed(format!(
                        "field '{name}' is not allowed in {tx_type}"
                    )));
                }
            }
        }
        for name in required {
            if json.get(name).is_none() {
                return Err(malformed(format!(
                    "field '{name}' is required in {tx_type}"
                )));
            }
        }
        let fields: Fields = serde_json::from_value(json.clone())
            .map_err(|e| malformed(format!("unreadable fields: {e}")))?;
        let auth = decoded.verify_signatures().map_err(|e| LocalCheckError {
            result: match e {
                SignatureError::UnsortedSigners | SignatureError::SignerIsAccount(_) => {
                    "temBAD_SIGNER"
                }
                _ => "temBAD_SIGNATURE",
            },
            reason: e.to_string(),
        })?;
        Ok(Self {
            account: *decoded.account().account_id(),
            decoded,
            auth,
            fields,
        })
    }

    pub fn hash(&self) -> &str {
        self.decoded.hash()
    }

    pub fn account(&self) -> &AccountId {
        &self.account
    }

    pub fn sequence(&self) -> u32 {
        self.fields.sequence
    }

    pub fn last_ledger_sequence(&self) -> Option<u32> {
        self.fields.last_ledger_sequence
    }

    fn signer_count(&self) -> u64 {
        match &self.auth {
            TxAuthorization::Single { .. } => 0,
            TxAuthorization::Multi { signers } => signers.len() as u64,
        }
    }

    /// The fee this transaction must pay: the base fee, times one plus the number
    /// of signatures when multisigned.
    pub fn required_fee(&self) -> u64 {
        BASE_FEE_DROPS * (1 + self.signer_count())
    }
}

/// The reserve an account with `owner_count` objects must keep.
pub(crate) fn reserve(owner_count: u32) -> u64 {
    BASE_RESERVE_DROPS + u64::from(owner_count) * OWNER_RESERVE_DROPS
}

/// Drops from an amount string: `None` for a negative or unreadable amount.
fn positive_drops(amount: &str) -> Option<u64> {
    amount.parse::<u64>().ok()
}

/// Offers `tx` to the ledger being built (`ledger_index`), as its
/// `tx_index`-th transaction. `state` changes only when the result is `Applied`.
pub(crate) fn apply(
    state: &mut State,
    tx: &CheckedTx,
    ledger_index: u32,
    tx_index: u32,
) -> Verdict {
    if let Err(result) = preflight(tx) {
        return Verdict::Refused(result);
    }
    let f = &tx.fields;
    if f.network_id.is_some() {
        return Verdict::Refused("telNETWORK_ID_MAKES_TX_NON_CANONICAL");
    }
    let Some(account) = state.accounts.get(&tx.account) else {
        return Verdict::Retry("terNO_ACCOUNT");
    };
    if f.ticket_sequence.is_some() {
        return Verdict::Refused("tefNO_TICKET");
    }
    if f.sequence < account.sequence {
        return Verdict::Refused("tefPAST_SEQ");
    }
    if f.sequence > account.sequence {
        return Verdict::Retry("terPRE_SEQ");
    }
    if f.last_ledger_sequence
        .is_some_and(|last| ledger_index > last)
    {
        return Verdict::Refused("tefMAX_LEDGER");
    }
    let Some(fee) = positive_drops(&f.fee) else {
        return Verdict::Refused("temBAD_FEE");
    };
    if fee < tx.required_fee() {
        return Verdict::Refused("telINSUF_FEE_P");
    }
    if account.balance < fee {
        return Verdict::Retry("terINSUF_FEE_B");
    }
    let signed_with_master = match check_sign(state, account, tx) {
        Ok(master) => master,
        Err(result) => return Verdict::Refused(result),
    };

    let before = state.clone();
    let result = match do_apply(state, tx, fee, signed_with_master, ledger_index) {
        Ok(()) => "tesSUCCESS",
        Err(code) if !code.starts_with("tec") => {
            // rippled's doApply may still refuse (temBAD_SIGNATURE, ...): not applied.
            *state = before;
            return Verdict::Refused(code);
        }
        Err(tec) => {
            // A tec result keeps the fee and the Sequence, nothing else.
            *state = before.clone();
            tec
        }
    };
    let Some(sender) = state.accounts.get_mut(&tx.account) else {
        *state = before;
        return Verdict::Refused("terNO_ACCOUNT");
    };
    sender.balance -= fee;
    sender.sequence += 1;
    state.total_drops -= fee;

    let mut touched = touched_accounts(tx);
    for id in channel::channel_parties(&before, f.channel.as_deref()) {
        if !touched.contains(&id) {
            touched.push(id);
        }
    }
    for id in &touched {
        if let Some(a) = state.accounts.get_mut(id) {
            if before.accounts.get(id) != Some(a) {
                a.previous_txn_id = tx.hash().to_owned();
                a.previous_txn_lgr_seq = ledger_index;
            }
        }
    }
    let mut meta = Map::new();
    let mut nodes = affected_nodes(&before, state, &touched);
    nodes.extend(channel_nodes(&before, state));
    nodes.sort_by(|a, b| node_key(a).cmp(&node_key(b)));
    meta.insert("AffectedNodes".into(), nodes.into());
    meta.insert("TransactionIndex".into(), tx_index.into());
    meta.insert("TransactionResult".into(), result.into());
    if result == "tesSUCCESS" && f.transaction_type == "Payment" {
        if let Some(amount) = &f.amount {
            meta.insert("DeliveredAmount".into(), amount.clone().into());
            meta.insert("delivered_amount".into(), amount.clone().into());
        }
    }
    Verdict::Applied {
        result,
        meta: Json::Object(meta),
    }
}

/// The `tem` checks: the transaction on its own.
fn preflight(tx: &CheckedTx) -> Result<(), &'static str> {
    let f = &tx.fields;
    match positive_drops(&f.fee) {
        Some(_) => {}
        None => return Err("temBAD_FEE"),
    }
    match f.transaction_type.as_str() {
        "Payment" => {
            if f.flags
                & !(TF_FULLY_CANONICAL_SIG
                    | TF_NO_RIPPLE_DIRECT
                    | TF_PARTIAL_PAYMENT
                    | TF_LIMIT_QUALITY)
                != 0
            {
                return Err("temINVALID_FLAG");
            }
            if f.flags & TF_PARTIAL_PAYMENT != 0 {
                return Err("temBAD_SEND_XRP_PARTIAL");
            }
            if f.flags & TF_LIMIT_QUALITY != 0 {
                return Err("temBAD_SEND_XRP_LIMIT");
            }
            if f.flags & TF_NO_RIPPLE_DIRECT != 0 {
                return Err("temBAD_SEND_XRP_NO_DIRECT");
            }
            let Some(destination) = &f.destination else {
                return Err("temDST_NEEDED");
            };
            match f.amount.as_deref().and_then(positive_drops) {
                Some(drops) if drops > 0 => {}
                _ => return Err("temBAD_AMOUNT"),
            }
            if f.send_max.is_some() {
                return Err("temBAD_SEND_XRP_MAX");
            }
            if f.deliver_min.is_some() {
                return Err("temBAD_AMOUNT");
            }
            if destination.account_id() == &tx.account {
                return Err("temREDUNDANT");
            }
        }
        "AccountSet" => {
            if f.flags & !TF_FULLY_CANONICAL_SIG != 0 {
                // tfRequireDestTag and friends are not modelled.
                return Err("temDISABLED");
            }
            if f.set_flag.is_some() && f.set_flag == f.clear_flag {
                return Err("temINVALID_FLAG");
            }
            for flag in [f.set_flag, f.clear_flag].into_iter().flatten() {
                match flag {
                    ASF_REQUIRE_DEST | ASF_DISABLE_MASTER => {}
                    1..=ASF_KNOWN_MAX => return Err("temDISABLED"),
                    // rippled ignores flags it does not know.
                    _ => {}
                }
            }
        }
        "SetRegularKey" => {
            if f.flags & !TF_FULLY_CANONICAL_SIG != 0 {
                return Err("temINVALID_FLAG");
            }
            if f.regular_key.as_ref().map(XrplAddress::account_id) == Some(&tx.account) {
                return Err("temBAD_REGKEY");
            }
        }
        "SignerListSet" => {
            if f.flags & !TF_FULLY_CANONICAL_SIG != 0 {
                return Err("temINVALID_FLAG");
            }
            let quorum = f.signer_quorum.unwrap_or_default();
            match &f.signer_entries {
                None if quorum == 0 => {} // deletes the list
                None => return Err("temMALFORMED"),
                Some(_) if quorum == 0 => return Err("temMALFORMED"),
                Some(entries) => {
                    if entries.is_empty() || entries.len() > MAX_SIGNER_ENTRIES {
                        return Err("temMALFORMED");
                    }
                    let mut seen = BTreeSet::new();
                    let mut total: u64 = 0;
                    for e in entries {
                        if e.entry.signer_weight == 0 {
                            return Err("temBAD_WEIGHT");
                        }
                        if e.entry.account.account_id() == &tx.account
                            || !seen.insert(*e.entry.account.account_id())
                        {
                            return Err("temBAD_SIGNER");
                        }
                        total += u64::from(e.entry.signer_weight);
                    }
                    if u64::from(quorum) > total {
                        return Err("temBAD_QUORUM");
                    }
                }
            }
        }
        t if t.starts_with("PaymentChannel") => channel::preflight(
            t,
            &tx.account,
            f.destination.as_ref().map(XrplAddress::account_id),
            f.flags,
            &f.channel_fields(),
        )?,
        // Not modelled: deleting accounts.
        _ => return Err("temDISABLED"),
    }
    Ok(())
}

/// Who signed, against the ledger (rippled's checkSingleSign/checkMultiSign).
/// `Ok(true)` when single-signed with the master key.
fn check_sign(state: &State, account: &AccountRoot, tx: &CheckedTx) -> Result<bool, &'static str> {
    match &tx.auth {
        TxAuthorization::Single { public_key } => {
            let signer = public_key.address();
            let signer = signer.account_id();
            if account.regular_key.as_ref() == Some(signer) {
                return Ok(false);
            }
            if signer == &tx.account {
                if account.master_disabled() {
                    return Err("tefMASTER_DISABLED");
                }
                return Ok(true);
            }
            Err("tefBAD_AUTH")
        }
        TxAuthorization::Multi { signers } => {
            let Some(list) = &account.signer_list else {
                return Err("tefNOT_MULTI_SIGNING");
            };
            let mut weight: u64 = 0;
            for signer in signers {
                let id = signer.account.account_id();
                let Some((_, w)) = list.entries.iter().find(|(a, _)| a == id) else {
                    return Err("tefBAD_SIGNATURE");
                };
                let key_account = signer.public_key.address();
                let signer_root = state.accounts.get(id);
                if key_account.account_id() == id {
                    // A master key; refused if that account disabled it. An
                    // account that does not exist ("phantom") may still sign.
                    if signer_root.is_some_and(AccountRoot::master_disabled) {
                        return Err("tefMASTER_DISABLED");
                    }
                } else if signer_root.and_then(|r| r.regular_key.as_ref())
                    != Some(key_account.account_id())
                {
                    return Err("tefBAD_SIGNATURE");
                }
                weight += u64::from(*w);
            }
            if weight < u64::from(list.quorum) {
                return Err("tefBAD_QUORUM");
            }
            Ok(false)
        }
    }
}

/// The transaction's own effects; `Err` is a `tec` result. The fee and Sequence
/// are the caller's.
fn do_apply(
    state: &mut State,
    tx: &CheckedTx,
    fee: u64,
    signed_with_master: bool,
    ledger_index: u32,
) -> Result<(), &'static str> {
    let f = &tx.fields;
    let Some(sender) = state.accounts.get(&tx.account).cloned() else {
        return Err("tecUNFUNDED_PAYMENT");
    };
    // rippled compares against the balance before the fee is taken.
    let prior_balance = sender.balance;
    if f.is_channel_tx() {
        // The fee is taken by the caller afterwards; the engine sees the prior balance.
        return channel::do_apply(
            state,
            &f.transaction_type,
            &tx.account,
            f.destination.as_ref().map(XrplAddress::account_id),
            f.destination_tag,
            f.flags,
            &f.channel_fields(),
            f.sequence,
            prior_balance,
            fee,
            tx.hash(),
            ledger_index,
        );
    }
    match f.transaction_type.as_str() {
        "Payment" => {
            let (Some(destination), Some(amount)) =
                (&f.destination, f.amount.as_deref().and_then(positive_drops))
            else {
                return Err("tecUNFUNDED_PAYMENT");
            };
            let dst = *destination.account_id();
            match state.accounts.get(&dst) {
                None if amount < BASE_RESERVE_DROPS => return Err("tecNO_DST_INSUF_XRP"),
                Some(d) if d.flags & LSF_REQUIRE_DEST_TAG != 0 && f.destination_tag.is_none() => {
                    return Err("tecDST_TAG_NEEDED")
                }
                _ => {}
            }
            let needed = amount
                .checked_add(reserve(sender.owner_count).max(fee))
                .ok_or("tecUNFUNDED_PAYMENT")?;
            if prior_balance < needed {
                return Err("tecUNFUNDED_PAYMENT");
            }
            let destination = state.accounts.entry(dst).or_insert_with(|| AccountRoot {
                balance: 0,
                // A new account's first Sequence is the index of its ledger.
                sequence: ledger_index,
                flags: 0,
                owner_count: 0,
                regular_key: None,
                signer_list: None,
                previous_txn_id: String::new(),
                previous_txn_lgr_seq: 0,
            });
            destination.balance += amount;
            if let Some(s) = state.accounts.get_mut(&tx.account) {
                s.balance -= amount;
            }
        }
        "AccountSet" => {
            if f.set_flag == Some(ASF_DISABLE_MASTER) {
                if !signed_with_master {
                    return Err("tecNEED_MASTER_KEY");
                }
                if sender.regular_key.is_none() && sender.signer_list.is_none() {
                    return Err("tecNO_ALTERNATIVE_KEY");
                }
            }
            let mut flags = sender.flags;
            match f.set_flag {
                Some(ASF_DISABLE_MASTER) => flags |= LSF_DISABLE_MASTER,
                Some(ASF_REQUIRE_DEST) => flags |= LSF_REQUIRE_DEST_TAG,
                _ => {}
            }
            match f.clear_flag {
                Some(ASF_DISABLE_MASTER) => flags &= !LSF_DISABLE_MASTER,
                Some(ASF_REQUIRE_DEST) => flags &= !LSF_REQUIRE_DEST_TAG,
                _ => {}
            }
            if let Some(s) = state.accounts.get_mut(&tx.account) {
                s.flags = flags;
            }
        }
        "SetRegularKey" => {
            let key = f.regular_key.as_ref().map(|k| *k.account_id());
            if key.is_none() && sender.master_disabled() && sender.signer_list.is_none() {
                return Err("tecNO_ALTERNATIVE_KEY");
            }
            if let Some(s) = state.accounts.get_mut(&tx.account) {
                s.regular_key = key;
            }
        }
        "SignerListSet" => match &f.signer_entries {
            None => {
                if sender.master_disabled() && sender.regular_key.is_none() {
                    return Err("tecNO_ALTERNATIVE_KEY");
                }
                if let Some(s) = state.accounts.get_mut(&tx.account) {
                    if s.signer_list.take().is_some() {
                        s.owner_count -= 1;
                    }
                }
            }
            Some(entries) => {
                // One owner reserve per list, whatever its size (MultiSignReserve).
                let owner_count = sender.owner_count + u32::from(sender.signer_list.is_none());
                if prior_balance < reserve(owner_count) {
                    return Err("tecINSUFFICIENT_RESERVE");
                }
                let mut entries: Vec<(AccountId, u16)> = entries
                    .iter()
                    .map(|e| (*e.entry.account.account_id(), e.entry.signer_weight))
                    .collect();
                entries.sort();
                if let Some(s) = state.accounts.get_mut(&tx.account) {
                    s.owner_count = owner_count;
                    s.signer_list = Some(SignerList {
                        quorum: f.signer_quorum.unwrap_or_default(),
                        entries,
                        previous_txn_id: tx.hash().to_owned(),
                        previous_txn_lgr_seq: ledger_index,
                    });
                }
            }
        },
        _ => return Err("tecUNFUNDED_PAYMENT"),
    }
    Ok(())
}

fn touched_accounts(tx: &CheckedTx) -> Vec<AccountId> {
    let mut ids = vec![tx.account];
    if let Some(d) = &tx.fields.destination {
        if d.account_id() != &tx.account {
            ids.push(*d.account_id());
        }
    }
    ids
}

/// The ledger object id a metadata node is about, for rippled's ordering.
fn node_key(node: &Json) -> String {
    node.as_object()
        .and_then(|o| o.values().next())
        .and_then(|inner| inner["LedgerIndex"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// `AffectedNodes` entries for the PayChannels that were created, changed or
/// deleted (closed).
fn channel_nodes(before: &State, after: &State) -> Vec<Json> {
    let mut nodes = Vec::new();
    let ids: BTreeSet<&[u8; 32]> = before.channels.keys().chain(after.channels.keys()).collect();
    for id in ids {
        let key = hex::encode_upper(id);
        match (before.channels.get(id), after.channels.get(id)) {
            (None, Some(new)) => nodes.push(json!({"CreatedNode": {
                "LedgerEntryType": "PayChannel", "LedgerIndex": key, "NewFields": channel_fields(new),
            }})),
            (Some(old), None) => nodes.push(json!({"DeletedNode": {
                "FinalFields": channel_fields(old), "LedgerEntryType": "PayChannel", "LedgerIndex": key,
                "PreviousTxnID": old.previous_txn_id, "PreviousTxnLgrSeq": old.previous_txn_lgr_seq,
            }})),
            (Some(old), Some(new)) if old != new => {
                let (was, now) = (channel_fields(old), channel_fields(new));
                let changed: Map<String, Json> =
                    was.iter().filter(|(k, v)| now.get(*k) != Some(v)).map(|(k, v)| (k.clone(), v.clone())).collect();
                nodes.push(json!({"ModifiedNode": {
                    "FinalFields": now, "LedgerEntryType": "PayChannel", "LedgerIndex": key,
                    "PreviousFields": changed,
                    "PreviousTxnID": old.previous_txn_id, "PreviousTxnLgrSeq": old.previous_txn_lgr_seq,
                }}));
            }
            _ => {}
        }
    }
    nodes
}

/// rippled-style `AffectedNodes` for the AccountRoots and SignerLists that changed,
/// sorted by ledger object id as rippled sorts them.
fn affected_nodes(before: &State, after: &State, touched: &[AccountId]) -> Vec<Json> {
    let mut nodes: Vec<(String, Json)> = Vec::new();
    for id in touched {
        let old = before.accounts.get(id);
        let new = after.accounts.get(id);
        match (old, new) {
            (None, Some(new)) => {
                let mut fields = Map::new();
                fields.insert("Account".into(), super::ledger::address(id).into());
                fields.insert("Balance".into(), new.balance.to_string().into());
                fields.insert("Sequence".into(), new.sequence.into());
                let key = account_keylet(id);
                nodes.push((
                    key.clone(),
                    json!({"CreatedNode": {
                        "LedgerEntryType": "AccountRoot",
                        "LedgerIndex": key,
                        "NewFields": fields,
                    }}),
                ));
            }
            (Some(old), Some(new)) if old != new => {
                let final_fields = account_fields(id, new);
                let previous = account_fields(id, old);
                let mut changed = Map::new();
                for (k, v) in &previous {
                    if final_fields.get(k) != Some(v) {
                        changed.insert(k.clone(), v.clone());
                    }
                }
                if old.regular_key.is_some() && new.regular_key.is_none() {
                    changed.insert(
                        "RegularKey".into(),
                        previous.get("RegularKey").cloned().unwrap_or_default(),
                    );
                }
                let key = account_keylet(id);
                nodes.push((
                    key.clone(),
                    json!({"ModifiedNode": {
                        "FinalFields": final_fields,
                        "LedgerEntryType": "AccountRoot",
                        "LedgerIndex": key,
                        "PreviousFields": changed,
                        "PreviousTxnID": old.previous_txn_id,
                        "PreviousTxnLgrSeq": old.previous_txn_lgr_seq,
                    }}),
                ));
            }
            _ => {}
        }
        let old_list = old.and_then(|a| a.signer_list.as_ref());
        let new_list = new.and_then(|a| a.signer_list.as_ref());
        let key = signer_list_keylet(id);
        let list_fields = |l: &SignerList| {
            json!({
                "Flags": 0,
                "OwnerNode": "0",
                "SignerEntries": signer_entries_json(l),
                "SignerListID": 0,
                "SignerQuorum": l.quorum,
            })
        };
        let node = match (old_list, new_list) {
            (None, Some(l)) => Some(json!({"CreatedNode": {
                "LedgerEntryType": "SignerList", "LedgerIndex": key, "NewFields": list_fields(l),
            }})),
            (Some(l), None) => Some(json!({"DeletedNode": {
                "FinalFields": list_fields(l), "LedgerEntryType": "SignerList", "LedgerIndex": key,
            }})),
            (Some(o), Some(n)) if o.quorum != n.quorum || o.entries != n.entries => {
                Some(json!({"ModifiedNode": {
                    "FinalFields": list_fields(n),
                    "LedgerEntryType": "SignerList",
                    "LedgerIndex": key,
                    "PreviousFields": {"SignerEntries": signer_entries_json(o), "SignerQuorum": o.quorum},
                    "PreviousTxnID": o.previous_txn_id,
                    "PreviousTxnLgrSeq": o.previous_txn_lgr_seq,
                }}))
            }
            _ => None,
        };
        if let Some(node) = node {
            nodes.push((key, node));
        }
    }
    nodes.sort_by(|a, b| a.0.cmp(&b.0));
    nodes.into_iter().map(|(_, n)| n).collect()
}
