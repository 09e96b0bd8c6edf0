//! A minimal Bitcoin wallet for tests: keys held only by the test, which sign
//! escrow payout PSBTs the way a user's wallet would (importing the order's
//! descriptor, signing every input, returning the PSBT unfinalized).

use std::str::FromStr;

use agora_escrow::btc::{sign_escrow_input, EscrowDescriptor, EscrowKeys};
use bitcoin::base64::engine::general_purpose::STANDARD as BASE64;
use bitcoin::base64::Engine;
use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use bitcoin::{PublicKey, Transaction, TxOut};
use serde_json::Value;

pub struct Wallet {
    secret: SecretKey,
}

impl Wallet {
    /// A wallet whose key is derived from `seed` (tests stay reproducible).
    pub fn from_seed(seed: u8) -> Wallet {
        let mut bytes = [seed; 32];
        bytes[0] = 0x42;
        Wallet {
            secret: SecretKey::from_slice(&bytes).expect("valid secret"),
        }
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey::new(self.secret.public_key(&Secp256k1::new()))
    }

    pub fn public_hex(&self) -> String {
        self.public_key().to_string()
    }

    /// Signs every input of `psbt_b64` for the escrow described by `escrow`
    /// (the order's `bitcoinEscrow` object from the API).
    pub fn sign(&self, escrow: &Value, psbt_b64: &str) -> String {
        let descriptor = descriptor_of(escrow);
        let mut psbt = Psbt::deserialize(&BASE64.decode(psbt_b64).expect("base64")).expect("psbt");
        let secp = Secp256k1::new();
        for i in 0..psbt.inputs.len() {
            sign_escrow_input(&secp, &mut psbt, i, &descriptor, &self.secret).expect("sign");
        }
        BASE64.encode(psbt.serialize())
    }
}

/// The escrow descriptor a wallet imports from the order's public fields.
pub fn descriptor_of(escrow: &Value) -> EscrowDescriptor {
    let key = |f: &str| PublicKey::from_str(escrow[f].as_str().expect("key field")).expect("key");
    let keys = EscrowKeys::new(
        key("buyerPublicKey"),
        key("buyerRefundPublicKey"),
        key("providerPublicKey"),
        key("arbitratorPublicKey"),
        u16::try_from(escrow["timelockBlocks"].as_i64().expect("timelock")).expect("u16"),
    )
    .expect("escrow keys");
    EscrowDescriptor::from_stored(keys, escrow["descriptor"].as_str().expect("descriptor")).expect("descriptor")
}

/// Decodes a hex transaction.
pub fn transaction(hex_tx: &str) -> Transaction {
    bitcoin::consensus::encode::deserialize_hex(hex_tx).expect("transaction hex")
}

/// The outputs `tx` spends, for `bitcoinconsensus`: every input spends the escrow.
pub fn spent_outputs(escrow: &Value, tx: &Transaction, values: &[u64]) -> Vec<TxOut> {
    let script = descriptor_of(escrow).script_pubkey();
    tx.input
        .iter()
        .zip(values)
        .map(|(_, v)| TxOut {
            value: bitcoin::Amount::from_sat(*v),
            script_pubkey: script.clone(),
        })
        .collect()
}

impl Wallet {
    /// A wallet holding `secret`, e.g. a child key derived from a test seed.
    pub fn from_secret(secret: SecretKey) -> Wallet {
        Wallet { secret }
    }

    /// Signs every input of `psbt_b64` (ECDSA over the BIP143 `SIGHASH_ALL`
    /// message) whether or not this key belongs to the escrow, as a confused or
    /// hostile wallet would; [`Wallet::sign`] refuses keys the escrow lacks.
    pub fn sign_regardless(&self, escrow: &Value, psbt_b64: &str) -> String {
        use bitcoin::secp256k1::Message;
        use bitcoin::sighash::{EcdsaSighashType, SighashCache};

        let descriptor = descriptor_of(escrow);
        let mut psbt = Psbt::deserialize(&BASE64.decode(psbt_b64).expect("base64")).expect("psbt");
        let secp = Secp256k1::new();
        for i in 0..psbt.inputs.len() {
            let value = psbt.inputs[i].witness_utxo.as_ref().expect("witness UTXO").value;
            let sighash = SighashCache::new(&psbt.unsigned_tx)
                .p2wsh_signature_hash(i, descriptor.witness_script(), value, EcdsaSighashType::All)
                .expect("sighash");
            let signature = secp.sign_ecdsa_low_r(&Message::from(sighash), &self.secret);
            psbt.inputs[i]
                .partial_sigs
                .insert(self.public_key(), bitcoin::ecdsa::Signature::sighash_all(signature));
        }
        BASE64.encode(psbt.serialize())
    }
}

impl Wallet {
    /// The wallet's secret key (tests sign refund-path spends with it).
    pub fn secret(&self) -> SecretKey {
        self.secret
    }

    /// A regtest P2WPKH address of the wallet's key.
    pub fn address(&self) -> bitcoin::Address {
        let key = bitcoin::CompressedPublicKey::try_from(self.public_key()).expect("compressed key");
        bitcoin::Address::p2wpkh(&key, bitcoin::Network::Regtest)
    }
}
