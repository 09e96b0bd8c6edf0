//! Blobs produced by the Rust XRPL escrow, decoded and verified by xrpl-py.
//!
//! `artifacts()` builds a deterministic set of keys, set-up transactions, signer
//! blobs and final multisigned payouts. They are committed as
//! `tests/vectors/xrpl/rust_vectors.json` (verified by xrpl-py when written; a test
//! here fails if the code stops reproducing them byte for byte), and the live test
//! hands a fresh copy to `tests/xrpl_cross_check.py`.
//!
//! The live test needs `pip install xrpl-py==5.2.0`. Without it, it is skipped with a
//! message, except when `CI=true`, where it fails.
//! To rewrite the committed file: `AGORA_WRITE_XRPL_VECTORS=1 cargo test -p agora-escrow --test xrpl_cross_check`.

// Test helpers outside #[test] fns count as non-test code for clippy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod xrpl_support;

use std::path::PathBuf;
use std::process::Command;

use agora_escrow::xrpl::{
    plan_payout, sign_escrow_configuration, sign_funding_payment, sign_payout, ConfigurationParams,
    FundingParams, PayoutTx, SignatureCollector, SigningKey,
};
use serde_json::{json, Value};
use xrpl_support::*;

fn vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/xrpl/rust_vectors.json")
}

fn script_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/xrpl_cross_check.py")
}

/// The fields a payout must decode to, stated from the spec, not from our JSON.
fn expected_payout_fields(tx: &PayoutTx) -> Value {
    let mut expect = json!({
        "TransactionType": "Payment",
        "Account": tx.escrow().as_str(),
        "Destination": tx.destination().address.as_str(),
        "Amount": tx.amount_drops().to_string(),
        "Fee": tx.fee_drops().to_string(),
        "Flags": 0,
        "Sequence": tx.sequence(),
        "LastLedgerSequence": tx.last_ledger_sequence(),
        "SigningPubKey": "",
    });
    if let Some(tag) = tx.destination().tag {
        expect["DestinationTag"] = tag.into();
    }
    expect
}

