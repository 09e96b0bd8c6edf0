//! A Bitcoin escrow payout end to end through the public API: the marketplace's
//! key store as arbitrator, the provider's wallet stood in by a fixed key, every
//! finished transaction checked by `bitcoinconsensus`, and the same PSBT
//! finalized independently by BDK (`bdkpython`) when it is installed.

use std::path::PathBuf;
use std::process::Command;
use std::str::FromStr;

use agora_domain::escrow::payout::PayoutTerms;
use agora_domain::money::BasisPoints;
use agora_escrow::btc::{
    build_payout, import_signed_psbt, sign_escrow_input, verify_spends, EscrowDescriptor,
    EscrowKeys, EscrowParty, FundingUtxo, MarketplaceKeyStore, PayoutAddresses, PayoutPlan,
    PsbtImportError,
};
use bitcoin::consensus::encode::serialize_hex;
use bitcoin::hashes::Hash;
use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use bitcoin::{Address, Amount, Network, OutPoint, PublicKey, Transaction, Txid};

/// A fixed test master key (tprv: regtest), never used for real funds.
const MARKETPLACE_XPRV: &str = "tprv8ZgxMBicQKsPeDgjzdC36fs6bMjGApWDNLR9erAXMs5skhMv36j9MV5ecvfavji5khqjWaWSFhN3YcCUUdiKH6isR4Pwy3U5y5egddBr16m";
const ESCROW_INDEX: u32 = 42;

fn secret(n: u8) -> SecretKey {
    SecretKey::from_slice(&[n; 32]).unwrap()
}

fn public(n: u8) -> PublicKey {
    PublicKey::new(secret(n).public_key(&Secp256k1::new()))
}

const BUYER: u8 = 0x11;
const BUYER_REFUND: u8 = 0x12;
const PROVIDER: u8 = 0x13;

struct Fixture {
    store: MarketplaceKeyStore,
    escrow: EscrowDescriptor,
    plan: PayoutPlan,
}

fn fixture() -> Fixture {
    let store = MarketplaceKeyStore::from_xprv_str(MARKETPLACE_XPRV).unwrap();
    let keys = EscrowKeys::new(
        public(BUYER),
        public(BUYER_REFUND),
        public(PROVIDER),
        store.arbitrator_pubkey(ESCROW_INDEX).unwrap(),
        1_008,
    )
    .unwrap();
    let escrow = EscrowDescriptor::new(keys).unwrap();
    assert!(escrow
        .address(Network::Regtest)
        .to_string()
        .starts_with("bcrt1q"));
    let regtest = |s: &str| {
        Address::from_str(s)
            .unwrap()
            .require_network(Network::Regtest)
            .unwrap()
    };
    let to = PayoutAddresses {
        provider: regtest("bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"),
        buyer: regtest("bcrt1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqc8gma6"),
        marketplace: regtest("bcrt1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qzf4jry"),
    };
    let funding = [
        FundingUtxo {
            outpoint: OutPoint {
                txid: Txid::from_byte_array([0xAA; 32]),
                vout: 0,
            },
            value: Amount::from_sat(1_500_000),
        },
        FundingUtxo {
            outpoint: OutPoint {
                txid: Txid::from_byte_array([0xBB; 32]),
                vout: 3,
            },
            value: Amount::from_sat(250_000),
        },
    ];
    // A dispute decided 70/30 for the provider, 2.5 % commission, 10 000 sats fee.
    let terms = PayoutTerms {
        provider_bps: BasisPoints::new(7_000).unwrap(),
        commission_bps: BasisPoints::new(250).unwrap(),
        arbitration_fee: 10_000,
    };
    let plan = build_payout(&escrow, &funding, &to, &terms, 12).unwrap();
    Fixture {
        store,
        escrow,
        plan,
    }
}

/// The provider's wallet: signs every input of its copy of the PSBT.
fn provider_signs(f: &Fixture) -> String {
    let mut psbt = f.plan.psbt.clone();
    for input in 0..psbt.inputs.len() {
        sign_escrow_input(
            &Secp256k1::new(),
            &mut psbt,
            input,
            &f.escrow,
            &secret(PROVIDER),
        )
        .unwrap();
    }
    psbt.to_string()
}

