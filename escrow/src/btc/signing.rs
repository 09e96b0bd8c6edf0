//! Signing one escrow input of a PSBT with one key: ECDSA over the BIP143 sighash,
//! `SIGHASH_ALL` only, low-R (71-byte DER at most, the size fee estimates assume).
//!
//! The marketplace's key store signs through here; tests and development tools
//! use it to stand in for the buyer's and provider's wallets.

use bitcoin::ecdsa;
use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::{Message, Secp256k1, SecretKey, Signing};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::{Amount, PublicKey, Script, Transaction};

use super::descriptor::EscrowDescriptor;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("the PSBT has no input {0}")]
    NoSuchInput(usize),
    #[error("input {0} has no witness UTXO, so its amount cannot be signed")]
    MissingWitnessUtxo(usize),
    #[error("input {0} does not spend this escrow's script")]
    NotThisEscrow(usize),
    #[error("input {0} carries a witness script that is not this escrow's")]
    WitnessScriptMismatch(usize),
    #[error("the signing key is not one of this escrow's keys")]
    KeyNotInEscrow,
    #[error("input {input}: cannot compute the sighash: {reason}")]
    Sighash { input: usize, reason: String },
}

/// Signs input `input_index` of `psbt`, which must spend `escrow`'s output, with
/// `secret` (one of the escrow's four keys), and records the partial signature.
/// Returns the public key that signed.
pub fn sign_escrow_input<C: Signing>(
    secp: &Secp256k1<C>,
    psbt: &mut Psbt,
    input_index: usize,
    escrow: &EscrowDescriptor,
    secret: &SecretKey,
) -> Result<PublicKey, SignError> {
    let public = PublicKey::new(secret.public_key(secp));
    let keys = escrow.keys();
    if keys.party_of(&public).is_none() && public != keys.buyer_refund() {
        return Err(SignError::KeyNotInEscrow);
    }
    let input = psbt
        .inputs
        .get(input_index)
        .ok_or(SignError::NoSuchInput(input_index))?;
    let prevout = input
        .witness_utxo
        .as_ref()
        .ok_or(SignError::MissingWitnessUtxo(input_index))?;
    if prevout.script_pubkey != escrow.script_pubkey() {
        return Err(SignError::NotThisEscrow(input_index));
    }
    if let Some(script) = &input.witness_script {
        if script != escrow.witness_script() {
            return Err(SignError::WitnessScriptMismatch(input_index));
        }
    }
    let message = sighash_all(
        &psbt.unsigned_tx,
        input_index,
        escrow.witness_script(),
        prevout.value,
    )?;
    let signature = ecdsa::Signature::sighash_all(secp.sign_ecdsa_low_r(&message, secret));
    let input = psbt
        .inputs
        .get_mut(input_index)
        .ok_or(SignError::NoSuchInput(input_index))?;
    input.witness_script = Some(escrow.witness_script().clone());
    input.partial_sigs.insert(public, signature);
    Ok(public)
}

/// The BIP143 `SIGHASH_ALL` message of input `input_index` spending a P2WSH
/// output of `value` locked by `witness_script`.
pub(crate) fn sighash_all(
    tx: &Transaction,
    input_index: usize,
    witness_script: &Script,
    value: Amount,
) -> Result<Message, SignError> {
    let sighash = SighashCache::new(tx)
        .p2wsh_signature_hash(input_index, witness_script, value, EcdsaSighashType::All)
        .map_err(|e| SignError::Sighash {
            input: input_index,
            reason: e.to_string(),
        })?;
    Ok(Message::from(sighash))
}
