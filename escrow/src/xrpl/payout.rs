//! Payouts from an escrow account: one multisigned Payment per recipient with a
//! non-zero share, amounts from the domain's [`split`], consecutive Sequences.
//!
//! # Why Payments only, and no AccountDelete
//!
//! An AccountDelete after the Payments would return the account's reserve (base
//! reserve + the signer list's owner reserve) to the marketplace, but:
//! - it sweeps *whatever* balance is left. If one of the Payments fails on ledger
//!   (a `tec` result: destination needs a tag, destination account missing and the
//!   share below the base reserve, ...) its share stays in the account and the
//!   AccountDelete would hand the buyer's or provider's money to its destination.
//!   Late or extra deposits would be swept the same way. With Payments only, every
//!   drop moves by an explicit, exactly-signed amount and anything that fails stays
//!   in escrow for a new payout round;
//! - it is only valid once `account Sequence + 256 <= current ledger index`, so a
//!   quick refund could not include it; pre-signed, it would have to wait and be
//!   submitted later, and if submitted too early (`tecTOO_SOON`) it consumes its
//!   Sequence and fee and needs two new signatures;
//! - it costs one owner reserve as fee, so of the ~1.2 XRP locked (mainnet
//!   reserves of 1 XRP + 0.2 XRP) only ~1 XRP would come back.
//!
//! So the reserve the marketplace's funding Payment put in stays in the escrow
//! account: a known, fixed cost per escrow (`BuyerCheck::expected_reserve_drops`).
//! `funded_drops` is therefore the buyer's deposit only, the balance above that
//! reserve.
//!
//! # Fees
//!
//! A multisigned transaction pays `base fee × (1 + signers)`; each Payment is built
//! for exactly [`PAYOUT_SIGNERS`] = 2 signatures. The network fee handed to
//! [`split`] is that fee times the number of Payments, but the number of Payments
//! depends on which shares are non-zero, which depends on the fee. The plan takes
//! the smallest `k` in 1..=3 for which the split with `k` fees has at most `k`
//! non-zero shares: the fees are always covered, and when fewer Payments than
//! budgeted are needed (a share of a few drops vanishing), the unspent fee stays in
//! the account with the reserve (`unallocated_drops`, at most two fees).

use agora_domain::escrow::payout::{split, PayoutBreakdown, PayoutError, PayoutTerms};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::account::XrplAddress;
use super::codec::{fields, multisig_signing_data, tx_type, Field, StObject};
use super::setup::{check_fee, encode_checked, TxBuildError, ESCROW_QUORUM};

/// Signatures each payout transaction carries (and pays the fee for).
pub const PAYOUT_SIGNERS: usize = ESCROW_QUORUM as usize;

/// Fee of a multisigned transaction with [`PAYOUT_SIGNERS`] signatures.
pub fn multisig_fee_drops(base_fee_drops: u64) -> Result<u64, TxBuildError> {
    let fee = base_fee_drops
        .checked_mul(1 + PAYOUT_SIGNERS as u64)
        .ok_or(TxBuildError::Overflow)?;
    check_fee("multisigned payout", fee)?;
    Ok(fee)
}

/// Where one share goes: an account and, if it needs one (exchanges do), a tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutDestination {
    pub address: XrplAddress,
    pub tag: Option<u32>,
}

/// Who is paid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutParties {
    pub provider: PayoutDestination,
    pub buyer: PayoutDestination,
    /// Receives the commission plus the arbitration fee.
    pub marketplace: PayoutDestination,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutParams {
    /// The buyer's deposit: the escrow balance above its reserve.
    pub funded_drops: u64,
    pub terms: PayoutTerms,
    /// The ledger's base fee (`server_info`/`fee`), before the multisig multiplier.
    pub base_fee_drops: u64,
    /// The escrow account's next Sequence.
    pub first_sequence: u32,
    /// Ledger after which none of the payout transactions can be included.
    pub last_ledger_sequence: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Recipient {
    Provider,
    Buyer,
    Marketplace,
}

/// The fields that fix a payout Payment; what gets stored to rebuild it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutTxSpec {
    pub recipient: Recipient,
    pub escrow: XrplAddress,
    pub destination: PayoutDestination,
    pub amount_drops: u64,
    pub fee_drops: u64,
    pub sequence: u32,
    pub last_ledger_sequence: u32,
}

