//! The last check before any escrow spend leaves this crate: every input is run
//! through Bitcoin Core's script interpreter (`bitcoinconsensus`) with the
//! amount and script of the output it spends.

use bitcoin::consensus::encode;
use bitcoin::{Transaction, TxOut};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsensusError {
    #[error("the transaction has {inputs} inputs but {spent} spent outputs were given")]
    SpentOutputCount { inputs: usize, spent: usize },
    #[error("input {input} fails script verification: {reason}")]
    Script { input: usize, reason: String },
}

/// Verifies every input of `tx` against `spent[i]`, the output input `i` spends,
/// with all the consensus flags libbitcoinconsensus knows (P2SH, DERSIG,
/// NULLDUMMY, CLTV, CSV, WITNESS).
pub fn verify_spends(tx: &Transaction, spent: &[TxOut]) -> Result<(), ConsensusError> {
    if tx.input.len() != spent.len() {
        return Err(ConsensusError::SpentOutputCount {
            inputs: tx.input.len(),
            spent: spent.len(),
        });
    }
    let serialized = encode::serialize(tx);
    for (input, prevout) in spent.iter().enumerate() {
        prevout
            .script_pubkey
            .verify(input, prevout.value, &serialized)
            .map_err(|e| ConsensusError::Script {
                input,
                reason: format!("{e:?}"),
            })?;
    }
    Ok(())
}
