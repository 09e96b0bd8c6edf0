//! Validation of the escrow public keys users register.
//!
//! A key is checked once, when it is registered, so that an order can never be
//! placed against a key that no wallet could sign with.

use std::str::FromStr;

use bitcoin::bip32::Xpub;
use bitcoin::secp256k1::PublicKey as SecpPublicKey;

/// What kind of Bitcoin key a user registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitcoinKeyKind {
    /// A compressed secp256k1 public key (33 bytes, hex).
    CompressedPublicKey,
    /// A BIP32 extended public key (xpub on mainnet, tpub on test networks).
    ExtendedPublicKey,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("a compressed public key is 66 hexadecimal characters starting with 02 or 03")]
    NotCompressed,
    #[error("not a valid point on secp256k1")]
    InvalidPoint,
    #[error("not a valid extended public key: {0}")]
    InvalidXpub(String),
    #[error("an XRPL public key is 66 hexadecimal characters: 02/03 + 32 bytes (secp256k1) or ED + 32 bytes (Ed25519)")]
    InvalidXrplPublicKey,
    #[error("not a valid classic XRPL address")]
    InvalidXrplAddress,
    #[error("the address {address} does not belong to this public key (it derives {derived})")]
    AddressMismatch { address: String, derived: String },
}

/// A validated Bitcoin escrow key in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BitcoinKey {
    pub kind: BitcoinKeyKind,
    /// Lower-case hex for public keys; the base58 string for extended keys.
    pub canonical: String,
}

/// Accepts a compressed secp256k1 public key in hex, or an xpub/tpub.
pub fn parse_bitcoin_key(input: &str) -> Result<BitcoinKey, KeyError> {
    let input = input.trim();
    if input.starts_with("xpub") || input.starts_with("tpub") {
        let xpub = Xpub::from_str(input).map_err(|e| KeyError::InvalidXpub(e.to_string()))?;
        return Ok(BitcoinKey {
            kind: BitcoinKeyKind::ExtendedPublicKey,
            canonical: xpub.to_string(),
        });
    }
    let bytes = hex::decode(input).map_err(|_| KeyError::NotCompressed)?;
    if bytes.len() != 33 || !(bytes[0] == 0x02 || bytes[0] == 0x03) {
        return Err(KeyError::NotCompressed);
    }
    let key = SecpPublicKey::from_slice(&bytes).map_err(|_| KeyError::InvalidPoint)?;
    Ok(BitcoinKey {
        kind: BitcoinKeyKind::CompressedPublicKey,
        canonical: hex::encode(key.serialize()),
    })
}

/// The public key at `branch/index` (both unhardened) below a registered xpub:
/// buyers and providers who register an xpub get a fresh key per escrow.
pub fn derive_from_xpub(xpub: &str, branch: u32, index: u32) -> Result<bitcoin::PublicKey, KeyError> {
    use bitcoin::bip32::ChildNumber;
    let xpub = Xpub::from_str(xpub.trim()).map_err(|e| KeyError::InvalidXpub(e.to_string()))?;
    let path = [
        ChildNumber::from_normal_idx(branch).map_err(|e| KeyError::InvalidXpub(e.to_string()))?,
        ChildNumber::from_normal_idx(index).map_err(|e| KeyError::InvalidXpub(e.to_string()))?,
    ];
    let secp = bitcoin::secp256k1::Secp256k1::verification_only();
    let child = xpub
        .derive_pub(&secp, &path)
        .map_err(|e| KeyError::InvalidXpub(e.to_string()))?;
    Ok(bitcoin::PublicKey::new(child.public_key))
}

/// A compressed public key from its hex form.
pub fn bitcoin_public_key(hex_key: &str) -> Result<bitcoin::PublicKey, KeyError> {
    let canonical = parse_bitcoin_key(hex_key)?;
    if canonical.kind != BitcoinKeyKind::CompressedPublicKey {
        return Err(KeyError::NotCompressed);
    }
    bitcoin::PublicKey::from_str(&canonical.canonical).map_err(|_| KeyError::InvalidPoint)
}

/// A validated XRPL signing key and the classic address it controls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XrplKey {
    /// Upper-case hex, as XRPL tools print it.
    pub public_key: String,
    pub classic_address: String,
}

