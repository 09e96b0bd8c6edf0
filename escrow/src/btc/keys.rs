//! The marketplace's arbitrator keys: one extended private key (xprv/tprv), and one
//! hardened child per escrow at `m/7477'/0'/{index}'`.
//!
//! Why this path:
//! - `7477'` is a purpose number no BIP43 wallet standard uses (44/49/84/86/48…), so
//!   a wallet that ever imports this master key will not treat escrow keys as its
//!   own coins, and these keys never collide with a wallet's;
//! - `0'` is the key family "Bitcoin escrow arbitrator", leaving room for other
//!   families (another chain, a new escrow scheme) under the same master;
//! - `{index}'` is the escrow index the database stores next to the public key.
//!
//! Every level is hardened: with non-hardened derivation, one leaked child private
//! key plus the parent's extended public key reveals the parent private key, i.e.
//! every escrow's arbitrator key. The price is that the xpub cannot derive escrow
//! keys: public keys come from this store.
//!
//! The private key never leaves this type: no method returns it, `Debug` prints only
//! the fingerprint, and errors never quote the input string.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use bitcoin::bip32::{ChildNumber, DerivationPath, Fingerprint, Xpriv, Xpub};
use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::rand::{thread_rng, RngCore};
use bitcoin::secp256k1::{All, Secp256k1};
use bitcoin::{Network, NetworkKind, PublicKey};

use super::descriptor::EscrowDescriptor;
use super::payout::ExpectedPayout;
use super::signing::{sign_escrow_input, SignError};

/// Purpose level of the arbitrator key path (hardened).
pub const ARBITRATOR_PURPOSE: u32 = 7477;
/// Key-family level for Bitcoin escrow arbitrator keys (hardened).
pub const ARBITRATOR_FAMILY_BTC: u32 = 0;

#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error("cannot read the marketplace key file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the marketplace key is an extended public key; an xprv/tprv is required")]
    PublicKeyGiven,
    #[error("the marketplace key is not a valid extended private key (xprv/tprv)")]
    InvalidExtendedKey,
    #[error("escrow index {0} is out of range (must be below 2^31)")]
    IndexOutOfRange(u32),
    #[error("key derivation failed")]
    Derivation,
    #[error("escrow index {index} does not hold this escrow's arbitrator key")]
    NotThisEscrowsArbitrator { index: u32 },
    #[error("the PSBT does not spend the expected payout transaction")]
    UnexpectedTransaction,
    #[error(transparent)]
    Sign(#[from] SignError),
    #[error("could not generate a master key")]
    Generate,
}

/// The marketplace's extended private key, able to derive and sign with the
/// arbitrator key of every escrow.
pub struct MarketplaceKeyStore {
    master: Xpriv,
    secp: Secp256k1<All>,
}

impl MarketplaceKeyStore {
    /// Parses an xprv (mainnet) or tprv (test networks). Surrounding whitespace,
    /// such as a trailing newline from a secret file, is ignored.
    pub fn from_xprv_str(xprv: &str) -> Result<Self, KeyStoreError> {
        let text = xprv.trim();
        let master = Xpriv::from_str(text).map_err(|_| {
            if Xpub::from_str(text).is_ok() {
                KeyStoreError::PublicKeyGiven
            } else {
                KeyStoreError::InvalidExtendedKey
            }
        })?;
        Ok(Self {
            master,
            secp: Secp256k1::new(),
        })
    }

