//! Deterministic keys and signing helpers shared by this module's unit tests.

use bitcoin::secp256k1::{Secp256k1, SecretKey};
use bitcoin::PublicKey;

use super::descriptor::{EscrowDescriptor, EscrowKeys};

/// Refund timelock of the test escrow, in blocks.
pub const TIMELOCK: u16 = 144;

/// Secret scalars of the test escrow: buyer, buyer refund, provider, arbitrator.
pub const BUYER: u8 = 1;
pub const BUYER_REFUND: u8 = 2;
pub const PROVIDER: u8 = 3;
pub const ARBITRATOR: u8 = 4;
/// A key that belongs to nobody in the escrow.
pub const STRANGER: u8 = 9;

/// The descriptor `EscrowDescriptor::new(escrow_keys())` gives with miniscript 12.3.8.
pub const GOLDEN_DESCRIPTOR: &str = "wsh(or_d(multi(2,031b84c5567b126440995d3ed5aaba0565d71e1834604819ff9c17f5e9d5dd078f,02531fe6068134503d2723133227c867ac8fa6c83c537e9a44c3c5bdbdcb1fe337,03462779ad4aad39514614751a71085f2f10e1c7a593e4e030efb5b8721ce55b0b),and_v(v:pkh(024d4b6cd1361032ca9bd2aeb9d900aa4d45d9ead80ac9423374c451a7254d0766),older(144))))#vtht5c6n";

/// The secret key whose 32 bytes are all `n` (valid for 1..=255).
pub fn secret(n: u8) -> SecretKey {
    SecretKey::from_slice(&[n; 32]).unwrap()
}

pub fn key(n: u8) -> PublicKey {
    PublicKey::new(secret(n).public_key(&Secp256k1::signing_only()))
}

pub fn escrow_keys() -> EscrowKeys {
    EscrowKeys::new(
        key(BUYER),
        key(BUYER_REFUND),
        key(PROVIDER),
        key(ARBITRATOR),
        TIMELOCK,
    )
    .unwrap()
}

pub fn escrow() -> EscrowDescriptor {
    EscrowDescriptor::new(escrow_keys()).unwrap()
}

/// Signs every input of `psbt` with the test key `n`, like a party's wallet would.
pub fn sign_all(psbt: &mut bitcoin::psbt::Psbt, escrow: &EscrowDescriptor, n: u8) {
    let secp = Secp256k1::new();
    for input in 0..psbt.inputs.len() {
        super::signing::sign_escrow_input(&secp, psbt, input, escrow, &secret(n)).unwrap();
    }
}

/// `psbt` after one party signed it, as the base64 string it would submit.
pub fn signed_by(psbt: &bitcoin::psbt::Psbt, escrow: &EscrowDescriptor, n: u8) -> String {
    let mut psbt = psbt.clone();
    sign_all(&mut psbt, escrow, n);
    psbt.to_string()
}

/// A SIGHASH_ALL signature by any secret `n` over input `input` of `tx`, spending
/// an escrow output of `value`: the raw material for hand-built witnesses.
pub fn raw_signature(
    tx: &bitcoin::Transaction,
    input: usize,
    escrow: &EscrowDescriptor,
    value: bitcoin::Amount,
    n: u8,
) -> bitcoin::ecdsa::Signature {
    let message = super::signing::sighash_all(tx, input, escrow.witness_script(), value).unwrap();
    bitcoin::ecdsa::Signature::sighash_all(Secp256k1::new().sign_ecdsa_low_r(&message, &secret(n)))
}
