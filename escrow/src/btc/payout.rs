//! Payout transactions through the 2-of-3 branch: the exact transaction to be
//! signed ([`ExpectedPayout`]) and its unsigned PSBT, built from the escrow's
//! funding UTXOs and the domain's [`split`].
//!
//! Rules, all deterministic so every party can rebuild the same transaction:
//! - **Fee**: `fee_rate (sat/vB) × vsize`, where vsize is an upper bound of the
//!   finalized transaction: each input's witness is miniscript's plan for the
//!   2-of-3 branch (the largest of the three pairs) plus the witness script and
//!   one byte per signature for high-R signatures. The estimate is never below
//!   the real size and exceeds it by a few weight units per input.
//! - **Dust**: an output below its script's dust limit
//!   (`script_pubkey.minimal_non_dust()`) is left out and its value goes to the
//!   miners as extra fee, because no node would relay the transaction with it.
//!   An output is judged with the fee of a transaction that *includes* it: the
//!   split is first computed with all three outputs; if some are dust or zero they
//!   are dropped and the split is redone with the smaller fee, until the set of
//!   outputs is stable. Outputs only ever leave the set, so this ends after at
//!   most three rounds, and the fee paid is never below `fee_rate × vsize`.
//! - **Zero** outputs (a release pays the buyer nothing) are omitted.
//! - **Output order**: provider, buyer, marketplace — fixed by role rather than
//!   BIP69, so a reader of the transaction knows which output is whose.
//! - **Inputs** in the order the caller gives the funding UTXOs; duplicates refused.
//! - **nSequence** `0xFFFFFFFD` (`ENABLE_RBF_NO_LOCKTIME`): the 2-of-3 branch has no
//!   CSV; bit 31 set disables BIP68 relative locks, so this transaction can never
//!   satisfy the refund branch, and it signals replaceability, so the parties can
//!   re-sign a higher-fee version if the first one is stuck.
//! - **Version 2, locktime 0**: nothing in this branch needs an absolute lock.

use std::collections::BTreeSet;

use agora_domain::escrow::payout::{split, PayoutBreakdown, PayoutError, PayoutTerms};
use bitcoin::absolute::LockTime;
use bitcoin::psbt::Psbt;
use bitcoin::transaction::Version;
use bitcoin::{Address, Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};

use super::descriptor::{DescriptorError, EscrowDescriptor};

/// nSequence of every payout input: RBF on, relative lock time off.
pub const PAYOUT_SEQUENCE: Sequence = Sequence::ENABLE_RBF_NO_LOCKTIME;
/// Refuse fee rates above this, in sat/vB: far above any fee market Bitcoin has
/// seen, so only a broken fee source reaches it, and then no escrow is burnt in fees.
pub const MAX_FEE_RATE_SAT_VB: u64 = 5_000;

/// One output of the escrow's address that funds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FundingUtxo {
    pub outpoint: OutPoint,
    pub value: Amount,
}

/// Where each share of a payout goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutAddresses {
    pub provider: Address,
    pub buyer: Address,
    pub marketplace: Address,
}

/// Who an output of a payout pays, in output order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PayoutRole {
    Provider,
    Buyer,
    Marketplace,
}

impl PayoutRole {
    pub const ALL: [PayoutRole; 3] = [
        PayoutRole::Provider,
        PayoutRole::Buyer,
        PayoutRole::Marketplace,
    ];

    fn amount(self, b: &PayoutBreakdown) -> u64 {
        match self {
            PayoutRole::Provider => b.provider,
            PayoutRole::Buyer => b.buyer,
            PayoutRole::Marketplace => b.marketplace(),
        }
    }