/// One unsigned payout Payment from the escrow account, prepared for multisigning
/// (`SigningPubKey` empty).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PayoutTxSpec", into = "PayoutTxSpec")]
pub struct PayoutTx {
    spec: PayoutTxSpec,
    unsigned: StObject,
    unsigned_bytes: Vec<u8>,
    json: serde_json::Value,
}

impl PayoutTx {
    /// A Payment of `amount_drops` from `escrow` to `destination`, paying the
    /// multisig fee for `base_fee_drops`.
    pub fn new(
        escrow: &XrplAddress,
        recipient: Recipient,
        destination: &PayoutDestination,
        amount_drops: u64,
        base_fee_drops: u64,
        sequence: u32,
        last_ledger_sequence: u32,
    ) -> Result<Self, TxBuildError> {
        Self::from_spec(PayoutTxSpec {
            recipient,
            escrow: escrow.clone(),
            destination: destination.clone(),
            amount_drops,
            fee_drops: multisig_fee_drops(base_fee_drops)?,
            sequence,
            last_ledger_sequence,
        })
    }

    pub fn from_spec(spec: PayoutTxSpec) -> Result<Self, TxBuildError> {
        check_fee("multisigned payout", spec.fee_drops)?;
        if spec.amount_drops == 0 {
            return Err(TxBuildError::ZeroAmount);
        }
        if spec.amount_drops > agora_domain::money::Asset::Xrp.max_supply() {
            return Err(TxBuildError::Overflow);
        }
        if spec.destination.address == spec.escrow {
            return Err(TxBuildError::EscrowAccountReused(spec.escrow.to_string()));
        }
        let mut json = json!({
            "TransactionType": "Payment",
            "Account": spec.escrow.as_str(),
            "Destination": spec.destination.address.as_str(),
            "Amount": spec.amount_drops.to_string(),
            "Fee": spec.fee_drops.to_string(),
            "Flags": 0,
            "Sequence": spec.sequence,
            "LastLedgerSequence": spec.last_ledger_sequence,
            "SigningPubKey": "",
        });
        let mut fields = vec![
            Field::u16(fields::TRANSACTION_TYPE, tx_type::PAYMENT),
            Field::account(fields::ACCOUNT, spec.escrow.account_id()),
            Field::account(fields::DESTINATION, spec.destination.address.account_id()),
            Field::xrp(fields::AMOUNT, spec.amount_drops),
            Field::xrp(fields::FEE, spec.fee_drops),
            Field::u32(fields::FLAGS, 0),
            Field::u32(fields::SEQUENCE, spec.sequence),
            Field::u32(fields::LAST_LEDGER_SEQUENCE, spec.last_ledger_sequence),
            Field::blob(fields::SIGNING_PUB_KEY, &[]),
        ];
        if let Some(tag) = spec.destination.tag {
            json["DestinationTag"] = tag.into();
            fields.push(Field::u32(fields::DESTINATION_TAG, tag));
        }
        let unsigned = StObject::new(fields);
        let unsigned_bytes = encode_checked(&json, &unsigned)?;
        Ok(Self {
            spec,
            unsigned,
            unsigned_bytes,
            json,
        })
    }

    pub fn spec(&self) -> &PayoutTxSpec {
        &self.spec
    }
    pub fn recipient(&self) -> Recipient {
        self.spec.recipient
    }
    pub fn escrow(&self) -> &XrplAddress {
        &self.spec.escrow
    }
    pub fn destination(&self) -> &PayoutDestination {
        &self.spec.destination
    }
    pub fn amount_drops(&self) -> u64 {
        self.spec.amount_drops
    }
    pub fn fee_drops(&self) -> u64 {
        self.spec.fee_drops
    }
    pub fn sequence(&self) -> u32 {
        self.spec.sequence
    }
    pub fn last_ledger_sequence(&self) -> u32 {
        self.spec.last_ledger_sequence
    }

    /// The transaction as XRPL JSON, for the signers' wallets.
    pub fn to_json(&self) -> &serde_json::Value {
        &self.json
    }

    /// The unsigned transaction, serialized, uppercase hex.
    pub fn unsigned_blob(&self) -> String {
        hex::encode_upper(&self.unsigned_bytes)
    }

    /// The exact bytes `signer` signs: `SMT\0`, the transaction's signing fields,
    /// then the signer's AccountID.
    pub fn signing_data(&self, signer: &XrplAddress) -> Vec<u8> {
        multisig_signing_data(&self.unsigned_bytes, signer)
    }