    /// Reads the extended private key from a file holding only that string.
    pub fn from_file(path: &Path) -> Result<Self, KeyStoreError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyStoreError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_xprv_str(&text)
    }

    /// Mainnet (xprv) or test networks (tprv); check it against the configured
    /// network at startup.
    pub fn network_kind(&self) -> NetworkKind {
        self.master.network
    }

    /// Identifies the master key in logs and configuration without revealing it.
    pub fn fingerprint(&self) -> Fingerprint {
        self.master.fingerprint(&self.secp)
    }

    /// `m/7477'/0'/{index}'`.
    pub fn derivation_path(index: u32) -> Result<DerivationPath, KeyStoreError> {
        let hardened = |i| {
            ChildNumber::from_hardened_idx(i).map_err(|_| KeyStoreError::IndexOutOfRange(index))
        };
        Ok(DerivationPath::from(vec![
            hardened(ARBITRATOR_PURPOSE)?,
            hardened(ARBITRATOR_FAMILY_BTC)?,
            hardened(index)?,
        ]))
    }

    /// The arbitrator public key of escrow `index` (compressed).
    pub fn arbitrator_pubkey(&self, index: u32) -> Result<PublicKey, KeyStoreError> {
        let child = self.child(index)?;
        Ok(PublicKey::new(child.private_key.public_key(&self.secp)))
    }

    /// Signs input `input_index` of `psbt` with the arbitrator key of escrow
    /// `index`, after checking that this key is the escrow's arbitrator and the
    /// input spends the escrow. Which payouts may be signed at all is the caller's
    /// policy (see DESIGN §3); prefer [`Self::sign_payout`], which also pins the
    /// whole transaction.
    pub fn sign_input(
        &self,
        index: u32,
        escrow: &EscrowDescriptor,
        psbt: &mut Psbt,
        input_index: usize,
    ) -> Result<(), KeyStoreError> {
        let mut child = self.child(index)?;
        let result = self.sign_with(&child, index, escrow, psbt, &[input_index]);
        child.private_key.non_secure_erase();
        result
    }

    /// The public key of the marketplace's fee wallet (`m/7477'/1'/0'`), where
    /// development setups receive commissions when no fee address is configured.
    pub fn fee_pubkey(&self) -> Result<PublicKey, KeyStoreError> {
        let path = DerivationPath::from(vec![
            ChildNumber::from_hardened_idx(7477).map_err(|_| KeyStoreError::Derivation)?,
            ChildNumber::from_hardened_idx(1).map_err(|_| KeyStoreError::Derivation)?,
            ChildNumber::from_hardened_idx(0).map_err(|_| KeyStoreError::Derivation)?,
        ]);
        let mut child = self
            .master
            .derive_priv(&self.secp, &path)
            .map_err(|_| KeyStoreError::Derivation)?;
        let public = PublicKey::new(child.private_key.public_key(&self.secp));
        child.private_key.non_secure_erase();
        Ok(public)
    }

    /// Signs every input of `psbt` with the arbitrator key of escrow `index`, but
    /// only if the PSBT's transaction is exactly `expected`.
    pub fn sign_payout(
        &self,
        index: u32,
        escrow: &EscrowDescriptor,
        expected: &ExpectedPayout,
        psbt: &mut Psbt,
    ) -> Result<(), KeyStoreError> {
        if psbt.unsigned_tx != expected.unsigned_tx() {
            return Err(KeyStoreError::UnexpectedTransaction);
        }
        // Sign with the amounts we expect, not whatever the PSBT claims.
        for (input, spent) in psbt.inputs.iter_mut().zip(expected.spent_outputs(escrow)) {
            input.witness_utxo = Some(spent);
        }
        let inputs: Vec<usize> = (0..psbt.inputs.len()).collect();
        let mut child = self.child(index)?;
        let result = self.sign_with(&child, index, escrow, psbt, &inputs);
        child.private_key.non_secure_erase();
        result
    }

    fn sign_with(
        &self,
        child: &Xpriv,
        index: u32,
        escrow: &EscrowDescriptor,
        psbt: &mut Psbt,
        inputs: &[usize],
    ) -> Result<(), KeyStoreError> {
        let public = PublicKey::new(child.private_key.public_key(&self.secp));
        if public != escrow.keys().arbitrator() {
            return Err(KeyStoreError::NotThisEscrowsArbitrator { index });
        }
        for &input in inputs {
            sign_escrow_input(&self.secp, psbt, input, escrow, &child.private_key)?;
        }
        Ok(())
    }

    fn child(&self, index: u32) -> Result<Xpriv, KeyStoreError> {
        let path = Self::derivation_path(index)?;
        self.master
            .derive_priv(&self.secp, &path)
            .map_err(|_| KeyStoreError::Derivation)
    }
}

impl fmt::Debug for MarketplaceKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MarketplaceKeyStore")
            .field("fingerprint", &self.fingerprint())
            .field("network", &self.master.network)
            .field("xprv", &"<redacted>")
            .finish()
    }
}

impl Drop for MarketplaceKeyStore {
    fn drop(&mut self) {
        // Best effort: the compiler may have left copies elsewhere.
        self.master.private_key.non_secure_erase();
    }
}