    fn address(self, to: &PayoutAddresses) -> &Address {
        match self {
            PayoutRole::Provider => &to.provider,
            PayoutRole::Buyer => &to.buyer,
            PayoutRole::Marketplace => &to.marketplace,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayoutBuildError {
    #[error("a payout needs at least one funding UTXO")]
    NoFunding,
    #[error("funding UTXO {0} is listed twice")]
    DuplicateFunding(OutPoint),
    #[error("the funding UTXOs add up to more bitcoin than can exist")]
    FundingOverflow,
    #[error("the fee rate must be between 1 and {MAX_FEE_RATE_SAT_VB} sat/vB, got {0}")]
    InvalidFeeRate(u64),
    #[error(transparent)]
    Split(#[from] PayoutError),
    #[error("after fees and dust nothing is left to pay out")]
    NothingToPay,
    #[error("output {index} pays {value} sats, below its dust limit of {limit} sats")]
    DustOutput {
        index: usize,
        value: u64,
        limit: u64,
    },
    #[error("the outputs ({paid} sats) would spend more than the funding ({funded} sats)")]
    Overspend { funded: u64, paid: u64 },
    #[error(transparent)]
    Descriptor(#[from] DescriptorError),
    #[error("the payout's amounts did not settle: {0}")]
    Internal(&'static str),
}

/// One input of an expected payout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExpectedInput {
    pub outpoint: OutPoint,
    pub value: Amount,
    pub sequence: Sequence,
}

/// Exactly the transaction a payout signs: inputs (with the amounts they spend
/// and their sequences), outputs (script and value), version and locktime.
/// Every PSBT a party submits is compared against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedPayout {
    version: Version,
    lock_time: LockTime,
    inputs: Vec<ExpectedInput>,
    outputs: Vec<TxOut>,
}

impl ExpectedPayout {
    /// A 2-of-3 payout of `funding` to `outputs`, in the given order, with this
    /// module's version, locktime and sequence. Refuses empty inputs or outputs,
    /// duplicate inputs, dust outputs and outputs that spend more than the funding.
    pub fn new(funding: &[FundingUtxo], outputs: Vec<TxOut>) -> Result<Self, PayoutBuildError> {
        Self::with_sequence(funding, outputs, PAYOUT_SEQUENCE)
    }

    pub(crate) fn with_sequence(
        funding: &[FundingUtxo],
        outputs: Vec<TxOut>,
        sequence: Sequence,
    ) -> Result<Self, PayoutBuildError> {
        let funded = funded_total(funding)?;
        if outputs.is_empty() {
            return Err(PayoutBuildError::NothingToPay);
        }
        let mut paid = Amount::ZERO;
        for (index, output) in outputs.iter().enumerate() {
            let limit = output.script_pubkey.minimal_non_dust();
            if output.value < limit {
                return Err(PayoutBuildError::DustOutput {
                    index,
                    value: output.value.to_sat(),
                    limit: limit.to_sat(),
                });
            }
            paid = paid
                .checked_add(output.value)
                .ok_or(PayoutBuildError::Overspend {
                    funded: funded.to_sat(),
                    paid: u64::MAX,
                })?;
        }
        // A transaction without fee does not relay, so equal is refused as well.
        if paid >= funded {
            return Err(PayoutBuildError::Overspend {
                funded: funded.to_sat(),
                paid: paid.to_sat(),
            });
        }
        Ok(Self {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            inputs: funding
                .iter()
                .map(|u| ExpectedInput {
                    outpoint: u.outpoint,
                    value: u.value,
                    sequence,
                })
                .collect(),
            outputs,
        })
    }

    pub fn version(&self) -> Version {
        self.version
    }

    pub fn lock_time(&self) -> LockTime {
        self.lock_time
    }

    pub fn inputs(&self) -> &[ExpectedInput] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[TxOut] {
        &self.outputs
    }

    /// Sum of the funding UTXOs spent.
    pub fn funded(&self) -> Amount {
        self.inputs.iter().map(|i| i.value).sum()
    }

    /// Sum of the outputs.
    pub fn paid(&self) -> Amount {
        self.outputs.iter().map(|o| o.value).sum()
    }

    /// What the miners get: funded − paid (positive by construction).
    pub fn fee(&self) -> Amount {
        self.funded() - self.paid()
    }

    /// The transaction without witnesses.
    pub fn unsigned_tx(&self) -> Transaction {
        Transaction {
            version: self.version,
            lock_time: self.lock_time,
            input: self
                .inputs
                .iter()
                .map(|i| TxIn {
                    previous_output: i.outpoint,
                    script_sig: ScriptBuf::new(),
                    sequence: i.sequence,
                    witness: Witness::new(),
                })
                .collect(),
            output: self.outputs.clone(),
        }
    }

    /// The escrow outputs the inputs spend, in input order.
    pub fn spent_outputs(&self, escrow: &EscrowDescriptor) -> Vec<TxOut> {
        self.inputs
            .iter()
            .map(|i| TxOut {
                value: i.value,
                script_pubkey: escrow.script_pubkey(),
            })
            .collect()
    }

    /// The PSBT to hand to the signers: every input carries its `witness_utxo`
    /// (BIP143 signs the amount) and the `witness_script`.
    pub fn unsigned_psbt(&self, escrow: &EscrowDescriptor) -> Result<Psbt, PayoutBuildError> {
        let mut psbt = Psbt::from_unsigned_tx(self.unsigned_tx())
            .map_err(|_| PayoutBuildError::Internal("unsigned transaction refused by PSBT"))?;
        for (input, spent) in psbt.inputs.iter_mut().zip(self.spent_outputs(escrow)) {
            input.witness_utxo = Some(spent);
            input.witness_script = Some(escrow.witness_script().clone());
        }
        Ok(psbt)
    }

    /// Rebuilds the expected payout from a stored PSBT of this escrow (the unsigned
    /// one this module produced, or one with signatures merged into it).
    pub fn from_psbt(escrow: &EscrowDescriptor, psbt: &Psbt) -> Result<Self, PayoutBuildError> {
        let tx = &psbt.unsigned_tx;
        let mut funding = Vec::with_capacity(tx.input.len());
        let mut sequence = None;
        for (txin, input) in tx.input.iter().zip(&psbt.inputs) {
            let spent = input
                .witness_utxo
                .as_ref()
                .ok_or(PayoutBuildError::Internal(
                    "stored PSBT input without witness UTXO",
                ))?;
            if spent.script_pubkey != escrow.script_pubkey() {
                return Err(PayoutBuildError::Internal(
                    "stored PSBT spends another script",
                ));
            }
            if *sequence.get_or_insert(txin.sequence) != txin.sequence {
                return Err(PayoutBuildError::Internal("stored PSBT mixes sequences"));
            }
            funding.push(FundingUtxo {
                outpoint: txin.previous_output,
                value: spent.value,
            });
        }
        let sequence = sequence.ok_or(PayoutBuildError::NoFunding)?;
        let expected = Self::with_sequence(&funding, tx.output.clone(), sequence)?;
        if expected.unsigned_tx() != *tx {
            return Err(PayoutBuildError::Internal(
                "stored PSBT has another version or locktime",
            ));
        }
        Ok(expected)
    }
}

/// A payout ready to be signed, with how its amounts were reached.
#[derive(Debug, Clone, PartialEq)]
pub struct PayoutPlan {
    pub expected: ExpectedPayout,
    pub psbt: Psbt,
    /// Outputs in transaction order with their roles.
    pub paid: Vec<(PayoutRole, Amount)>,
    /// Shares left out because they were dust (zero shares are not listed);
    /// their value is part of `fee`.
    pub dropped_dust: Vec<(PayoutRole, Amount)>,
    /// The domain split the outputs come from; its `network_fee` is the estimate.
    pub breakdown: PayoutBreakdown,
    /// The upper bound of the finalized transaction's virtual size.
    pub estimated_vsize: u64,
    /// What the transaction actually leaves to the miners: the estimated fee plus
    /// dropped dust.
    pub fee: Amount,
}

/// Builds the payout of `funding` according to `terms` at `fee_rate_sat_vb`.
pub fn build_payout(
    escrow: &EscrowDescriptor,
    funding: &[FundingUtxo],
    to: &PayoutAddresses,
    terms: &PayoutTerms,
    fee_rate_sat_vb: u64,
) -> Result<PayoutPlan, PayoutBuildError> {
    build_payout_with(escrow, funding, to, fee_rate_sat_vb, |funded, fee| {
        split(funded, fee, terms)
    })
}

/// Builds a payout whose amounts come from `divide(funded, network_fee)`, e.g.
/// the domain's `PayoutPlan::breakdown`, which returns over-funding to the
/// buyer before the split. `divide` must account for every funded satoshi.
pub fn build_payout_with(
    escrow: &EscrowDescriptor,
    funding: &[FundingUtxo],
    to: &PayoutAddresses,
    fee_rate_sat_vb: u64,
    divide: impl Fn(u64, u64) -> Result<PayoutBreakdown, PayoutError>,
) -> Result<PayoutPlan, PayoutBuildError> {
    if !(1..=MAX_FEE_RATE_SAT_VB).contains(&fee_rate_sat_vb) {
        return Err(PayoutBuildError::InvalidFeeRate(fee_rate_sat_vb));
    }
    let funded = funded_total(funding)?;
    let witness_weight = escrow.multisig_witness_weight()?;

    let mut roles: Vec<PayoutRole> = PayoutRole::ALL.to_vec();
    // Outputs only leave `roles`, so three rounds drop everything droppable and
    // the fourth confirms; the bound only guards against a logic error.
    for _ in 0..=PayoutRole::ALL.len() {
        let outputs: Vec<TxOut> = roles
            .iter()
            .map(|r| TxOut {
                value: Amount::ZERO,
                script_pubkey: r.address(to).script_pubkey(),
            })
            .collect();
        let vsize = estimate_vsize(funding, &outputs, witness_weight)?;
        let fee = fee_rate_sat_vb
            .checked_mul(vsize)
            .ok_or(PayoutBuildError::InvalidFeeRate(fee_rate_sat_vb))?;
        let breakdown = divide(funded.to_sat(), fee)?;
        let kept: Vec<PayoutRole> = roles
            .iter()
            .copied()
            .filter(|r| {
                let value = Amount::from_sat(r.amount(&breakdown));
                value > Amount::ZERO && value >= r.address(to).script_pubkey().minimal_non_dust()
            })
            .collect();
        if kept != roles {
            roles = kept;
            continue;
        }
        return assemble(escrow, funding, to, &roles, breakdown, vsize);
    }
    Err(PayoutBuildError::Internal(
        "the output set did not converge",
    ))
}

fn assemble(
    escrow: &EscrowDescriptor,
    funding: &[FundingUtxo],
    to: &PayoutAddresses,
    roles: &[PayoutRole],
    breakdown: PayoutBreakdown,
    estimated_vsize: u64,
) -> Result<PayoutPlan, PayoutBuildError> {
    let paid: Vec<(PayoutRole, Amount)> = roles
        .iter()
        .map(|r| (*r, Amount::from_sat(r.amount(&breakdown))))
        .collect();
    let dropped_dust = PayoutRole::ALL
        .into_iter()
        .filter(|r| !roles.contains(r) && r.amount(&breakdown) > 0)
        .map(|r| (r, Amount::from_sat(r.amount(&breakdown))))
        .collect();
    let outputs = roles
        .iter()
        .zip(&paid)
        .map(|(r, (_, value))| TxOut {
            value: *value,
            script_pubkey: r.address(to).script_pubkey(),
        })
        .collect();
    let expected = ExpectedPayout::new(funding, outputs)?;
    let fee = expected.fee();
    // The split already guarantees both; a payout that breaks them must not exist.
    if breakdown.total() != expected.funded().to_sat() {
        return Err(PayoutBuildError::Internal(
            "split does not add up to the funding",
        ));
    }
    if fee.to_sat() < breakdown.network_fee {
        return Err(PayoutBuildError::Internal("fee below the estimate"));
    }
    let psbt = expected.unsigned_psbt(escrow)?;
    Ok(PayoutPlan {
        expected,
        psbt,
        paid,
        dropped_dust,
        breakdown,
        estimated_vsize,
        fee,
    })
}

fn funded_total(funding: &[FundingUtxo]) -> Result<Amount, PayoutBuildError> {
    if funding.is_empty() {
        return Err(PayoutBuildError::NoFunding);
    }
    let mut seen = BTreeSet::new();
    let mut total = Amount::ZERO;
    for utxo in funding {
        if !seen.insert(utxo.outpoint) {
            return Err(PayoutBuildError::DuplicateFunding(utxo.outpoint));
        }
        total = total
            .checked_add(utxo.value)
            .filter(|t| *t <= Amount::MAX_MONEY)
            .ok_or(PayoutBuildError::FundingOverflow)?;
    }
    Ok(total)
}

/// Upper bound of the virtual size of a transaction spending `funding` (every
/// input from the escrow, witness of `witness_weight` WU) to `outputs`.
pub(crate) fn estimate_vsize(
    funding: &[FundingUtxo],
    outputs: &[TxOut],
    witness_weight: u64,
) -> Result<u64, PayoutBuildError> {
    let skeleton = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: funding
            .iter()
            .map(|u| TxIn {
                previous_output: u.outpoint,
                script_sig: ScriptBuf::new(),
                sequence: PAYOUT_SEQUENCE,
                witness: Witness::new(),
            })
            .collect(),
        output: outputs.to_vec(),
    };
    // Non-witness bytes count four times; the segwit marker and flag once each.
    let weight = (skeleton.base_size() as u64)
        .checked_mul(4)
        .and_then(|w| w.checked_add(2))
        .and_then(|w| w.checked_add(witness_weight.checked_mul(funding.len() as u64)?))
        .ok_or(PayoutBuildError::Internal("transaction weight overflow"))?;
    Ok(weight.div_ceil(4))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::str::FromStr;

    use agora_domain::money::BasisPoints;
    use bitcoin::hashes::Hash;
    use bitcoin::{Network, Txid};

    use super::*;
    use crate::btc::test_keys::escrow;

    pub(crate) fn outpoint(n: u8, vout: u32) -> OutPoint {
        OutPoint {
            txid: Txid::from_byte_array([n; 32]),
            vout,
        }
    }

    pub(crate) fn utxo(n: u8, sats: u64) -> FundingUtxo {
        FundingUtxo {
            outpoint: outpoint(n, u32::from(n)),
            value: Amount::from_sat(sats),
        }
    }

    /// P2WPKH, P2TR and P2WSH destinations, so dust limits differ per output.
    pub(crate) fn addresses() -> PayoutAddresses {
        let parse = |s: &str| {
            Address::from_str(s)
                .unwrap()
                .require_network(Network::Regtest)
                .unwrap()
        };
        PayoutAddresses {
            provider: parse("bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"),
            buyer: parse("bcrt1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqc8gma6"),
            marketplace: parse("bcrt1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qzf4jry"),
        }
    }

    pub(crate) fn terms(
        provider_bps: i64,
        commission_bps: i64,
        arbitration_fee: u64,
    ) -> PayoutTerms {
        PayoutTerms {
            provider_bps: BasisPoints::new(provider_bps).unwrap(),
            commission_bps: BasisPoints::new(commission_bps).unwrap(),
            arbitration_fee,
        }
    }

    /// A release of a 1 000 000-sat escrow at 2 sat/vB.
    pub(crate) fn release_psbt(escrow: &EscrowDescriptor) -> (ExpectedPayout, Psbt) {
        let plan = build_payout(
            escrow,
            &[utxo(1, 1_000_000)],
            &addresses(),
            &terms(10_000, 250, 0),
            2,
        )
        .unwrap();
        (plan.expected, plan.psbt)
    }

    #[test]
    fn a_release_pays_provider_and_marketplace_in_that_order() {
        let e = escrow();
        let plan = build_payout(
            &e,
            &[utxo(1, 1_000_000)],
            &addresses(),
            &terms(10_000, 250, 0),
            2,
        )
        .unwrap();
        let roles: Vec<PayoutRole> = plan.paid.iter().map(|(r, _)| *r).collect();
        assert_eq!(roles, vec![PayoutRole::Provider, PayoutRole::Marketplace]);
        assert!(plan.dropped_dust.is_empty());
        let tx = plan.expected.unsigned_tx();
        assert_eq!(tx.output.len(), 2);
        assert_eq!(
            tx.output[0].script_pubkey,
            addresses().provider.script_pubkey()
        );
        assert_eq!(
            tx.output[1].script_pubkey,
            addresses().marketplace.script_pubkey()
        );
        assert_eq!(plan.fee.to_sat(), 2 * plan.estimated_vsize);
        assert_eq!(plan.expected.paid() + plan.fee, Amount::from_sat(1_000_000));
        assert_eq!(tx.version, Version::TWO);
        assert_eq!(tx.lock_time, LockTime::ZERO);
        assert_eq!(tx.input[0].sequence.0, 0xFFFF_FFFD);
        assert!(!tx.input[0].sequence.is_relative_lock_time());
    }

    #[test]
    fn every_psbt_input_carries_witness_utxo_and_witness_script() {
        let e = escrow();
        let plan = build_payout(
            &e,
            &[utxo(1, 50_000), utxo(2, 70_000)],
            &addresses(),
            &terms(5_000, 0, 0),
            3,
        )
        .unwrap();
        for (input, u) in plan.psbt.inputs.iter().zip([50_000, 70_000]) {
            let spent = input.witness_utxo.as_ref().unwrap();
            assert_eq!(spent.value.to_sat(), u);
            assert_eq!(spent.script_pubkey, e.script_pubkey());
            assert_eq!(input.witness_script.as_ref(), Some(e.witness_script()));
        }
        assert_eq!(
            ExpectedPayout::from_psbt(&e, &plan.psbt).unwrap(),
            plan.expected
        );
    }

    #[test]
    fn a_dust_share_is_dropped_and_its_value_goes_to_the_fee() {
        let e = escrow();
        let funded = 1_000_000;
        let fee_rate = 1;
        // Find the buyer's share of 0.03 % as the builder would compute it.
        let plan = build_payout(
            &e,
            &[utxo(1, funded)],
            &addresses(),
            &terms(9_997, 0, 0),
            fee_rate,
        )
        .unwrap();
        let buyer_share = plan
            .dropped_dust
            .iter()
            .find(|(r, _)| *r == PayoutRole::Buyer);
        let (_, buyer_share) = buyer_share.expect("the buyer's 0.03 % is dust");
        assert!(
            buyer_share.to_sat() > 0 && buyer_share.to_sat() < 330,
            "{buyer_share}"
        );
        assert!(plan.paid.iter().all(|(r, _)| *r != PayoutRole::Buyer));
        // The fee is the estimate for the smaller transaction plus the dust.
        assert_eq!(
            plan.fee.to_sat(),
            plan.breakdown.network_fee + buyer_share.to_sat()
        );
        assert_eq!(
            plan.fee.to_sat(),
            fee_rate * plan.estimated_vsize + buyer_share.to_sat()
        );
        assert_eq!(plan.expected.paid() + plan.fee, Amount::from_sat(funded));
    }

    #[test]
    fn a_share_of_exactly_the_dust_limit_is_kept() {
        let limit = addresses()
            .buyer
            .script_pubkey()
            .minimal_non_dust()
            .to_sat();
        let outputs = vec![TxOut {
            value: Amount::from_sat(limit),
            script_pubkey: addresses().buyer.script_pubkey(),
        }];
        assert!(ExpectedPayout::new(&[utxo(1, 10_000)], outputs).is_ok());
        let outputs = vec![TxOut {
            value: Amount::from_sat(limit - 1),
            script_pubkey: addresses().buyer.script_pubkey(),
        }];
        assert_eq!(
            ExpectedPayout::new(&[utxo(1, 10_000)], outputs),
            Err(PayoutBuildError::DustOutput {
                index: 0,
                value: limit - 1,
                limit
            })
        );
    }

    #[test]
    fn a_payout_that_spends_more_than_funded_cannot_be_built() {
        let script = addresses().provider.script_pubkey();
        let pay = |sats| TxOut {
            value: Amount::from_sat(sats),
            script_pubkey: script.clone(),
        };
        assert_eq!(
            ExpectedPayout::new(&[utxo(1, 10_000)], vec![pay(6_000), pay(5_000)]),
            Err(PayoutBuildError::Overspend {
                funded: 10_000,
                paid: 11_000
            })
        );
        // Paying everything leaves no fee: refused as well.
        assert!(ExpectedPayout::new(&[utxo(1, 10_000)], vec![pay(10_000)]).is_err());
        assert!(ExpectedPayout::new(
            &[utxo(1, 10_000)],
            vec![pay(u64::MAX / 2), pay(u64::MAX / 2)]
        )
        .is_err());
        // A fee that eats the whole escrow is the domain's error.
        let err = build_payout(
            &escrow(),
            &[utxo(1, 500)],
            &addresses(),
            &terms(10_000, 0, 0),
            5,
        )
        .unwrap_err();
        assert!(matches!(
            err,
            PayoutBuildError::Split(PayoutError::FeeExceedsFunds { .. })
        ));
    }

    #[test]
    fn funding_must_be_present_unique_and_within_supply() {
        let e = escrow();
        let t = terms(10_000, 0, 0);
        assert_eq!(
            build_payout(&e, &[], &addresses(), &t, 1),
            Err(PayoutBuildError::NoFunding)
        );
        assert_eq!(
            build_payout(&e, &[utxo(1, 5_000), utxo(1, 5_000)], &addresses(), &t, 1),
            Err(PayoutBuildError::DuplicateFunding(outpoint(1, 1)))
        );
        assert_eq!(
            build_payout(
                &e,
                &[utxo(1, 2_100_000_000_000_000), utxo(2, 1)],
                &addresses(),
                &t,
                1
            ),
            Err(PayoutBuildError::FundingOverflow)
        );
        assert_eq!(
            build_payout(&e, &[utxo(1, 5_000)], &addresses(), &t, 0),
            Err(PayoutBuildError::InvalidFeeRate(0))
        );
        assert_eq!(
            build_payout(
                &e,
                &[utxo(1, 5_000)],
                &addresses(),
                &t,
                MAX_FEE_RATE_SAT_VB + 1
            ),
            Err(PayoutBuildError::InvalidFeeRate(MAX_FEE_RATE_SAT_VB + 1))
        );
    }

    #[test]
    fn over_a_grid_of_terms_a_payout_spends_exactly_the_funding_and_never_dust() {
        let e = escrow();
        let to = addresses();
        let mut built = 0;
        for funded in [1_000u64, 5_000, 20_000, 333_333, 10_000_000] {
            for provider_bps in [0, 1, 5_000, 9_990, 9_999, 10_000] {
                for commission_bps in [0, 250, 10_000] {
                    for arbitration_fee in [0, 700, 1_000_000] {
                        for rate in [1, 13, 250] {
                            let t = terms(provider_bps, commission_bps, arbitration_fee);
                            let Ok(plan) = build_payout(&e, &[utxo(1, funded)], &to, &t, rate)
                            else {
                                continue;
                            };
                            built += 1;
                            let x = &plan.expected;
                            assert_eq!(x.paid() + plan.fee, Amount::from_sat(funded));
                            assert!(plan.fee.to_sat() >= rate * plan.estimated_vsize);
                            let dust: u64 = plan.dropped_dust.iter().map(|(_, a)| a.to_sat()).sum();
                            assert_eq!(plan.fee.to_sat(), plan.breakdown.network_fee + dust);
                            for out in x.outputs() {
                                assert!(out.value >= out.script_pubkey.minimal_non_dust());
                            }
                            let order: Vec<PayoutRole> =
                                plan.paid.iter().map(|(r, _)| *r).collect();
                            let mut sorted = order.clone();
                            sorted.sort();
                            assert_eq!(order, sorted);
                        }
                    }
                }
            }
        }
        assert!(built > 300, "only {built} payouts were buildable");
    }

    #[test]
    fn when_every_share_is_dust_nothing_is_built() {
        let err = build_payout(
            &escrow(),
            &[utxo(1, 600)],
            &addresses(),
            &terms(5_000, 0, 0),
            1,
        )
        .unwrap_err();
        assert_eq!(err, PayoutBuildError::NothingToPay);
    }
}