    pub(crate) fn unsigned_fields(&self) -> &StObject {
        &self.unsigned
    }
}

impl TryFrom<PayoutTxSpec> for PayoutTx {
    type Error = TxBuildError;
    fn try_from(spec: PayoutTxSpec) -> Result<Self, Self::Error> {
        Self::from_spec(spec)
    }
}

impl From<PayoutTx> for PayoutTxSpec {
    fn from(tx: PayoutTx) -> Self {
        tx.spec
    }
}

/// A complete payout: the amounts and the transactions that pay them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutPlan {
    /// The split, with `network_fee == fees_drops + unallocated_drops`.
    pub breakdown: PayoutBreakdown,
    /// In Sequence order; shares of zero have no transaction.
    pub transactions: Vec<PayoutTx>,
    /// Fees the transactions pay.
    pub fees_drops: u64,
    /// Budgeted for fees but not needed; stays in the escrow account.
    pub unallocated_drops: u64,
}

/// Splits `params.funded_drops` by `params.terms` and builds the Payments.
pub fn plan_payout(
    escrow: &XrplAddress,
    parties: &PayoutParties,
    params: &PayoutParams,
) -> Result<PayoutPlan, TxBuildError> {
    plan_payout_with(escrow, parties, params, |funded, fee| split(funded, fee, &params.terms))
}

/// As [`plan_payout`], with the amounts from `divide(funded, network_fee)` (e.g.
/// the domain's `PayoutPlan::breakdown`, which returns over-funding to the buyer
/// before the split); `params.terms` is then not used.
pub fn plan_payout_with(
    escrow: &XrplAddress,
    parties: &PayoutParties,
    params: &PayoutParams,
    divide: impl Fn(u64, u64) -> Result<PayoutBreakdown, PayoutError>,
) -> Result<PayoutPlan, TxBuildError> {
    let per_tx_fee = multisig_fee_drops(params.base_fee_drops)?;
    let (budgeted, breakdown) = choose_fee_budget(params, per_tx_fee, &divide)?;

    let shares = [
        (Recipient::Provider, &parties.provider, breakdown.provider),
        (Recipient::Buyer, &parties.buyer, breakdown.buyer),
        (
            Recipient::Marketplace,
            &parties.marketplace,
            breakdown.marketplace(),
        ),
    ];
    let mut transactions = Vec::with_capacity(shares.len());
    let mut sequence = params.first_sequence;
    for (recipient, destination, amount) in shares {
        if amount == 0 {
            continue;
        }
        transactions.push(PayoutTx::from_spec(PayoutTxSpec {
            recipient,
            escrow: escrow.clone(),
            destination: destination.clone(),
            amount_drops: amount,
            fee_drops: per_tx_fee,
            sequence,
            last_ledger_sequence: params.last_ledger_sequence,
        })?);
        sequence = sequence.checked_add(1).ok_or(TxBuildError::Overflow)?;
    }
    let used = transactions.len() as u64;
    Ok(PayoutPlan {
        breakdown,
        fees_drops: used * per_tx_fee,
        unallocated_drops: (budgeted - used) * per_tx_fee,
        transactions,
    })
}

