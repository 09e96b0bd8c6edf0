//! Accepting a signed payout PSBT from a party: decode, compare with the expected
//! transaction, verify each signature, merge the good ones into the stored PSBT,
//! and, once two of {buyer, provider, arbitrator} have signed every input,
//! finalize and check the transaction with `bitcoinconsensus`.
//!
//! Only partial signatures are taken from a submitted PSBT. BIP174 `combine` would
//! also copy its UTXOs, scripts, final witnesses and unknown fields, which a party
//! controls; the stored PSBT is instead rebuilt from the expected payout and
//! receives signatures that were each checked here. An import is all or nothing:
//! one bad signature rejects the whole submission.

use std::collections::{BTreeMap, BTreeSet};

use bitcoin::base64::engine::general_purpose::STANDARD as BASE64;
use bitcoin::base64::Engine as _;
use bitcoin::ecdsa;
use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::{Secp256k1, Verification};
use bitcoin::sighash::EcdsaSighashType;
use bitcoin::{PublicKey, Transaction};
use miniscript::psbt::PsbtExt;

use super::descriptor::{EscrowDescriptor, EscrowParty};
use super::payout::ExpectedPayout;
use super::signing::{sighash_all, SignError};
use super::verify::{verify_spends, ConsensusError};

/// Signatures one input needs before the payout can be finalized.
pub const REQUIRED_SIGNERS: usize = 2;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PsbtImportError {
    #[error("the PSBT is not valid base64")]
    MalformedBase64,
    #[error("the data is not a valid PSBT: {0}")]
    MalformedPsbt(String),
    #[error("the PSBT's transaction differs from the expected payout: {what}")]
    TransactionMismatch { what: String },
    #[error("input {input} is already finalized; submit the PSBT with partial signatures only")]
    AlreadyFinalized { input: usize },
    #[error("the PSBT carries no signature")]
    NoSignatures,
    #[error("input {input} is signed by {pubkey}, which is not the buyer's, provider's or arbitrator's key of this escrow")]
    UnexpectedSigner { input: usize, pubkey: PublicKey },
    #[error("input {input} asks for sighash type {sighash}; only SIGHASH_ALL is accepted")]
    UnsupportedSighash { input: usize, sighash: String },
    #[error("the signature of {pubkey} on input {input} does not verify")]
    InvalidSignature { input: usize, pubkey: PublicKey },
    #[error("the stored PSBT is not valid for this payout: {0}")]
    StoredPsbt(Box<PsbtImportError>),
    #[error("input {input} lacks signatures: signed by {signed:?}")]
    NotEnoughSignatures {
        input: usize,
        signed: BTreeSet<EscrowParty>,
    },
    #[error("miniscript could not finalize the payout: {0}")]
    Finalize(String),
    #[error("the finalized transaction is not the expected payout")]
    FinalizedMismatch,
    #[error(transparent)]
    Consensus(#[from] ConsensusError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// The result of a successful import.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportOutcome {
    /// The stored PSBT with every verified signature so far; store it in place of
    /// the previous one.
    pub psbt: Psbt,
    /// Per input, the parties whose signature is now in `psbt`.
    pub signers: Vec<BTreeSet<EscrowParty>>,
    /// Per input, the parties whose signature this import added.
    pub added: Vec<BTreeSet<EscrowParty>>,
    /// The finalized transaction, verified by `bitcoinconsensus`, once every
    /// input has two signatures.
    pub final_tx: Option<Transaction>,
}

/// Imports `submitted_base64`, a PSBT a party signed, for the payout `expected` of
/// `escrow`, into `stored` (the PSBT that holds the signatures accepted so far;
/// initially [`ExpectedPayout::unsigned_psbt`]).
pub fn import_signed_psbt(
    escrow: &EscrowDescriptor,
    expected: &ExpectedPayout,
    stored: &Psbt,
    submitted_base64: &str,
) -> Result<ImportOutcome, PsbtImportError> {
    let secp = Secp256k1::verification_only();
    let bytes = BASE64
        .decode(submitted_base64.trim())
        .map_err(|_| PsbtImportError::MalformedBase64)?;
    let submitted =
        Psbt::deserialize(&bytes).map_err(|e| PsbtImportError::MalformedPsbt(e.to_string()))?;
    let new_sigs = checked_signatures(&secp, escrow, expected, &submitted)?;
    if new_sigs.iter().all(BTreeMap::is_empty) {
        return Err(PsbtImportError::NoSignatures);
    }
    let old_sigs = checked_signatures(&secp, escrow, expected, stored)
        .map_err(|e| PsbtImportError::StoredPsbt(Box::new(e)))?;

    let mut psbt = expected
        .unsigned_psbt(escrow)
        .map_err(|e| PsbtImportError::Internal(e.to_string()))?;
    let mut added = Vec::with_capacity(psbt.inputs.len());
    for ((input, old), new) in psbt.inputs.iter_mut().zip(old_sigs).zip(new_sigs) {
        let mut added_here = BTreeSet::new();
        input.partial_sigs = old;
        for (key, sig) in new {
            // A party may sign twice (ECDSA nonces differ); both verify, keep the first.
            if let std::collections::btree_map::Entry::Vacant(slot) = input.partial_sigs.entry(key)
            {
                slot.insert(sig);
                added_here.extend(escrow.keys().party_of(&key));
            }
        }
        added.push(added_here);
    }
    let signers = signers_of(escrow, &psbt);
    let final_tx = if signers.iter().all(|s| s.len() >= REQUIRED_SIGNERS) {
        Some(finalize_checked(&secp, escrow, expected, &psbt)?)
    } else {
        None
    };
    Ok(ImportOutcome {
        psbt,
        signers,
        added,
        final_tx,
    })
}

/// Finalizes `psbt` (holding the signatures of a stored payout), extracts the
/// transaction and verifies every input with `bitcoinconsensus`.
pub fn finalize_payout(
    escrow: &EscrowDescriptor,
    expected: &ExpectedPayout,
    psbt: &Psbt,
) -> Result<Transaction, PsbtImportError> {
    let secp = Secp256k1::verification_only();
    let sigs = checked_signatures(&secp, escrow, expected, psbt)?;
    let mut clean = expected
        .unsigned_psbt(escrow)
        .map_err(|e| PsbtImportError::Internal(e.to_string()))?;
    for (input, sigs) in clean.inputs.iter_mut().zip(sigs) {
        input.partial_sigs = sigs;
    }
    for (input, signed) in signers_of(escrow, &clean).into_iter().enumerate() {
        if signed.len() < REQUIRED_SIGNERS {
            return Err(PsbtImportError::NotEnoughSignatures { input, signed });
        }
    }
    finalize_checked(&secp, escrow, expected, &clean)
}

fn signers_of(escrow: &EscrowDescriptor, psbt: &Psbt) -> Vec<BTreeSet<EscrowParty>> {
    psbt.inputs
        .iter()
        .map(|input| {
            input
                .partial_sigs
                .keys()
                .filter_map(|k| escrow.keys().party_of(k))
                .collect()
        })
        .collect()
}

fn finalize_checked<C: Verification>(
    secp: &Secp256k1<C>,
    escrow: &EscrowDescriptor,
    expected: &ExpectedPayout,
    psbt: &Psbt,
) -> Result<Transaction, PsbtImportError> {
    let mut psbt = psbt.clone();
    psbt.finalize_mut(secp).map_err(|errors| {
        PsbtImportError::Finalize(
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    // The fee was chosen here, from our own fee rate; no cap to apply.
    let tx = psbt.extract_tx_unchecked_fee_rate();
    if tx.compute_txid() != expected.unsigned_tx().compute_txid() {
        return Err(PsbtImportError::FinalizedMismatch);
    }
    verify_spends(&tx, &expected.spent_outputs(escrow))?;
    Ok(tx)
}

/// Checks `psbt` against `expected` and returns, per input, its partial signatures,
/// each from an allowed key, `SIGHASH_ALL`, low-S and valid.
fn checked_signatures<C: Verification>(
    secp: &Secp256k1<C>,
    escrow: &EscrowDescriptor,
    expected: &ExpectedPayout,
    psbt: &Psbt,
) -> Result<Vec<BTreeMap<PublicKey, ecdsa::Signature>>, PsbtImportError> {
    compare_transaction(expected, &psbt.unsigned_tx)?;
    let tx = expected.unsigned_tx();
    let spent = expected.spent_outputs(escrow);
    let mut all = Vec::with_capacity(psbt.inputs.len());
    let inputs = psbt.inputs.iter().zip(&spent).zip(expected.inputs());
    for (index, ((input, prevout), want)) in inputs.enumerate() {
        let mismatch = |what: &str| PsbtImportError::TransactionMismatch {
            what: format!("input {index}: {what}"),
        };
        if input.final_script_witness.is_some() || input.final_script_sig.is_some() {
            return Err(PsbtImportError::AlreadyFinalized { input: index });
        }
        if let Some(utxo) = &input.witness_utxo {
            if utxo != prevout {
                return Err(mismatch(
                    "witness UTXO differs from the escrow output it spends",
                ));
            }
        }
        if let Some(tx) = &input.non_witness_utxo {
            let outpoint = want.outpoint;
            let output = tx.output.get(outpoint.vout as usize);
            if tx.compute_txid() != outpoint.txid || output != Some(prevout) {
                return Err(mismatch(
                    "non-witness UTXO differs from the escrow output it spends",
                ));
            }
        }
        if let Some(script) = &input.witness_script {
            if script != escrow.witness_script() {
                return Err(mismatch("witness script is not this escrow's"));
            }
        }
        if let Some(ty) = input.sighash_type {
            if ty.ecdsa_hash_ty() != Ok(EcdsaSighashType::All) {
                return Err(PsbtImportError::UnsupportedSighash {
                    input: index,
                    sighash: ty.to_string(),
                });
            }
        }
        let message = sighash_all(&tx, index, escrow.witness_script(), prevout.value)
            .map_err(|e: SignError| PsbtImportError::Internal(e.to_string()))?;
        let mut sigs = BTreeMap::new();
        for (pubkey, sig) in &input.partial_sigs {
            if escrow.keys().party_of(pubkey).is_none() {
                return Err(PsbtImportError::UnexpectedSigner {
                    input: index,
                    pubkey: *pubkey,
                });
            }
            if sig.sighash_type != EcdsaSighashType::All {
                return Err(PsbtImportError::UnsupportedSighash {
                    input: index,
                    sighash: sig.sighash_type.to_string(),
                });
            }
            // High-S is valid by consensus but not relayed; the low-S twin of a
            // signature signs the same message, so keep that one.
            let mut normalized = sig.signature;
            normalized.normalize_s();
            secp.verify_ecdsa(&message, &normalized, &pubkey.inner)
                .map_err(|_| PsbtImportError::InvalidSignature {
                    input: index,
                    pubkey: *pubkey,
                })?;
            sigs.insert(*pubkey, ecdsa::Signature::sighash_all(normalized));
        }
        all.push(sigs);
    }
    Ok(all)
}

/// Compares field by field so the error says what differs.
fn compare_transaction(expected: &ExpectedPayout, tx: &Transaction) -> Result<(), PsbtImportError> {
    let mismatch = |what: String| Err(PsbtImportError::TransactionMismatch { what });
    if tx.version != expected.version() {
        return mismatch(format!(
            "version {} instead of {}",
            tx.version,
            expected.version()
        ));
    }
    if tx.lock_time != expected.lock_time() {
        return mismatch(format!(
            "locktime {} instead of {}",
            tx.lock_time,
            expected.lock_time()
        ));
    }
    if tx.input.len() != expected.inputs().len() {
        return mismatch(format!(
            "{} inputs instead of {}",
            tx.input.len(),
            expected.inputs().len()
        ));
    }
    for (index, (txin, want)) in tx.input.iter().zip(expected.inputs()).enumerate() {
        if txin.previous_output != want.outpoint {
            return mismatch(format!(
                "input {index} spends {} instead of {}",
                txin.previous_output, want.outpoint
            ));
        }
        if txin.sequence != want.sequence {
            return mismatch(format!(
                "input {index} has sequence {:#x} instead of {:#x}",
                txin.sequence.0, want.sequence.0
            ));
        }
        if !txin.script_sig.is_empty() || !txin.witness.is_empty() {
            return mismatch(format!("input {index} carries a script or witness"));
        }
    }
    if tx.output.len() != expected.outputs().len() {
        return mismatch(format!(
            "{} outputs instead of {}",
            tx.output.len(),
            expected.outputs().len()
        ));
    }
    for (index, (out, want)) in tx.output.iter().zip(expected.outputs()).enumerate() {
        if out.script_pubkey != want.script_pubkey {
            return mismatch(format!("output {index} pays another script"));
        }
        if out.value != want.value {
            return mismatch(format!(
                "output {index} pays {} sats instead of {}",
                out.value.to_sat(),
                want.value.to_sat()
            ));
        }
    }
    // Belt and braces: nothing the field checks missed.
    if *tx != expected.unsigned_tx() {
        return mismatch("transaction differs".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, TxOut, Witness};

    use super::*;
    use crate::btc::payout::tests::{addresses, terms, utxo};
    use crate::btc::payout::{build_payout, PayoutPlan};
    use crate::btc::test_keys::*;

    fn party(n: u8) -> EscrowParty {
        match n {
            BUYER => EscrowParty::Buyer,
            PROVIDER => EscrowParty::Provider,
            ARBITRATOR => EscrowParty::Arbitrator,
            _ => unreachable!(),
        }
    }

    fn plan(funding: &[crate::btc::FundingUtxo]) -> PayoutPlan {
        // A split with an arbitration fee, so all three outputs exist.
        build_payout(
            &escrow(),
            funding,
            &addresses(),
            &terms(6_000, 250, 5_000),
            7,
        )
        .unwrap()
    }

    /// Imports the signatures of `first` then `second`, each signing its own copy
    /// of the unsigned PSBT, and returns the final transaction.
    fn sign_pair(plan: &PayoutPlan, first: u8, second: u8) -> Transaction {
        let e = escrow();
        let one = import_signed_psbt(
            &e,
            &plan.expected,
            &plan.psbt,
            &signed_by(&plan.psbt, &e, first),
        )
        .unwrap();
        assert!(one.final_tx.is_none());
        assert!(one
            .signers
            .iter()
            .all(|s| *s == BTreeSet::from([party(first)])));
        let two = import_signed_psbt(
            &e,
            &plan.expected,
            &one.psbt,
            &signed_by(&plan.psbt, &e, second),
        )
        .unwrap();
        assert!(two
            .signers
            .iter()
            .all(|s| *s == BTreeSet::from([party(first), party(second)])));
        assert!(two
            .added
            .iter()
            .all(|s| *s == BTreeSet::from([party(second)])));
        two.final_tx
            .expect("two signatures on every input finalize")
    }

    #[test]
    fn every_allowed_pair_finalizes_to_a_transaction_bitcoinconsensus_accepts() {
        let e = escrow();
        let plan = plan(&[utxo(1, 2_000_000)]);
        assert_eq!(plan.expected.outputs().len(), 3);
        for (first, second) in [
            (BUYER, PROVIDER),
            (BUYER, ARBITRATOR),
            (PROVIDER, ARBITRATOR),
            (ARBITRATOR, BUYER),
        ] {
            let tx = sign_pair(&plan, first, second);
            verify_spends(&tx, &plan.expected.spent_outputs(&e)).unwrap();
            assert_eq!(
                tx.compute_txid(),
                plan.expected.unsigned_tx().compute_txid()
            );
            assert_eq!(tx.input[0].sequence, crate::btc::payout::PAYOUT_SEQUENCE);
            // The fee estimate bounds the real size, by a few vbytes at most.
            let real = tx.vsize() as u64;
            assert!(
                plan.estimated_vsize >= real,
                "{} < {real}",
                plan.estimated_vsize
            );
            assert!(
                plan.estimated_vsize - real <= 2,
                "{} vs {real}",
                plan.estimated_vsize
            );
            assert!(plan.fee.to_sat() >= 7 * real);
        }
    }

    #[test]
    fn a_third_signature_still_finalizes_with_two_of_them() {
        let e = escrow();
        let plan = plan(&[utxo(1, 2_000_000)]);
        let mut psbt = plan.psbt.clone();
        for n in [BUYER, PROVIDER, ARBITRATOR] {
            let outcome =
                import_signed_psbt(&e, &plan.expected, &psbt, &signed_by(&plan.psbt, &e, n))
                    .unwrap();
            psbt = outcome.psbt;
            if n == BUYER {
                assert!(outcome.final_tx.is_none());
            } else {
                let tx = outcome.final_tx.unwrap();
                verify_spends(&tx, &plan.expected.spent_outputs(&e)).unwrap();
            }
        }
        assert_eq!(psbt.inputs[0].partial_sigs.len(), 3);
        let tx = finalize_payout(&e, &plan.expected, &psbt).unwrap();
        verify_spends(&tx, &plan.expected.spent_outputs(&e)).unwrap();
    }

    #[test]
    fn several_funding_utxos_are_spent_together_and_each_input_verifies() {
        let e = escrow();
        let funding = [utxo(1, 300_000), utxo(2, 450_000), utxo(3, 1_250_000)];
        let plan = plan(&funding);
        let tx = sign_pair(&plan, PROVIDER, ARBITRATOR);
        assert_eq!(tx.input.len(), 3);
        let spent = plan.expected.spent_outputs(&e);
        verify_spends(&tx, &spent).unwrap();
        // Each input on its own, and each one fails with another input's amount.
        let bytes = bitcoin::consensus::encode::serialize(&tx);
        for (i, prevout) in spent.iter().enumerate() {
            prevout
                .script_pubkey
                .verify(i, prevout.value, &bytes)
                .unwrap();
            let wrong = spent[(i + 1) % spent.len()].value;
            assert!(prevout.script_pubkey.verify(i, wrong, &bytes).is_err());
        }
        let real = tx.vsize() as u64;
        assert!(plan.estimated_vsize >= real && plan.estimated_vsize - real <= 4);
    }

    #[test]
    fn one_input_short_of_signatures_does_not_finalize() {
        let e = escrow();
        let plan = plan(&[utxo(1, 300_000), utxo(2, 450_000)]);
        let one = import_signed_psbt(
            &e,
            &plan.expected,
            &plan.psbt,
            &signed_by(&plan.psbt, &e, BUYER),
        )
        .unwrap();
        let mut provider = plan.psbt.clone();
        crate::btc::signing::sign_escrow_input(
            &Secp256k1::new(),
            &mut provider,
            1,
            &e,
            &secret(PROVIDER),
        )
        .unwrap();
        let two = import_signed_psbt(&e, &plan.expected, &one.psbt, &provider.to_string()).unwrap();
        assert_eq!(two.signers[0], BTreeSet::from([EscrowParty::Buyer]));
        assert_eq!(
            two.signers[1],
            BTreeSet::from([EscrowParty::Buyer, EscrowParty::Provider])
        );
        assert!(two.final_tx.is_none());
        assert!(matches!(
            finalize_payout(&e, &plan.expected, &two.psbt),
            Err(PsbtImportError::NotEnoughSignatures { input: 0, .. })
        ));
    }

    #[test]
    fn the_same_party_signing_twice_counts_once() {
        let e = escrow();
        let plan = plan(&[utxo(1, 2_000_000)]);
        let one = import_signed_psbt(
            &e,
            &plan.expected,
            &plan.psbt,
            &signed_by(&plan.psbt, &e, BUYER),
        )
        .unwrap();
        let again = import_signed_psbt(
            &e,
            &plan.expected,
            &one.psbt,
            &signed_by(&plan.psbt, &e, BUYER),
        )
        .unwrap();
        assert_eq!(again.signers[0], BTreeSet::from([EscrowParty::Buyer]));
        assert!(again.added[0].is_empty());
        assert!(again.final_tx.is_none());
    }

    #[test]
    fn the_refund_key_and_foreign_keys_are_rejected_on_the_payout() {
        let e = escrow();
        let plan = plan(&[utxo(1, 2_000_000)]);
        let one = import_signed_psbt(
            &e,
            &plan.expected,
            &plan.psbt,
            &signed_by(&plan.psbt, &e, BUYER),
        )
        .unwrap();
        // B + B_refund is not a 2-of-3 pair.
        let err = import_signed_psbt(
            &e,
            &plan.expected,
            &one.psbt,
            &signed_by(&plan.psbt, &e, BUYER_REFUND),
        )
        .unwrap_err();
        assert_eq!(
            err,
            PsbtImportError::UnexpectedSigner {
                input: 0,
                pubkey: key(BUYER_REFUND)
            }
        );
        // A key from outside the escrow, with a signature that is otherwise valid.
        let mut stranger = plan.psbt.clone();
        let tx = plan.expected.unsigned_tx();
        stranger.inputs[0].partial_sigs.insert(
            key(STRANGER),
            raw_signature(&tx, 0, &e, Amount::from_sat(2_000_000), STRANGER),
        );
        let err =
            import_signed_psbt(&e, &plan.expected, &one.psbt, &stranger.to_string()).unwrap_err();
        assert_eq!(
            err,
            PsbtImportError::UnexpectedSigner {
                input: 0,
                pubkey: key(STRANGER)
            }
        );
        // All or nothing: a valid provider signature next to the stranger's is not kept.
        crate::btc::signing::sign_escrow_input(
            &Secp256k1::new(),
            &mut stranger,
            0,
            &e,
            &secret(PROVIDER),
        )
        .unwrap();
        assert!(import_signed_psbt(&e, &plan.expected, &one.psbt, &stranger.to_string()).is_err());
    }

    #[test]
    fn a_hand_built_witness_with_a_wrong_key_fails_bitcoinconsensus() {
        let e = escrow();
        let plan = plan(&[utxo(1, 2_000_000)]);
        let tx = sign_pair(&plan, BUYER, PROVIDER);
        let spent = plan.expected.spent_outputs(&e);
        // multi(2,B,P,A) witness: dummy, sig(B), sig(P), witness script.
        let items: Vec<Vec<u8>> = tx.input[0].witness.iter().map(<[u8]>::to_vec).collect();
        assert_eq!(items.len(), 4);
        assert!(items[0].is_empty());
        assert_eq!(items[3], e.witness_script().to_bytes());
        for wrong in [STRANGER, BUYER_REFUND] {
            let mut forged = tx.clone();
            let sig = raw_signature(&plan.expected.unsigned_tx(), 0, &e, spent[0].value, wrong);
            let mut replaced = items.clone();
            replaced[1] = sig.to_vec();
            forged.input[0].witness = Witness::from_slice(&replaced);
            assert!(matches!(
                verify_spends(&forged, &spent),
                Err(ConsensusError::Script { input: 0, .. })
            ));
        }
        // And a single valid signature with the other slot empty fails too.
        let mut one_sig = tx.clone();
        let mut short = items.clone();
        short[2] = Vec::new();
        one_sig.input[0].witness = Witness::from_slice(&short);
        assert!(verify_spends(&one_sig, &spent).is_err());
    }

    #[test]
    fn a_signature_that_does_not_verify_is_rejected() {
        let e = escrow();
        let plan = plan(&[utxo(1, 2_000_000)]);
        let tx = plan.expected.unsigned_tx();
        // The buyer's key, but signing a different amount (a lying witness UTXO).
        let mut psbt = plan.psbt.clone();
        psbt.inputs[0].partial_sigs.insert(
            key(BUYER),
            raw_signature(&tx, 0, &e, Amount::from_sat(1_999_999), BUYER),
        );
        assert_eq!(
            import_signed_psbt(&e, &plan.expected, &plan.psbt, &psbt.to_string()),
            Err(PsbtImportError::InvalidSignature {
                input: 0,
                pubkey: key(BUYER)
            })
        );
        // The provider's signature filed under the buyer's key.
        let mut swapped = plan.psbt.clone();
        swapped.inputs[0].partial_sigs.insert(
            key(BUYER),
            raw_signature(&tx, 0, &e, Amount::from_sat(2_000_000), PROVIDER),
        );
        assert_eq!(
            import_signed_psbt(&e, &plan.expected, &plan.psbt, &swapped.to_string()),
            Err(PsbtImportError::InvalidSignature {
                input: 0,
                pubkey: key(BUYER)
            })
        );
    }

    #[test]
    fn only_sighash_all_is_accepted() {
        let e = escrow();
        let plan = plan(&[utxo(1, 2_000_000)]);
        let mut psbt = plan.psbt.clone();
        sign_all(&mut psbt, &e, BUYER);
        let sig = psbt.inputs[0].partial_sigs.get_mut(&key(BUYER)).unwrap();
        sig.sighash_type = EcdsaSighashType::SinglePlusAnyoneCanPay;
        assert!(matches!(
            import_signed_psbt(&e, &plan.expected, &plan.psbt, &psbt.to_string()),
            Err(PsbtImportError::UnsupportedSighash { input: 0, .. })
        ));
        let mut psbt = plan.psbt.clone();
        sign_all(&mut psbt, &e, BUYER);
        psbt.inputs[0].sighash_type = Some(EcdsaSighashType::None.into());
        assert!(matches!(
            import_signed_psbt(&e, &plan.expected, &plan.psbt, &psbt.to_string()),
            Err(PsbtImportError::UnsupportedSighash { input: 0, .. })
        ));
    }

    /// Signs a copy of the plan's PSBT whose transaction was altered by `alter`,
    /// as a party with a tampered PSBT would, and imports it.
    fn import_altered(plan: &PayoutPlan, alter: impl FnOnce(&mut Transaction)) -> PsbtImportError {
        let e = escrow();
        let mut tx = plan.expected.unsigned_tx();
        alter(&mut tx);
        let mut psbt = Psbt::from_unsigned_tx(tx).unwrap();
        for (input, spent) in psbt.inputs.iter_mut().zip(plan.expected.spent_outputs(&e)) {
            input.witness_utxo = Some(spent);
        }
        sign_all(&mut psbt, &e, PROVIDER);
        import_signed_psbt(&e, &plan.expected, &plan.psbt, &psbt.to_string()).unwrap_err()
    }

    #[test]
    fn any_change_to_the_transaction_is_rejected_at_import() {
        let plan = plan(&[utxo(1, 2_000_000), utxo(2, 100_000)]);
        let stranger_script = ScriptBuf::new_p2wpkh(&key(STRANGER).wpubkey_hash().unwrap());
        let alterations: Vec<(&str, Box<dyn FnOnce(&mut Transaction)>)> = vec![
            (
                "amount",
                Box::new(|tx| tx.output[0].value += Amount::from_sat(1)),
            ),
            (
                "amount down",
                Box::new(|tx| tx.output[1].value -= Amount::from_sat(1)),
            ),
            ("address", {
                let s = stranger_script.clone();
                Box::new(move |tx| tx.output[1].script_pubkey = s)
            }),
            ("added output", {
                let s = stranger_script.clone();
                Box::new(move |tx| {
                    tx.output.push(TxOut {
                        value: Amount::from_sat(1_000),
                        script_pubkey: s,
                    })
                })
            }),
            (
                "removed output",
                Box::new(|tx| {
                    tx.output.pop();
                }),
            ),
            ("swapped outputs", Box::new(|tx| tx.output.swap(0, 1))),
            (
                "sequence",
                Box::new(|tx| tx.input[0].sequence = Sequence::MAX),
            ),
            (
                "sequence csv",
                Box::new(|tx| tx.input[1].sequence = Sequence::from_height(144)),
            ),
            (
                "locktime",
                Box::new(|tx| {
                    tx.lock_time = bitcoin::absolute::LockTime::from_height(800_000).unwrap()
                }),
            ),
            (
                "version",
                Box::new(|tx| tx.version = bitcoin::transaction::Version::ONE),
            ),
            (
                "other outpoint",
                Box::new(|tx| {
                    tx.input[1].previous_output = OutPoint {
                        vout: 7,
                        ..tx.input[1].previous_output
                    }
                }),
            ),
            (
                "removed input",
                Box::new(|tx| {
                    tx.input.pop();
                }),
            ),
            ("swapped inputs", Box::new(|tx| tx.input.swap(0, 1))),
        ];
        for (name, alter) in alterations {
            let err = import_altered(&plan, alter);
            assert!(
                matches!(err, PsbtImportError::TransactionMismatch { .. }),
                "{name}: {err:?}"
            );
        }
    }

    #[test]
    fn a_lying_witness_utxo_or_script_is_rejected() {
        let e = escrow();
        let plan = plan(&[utxo(1, 2_000_000)]);
        let mut psbt = plan.psbt.clone();
        sign_all(&mut psbt, &e, BUYER);
        psbt.inputs[0].witness_utxo.as_mut().unwrap().value = Amount::from_sat(5);
        assert!(matches!(
            import_signed_psbt(&e, &plan.expected, &plan.psbt, &psbt.to_string()),
            Err(PsbtImportError::TransactionMismatch { .. })
        ));
        let mut psbt = plan.psbt.clone();
        sign_all(&mut psbt, &e, BUYER);
        psbt.inputs[0].witness_script = Some(ScriptBuf::new());
        assert!(matches!(
            import_signed_psbt(&e, &plan.expected, &plan.psbt, &psbt.to_string()),
            Err(PsbtImportError::TransactionMismatch { .. })
        ));
    }

    #[test]
    fn signatures_over_the_original_do_not_cover_altered_outputs() {
        let e = escrow();
        let plan = plan(&[utxo(1, 2_000_000)]);
        let tx = sign_pair(&plan, BUYER, ARBITRATOR);
        let spent = plan.expected.spent_outputs(&e);
        verify_spends(&tx, &spent).unwrap();
        let mut more = tx.clone();
        more.output[0].value += Amount::from_sat(1);
        assert!(verify_spends(&more, &spent).is_err());
        let mut redirected = tx.clone();
        redirected.output[1].script_pubkey =
            ScriptBuf::new_p2wpkh(&key(STRANGER).wpubkey_hash().unwrap());
        assert!(verify_spends(&redirected, &spent).is_err());
        let mut added = tx.clone();
        added.output.push(TxOut {
            value: Amount::from_sat(1_000),
            script_pubkey: e.script_pubkey(),
        });
        added.output[0].value -= Amount::from_sat(1_000);
        assert!(verify_spends(&added, &spent).is_err());
    }

    #[test]
    fn malformed_base64_and_malformed_psbt_are_told_apart() {
        let e = escrow();
        let plan = plan(&[utxo(1, 2_000_000)]);
        let import = |s: &str| import_signed_psbt(&e, &plan.expected, &plan.psbt, s);
        assert_eq!(
            import("not base64 at all!"),
            Err(PsbtImportError::MalformedBase64)
        );
        assert_eq!(import("cHNidP8B$$$"), Err(PsbtImportError::MalformedBase64));
        assert!(matches!(
            import("aGVsbG8gd29ybGQ="),
            Err(PsbtImportError::MalformedPsbt(_))
        ));
        // A valid PSBT cut short.
        let bytes = plan.psbt.serialize();
        let truncated = BASE64.encode(&bytes[..bytes.len() - 5]);
        assert!(matches!(
            import(&truncated),
            Err(PsbtImportError::MalformedPsbt(_))
        ));
        assert_eq!(
            import(&plan.psbt.to_string()),
            Err(PsbtImportError::NoSignatures)
        );
    }

    #[test]
    fn a_finalized_submission_is_refused() {
        let e = escrow();
        let plan = plan(&[utxo(1, 2_000_000)]);
        let mut psbt = plan.psbt.clone();
        sign_all(&mut psbt, &e, BUYER);
        psbt.inputs[0].final_script_witness = Some(Witness::from_slice(&[vec![1u8]]));
        assert_eq!(
            import_signed_psbt(&e, &plan.expected, &plan.psbt, &psbt.to_string()),
            Err(PsbtImportError::AlreadyFinalized { input: 0 })
        );
    }

    #[test]
    fn a_tampered_stored_psbt_is_detected() {
        let e = escrow();
        let plan = plan(&[utxo(1, 2_000_000)]);
        let mut stored = plan.psbt.clone();
        stored.inputs[0].partial_sigs.insert(
            key(PROVIDER),
            raw_signature(
                &plan.expected.unsigned_tx(),
                0,
                &e,
                Amount::from_sat(1),
                PROVIDER,
            ),
        );
        let err = import_signed_psbt(
            &e,
            &plan.expected,
            &stored,
            &signed_by(&plan.psbt, &e, BUYER),
        )
        .unwrap_err();
        assert!(matches!(err, PsbtImportError::StoredPsbt(_)), "{err:?}");
    }

    #[test]
    fn a_high_s_signature_is_stored_in_its_low_s_form() {
        let e = escrow();
        let plan = plan(&[utxo(1, 2_000_000)]);
        let mut psbt = plan.psbt.clone();
        sign_all(&mut psbt, &e, BUYER);
        let sig = psbt.inputs[0].partial_sigs.get_mut(&key(BUYER)).unwrap();
        let low = sig.signature;
        sig.signature = negate_s(&low);
        assert_ne!(sig.signature, low);
        let one = import_signed_psbt(&e, &plan.expected, &plan.psbt, &psbt.to_string()).unwrap();
        assert_eq!(one.psbt.inputs[0].partial_sigs[&key(BUYER)].signature, low);
    }

    /// (r, s) -> (r, n - s): the same signature in high-S form.
    fn negate_s(
        sig: &bitcoin::secp256k1::ecdsa::Signature,
    ) -> bitcoin::secp256k1::ecdsa::Signature {
        const N: [u8; 32] = [
            0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            0xFF, 0xFE, 0xBA, 0xAE, 0xDC, 0xE6, 0xAF, 0x48, 0xA0, 0x3B, 0xBF, 0xD2, 0x5E, 0x8C,
            0xD0, 0x36, 0x41, 0x41,
        ];
        let mut compact = sig.serialize_compact();
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let d = i16::from(N[i]) - i16::from(compact[32 + i]) - borrow;
            borrow = i16::from(d < 0);
            compact[32 + i] = (d + 256 * borrow) as u8;
        }
        bitcoin::secp256k1::ecdsa::Signature::from_compact(&compact).unwrap()
    }
}