/// Generates a new marketplace master key from 32 bytes of OS randomness, for
/// `agora keys generate`. Returns `(xprv, xpub)`: `xprv`/`tprv` goes into the
/// secret store, the `xpub`/`tpub` identifies the key (it cannot derive the
/// hardened escrow keys).
pub fn generate_master(network: Network) -> Result<(String, String), KeyStoreError> {
    let mut seed = [0u8; 32];
    thread_rng().fill_bytes(&mut seed);
    let master = Xpriv::new_master(network, &seed).map_err(|_| KeyStoreError::Generate);
    seed.fill(0);
    let mut master = master?;
    let xpub = Xpub::from_priv(&Secp256k1::signing_only(), &master);
    let pair = (master.to_string(), xpub.to_string());
    master.private_key.non_secure_erase();
    Ok(pair)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btc::descriptor::EscrowKeys;
    use crate::btc::test_keys::{key, BUYER, BUYER_REFUND, PROVIDER};

    // BIP32 test vector 1 master key.
    const TV1_XPRV: &str = "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHi";

    fn store() -> MarketplaceKeyStore {
        MarketplaceKeyStore::from_xprv_str(TV1_XPRV).unwrap()
    }

    #[test]
    fn arbitrator_keys_follow_the_documented_hardened_path() {
        let s = store();
        let path = DerivationPath::from_str("m/7477h/0h/5h").unwrap();
        assert_eq!(MarketplaceKeyStore::derivation_path(5).unwrap(), path);
        let secp = Secp256k1::new();
        let master = Xpriv::from_str(TV1_XPRV).unwrap();
        let expected = master
            .derive_priv(&secp, &path)
            .unwrap()
            .to_priv()
            .public_key(&secp);
        assert_eq!(s.arbitrator_pubkey(5).unwrap(), expected);
        assert!(expected.compressed);
        assert_ne!(
            s.arbitrator_pubkey(5).unwrap(),
            s.arbitrator_pubkey(6).unwrap()
        );
        assert!(matches!(
            s.arbitrator_pubkey(1 << 31),
            Err(KeyStoreError::IndexOutOfRange(_))
        ));
    }

    #[test]
    fn debug_output_and_errors_never_show_the_key() {
        let s = store();
        let debug = format!("{s:?}");
        assert!(debug.contains("redacted"));
        assert!(!debug.contains("xprv9s21"));
        let bad = format!("{}x", &TV1_XPRV[..TV1_XPRV.len() - 1]);
        let err = MarketplaceKeyStore::from_xprv_str(&bad).unwrap_err();
        assert!(matches!(err, KeyStoreError::InvalidExtendedKey));
        assert!(!err.to_string().contains("xprv9s21"));
        assert!(!format!("{err:?}").contains("xprv9s21"));
    }

    #[test]
    fn an_xpub_is_refused_with_a_helpful_error() {
        let (_, xpub) = generate_master(Network::Regtest).unwrap();
        assert!(matches!(
            MarketplaceKeyStore::from_xprv_str(&xpub),
            Err(KeyStoreError::PublicKeyGiven)
        ));
    }

    #[test]
    fn generated_master_keys_load_and_match_their_xpub() {
        let (xprv, xpub) = generate_master(Network::Testnet).unwrap();
        assert!(xprv.starts_with("tprv") && xpub.starts_with("tpub"));
        let s = MarketplaceKeyStore::from_xprv_str(&xprv).unwrap();
        assert_eq!(s.network_kind(), NetworkKind::Test);
        assert_eq!(
            Xpub::from_str(&xpub).unwrap().fingerprint(),
            s.fingerprint()
        );
        let (main, _) = generate_master(Network::Bitcoin).unwrap();
        assert!(main.starts_with("xprv"));
        assert_ne!(generate_master(Network::Bitcoin).unwrap().0, main);
    }

    #[test]
    fn loads_from_a_file_with_a_trailing_newline() {
        let path = std::env::temp_dir().join(format!("agora-xprv-test-{}", std::process::id()));
        std::fs::write(&path, format!("{TV1_XPRV}\n")).unwrap();
        let s = MarketplaceKeyStore::from_file(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(s.fingerprint(), store().fingerprint());
        assert!(matches!(
            MarketplaceKeyStore::from_file(Path::new("/nonexistent/agora/xprv")),
            Err(KeyStoreError::Io { .. })
        ));
    }

    #[test]
    fn refuses_to_sign_for_an_escrow_whose_arbitrator_is_another_index() {
        let s = store();
        let keys = EscrowKeys::new(
            key(BUYER),
            key(BUYER_REFUND),
            key(PROVIDER),
            s.arbitrator_pubkey(7).unwrap(),
            144,
        )
        .unwrap();
        let escrow = EscrowDescriptor::new(keys).unwrap();
        let (expected, mut psbt) = crate::btc::payout::tests::release_psbt(&escrow);
        assert!(matches!(
            s.sign_payout(8, &escrow, &expected, &mut psbt),
            Err(KeyStoreError::NotThisEscrowsArbitrator { index: 8 })
        ));
        s.sign_payout(7, &escrow, &expected, &mut psbt).unwrap();
        assert!(psbt.inputs[0].partial_sigs.contains_key(&keys.arbitrator()));
        // A different transaction is never signed.
        let mut other = psbt.clone();
        other.unsigned_tx.output[0].value = bitcoin::Amount::from_sat(1);
        assert!(matches!(
            s.sign_payout(7, &escrow, &expected, &mut other),
            Err(KeyStoreError::UnexpectedTransaction)
        ));
    }
}