/// The smallest number of fees `k` whose split needs at most `k` Payments.
fn choose_fee_budget(
    params: &PayoutParams,
    per_tx_fee: u64,
    divide: &impl Fn(u64, u64) -> Result<PayoutBreakdown, PayoutError>,
) -> Result<(u64, PayoutBreakdown), TxBuildError> {
    let mut last_error = None;
    for k in 1..=3u64 {
        let fee = per_tx_fee.checked_mul(k).ok_or(TxBuildError::Overflow)?;
        match divide(params.funded_drops, fee) {
            Ok(b) => {
                let payments = [b.provider, b.buyer, b.marketplace()]
                    .iter()
                    .filter(|a| **a > 0)
                    .count() as u64;
                if payments <= k {
                    return Ok((k, b));
                }
            }
            Err(e) => {
                last_error = Some(e);
                break;
            }
        }
    }
    // Only reachable when the funds cannot even pay the fees needed.
    Err(last_error.map_or(TxBuildError::Overflow, TxBuildError::Split))
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_domain::money::BasisPoints;

    fn address(byte: u8) -> XrplAddress {
        XrplAddress::from_account_id([byte; 20])
    }

    fn parties() -> PayoutParties {
        PayoutParties {
            provider: PayoutDestination {
                address: address(2),
                tag: None,
            },
            buyer: PayoutDestination {
                address: address(3),
                tag: Some(77),
            },
            marketplace: PayoutDestination {
                address: address(4),
                tag: None,
            },
        }
    }

    fn params(
        funded: u64,
        provider_bps: i64,
        commission_bps: i64,
        arbitration_fee: u64,
    ) -> PayoutParams {
        PayoutParams {
            funded_drops: funded,
            terms: PayoutTerms {
                provider_bps: BasisPoints::new(provider_bps).unwrap(),
                commission_bps: BasisPoints::new(commission_bps).unwrap(),
                arbitration_fee,
            },
            base_fee_drops: 10,
            first_sequence: 100,
            last_ledger_sequence: 5_000,
        }
    }

    fn amounts(plan: &PayoutPlan) -> Vec<(Recipient, u64, u32)> {
        plan.transactions
            .iter()
            .map(|t| (t.recipient(), t.amount_drops(), t.sequence()))
            .collect()
    }

    #[test]
    fn a_release_pays_provider_and_marketplace() {
        let plan =
            plan_payout(&address(1), &parties(), &params(1_000_000, 10_000, 250, 0)).unwrap();
        // Two Payments at 30 drops each: pool 999 940.
        assert_eq!(
            amounts(&plan),
            vec![
                (Recipient::Provider, 974_942, 100),
                (Recipient::Marketplace, 24_998, 101)
            ]
        );
        assert_eq!((plan.fees_drops, plan.unallocated_drops), (60, 0));
        assert_eq!(plan.breakdown.total(), 1_000_000);
    }

    #[test]
    fn a_refund_is_a_single_payment_to_the_buyer_with_its_tag() {
        let plan = plan_payout(&address(1), &parties(), &params(1_000_000, 0, 250, 0)).unwrap();
        assert_eq!(amounts(&plan), vec![(Recipient::Buyer, 999_970, 100)]);
        assert_eq!(plan.transactions[0].destination().tag, Some(77));
        assert_eq!(plan.transactions[0].to_json()["DestinationTag"], 77);
        assert_eq!(plan.transactions[0].fee_drops(), 30);
    }

    #[test]
    fn a_split_pays_all_three_with_consecutive_sequences() {
        let plan = plan_payout(
            &address(1),
            &parties(),
            &params(1_000_000, 6_000, 1_000, 5_000),
        )
        .unwrap();
        let got = amounts(&plan);
        assert_eq!(got.len(), 3);
        assert_eq!(
            got.iter().map(|g| g.2).collect::<Vec<_>>(),
            vec![100, 101, 102]
        );
        let paid: u64 = got.iter().map(|g| g.1).sum();
        assert_eq!(paid + plan.fees_drops + plan.unallocated_drops, 1_000_000);
    }

    #[test]
    fn a_share_that_vanishes_leaves_its_unspent_fee_in_the_account() {
        // 1 bp of a pool near 10 000 drops: with one fee (30) the provider's share
        // is 1 drop, so two Payments are needed; with two fees it is 0, so one is.
        let plan = plan_payout(&address(1), &parties(), &params(10_040, 1, 0, 0)).unwrap();
        assert_eq!(amounts(&plan), vec![(Recipient::Buyer, 9_980, 100)]);
        assert_eq!((plan.fees_drops, plan.unallocated_drops), (30, 30));
        assert_eq!(plan.breakdown.network_fee, 60);
    }

    #[test]
    fn funds_that_cannot_pay_the_fee_are_an_error() {
        assert!(matches!(
            plan_payout(&address(1), &parties(), &params(30, 10_000, 0, 0)),
            Err(TxBuildError::Split(_))
        ));
    }

    #[test]
    fn paying_the_escrow_itself_is_refused() {
        let mut p = parties();
        p.buyer.address = address(1);
        assert!(matches!(
            plan_payout(&address(1), &p, &params(1_000, 0, 0, 0)),
            Err(TxBuildError::EscrowAccountReused(_))
        ));
    }

    #[test]
    fn a_payout_tx_survives_serde() {
        let plan = plan_payout(&address(1), &parties(), &params(1_000_000, 0, 0, 0)).unwrap();
        let tx = &plan.transactions[0];
        let text = serde_json::to_string(tx).unwrap();
        let back: PayoutTx = serde_json::from_str(&text).unwrap();
        assert_eq!(&back, tx);
        assert_eq!(back.unsigned_blob(), tx.unsigned_blob());
    }
}