/// Checks that `public_key` is a valid secp256k1 or Ed25519 XRPL public key and
/// that `address` is the classic address derived from it.
pub fn parse_xrpl_key(public_key: &str, address: &str) -> Result<XrplKey, KeyError> {
    let bytes = hex::decode(public_key.trim()).map_err(|_| KeyError::InvalidXrplPublicKey)?;
    if bytes.len() != 33 {
        return Err(KeyError::InvalidXrplPublicKey);
    }
    match bytes[0] {
        0x02 | 0x03 => {
            SecpPublicKey::from_slice(&bytes).map_err(|_| KeyError::InvalidPoint)?;
        }
        0xED => {
            let mut raw = [0u8; 32];
            raw.copy_from_slice(&bytes[1..]);
            ed25519_dalek::VerifyingKey::from_bytes(&raw).map_err(|_| KeyError::InvalidPoint)?;
        }
        _ => return Err(KeyError::InvalidXrplPublicKey),
    }
    let address = address.trim();
    if !xrpl::core::addresscodec::is_valid_classic_address(address) {
        return Err(KeyError::InvalidXrplAddress);
    }
    let public_key = hex::encode_upper(&bytes);
    let derived = xrpl::core::keypairs::derive_classic_address(&public_key)
        .map_err(|_| KeyError::InvalidXrplPublicKey)?;
    if derived != address {
        return Err(KeyError::AddressMismatch {
            address: address.to_owned(),
            derived,
        });
    }
    Ok(XrplKey {
        public_key,
        classic_address: derived,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The generator point G, a valid compressed key.
    const G: &str = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";

    #[test]
    fn accepts_compressed_keys_and_xpubs() {
        let k = parse_bitcoin_key(&G.to_uppercase()).unwrap();
        assert_eq!(k.kind, BitcoinKeyKind::CompressedPublicKey);
        assert_eq!(k.canonical, G);
        let xpub = "xpub661MyMwAqRbcFtXgS5sYJABqqG9YLmC4Q1Rdap9gSE8NqtwybGhePY2gZ29ESFjqJoCu1Rupje8YtGqsefD265TMg7usUDFdp6W1EGMcet8";
        assert_eq!(parse_bitcoin_key(xpub).unwrap().kind, BitcoinKeyKind::ExtendedPublicKey);
    }

    #[test]
    fn rejects_uncompressed_invalid_and_garbage_bitcoin_keys() {
        assert_eq!(parse_bitcoin_key("zz"), Err(KeyError::NotCompressed));
        let uncompressed = format!("04{}", "11".repeat(64));
        assert_eq!(parse_bitcoin_key(&uncompressed), Err(KeyError::NotCompressed));
        // x = 5 is not on the curve.
        let off_curve = format!("02{}05", "00".repeat(31));
        assert_eq!(parse_bitcoin_key(&off_curve), Err(KeyError::InvalidPoint));
        assert!(matches!(parse_bitcoin_key("xpub123"), Err(KeyError::InvalidXpub(_))));
    }

    #[test]
    fn xpub_children_are_distinct_per_branch_and_index() {
        let xpub = "xpub661MyMwAqRbcFtXgS5sYJABqqG9YLmC4Q1Rdap9gSE8NqtwybGhePY2gZ29ESFjqJoCu1Rupje8YtGqsefD265TMg7usUDFdp6W1EGMcet8";
        let a = derive_from_xpub(xpub, 0, 7).unwrap();
        assert_ne!(a, derive_from_xpub(xpub, 1, 7).unwrap());
        assert_ne!(a, derive_from_xpub(xpub, 0, 8).unwrap());
        assert_eq!(a, derive_from_xpub(xpub, 0, 7).unwrap());
        assert!(derive_from_xpub(xpub, 1 << 31, 0).is_err());
    }

    #[test]
    fn xrpl_address_must_derive_from_the_key() {
        // Test vector from the XRPL documentation (secp256k1).
        let pk = "0330E7FC9D56BB25D6893BA3F317AE5BCF33B3291BD63DB32654A313222F7FD020";
        let addr = "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh";
        let k = parse_xrpl_key(&pk.to_lowercase(), addr).unwrap();
        assert_eq!(k.public_key, pk);
        assert!(matches!(
            parse_xrpl_key(pk, "rf1BiGeXwwQoi8Z2ueFYTEXSwuJYfV2Jpn"),
            Err(KeyError::AddressMismatch { .. })
        ));
        assert_eq!(parse_xrpl_key(pk, "not-an-address"), Err(KeyError::InvalidXrplAddress));
        assert_eq!(parse_xrpl_key("ABCD", addr), Err(KeyError::InvalidXrplPublicKey));
        let wrong_prefix = format!("04{}", &pk[2..]);
        assert_eq!(parse_xrpl_key(&wrong_prefix, addr), Err(KeyError::InvalidXrplPublicKey));
    }
}