/// Name, funded drops, provider bps, commission bps, arbitration fee, who signs.
type Scenario = (&'static str, u64, i64, i64, u64, &'static [&'static str]);

fn artifacts() -> Value {
    let keyring = keyring();
    let mut keys = Vec::new();
    for index in [0u32, 1, 2, 3, 77, 65_535, u32::MAX] {
        let account = keyring.escrow_account(index).unwrap();
        let mut label = b"agora/xrpl-escrow/".to_vec();
        label.extend_from_slice(&index.to_be_bytes());
        keys.push(json!({"label_hex": hex::encode_upper(label), "address": account.address.as_str(), "public_key": account.public_key.to_hex()}));
    }
    let arbitrator = keyring.arbitrator_account().unwrap();
    keys.push(json!({"label_hex": hex::encode_upper(b"agora/xrpl-arbitrator"), "address": arbitrator.address.as_str(), "public_key": arbitrator.public_key.to_hex()}));

    let escrow = escrow_address();
    let operating = operating();
    let funding_params = FundingParams {
        amount_drops: 1_250_000,
        reserves: reserves(),
        configuration_fee_drops: 15,
        fee_drops: 15,
        sequence: 7,
        last_ledger_sequence: 1_000,
    };
    let funding = sign_funding_payment(&operating, &escrow, &funding_params).unwrap();
    let config_params = ConfigurationParams {
        first_sequence: 90_000_000,
        fee_drops: 15,
        last_ledger_sequence: 90_000_020,
        reserves: reserves(),
    };
    let config =
        sign_escrow_configuration(&keyring, ESCROW_INDEX, &signers(), &config_params).unwrap();
    let signer_entries: Vec<Value> = signers()
        .sorted()
        .iter()
        .map(|a| json!({"SignerEntry": {"Account": a.as_str(), "SignerWeight": 1}}))
        .collect();
    let common = |seq: u32| json!({"Account": escrow.as_str(), "Fee": "15", "Flags": 0, "Sequence": seq, "LastLedgerSequence": 90_000_020});
    let mut signer_list_expect = common(90_000_000);
    signer_list_expect["TransactionType"] = "SignerListSet".into();
    signer_list_expect["SignerQuorum"] = 2.into();
    signer_list_expect["SignerEntries"] = signer_entries.into();
    let mut disable_expect = common(90_000_001);
    disable_expect["TransactionType"] = "AccountSet".into();
    disable_expect["SetFlag"] = 4.into();
    let single_signed = vec![
        json!({"name": "funding", "blob": funding.blob, "hash": funding.hash, "account": operating.address().as_str(),
               "expect": {"TransactionType": "Payment", "Account": operating.address().as_str(), "Destination": escrow.as_str(),
                          "Amount": "1250000", "Fee": "15", "Flags": 0, "Sequence": 7, "LastLedgerSequence": 1000}}),
        json!({"name": "signer_list_set", "blob": config.signer_list_set.blob, "hash": config.signer_list_set.hash,
               "account": escrow.as_str(), "expect": signer_list_expect}),
        json!({"name": "disable_master", "blob": config.disable_master.blob, "hash": config.disable_master.hash,
               "account": escrow.as_str(), "expect": disable_expect}),
    ];

    let mut parties_json = json!({
        "provider": {"address": provider().address().as_str(), "tag": u32::MAX},
        "buyer": {"address": buyer().address().as_str(), "tag": 4242},
        "marketplace": {"address": operating.address().as_str(), "tag": null},
    });
    let listed: Vec<String> = signers().sorted().iter().map(|a| a.to_string()).collect();
    let scenarios: [Scenario; 5] = [
        ("release", 5_000_000, 10_000, 250, 0, &["buyer", "provider"]),
        ("refund", 5_000_000, 0, 250, 0, &["provider", "arbitrator"]),
        (
            "split",
            5_000_000,
            6_000,
            1_000,
            100_000,
            &["buyer", "arbitrator"],
        ),
        (
            "all_three_signed",
            5_000_000,
            2_500,
            500,
            0,
            &["buyer", "provider", "arbitrator"],
        ),
        (
            "max_supply",
            100_000_000_000_000_000,
            5_000,
            0,
            0,
            &["arbitrator", "buyer"],
        ),
    ];
    let mut signer_blobs = Vec::new();
    let mut multisigned = Vec::new();
    for (name, funded, provider_bps, commission_bps, arbitration_fee, who) in scenarios {
        if name == "max_supply" {
            parties_json["marketplace"]["tag"] = 0.into();
        }
        let params = payout_params(&json!({
            "funded_drops": funded, "base_fee_drops": 12, "first_sequence": 90_000_002, "last_ledger_sequence": 90_001_000,
            "terms": {"provider_bps": provider_bps, "commission_bps": commission_bps, "arbitration_fee": arbitration_fee},
        }));
        let plan = plan_payout(&escrow, &parties(&parties_json), &params).unwrap();
        for (i, tx) in plan.transactions.iter().enumerate() {
            let expect = expected_payout_fields(tx);
            let mut collector = SignatureCollector::new(tx.clone(), signers());
            for w in who {
                let (blob, signer) = match *w {
                    "arbitrator" => (
                        keyring.sign_payout_as_arbitrator(tx).unwrap(),
                        arbitrator.address.clone(),
                    ),
                    other => {
                        let key: SigningKey = if other == "buyer" {
                            buyer()
                        } else {
                            provider()
                        };
                        (sign_payout(tx, &key).unwrap(), key.address().clone())
                    }
                };
                collector.add_signer_blob(&blob).unwrap();
                signer_blobs.push(json!({"name": format!("{name}/{i}/{w}"), "blob": blob, "signer": signer.as_str(), "signer_list": listed, "expect": expect}));
            }
            let done = collector.finalize().unwrap();
            multisigned.push(
                json!({"name": format!("{name}/{i}"), "blob": done.blob, "hash": done.hash,
                                    "signer_list": listed, "quorum": 2, "expect": expect}),
            );
        }
    }
    json!({
        "marketplace_secret_hex": hex::encode_upper(SECRET),
        "keys": keys,
        "single_signed": single_signed,
        "signer_blobs": signer_blobs,
        "multisigned": multisigned,
    })
}

#[test]
fn committed_rust_vectors_are_reproduced_exactly() {
    let fresh = artifacts();
    let path = vectors_path();
    if std::env::var("AGORA_WRITE_XRPL_VECTORS").as_deref() == Ok("1") {
        let text = serde_json::to_string_pretty(&fresh).unwrap();
        std::fs::write(&path, text + "\n").unwrap();
    }
    let committed: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        fresh, committed,
        "rust_vectors.json is stale or the XRPL encoding changed"
    );
}

fn xrpl_py_available() -> Result<(), String> {
    match Command::new("python3").args(["-c", "import xrpl"]).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .unwrap_or("import failed")
            .to_owned()),
        Err(e) => Err(format!("python3 not runnable: {e}")),
    }
}

#[test]
fn xrpl_py_decodes_and_verifies_every_blob_we_produce() {
    if let Err(why) = xrpl_py_available() {
        let msg = format!(
            "xrpl-py is not available ({why}); install it with `pip install xrpl-py==5.2.0`"
        );
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{msg}");
        }
        eprintln!("SKIPPED xrpl_py_decodes_and_verifies_every_blob_we_produce: {msg}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("artifacts.json");
    std::fs::write(&fresh, serde_json::to_string(&artifacts()).unwrap()).unwrap();
    let out = Command::new("python3")
        .arg(script_path())
        .arg(&fresh)
        .arg(vectors_path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "xrpl-py rejected our blobs:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(", 0 did not"), "{stdout}");
}
