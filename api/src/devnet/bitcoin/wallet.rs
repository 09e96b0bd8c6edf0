//! The devnet's own wallet: one P2WPKH key that receives the block rewards and
//! pays the faucet. A fresh random key per devnet; it never leaves the process.

use bitcoin::absolute::LockTime;
use bitcoin::secp256k1::{rand, All, Message, Secp256k1, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::transaction::Version;
use bitcoin::{
    ecdsa, Address, Amount, CompressedPublicKey, Network, OutPoint, ScriptBuf, Sequence,
    Transaction, TxIn, TxOut, Witness,
};

/// A low-R ECDSA signature with its sighash byte is at most this long.
const MAX_SIGNATURE_LEN: usize = 72;

pub(crate) struct DevnetWallet {
    secp: Secp256k1<All>,
    secret: SecretKey,
    public: CompressedPublicKey,
    script: ScriptBuf,
}

impl DevnetWallet {
    pub(crate) fn random() -> Self {
        let secp = Secp256k1::new();
        let secret = SecretKey::new(&mut rand::thread_rng());
        let public = CompressedPublicKey(secret.public_key(&secp));
        let script = ScriptBuf::new_p2wpkh(&public.wpubkey_hash());
        Self {
            secp,
            secret,
            public,
            script,
        }
    }

    pub(crate) fn script_pubkey(&self) -> &ScriptBuf {
        &self.script
    }

    pub(crate) fn address(&self) -> Address {
        Address::p2wpkh(&self.public, Network::Regtest)
    }

    /// An unsigned payment spending `coins` (all the wallet's), paying `outputs`,
    /// RBF-signalling like Core's wallet.
    pub(crate) fn unsigned(coins: &[(OutPoint, TxOut)], outputs: Vec<TxOut>) -> Transaction {
        Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: coins
                .iter()
                .map(|(outpoint, _)| TxIn {
                    previous_output: *outpoint,
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                    witness: Witness::new(),
                })
                .collect(),
            output: outputs,
        }
    }

    /// The virtual size `tx` will have once every input carries a P2WPKH witness
    /// of the largest size this wallet produces.
    pub(crate) fn signed_vsize(&self, tx: &Transaction) -> u64 {
        let mut sized = tx.clone();
        for input in &mut sized.input {
            input.witness = Witness::from_slice(&[
                vec![0u8; MAX_SIGNATURE_LEN],
                self.public.to_bytes().to_vec(),
            ]);
        }
        sized.vsize() as u64
    }

    /// Signs every input of `tx`; `coins[i]` is the output input `i` spends.
    pub(crate) fn sign(
        &self,
        tx: &mut Transaction,
        coins: &[(OutPoint, TxOut)],
    ) -> Result<(), String> {
        let unsigned = tx.clone();
        let mut cache = SighashCache::new(&unsigned);
        for (index, (input, (_, spent))) in tx.input.iter_mut().zip(coins).enumerate() {
            let sighash = cache
                .p2wpkh_signature_hash(index, &self.script, spent.value, EcdsaSighashType::All)
                .map_err(|e| e.to_string())?;
            let signature = self
                .secp
                .sign_ecdsa_low_r(&Message::from(sighash), &self.secret);
            input.witness =
                Witness::p2wpkh(&ecdsa::Signature::sighash_all(signature), &self.public.0);
        }
        Ok(())
    }
}

/// The fee of `vsize` at `sat_per_vb`.
pub(crate) fn fee_at(sat_per_vb: u64, vsize: u64) -> Amount {
    Amount::from_sat(sat_per_vb.saturating_mul(vsize))
}
