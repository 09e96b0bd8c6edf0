//! The buyer's way out when the other parties vanish: spending through
//! `and(pk(B_refund),older(T))`, which needs only the refund key and every input's
//! nSequence set to at least `T` blocks (BIP68, transaction version 2). Nodes then
//! accept it only once each funding output is `T` blocks deep.
//!
//! Used by the watcher and by tests; the buyer's wallet signs with `B_refund`.

use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::Secp256k1;
use bitcoin::sighash::EcdsaSighashType;
use bitcoin::{Address, Amount, Sequence, Transaction, TxOut};
use miniscript::psbt::PsbtExt;

use super::descriptor::EscrowDescriptor;
use super::payout::{
    estimate_vsize, ExpectedPayout, FundingUtxo, PayoutBuildError, MAX_FEE_RATE_SAT_VB,
};
use super::signing::sighash_all;
use super::verify::{verify_spends, ConsensusError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefundError {
    #[error("the PSBT's transaction is not the expected refund")]
    TransactionMismatch,
    #[error("input {input} has no valid SIGHASH_ALL signature by the buyer's refund key")]
    MissingRefundSignature { input: usize },
    #[error("miniscript could not finalize the refund: {0}")]
    Finalize(String),
    #[error(transparent)]
    Consensus(#[from] ConsensusError),
    #[error(transparent)]
    Build(#[from] PayoutBuildError),
}

/// A refund ready for the buyer's refund key.
#[derive(Debug, Clone, PartialEq)]
pub struct RefundPlan {
    pub expected: ExpectedPayout,
    pub psbt: Psbt,
    pub estimated_vsize: u64,
    pub fee: Amount,
}

/// The nSequence that satisfies `older(T)` for this escrow.
pub fn refund_sequence(escrow: &EscrowDescriptor) -> Sequence {
    Sequence::from_height(escrow.keys().timelock_blocks())
}

/// Builds the refund of `funding` to `destination`, everything but the fee, with
/// nSequence `T` on every input.
pub fn build_refund(
    escrow: &EscrowDescriptor,
    funding: &[FundingUtxo],
    destination: &Address,
    fee_rate_sat_vb: u64,
) -> Result<RefundPlan, PayoutBuildError> {
    if !(1..=MAX_FEE_RATE_SAT_VB).contains(&fee_rate_sat_vb) {
        return Err(PayoutBuildError::InvalidFeeRate(fee_rate_sat_vb));
    }
    let script_pubkey = destination.script_pubkey();
    let placeholder = vec![TxOut {
        value: Amount::ZERO,
        script_pubkey: script_pubkey.clone(),
    }];
    let estimated_vsize = estimate_vsize(funding, &placeholder, escrow.refund_witness_weight()?)?;
    let fee = fee_rate_sat_vb
        .checked_mul(estimated_vsize)
        .map(Amount::from_sat)
        .ok_or(PayoutBuildError::InvalidFeeRate(fee_rate_sat_vb))?;
    let funded: Amount = funding
        .iter()
        .try_fold(Amount::ZERO, |sum, u| sum.checked_add(u.value))
        .ok_or(PayoutBuildError::FundingOverflow)?;
    let value = funded
        .checked_sub(fee)
        .ok_or(PayoutBuildError::NothingToPay)?;
    let outputs = vec![TxOut {
        value,
        script_pubkey,
    }];
    let expected = ExpectedPayout::with_sequence(funding, outputs, refund_sequence(escrow))?;
    let psbt = expected.unsigned_psbt(escrow)?;
    Ok(RefundPlan {
        fee: expected.fee(),
        expected,
        psbt,
        estimated_vsize,
    })
}

/// Finalizes a refund PSBT signed with `B_refund` on every input and verifies the
/// transaction with `bitcoinconsensus`. Signatures of other keys are ignored.
pub fn finalize_refund(
    escrow: &EscrowDescriptor,
    expected: &ExpectedPayout,
    psbt: &Psbt,
) -> Result<Transaction, RefundError> {
    let tx = expected.unsigned_tx();
    if psbt.unsigned_tx != tx || psbt.inputs.len() != tx.input.len() {
        return Err(RefundError::TransactionMismatch);
    }
    let secp = Secp256k1::verification_only();
    let refund_key = escrow.keys().buyer_refund();
    let spent = expected.spent_outputs(escrow);
    let mut clean = expected.unsigned_psbt(escrow)?;
    let inputs = clean.inputs.iter_mut().zip(&psbt.inputs).zip(&spent);
    for (index, ((target, submitted), prevout)) in inputs.enumerate() {
        let missing = RefundError::MissingRefundSignature { input: index };
        let sig = submitted
            .partial_sigs
            .get(&refund_key)
            .ok_or(missing.clone())?;
        if sig.sighash_type != EcdsaSighashType::All {
            return Err(missing);
        }
        let message = sighash_all(&tx, index, escrow.witness_script(), prevout.value)
            .map_err(|_| missing.clone())?;
        let mut signature = sig.signature;
        signature.normalize_s();
        secp.verify_ecdsa(&message, &signature, &refund_key.inner)
            .map_err(|_| missing.clone())?;
        target.partial_sigs.insert(
            refund_key,
            bitcoin::ecdsa::Signature::sighash_all(signature),
        );
    }
    clean.finalize_mut(&secp).map_err(|errors| {
        RefundError::Finalize(
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let final_tx = clean.extract_tx_unchecked_fee_rate();
    if final_tx.compute_txid() != tx.compute_txid() {
        return Err(RefundError::TransactionMismatch);
    }
    verify_spends(&final_tx, &spent)?;
    Ok(final_tx)
}

#[cfg(test)]
mod tests {
    use bitcoin::relative;
    use bitcoin::transaction::Version;
    use miniscript::Satisfier;

    use super::*;
    use crate::btc::payout::tests::{addresses, utxo};
    use crate::btc::test_keys::*;

    /// Hands out the refund signature and claims every timelock is satisfied, so
    /// miniscript builds the refund witness whatever the sequence: the chain's
    /// script interpreter, not our finalizer, must be the one to refuse it.
    struct LyingAboutTime(bitcoin::ecdsa::Signature);

    impl Satisfier<bitcoin::PublicKey> for LyingAboutTime {
        fn lookup_ecdsa_sig(&self, pk: &bitcoin::PublicKey) -> Option<bitcoin::ecdsa::Signature> {
            (*pk == key(BUYER_REFUND)).then_some(self.0)
        }

        fn check_older(&self, _: relative::LockTime) -> bool {
            true
        }
    }

    /// A refund of two UTXOs with the given sequence and version, witnessed by a
    /// valid refund-key signature over exactly that transaction.
    fn hand_built_refund(sequence: Sequence, version: Version) -> (Transaction, Vec<TxOut>) {
        let e = escrow();
        let funding = [utxo(1, 80_000), utxo(2, 20_000)];
        let plan = build_refund(&e, &funding, &addresses().buyer, 2).unwrap();
        let mut tx = plan.expected.unsigned_tx();
        tx.version = version;
        for input in &mut tx.input {
            input.sequence = sequence;
        }
        let spent = plan.expected.spent_outputs(&e);
        let unsigned = tx.clone();
        for (i, input) in tx.input.iter_mut().enumerate() {
            let sig = raw_signature(&unsigned, i, &e, spent[i].value, BUYER_REFUND);
            e.descriptor().satisfy(input, LyingAboutTime(sig)).unwrap();
        }
        (tx, spent)
    }

    #[test]
    fn the_refund_path_verifies_once_the_sequence_reaches_the_timelock() {
        let t = u32::from(TIMELOCK);
        for blocks in [t, t + 1, 65_535] {
            let (tx, spent) = hand_built_refund(Sequence(blocks), Version::TWO);
            verify_spends(&tx, &spent).unwrap_or_else(|e| panic!("sequence {blocks}: {e}"));
        }
    }

    #[test]
    fn the_refund_path_fails_before_the_timelock() {
        let t = u32::from(TIMELOCK);
        for blocks in [0, 1, t - 1] {
            let (tx, spent) = hand_built_refund(Sequence(blocks), Version::TWO);
            assert!(
                verify_spends(&tx, &spent).is_err(),
                "sequence {blocks} must not verify"
            );
        }
        // Relative locks off (bit 31), as in a payout: the refund branch cannot be used.
        let (tx, spent) = hand_built_refund(Sequence::ENABLE_RBF_NO_LOCKTIME, Version::TWO);
        assert!(verify_spends(&tx, &spent).is_err());
        // A time-based lock of the same number is not a height lock.
        let (tx, spent) = hand_built_refund(Sequence(t | (1 << 22)), Version::TWO);
        assert!(verify_spends(&tx, &spent).is_err());
        // BIP68 applies only from version 2.
        let (tx, spent) = hand_built_refund(Sequence(t), Version::ONE);
        assert!(verify_spends(&tx, &spent).is_err());
    }

    #[test]
    fn build_and_finalize_a_refund_signed_by_the_refund_key() {
        let e = escrow();
        let funding = [utxo(1, 80_000), utxo(2, 20_000)];
        let plan = build_refund(&e, &funding, &addresses().buyer, 3).unwrap();
        let tx = plan.expected.unsigned_tx();
        assert!(tx
            .input
            .iter()
            .all(|i| i.sequence == Sequence(u32::from(TIMELOCK))));
        assert_eq!(tx.version, Version::TWO);
        assert_eq!(tx.output.len(), 1);
        assert_eq!(plan.fee.to_sat(), 3 * plan.estimated_vsize);

        let mut psbt = plan.psbt.clone();
        sign_all(&mut psbt, &e, BUYER_REFUND);
        let final_tx = finalize_refund(&e, &plan.expected, &psbt).unwrap();
        verify_spends(&final_tx, &plan.expected.spent_outputs(&e)).unwrap();
        let real = final_tx.vsize() as u64;
        assert!(
            plan.estimated_vsize >= real && plan.estimated_vsize - real <= 2,
            "{} vs {real}",
            plan.estimated_vsize
        );
    }

    #[test]
    fn a_refund_without_the_refund_key_is_not_finalized() {
        let e = escrow();
        let plan = build_refund(&e, &[utxo(1, 80_000)], &addresses().buyer, 3).unwrap();
        let mut psbt = plan.psbt.clone();
        sign_all(&mut psbt, &e, BUYER);
        sign_all(&mut psbt, &e, PROVIDER);
        assert_eq!(
            finalize_refund(&e, &plan.expected, &psbt),
            Err(RefundError::MissingRefundSignature { input: 0 })
        );
        let mut other = plan.psbt.clone();
        other.unsigned_tx.output[0].value -= Amount::from_sat(1);
        assert_eq!(
            finalize_refund(&e, &plan.expected, &other),
            Err(RefundError::TransactionMismatch)
        );
    }

    #[test]
    fn our_finalizer_refuses_a_refund_whose_sequence_is_below_the_timelock() {
        let e = escrow();
        let funding = [utxo(1, 80_000)];
        let early = ExpectedPayout::with_sequence(
            &funding,
            build_refund(&e, &funding, &addresses().buyer, 1)
                .unwrap()
                .expected
                .outputs()
                .to_vec(),
            Sequence(u32::from(TIMELOCK) - 1),
        )
        .unwrap();
        let mut psbt = early.unsigned_psbt(&e).unwrap();
        sign_all(&mut psbt, &e, BUYER_REFUND);
        assert!(matches!(
            finalize_refund(&e, &early, &psbt),
            Err(RefundError::Finalize(_))
        ));
    }
}