/// Provider signs first, then the marketplace's arbitrator key: returns the merged
/// PSBT before finalization and the final transaction.
fn settle(f: &Fixture) -> (Psbt, Transaction) {
    let after_provider = import_signed_psbt(
        &f.escrow,
        &f.plan.expected,
        &f.plan.psbt,
        &provider_signs(f),
    )
    .unwrap();
    assert!(after_provider.final_tx.is_none());

    let mut arbitrator = f.plan.psbt.clone();
    f.store
        .sign_payout(ESCROW_INDEX, &f.escrow, &f.plan.expected, &mut arbitrator)
        .unwrap();
    let done = import_signed_psbt(
        &f.escrow,
        &f.plan.expected,
        &after_provider.psbt,
        &arbitrator.to_string(),
    )
    .unwrap();
    for signed in &done.signers {
        assert_eq!(
            signed.iter().copied().collect::<Vec<_>>(),
            vec![EscrowParty::Provider, EscrowParty::Arbitrator]
        );
    }
    (
        done.psbt,
        done.final_tx
            .expect("provider + arbitrator complete the payout"),
    )
}

#[test]
fn a_disputed_split_is_settled_by_provider_and_marketplace_arbitrator() {
    let f = fixture();
    let (_, tx) = settle(&f);
    verify_spends(&tx, &f.plan.expected.spent_outputs(&f.escrow)).unwrap();
    assert_eq!(tx.input.len(), 2);
    assert_eq!(tx.output.len(), 3);
    let paid: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
    assert_eq!(paid + f.plan.fee.to_sat(), 1_750_000);
    assert!(f.plan.fee.to_sat() >= 12 * tx.vsize() as u64);
    assert!(f.plan.estimated_vsize - tx.vsize() as u64 <= 3);
}

#[test]
fn the_arbitrator_key_of_another_escrow_index_cannot_sign() {
    let f = fixture();
    let mut psbt = f.plan.psbt.clone();
    assert!(f
        .store
        .sign_payout(ESCROW_INDEX + 1, &f.escrow, &f.plan.expected, &mut psbt)
        .is_err());
    assert!(f
        .store
        .sign_input(ESCROW_INDEX + 1, &f.escrow, &mut psbt, 0)
        .is_err());
    assert!(psbt.inputs.iter().all(|i| i.partial_sigs.is_empty()));
    let other = f.store.arbitrator_pubkey(ESCROW_INDEX + 1).unwrap();
    assert_ne!(other, f.escrow.keys().arbitrator());
}

#[test]
fn the_payout_is_not_complete_with_one_party() {
    let f = fixture();
    let one = import_signed_psbt(
        &f.escrow,
        &f.plan.expected,
        &f.plan.psbt,
        &provider_signs(&f),
    )
    .unwrap();
    assert!(one.final_tx.is_none());
    // Garbage is told apart from a PSBT that is merely empty.
    let err = import_signed_psbt(&f.escrow, &f.plan.expected, &one.psbt, "cHNidP8=").unwrap_err();
    assert!(matches!(err, PsbtImportError::MalformedPsbt(_)));
    let err = import_signed_psbt(&f.escrow, &f.plan.expected, &one.psbt, "%%").unwrap_err();
    assert_eq!(err, PsbtImportError::MalformedBase64);
}

#[test]
fn bdk_finalizes_the_same_psbt_to_the_same_transaction() {
    if !python_has_bdk() {
        return;
    }
    let f = fixture();
    let (merged, ours) = settle(&f);
    let path = std::env::temp_dir().join(format!(
        "agora-btc-cross-check-{}-{}.psbt",
        std::process::id(),
        ours.compute_txid()
    ));
    std::fs::write(&path, merged.to_string()).unwrap();
    let output = Command::new("python3")
        .arg(script())
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(
        output.status.success(),
        "cross-check failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {stdout}"))
            .to_owned()
    };
    assert_eq!(field("tx_hex"), serialize_hex(&ours));
    assert_eq!(field("txid"), ours.compute_txid().to_string());
    assert_eq!(field("fee"), f.plan.fee.to_sat().to_string());
    assert_eq!(field("vsize"), ours.vsize().to_string());
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/btc_cross_check.py")
}

/// Whether `python3` can import bdkpython. When it cannot, the cross-check is
/// skipped, except on CI (`CI=true`), where a missing checker is a failure.
fn python_has_bdk() -> bool {
    let available = Command::new("python3")
        .args(["-c", "import bdkpython"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !available {
        let message = "bdkpython is not importable by python3 (pip install bdkpython)";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{message}; CI=true requires the cross-check");
        }
        eprintln!("SKIPPED bdk cross-check: {message}");
    }
    available
}
